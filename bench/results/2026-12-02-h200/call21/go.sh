#!/usr/bin/env bash
# Session 9, call 21 (H200): racecheck timed out (150 s) on every flash instantiation in call 20, the first run with
# the `_mc` kernel (call 18's, without it, took 98 s): racecheck on the three new d = 128 kernels alone, each named
# as it starts, the `_mc` one last.
cd /work/main || exit 2
. bench/device_go.sh
st racecheck
export RWM_TEST_KERNELS=flash_fwd_sm90_d128_s2p_lean_th,flash_fwd_sm90_d128_s3p_lean_l2_th,flash_fwd_sm90_d128_s3p_lean_l2_th_mc
timeout "$(left)" compute-sanitizer --tool racecheck $L/backend_ops --test-threads 1 --nocapture cuda_kernel_variants_flash > $G/racecheck.log 2>&1; echo "racecheck rc=$?"
st done
grep -E "flash variant|RACECHECK SUMMARY|test result|Error|error|Race|hazard" $G/racecheck.log | head -20
tar czf $OUT/logs.tgz -C $OUT logs && rm -rf $G
