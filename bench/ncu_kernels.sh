#!/usr/bin/env bash
# Where a kernel's time goes, ours beside the peer's: Nsight Compute on the launches of the
# kernels whose names match a regex, in any program (ops_bench for ours, bench/peers/torch_ops.py
# for cuDNN or torch's grouped GEMMs), with the sections that say what holds a Hopper kernel back:
# tensor pipe and issue-slot use (SpeedOfLight, ComputeWorkloadAnalysis, SchedulerStats), warp
# stalls (WarpStateStats), shared memory and L2 (MemoryWorkloadAnalysis), per-instruction stalls
# (SourceCounters, for the SASS view in the GUI).
#
#   bench/ncu_kernels.sh OUT_PREFIX KERNEL_REGEX -- program args...
#   bench/ncu_kernels.sh $OUT/attn-ours 'flash_fwd_sm90' -- target/release/examples/ops_bench --only attn --iters 1
#   bench/ncu_kernels.sh $OUT/attn-cudnn 'cudnn|fmha|flash_fprop' -- python3 bench/peers/torch_ops.py --only attn --iters 1
#
# Writes OUT_PREFIX.ncu-rep and OUT_PREFIX.txt (the details page of every profiled launch: its grid
# tells the shapes apart). Env: NCU_COUNT launches to profile (default 2), NCU_SKIP launches to skip
# first (default 0), NCU_ARGS more ncu arguments. ncu locks the clocks to base and flushes caches
# between replays: compare ratios within one report, not its times with timed runs.
set -euo pipefail
if [ $# -lt 4 ] || [ "$3" != "--" ]; then
    sed -n '9,11p' "$0" >&2
    exit 2
fi
out="$1"
regex="$2"
shift 3
mkdir -p "$(dirname "$out")"
# shellcheck disable=SC2086 # NCU_ARGS is a list of arguments
ncu --kernel-name "regex:$regex" --launch-skip "${NCU_SKIP:-0}" --launch-count "${NCU_COUNT:-2}" \
    --section SpeedOfLight --section ComputeWorkloadAnalysis --section SchedulerStats \
    --section WarpStateStats --section MemoryWorkloadAnalysis --section Occupancy --section LaunchStats \
    --section SourceCounters --import-source no ${NCU_ARGS:-} -f -o "$out" "$@" > "$out.log" 2>&1
ncu --import "$out.ncu-rep" --page details > "$out.txt"
echo "$out.txt: launches profiled: $(grep -cE "^  [A-Za-z_].*\(" "$out.txt" || true)"
