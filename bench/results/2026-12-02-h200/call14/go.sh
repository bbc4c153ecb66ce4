#!/usr/bin/env bash
# Session 9, call 14 (H200): the deferred epilogue (`_de`: a tile's outputs packed to bf16 and stored while the
# next tile's first wgmmas run) in the FP8 n192 kernels (plain, multicast, SwiGLU) and the bf16 lean kernels
# (V2-Lite's default and the banded SwiGLU one), beside the defaults and torch, both orders.
# 1. GPU tests of every FP8 and grouped instantiation and the grouped ops.
# 2. `--only moe` (V2-Lite, V3) with the kernels listed, then the same reversed (ours only).
# 3. Llama's gate/up: the banded SwiGLU kernel and its `_de`, both orders.
cd /work/main || exit 2
. bench/device_go.sh
st tests
timeout 150 $L/backend_ops --test-threads 1 cuda_fp8_kernel_variants cuda_kernel_variants_grouped grouped > $G/tests.log 2>&1; echo "tests rc=$? $(grep -E '^test result' $G/tests.log | tail -1)"
grep -E "panicked|FAILED" $G/tests.log | head -5
st moe
K=grouped_gemm_fp8_n192_lean_s4,grouped_gemm_fp8_n192_lean_s4_de,grouped_gemm_fp8_n192_lean_s4_mc,grouped_gemm_fp8_n192_lean_s4_mc_de,grouped_gemm_fp8_swiglu_n192_lean_s4,grouped_gemm_fp8_swiglu_n192_lean_s4_de,grouped_gemm_tma_256_s3e_lean,grouped_gemm_tma_256_s3e_lean_de,grouped_gemm_swiglu_tma_256_s4_lean_b16,grouped_gemm_swiglu_tma_256_s4_lean_b16_de
OUT_DIR=$G/ops timeout 170 bench/run_ops.sh $L/ops_bench --only moe --kernels $K > $G/ops-table.log 2>&1; echo "ops rc=$?"
K2=$(echo $K | tr ',' '\n' | tac | paste -sd,)
timeout 120 $L/ops_bench --only moe --kernels $K2 --json $G/ops/rwm2.jsonl > $G/ops2.log 2>&1; echo "ops2 rc=$?"
st llama
LK=grouped_gemm_swiglu_tma_256_s4_lean_b16,grouped_gemm_swiglu_tma_256_s4_lean_b16_de
timeout 60 $L/ops_bench --only llama,llama32k --kernels $LK --json $G/llama1.jsonl > $G/llama-ops.log 2>&1; echo "llama rc=$?"
timeout 60 $L/ops_bench --only llama,llama32k --kernels grouped_gemm_swiglu_tma_256_s4_lean_b16_de,grouped_gemm_swiglu_tma_256_s4_lean_b16 --json $G/llama2.jsonl > $G/llama-ops2.log 2>&1; echo "llama2 rc=$?"
st done
cat $G/ops/rwm.jsonl $G/ops/rwm2.jsonl $G/ops/torch.jsonl > $OUT/moe-ops.jsonl; cat $G/llama1.jsonl $G/llama2.jsonl > $OUT/llama-ops.jsonl
grep -E '^\|' $G/ops-table.log | grep -E "grouped_gemm|expert" | grep -v ceiling | awk -F'|' '{print $2,$3,$4,$7}' | cut -c1-150
grep -E "^grouped_gemm" $G/ops2.log | cut -c1-150
grep -E "^llama_gate_up" $G/llama-ops.log $G/llama-ops2.log | cut -c1-160
tar czf $OUT/logs.tgz -C $OUT logs && rm -rf $G
