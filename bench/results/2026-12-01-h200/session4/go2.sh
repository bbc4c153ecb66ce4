#!/usr/bin/env bash
# Session 4, after merging est, time, attn: GPU ops tests (the 16-byte SwiGLU, sm90 flash d64 / _l2 instantiations),
# compute-sanitizer on them, the attention table for the new kernels with SDPA flash and cuDNN peers, the estimate sweep.
set -uo pipefail
cd /work/main
L=.dev/lead
export RWM_KERNEL_CACHE=/tmp/rwm-kernels PYTHONUNBUFFERED=1 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
t0=$(date +%s); st() { echo "== $1 at $(( $(date +%s)-t0 )) s"; }
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
st tests
timeout 200 $L/backend_ops --test-threads 1 > $OUT/backend_ops.log 2>&1; echo "backend_ops rc=$?"
grep -E "^test result|FAILED|panicked" $OUT/backend_ops.log | head -8
st sanitizer
for t in "memcheck swiglu" "memcheck cuda_kernel_variants" "racecheck cuda_kernel_variants"; do
  set -- $t
  timeout 100 compute-sanitizer --tool $1 $L/backend_ops --test-threads 1 $2 >> $OUT/sanitizer.log 2>&1
  echo "$1 $2 rc=$? $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY|test result' $OUT/sanitizer.log | tail -2 | tr '\n' ' ')"
done
st ops
mkdir -p $OUT/attn
K=flash_fwd_sm90_d128_s2p,flash_fwd_sm90_d128_s2p_l2,flash_fwd_sm90_d64_s2p,flash_fwd_sm90_d64_s3p,flash_fwd_sm90_d64_s2p_l2,flash_fwd_d64_w8m1
OUT_DIR=$OUT/attn timeout 200 bench/run_ops.sh $L/ops_bench --only attn --kernels $K > $OUT/attn/table.log 2>&1; echo "run_ops rc=$?"
st sweep
mkdir -p $OUT/sweep
RWM_SWEEP_OUT=$OUT/sweep timeout 200 $L/estimate_sweep --nocapture gpu_estimates > $OUT/sweep/test.log 2>&1; echo "sweep rc=$?"
st done
tar czf $OUT/sweep.tgz -C $OUT sweep && rm -rf $OUT/sweep
grep -E "est|within|%" $OUT/sweep.tgz >/dev/null 2>&1
tar xzf $OUT/sweep.tgz -O sweep/test.log | grep -E "\||result|FAIL|panick" | tail -32
grep -E "^\| attn" $OUT/attn/table.log
