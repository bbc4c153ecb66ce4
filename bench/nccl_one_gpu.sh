#!/usr/bin/env bash
# Several ranks on ONE GPU through NCCL, to exercise every NCCL path (split groups,
# all-to-all, ring send/recv, all-gather, all-reduce) without a multi-GPU machine.
#
#   bench/nccl_one_gpu.sh BIN OUT_DIR [RANKS...]     (default ranks: 2 4 8)
#
# BIN is rwm-dist built with --features mpi. NCCL refuses two ranks of one host on one
# device, so each rank gets its own NCCL_HOSTID (NCCL then takes them for separate hosts
# and connects them through sockets on the loopback interface), and a topology file of
# RANKS one-GPU nodes places every rank on GPU 0. The bandwidth is the socket's, not
# NVLink's: these runs check function (every rank against one rank alone), not speed.
# Every layout of the layouts issue runs in the quick profile, where the single-rank check
# is always on. Writes OUT_DIR/<ranks>-<name>.jsonl, a log per run, and summary.txt.
# RWM_LAYOUTS (a grep -E pattern) runs only the layouts whose name matches; RWM_RUN_ARGS adds
# flags to every run (e.g. "--variant optimized").
set -euo pipefail
bin=${1:?rwm-dist binary built with --features mpi}
out=${2:?output directory}
shift 2
sizes=("$@")
[ "${#sizes[@]}" -gt 0 ] || sizes=(2 4 8)
mkdir -p "$out"
out=$(cd "$out" && pwd)

wrapper="$out/rank-env.sh"
cat >"$wrapper" <<'WRAP'
#!/usr/bin/env bash
# One NCCL "host" per rank, all on the loopback interface; the ranks' CUDA contexts created in
# rank order (RWM_SERIAL_CONTEXTS: the GPU's time slices then visit the ranks in ring order, and a
# CP ring's step takes one value instead of one of two, BENCHMARKS.md step-time section).
export NCCL_HOSTID="h${OMPI_COMM_WORLD_RANK:?run under mpirun}" NCCL_SOCKET_IFNAME=lo RWM_SERIAL_CONTEXTS=1
exec "$@"
WRAP
chmod +x "$wrapper"

topology() {
    local n=$1 f="$out/one-gpu-x$1.toml" i
    {
        echo "# $n one-GPU nodes that are the same GPU (bench/nccl_one_gpu.sh)."
        echo "name = \"one-gpu-x$n\""
        echo "nodes = $n"
        echo "gpus_per_node = 1"
        echo "gpus = $n"
        echo "[gpu]"
        echo "model = \"$(nvidia-smi --query-gpu=name --format=csv,noheader -i 0 2>/dev/null || echo GPU)\""
        echo "memory_gb = 1"
        echo "network_gb_per_s = 1  # loopback sockets"
        for ((i = 0; i < n; i++)); do
            printf '[[nvlink_domain]]\nname = "node%d"\nnodes = [%d]\n' "$i" "$i"
        done
    } >"$f"
    echo "$f"
}

# name and rwm-dist arguments of each layout, by world size.
layouts() {
    case $1 in
        2) printf '%s\n' "gpt4-cp2-ring|--target gpt4 --cp 2" "gpt4-cp2-allgather|--target gpt4 --cp 2 --cp-kind allgather" \
            "gpt4-ep2|--target gpt4 --ep 2" "moe-ep2|--target moe --ep 2" ;;
        4) printf '%s\n' "gpt4-cp2-ep2|--target gpt4 --cp 2 --ep 2" "gpt4-cp4-ring|--target gpt4 --cp 4" \
            "gpt4-cp2-dp2|--target gpt4 --cp 2 --ep 1" "moe-ep2-dp2|--target moe --ep 2" "moe-ep4|--target moe --ep 4" ;;
        8) printf '%s\n' "gpt4-cp2-ep4|--target gpt4 --cp 2 --ep 4" "gpt4-cp4-ep2|--target gpt4 --cp 4 --ep 2" \
            "gpt4-cp4-ep2-allgather|--target gpt4 --cp 4 --ep 2 --cp-kind allgather" "moe-ep4-dp2|--target moe --ep 4" \
            "moe-ep8|--target moe --ep 8" ;;
        *) echo "no layouts for $1 ranks" >&2; return 1 ;;
    esac
}

export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export RWM_TIMEOUT_S="${RWM_TIMEOUT_S:-300}" NCCL_DEBUG="${NCCL_DEBUG:-WARN}"
: >"$out/summary.txt"
for n in "${sizes[@]}"; do
    topo=$(topology "$n")
    while IFS='|' read -r name args; do
        # shellcheck disable=SC2086 # $args holds several flags
        if mpirun -np "$n" --bind-to none "$wrapper" "$bin" run --backend "${RWM_BACKEND:-cuda}" --topology "$topo" $args ${RWM_RUN_ARGS:-} \
            --output "$out/$n-$name.jsonl" </dev/null >"$out/$n-$name.log" 2>&1; then rc=0; else rc=$?; fi
        echo "$n ranks $name: exit $rc" | tee -a "$out/summary.txt"
    done < <(layouts "$n" | grep -E "^(${RWM_LAYOUTS:-.*})\\|")
done
