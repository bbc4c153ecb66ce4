#!/usr/bin/env bash
# Start rwm-dist on several ranks with Open MPI's mpirun, one rank per GPU.
#
#   launch/mpirun.sh -n 16 -N 8 -H hosts.txt -- run --topology topology/dgx-h100.toml
#
# Options (before `--`; everything after it goes to rwm-dist unchanged):
#   -n RANKS          total ranks (required)
#   -N, --per-node K  ranks per node (one per GPU). Default: gpus_per_node of the --topology
#                     file given to rwm-dist after `--`; else RANKS when no hostfile is given (all
#                     on this node); required with -H otherwise. Never read from this host's
#                     nvidia-smi: the launching host may have no GPUs, or other ones than the nodes.
#   -H HOSTFILE       Open MPI hostfile (default: this node only)
#   --bind WHAT       numa (default), socket, core or none: CPU binding of each rank
#   --oversubscribe   allow more ranks than cores (CPU-only tests on a small machine)
#   --print           print the mpirun command instead of running it
# Environment:
#   RWM_DIST          the rwm-dist binary, built with --features mpi
#                     (default: target/release/rwm-dist of this checkout, else rwm-dist on PATH)
#   RWM_MPIRUN_ARGS   extra mpirun arguments, split on spaces
#   RWM_TIMEOUT_S     seconds an operation may hang before the job is aborted (default 600)
#   RANK_TO_PROFILE   with RWM_DIST=launch/profile-rank.sh: the rank run under ncu or nsys
#
# Every rank gets this shell's PATH and LD_LIBRARY_PATH (mpirun passes only named variables to
# other nodes), so the CUDA, NCCL and MPI libraries found here are found there.
# NCCL runs with its own defaults: NCCL_* variables set here (NCCL_NVLS_ENABLE,
# NCCL_MNNVL_ENABLE, NCCL_SOCKET_IFNAME, ...) are forwarded, none is forced. Where NVLink SHARP
# multicast is unsupported (no fabric-manager multicast, shared or virtualised hosts), set
# NCCL_NVLS_ENABLE=0 yourself. NCCL_DEBUG=WARN unless set, so NCCL failures say why.
set -euo pipefail

usage() {
    sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
    exit "${1:-0}"
}

ranks=""
per_node=""
hostfile=""
bind="numa"
oversubscribe=0
print=0
while [ "$#" -gt 0 ]; do
    case "$1" in
        -n) ranks="${2:?-n needs a number}"; shift 2 ;;
        -N|--per-node) per_node="${2:?-N needs a number}"; shift 2 ;;
        -H) hostfile="${2:?-H needs a file}"; shift 2 ;;
        --bind) bind="${2:?--bind needs numa, socket, core or none}"; shift 2 ;;
        --oversubscribe) oversubscribe=1; shift ;;
        --print) print=1; shift ;;
        -h|--help) usage 0 ;;
        --) shift; break ;;
        *) echo "mpirun.sh: unknown option $1 (rwm-dist arguments go after --)" >&2; usage 2 ;;
    esac
done

case "$ranks" in
    ''|*[!0-9]*|0) echo "mpirun.sh: -n RANKS is required and must be a positive number, got '${ranks}'" >&2; exit 2 ;;
esac
# The topology file rwm-dist is given, if any: its gpus_per_node is the ranks per node.
topology=""
prev=""
for a in "$@"; do
    case "$a" in
        --topology=*) topology="${a#--topology=}" ;;
        *) if [ "$prev" = "--topology" ]; then topology="$a"; fi ;;
    esac
    prev="$a"
done
if [ -z "$per_node" ] && [ -n "$topology" ]; then
    if [ ! -r "$topology" ]; then
        echo "mpirun.sh: cannot read the topology file '${topology}'" >&2; exit 2
    fi
    per_node=$(sed -n 's/^[[:space:]]*gpus_per_node[[:space:]]*=[[:space:]]*\([0-9]*\).*/\1/p' "$topology" | head -n 1)
fi
if [ -z "$per_node" ]; then
    if [ -n "$hostfile" ]; then
        echo "mpirun.sh: with -H give -N PER_NODE (ranks per node), or --topology FILE after --" >&2; exit 2
    fi
    per_node="$ranks"
fi
case "$per_node" in
    ''|*[!0-9]*|0) echo "mpirun.sh: -N must be a positive number, got '${per_node}'" >&2; exit 2 ;;
esac
case "$bind" in
    numa|socket|core|none) ;;
    *) echo "mpirun.sh: --bind must be numa, socket, core or none, got '${bind}'" >&2; exit 2 ;;
esac

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
bin="${RWM_DIST:-}"
if [ -z "$bin" ]; then
    if [ -x "$here/../target/release/rwm-dist" ]; then bin="$here/../target/release/rwm-dist"; else bin="rwm-dist"; fi
fi

export NCCL_DEBUG="${NCCL_DEBUG:-WARN}"
export RWM_TIMEOUT_S="${RWM_TIMEOUT_S:-600}"

bind_to="$bind"
if [ "$oversubscribe" -eq 1 ] && [ "$bind" != none ]; then
    # More ranks than cores would otherwise make binding refuse to start.
    bind_to="${bind}:overload-allowed"
fi
args=(-np "$ranks" --map-by "ppr:${per_node}:node" --bind-to "$bind_to")
[ -n "$hostfile" ] && args+=(--hostfile "$hostfile")
[ "$oversubscribe" -eq 1 ] && args+=(--oversubscribe)
# mpirun passes only named variables to ranks on other nodes: the search paths, ours, and every
# NCCL_* variable set here.
nccl_vars=()
while IFS= read -r v; do nccl_vars+=("$v"); done < <(compgen -e | grep '^NCCL_' | sort)
# launch/profile-rank.sh's settings too, when set.
for v in PATH LD_LIBRARY_PATH RWM_TIMEOUT_S RUST_LOG RANK_TO_PROFILE RWM_PROFILER RWM_NVTX_INCLUDE RWM_PROFILE_OUT \
    RWM_PROFILE_ARGS RWM_PROFILE_BIN "${nccl_vars[@]}"; do
    if [ -n "${!v:-}" ]; then args+=(-x "$v"); fi
done
if [ -n "${RWM_MPIRUN_ARGS:-}" ]; then
    read -r -a extra <<<"$RWM_MPIRUN_ARGS"
    args+=("${extra[@]}")
fi
if [ "$(id -u)" -eq 0 ]; then
    # Open MPI refuses to run as root without both.
    export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi

if [ "$print" -eq 1 ]; then
    printf '%q ' mpirun "${args[@]}" "$bin" "$@"
    printf '\n'
    exit 0
fi
exec mpirun "${args[@]}" "$bin" "$@"
