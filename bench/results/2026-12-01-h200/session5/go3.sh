#!/usr/bin/env bash
# Session 5, call 3: the estimate sweep after the estimate learned that the GPU adds the shared experts inside the
# unpermute (one [t, h] buffer less on one rank; call 2's sweep found moe E=8 at +7.1-7.8%).
set -uo pipefail
cd /work/main
L=.dev/lead
export RWM_KERNEL_CACHE=/tmp/rwm-kernels OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
mkdir -p target/release && cp $L/rwm-dist target/release/rwm-dist
mkdir -p $OUT/sweep
RWM_SWEEP_OUT=$OUT/sweep timeout 120 $L/estimate_sweep --nocapture gpu_estimates > $OUT/sweep-test.log 2>&1; echo "sweep rc=$?"
tar czf $OUT/sweep.tgz -C $OUT sweep && rm -rf $OUT/sweep
grep -E "^\|.*(moe|llama)|result" $OUT/sweep-test.log | tail -30
