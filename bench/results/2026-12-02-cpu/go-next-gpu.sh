#!/usr/bin/env bash
# PREPARED IN SESSION 6 WITHOUT A GPU; session 7 ran it split and trimmed as calls 1 and 3 (bench/results/2026-12-02-h200/).
# Next session, call 1 (H200): GPU tests of session 6's host refactors (RMSNorm one launch, NCCL exchange! macro;
# TgSmem is cubin-identical), the 2-rank NCCL layouts (send/recv group, all-to-all), then ncu: attention at 32K (ours
# s2p vs cuDNN), FP8 grouped s6, then session 6's by-name kernels (flash/FP8/bf16 `_lean`, FP8 `_n192`) timed beside
# torch in the same run. The READMEs under bench/results/2026-12-02-cpu/ say what each should show.
# Carry .dev/lead: rwm-dist (--features mpi), ops_bench, backend_ops, backend_memory (cargo test --no-run names).
set -uo pipefail
cd /work/main || exit 2
L=.dev/lead
LIMIT=${LIMIT:-560}
export RWM_KERNEL_CACHE=/tmp/rwm-kernels PYTHONUNBUFFERED=1 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1 RUST_LOG=warn
mkdir -p target/release && cp $L/rwm-dist target/release/rwm-dist
t0=$(date +%s); el() { echo $(( $(date +%s) - t0 )); }; st() { echo "== $1 at $(el) s"; }
left() { local l=$(( LIMIT - $(el) )); [ $l -gt 1 ] && echo $l || echo 1; }
mkdir -p $OUT/p
ATTK=flash_fwd_sm90_d128_s2p,flash_fwd_sm90_d128_s2p_lean,flash_fwd_sm90_d128_s3p_lean,flash_fwd_sm90_d64_s2p,flash_fwd_sm90_d64_s2p_lean
FP8K=grouped_gemm_fp8_s6,grouped_gemm_fp8_lean_s6,grouped_gemm_fp8_n192_lean_s4,grouped_gemm_fp8_n192_lean_s4_mc,grouped_gemm_fp8_swiglu_s6,grouped_gemm_fp8_swiglu_lean_s6,grouped_gemm_fp8_swiglu_n192_lean_s4
st tests
timeout 200 $L/backend_ops --test-threads 1 > $OUT/tests.log 2>&1; echo "backend_ops rc=$? $(grep -E '^test result' $OUT/tests.log | tail -1)"
timeout 30 $L/backend_memory --test-threads 1 >> $OUT/tests.log 2>&1; echo "backend_memory rc=$?"
grep -E "FAILED|panicked" $OUT/tests.log | head -6
st sanitizer
timeout 150 compute-sanitizer --tool racecheck $L/backend_ops --test-threads 1 cuda_kernel_variants > $OUT/racecheck.log 2>&1; echo "racecheck rc=$? $(grep -E 'RACECHECK SUMMARY' $OUT/racecheck.log)"
timeout 120 compute-sanitizer --tool memcheck $L/backend_ops --test-threads 1 cuda_fp8_kernel_variants > $OUT/memcheck.log 2>&1; echo "memcheck rc=$? $(grep -E 'ERROR SUMMARY' $OUT/memcheck.log)"
st attn-time
OUT_DIR=$OUT/p/attn timeout 150 bench/run_ops.sh $L/ops_bench --only attn --kernels $ATTK > $OUT/attn-table.log 2>&1; echo "attn rc=$?"
cp $OUT/p/attn/rwm.jsonl $OUT/attn-rwm.jsonl; cp $OUT/p/attn/torch.jsonl $OUT/attn-torch.jsonl
st nccl2
timeout 150 bench/nccl_one_gpu.sh $L/rwm-dist $OUT/p/nccl 2 > /dev/null 2>&1 </dev/null; echo "nccl rc=$?"
cat $OUT/p/nccl/summary.txt
st ncu-attn
NCU_COUNT=1 timeout 100 bench/ncu_kernels.sh $OUT/p/attn-ours 'flash_fwd_sm90_d128_s2p$' -- $L/ops_bench --only attn --attn-seq 32768 --iters 1 --kernels flash_fwd_sm90_d128_s2p
NCU_COUNT=1 timeout 100 bench/ncu_kernels.sh $OUT/p/attn-lean 'flash_fwd_sm90_d128_s2p_lean$' -- $L/ops_bench --only attn --attn-seq 32768 --iters 1 --kernels flash_fwd_sm90_d128_s2p_lean
NCU_COUNT=1 timeout 100 bench/ncu_kernels.sh $OUT/p/attn-cudnn 'cudnn|fprop' -- python3 bench/peers/torch_ops.py --only attn --attn-seq 32768 --iters 1
st ncu-fp8
timeout "$(left)" bench/ncu_kernels.sh $OUT/p/fp8 grouped_gemm_fp8 -- $L/ops_bench --only moe_v2lite --kernels $FP8K --iters 1
st time
OUT_DIR=$OUT/p/ops timeout "$(left)" bench/run_ops.sh $L/ops_bench --only moe --kernels $FP8K > $OUT/ops-table.log 2>&1; echo "run_ops rc=$?"
cp $OUT/p/ops/rwm.jsonl $OUT/ops-rwm.jsonl; cp $OUT/p/ops/torch.jsonl $OUT/ops-torch.jsonl
st bf16
BFK=grouped_gemm_tma_256_s3e,grouped_gemm_tma_256_s3e_lean,grouped_gemm_swiglu_tma_256_s4,grouped_gemm_swiglu_tma_256_s4_lean
OUT_DIR=$OUT/p/bf16 timeout "$(left)" bench/run_ops.sh $L/ops_bench --only moe_v2lite,llama --kernels $BFK > $OUT/bf16-table.log 2>&1; echo "bf16 rc=$?"
cp $OUT/p/bf16/rwm.jsonl $OUT/bf16-rwm.jsonl; cp $OUT/p/bf16/torch.jsonl $OUT/bf16-torch.jsonl
st finished
for f in $OUT/p/*.txt; do echo "## $f"; grep -E "Compute \(SM\) Throughput|Memory Throughput|Duration|Issue Slots Busy|No Eligible|Registers Per|Stall|Executed Ipc A" $f | head -30; done > $OUT/ncu-summary.txt
tar czf $OUT/p.tgz -C $OUT p && rm -rf $OUT/p
tail -30 $OUT/ops-table.log; head -60 $OUT/ncu-summary.txt
