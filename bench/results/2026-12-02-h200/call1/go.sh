#!/usr/bin/env bash
# Session 7 call 1 (H200): all GPU tests (session 6's lean kernels by name, host refactors), then timing of the
# by-name kernels (attention, FP8 grouped, bf16 grouped) beside torch in the same run.
set -uo pipefail
cd /work/main || exit 2
L=.dev/lead
export RWM_KERNEL_CACHE=/tmp/rwm-kernels PYTHONUNBUFFERED=1 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1 RUST_LOG=warn
mkdir -p target/release && cp $L/rwm-dist target/release/rwm-dist
t0=$(date +%s); el() { echo $(( $(date +%s) - t0 )); }; st() { echo "== $1 at $(el) s"; }
mkdir -p $OUT/p
ATTK=flash_fwd_sm90_d128_s2p,flash_fwd_sm90_d128_s2p_lean,flash_fwd_sm90_d128_s3p_lean,flash_fwd_sm90_d64_s2p,flash_fwd_sm90_d64_s2p_lean
FP8K=grouped_gemm_fp8_s6,grouped_gemm_fp8_lean_s6,grouped_gemm_fp8_n192_lean_s4,grouped_gemm_fp8_n192_lean_s4_mc,grouped_gemm_fp8_swiglu_s6,grouped_gemm_fp8_swiglu_lean_s6,grouped_gemm_fp8_swiglu_n192_lean_s4
BFK=grouped_gemm_tma_256_s3e,grouped_gemm_tma_256_s3e_lean,grouped_gemm_swiglu_tma_256_s4,grouped_gemm_swiglu_tma_256_s4_lean
st tests
timeout 240 $L/backend_ops --test-threads 1 > $OUT/tests.log 2>&1; echo "backend_ops rc=$? $(grep -E '^test result' $OUT/tests.log | tail -1)"
timeout 30 $L/backend_memory --test-threads 1 >> $OUT/tests.log 2>&1; echo "backend_memory rc=$?"
grep -E "FAILED|panicked|failed" $OUT/tests.log | head -8
st attn-time
OUT_DIR=$OUT/p/attn timeout 120 bench/run_ops.sh $L/ops_bench --only attn --kernels $ATTK > $OUT/attn-table.log 2>&1; echo "attn rc=$?"
st fp8-time
OUT_DIR=$OUT/p/ops timeout 120 bench/run_ops.sh $L/ops_bench --only moe --kernels $FP8K > $OUT/ops-table.log 2>&1; echo "fp8 rc=$?"
st bf16-time
OUT_DIR=$OUT/p/bf16 timeout 100 bench/run_ops.sh $L/ops_bench --only moe_v2lite,llama --kernels $BFK > $OUT/bf16-table.log 2>&1; echo "bf16 rc=$?"
st finished
tar czf $OUT/p.tgz -C $OUT p && rm -rf $OUT/p
grep -E '^\|' $OUT/attn-table.log | tail -30; grep -E '^\|' $OUT/ops-table.log | tail -30; grep -E '^\|' $OUT/bf16-table.log | tail -24
