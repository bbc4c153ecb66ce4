#!/usr/bin/env bash
# Session 5, call 1 (HEAD 851dc10): GPU tests after the review commit (host launch code), the estimate sweep with the
# fused-SwiGLU estimate (issue 16), the one-GPU step-time check (issue 19).
set -uo pipefail
cd /work/main
L=.dev/lead
export RWM_KERNEL_CACHE=/tmp/rwm-kernels OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
mkdir -p target/release && cp $L/rwm-dist target/release/rwm-dist
t0=$(date +%s); st() { echo "== $1 at $(( $(date +%s)-t0 )) s"; }
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader
st tests
timeout 150 $L/backend_ops --test-threads 1 > $OUT/backend_ops.log 2>&1; echo "backend_ops rc=$?"
timeout 60 $L/backend_memory --test-threads 1 >> $OUT/backend_ops.log 2>&1; echo "backend_memory rc=$?"
grep -E "^test result|FAILED|panicked" $OUT/backend_ops.log | head -8
st sweep
mkdir -p $OUT/sweep
RWM_SWEEP_OUT=$OUT/sweep timeout 150 $L/estimate_sweep --nocapture gpu_estimates > $OUT/sweep-test.log 2>&1; echo "sweep rc=$?"
st step_time
mkdir -p $OUT/step
RWM_STEP_TIME_DIR=$OUT/step timeout 150 $L/step_time --nocapture one_gpu > $OUT/step/test.log 2>&1; echo "step_time rc=$?"
st done
tar czf $OUT/runs.tgz -C $OUT sweep step && rm -rf $OUT/sweep
grep -E "predicted" $OUT/step/test.log; rm -rf $OUT/step
grep -E "^\||result|beyond" $OUT/sweep-test.log | tail -50
