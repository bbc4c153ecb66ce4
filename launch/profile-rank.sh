#!/usr/bin/env bash
# Profile one rank of a job in Nsight Compute (ncu) or Nsight Systems (nsys); the other ranks
# run plain. Put this script where the rank's command goes:
#
#   RANK_TO_PROFILE=1 RWM_DIST=launch/profile-rank.sh launch/mpirun.sh -n 4 -- \
#       run --target gpt4 --cp 4 --variant optimized --iters 3 --profile-steps
#   srun ... launch/profile-rank.sh run --target moe --ep 8 --profile-steps   # in an sbatch script
#
# Environment:
#   RANK_TO_PROFILE   the rank to profile (required; its rank comes from OMPI_COMM_WORLD_RANK,
#                     PMIX_RANK, PMI_RANK or SLURM_PROCID)
#   RWM_PROFILER      ncu (default) or nsys
#   RWM_NVTX_INCLUDE  ncu only: one NVTX filter, e.g. "gpt4 optimized/step 1/" (one timed step)
#   RWM_PROFILE_OUT   report path prefix, the rank appended (default profiles/rwm-rank:
#                     profiles/rwm-rank1.ncu-rep or .nsys-rep)
#   RWM_PROFILE_ARGS  more profiler arguments, split on spaces (e.g. --set full, --metrics ...)
#   RWM_PROFILE_BIN   the rwm-dist binary (default target/release/rwm-dist of this checkout,
#                     else rwm-dist on PATH)
#
# ncu gets --nvtx (the NVTX ranges of targets, steps and phases) and --profile-from-start off:
# with rwm-dist's --profile-steps only the timed steps are captured. NCCL kernels are left out
# (-k regex:^(?!nccl)): ncu replays each kernel it profiles, and a replayed NCCL kernel would
# wait for peers that are not replayed. nsys traces CUDA and NVTX over the timed steps
# (--capture-range=cudaProfilerApi). launch/mpirun.sh forwards these variables to every node.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
bin="${RWM_PROFILE_BIN:-}"
if [ -z "$bin" ]; then
    if [ -x "$here/../target/release/rwm-dist" ]; then bin="$here/../target/release/rwm-dist"; else bin="rwm-dist"; fi
fi
want="${RANK_TO_PROFILE:?profile-rank.sh: set RANK_TO_PROFILE to the rank to profile}"
rank="${OMPI_COMM_WORLD_RANK:-${PMIX_RANK:-${PMI_RANK:-${SLURM_PROCID:-0}}}}"
if [ "$rank" != "$want" ]; then
    exec "$bin" "$@"
fi

out="${RWM_PROFILE_OUT:-profiles/rwm-rank}${rank}"
mkdir -p "$(dirname "$out")"
extra=()
if [ -n "${RWM_PROFILE_ARGS:-}" ]; then
    read -r -a extra <<<"$RWM_PROFILE_ARGS"
fi
case "${RWM_PROFILER:-ncu}" in
    ncu)
        args=(--nvtx --profile-from-start off -k 'regex:^(?!nccl)' -f -o "$out")
        if [ -n "${RWM_NVTX_INCLUDE:-}" ]; then args+=(--nvtx-include "$RWM_NVTX_INCLUDE"); fi
        echo "profile-rank.sh: rank ${rank}: ncu ${args[*]} ${extra[*]} $bin $*" >&2
        exec ncu "${args[@]}" "${extra[@]}" "$bin" "$@"
        ;;
    nsys)
        args=(profile --trace "cuda,nvtx" --capture-range=cudaProfilerApi --capture-range-end=stop --force-overwrite true -o "$out")
        echo "profile-rank.sh: rank ${rank}: nsys ${args[*]} ${extra[*]} $bin $*" >&2
        exec nsys "${args[@]}" "${extra[@]}" "$bin" "$@"
        ;;
    *)
        echo "profile-rank.sh: RWM_PROFILER must be ncu or nsys, got '${RWM_PROFILER}'" >&2
        exit 2
        ;;
esac
