#!/usr/bin/env bash
# Session 8, call 7 (prepared at the end of session 7): the first call of the session.
# Carry .dev/lead (rwm-dist --features mpi, ops_bench, backend_ops). ~400 s.
# 1. GPU tests of the untimed by-name kernels (`_lean_l2`: d128 s2p, d64 s2p; `_lean_l2_dyn`: d128 s2p, s3p,
#    FA3's persistent heaviest-first order in L2 sections).
# 2. Attention: the L2-section kernels beside the defaults and cuDNN at the default lengths and at 10240, 16384,
#    24576 (the d = 128 crossover, now at 12288 from two lengths), twice with the order reversed. Adopt
#    `d128_s2p_lean_l2` as LONG_FLASH_SM90A and a d = 64 long kernel only at >= 1.03x in both orders.
# 3. `ops_bench --only moe` beside torch: V3's quantiser rate after the 448 / amax cast; the FP8 multicast kernel
#    against n192 at V3's gate/up (1.07x once in session 7: adopt for K >= 4096 if it holds); the bf16 SwiGLU
#    kernels at V3 (the lean one was only timed at V2-Lite).
# 4. Llama's gate/up with SwiGLU fused, plain and in bands of 16 row blocks (`_b16`), against cuBLASLt + SwiGLU.
# 5. The V3 bf16 layer with 10 steps (1.47x the loop in session 7 with 5 steps, ±5% spread) beside torch.
cd /work/main || exit 2
. bench/device_go.sh
st tests
timeout 150 $L/backend_ops --test-threads 1 cuda_kernel_variants attention > $G/tests.log 2>&1; echo "tests rc=$? $(grep -E '^test result' $G/tests.log | tail -1)"
st attn
K=flash_fwd_sm90_d128_s2p_lean,flash_fwd_sm90_d128_s2p_lean_l2,flash_fwd_sm90_d128_s3p_lean_l2,flash_fwd_sm90_d128_s2p_lean_l2_dyn,flash_fwd_sm90_d128_s3p_lean_l2_dyn,flash_fwd_sm90_d64_s2p,flash_fwd_sm90_d64_s2p_lean_l2
S=5000,8192,10240,12345,16384,24576,32768
OUT_DIR=$G/attn timeout 150 bench/run_ops.sh $L/ops_bench --only attn --attn-seq $S --kernels $K > $G/attn-table.log 2>&1; echo "attn rc=$?"
K2=flash_fwd_sm90_d64_s2p_lean_l2,flash_fwd_sm90_d64_s2p,flash_fwd_sm90_d128_s3p_lean_l2_dyn,flash_fwd_sm90_d128_s2p_lean_l2_dyn,flash_fwd_sm90_d128_s3p_lean_l2,flash_fwd_sm90_d128_s2p_lean_l2,flash_fwd_sm90_d128_s2p_lean
timeout 100 $L/ops_bench --only attn --attn-seq $S --kernels $K2 --json $G/attn/rwm2.jsonl > $G/attn2.log 2>&1; echo "attn2 rc=$?"
st moe
FP8K=grouped_gemm_fp8_n192_lean_s4,grouped_gemm_fp8_n192_lean_s4_mc,grouped_gemm_swiglu_tma_256_s4,grouped_gemm_swiglu_tma_256_s4_lean
OUT_DIR=$G/ops timeout 120 bench/run_ops.sh $L/ops_bench --only moe --kernels $FP8K > $G/ops-table.log 2>&1; echo "ops rc=$?"
st llama-gemm
# The banded tile order (`_b16`, by name) on Llama's dense gate/up (one expert, 64 row blocks at 8K, 256 at 32K):
# if the fused SwiGLU kernel reaches ~660 TFLOP/s it beats cuBLASLt + the SwiGLU pass (BENCHMARKS.md, session 5)
# and `llama.fused_swiglu` should go on by default.
LK=grouped_gemm_swiglu_tma_256_s4_lean,grouped_gemm_swiglu_tma_256_s4_lean_b16
timeout 90 $L/ops_bench --only llama,llama32k --kernels $LK --json $OUT/llama-ops.jsonl > $G/llama-ops.log 2>&1; echo "llama ops rc=$?"
grep -E "^llama_gate_up" $G/llama-ops.log
st layer
timeout 60 $L/rwm-dist run --backend cuda --profile bench --target moe --set moe.preset=deepseek-v3 --skew none --dtype bf16 --warmup 2 --iters 10 --output $OUT/moe.jsonl > $G/moe.log 2>&1; echo "moe rc=$?"
timeout 90 python3 bench/peers/torch_moe.py --tokens 8192 --experts 256 --top-k 8 --hidden 7168 --ffn 2048 --shared 1 > $OUT/peers.jsonl 2> $G/torch-moe-v3.log; echo "torch rc=$?"
st done
cat $G/attn/rwm.jsonl $G/attn/rwm2.jsonl $G/attn/torch.jsonl > $OUT/attn-ops.jsonl; cat $G/ops/rwm.jsonl $G/ops/torch.jsonl > $OUT/moe-ops.jsonl
grep -E '^\|' $G/attn-table.log | grep cudnn; grep -E "^attn_flash" $G/attn2.log; grep -E '^\|' $G/ops-table.log | grep -E "V3|131072|quantize" | head -20
tar czf $OUT/logs.tgz -C $OUT logs && rm -rf $G
