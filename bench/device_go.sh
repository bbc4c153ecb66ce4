#!/usr/bin/env bash
# The common start of a device call (the go.sh scripts under bench/results/), sourced on the GPU machine from the
# copy of the checkout: `cd /work/main || exit 2; . bench/device_go.sh`. Sets L (the binaries carried in
# .dev/lead), G ($OUT/logs), the kernel cache, Python's unbuffered output, Open MPI as root and oversubscribed,
# `st NAME` (prints the stage and the seconds since the start) and `left` (seconds left of LIMIT, default 560).
# shellcheck disable=SC2034 # L and G are for the script that sources this
set -uo pipefail
L=/work/main/.dev/lead
G=$OUT/logs
mkdir -p "$G"
export RWM_KERNEL_CACHE=/tmp/rwm-kernels PYTHONUNBUFFERED=1 RUST_LOG=warn OMPI_ALLOW_RUN_AS_ROOT=1 \
    OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
t0=$(date +%s)
st() { echo "== $1 at $(($(date +%s) - t0)) s"; }
left() {
    local l=$((${LIMIT:-560} - $(date +%s) + t0))
    if [ "$l" -gt 1 ]; then echo "$l"; else echo 1; fi
}
