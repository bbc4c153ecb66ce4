#!/usr/bin/env bash
# Session 8, call 8 (H200): the new by-name kernels tested, then timed in two orders beside their peers:
# attention with part of the exps on the FMA pipe (`_fma2`, `_fma4`: d = 64 at 0.95-0.98x cuDNN), the FP8
# SwiGLU gate/up with the weight tile multicast (`_swiglu_n192_lean_s4_mc`); Llama 3.1 8B with the banded
# fused gate/up + SwiGLU (now GROUPED_SWIGLU and on by default) and without it, beside HF at 8K and 32K.
cd /work/main || exit 2
. bench/device_go.sh
st tests
timeout 150 $L/backend_ops --test-threads 1 cuda_kernel_variants cuda_fp8_kernel_variants > $G/tests.log 2>&1; echo "tests rc=$? $(grep -E '^test result' $G/tests.log | tail -1)"
grep -E "panicked|FAILED" $G/tests.log | head -5
st attn
K=flash_fwd_sm90_d64_s2p,flash_fwd_sm90_d64_s2p_fma2,flash_fwd_sm90_d64_s2p_fma4,flash_fwd_sm90_d64_s2p_lean_fma4,flash_fwd_sm90_d64_s2p_lean,flash_fwd_sm90_d128_s2p_lean,flash_fwd_sm90_d128_s2p_lean_fma2
K2=flash_fwd_sm90_d128_s2p_lean_fma2,flash_fwd_sm90_d128_s2p_lean,flash_fwd_sm90_d64_s2p_lean,flash_fwd_sm90_d64_s2p_lean_fma4,flash_fwd_sm90_d64_s2p_fma4,flash_fwd_sm90_d64_s2p_fma2,flash_fwd_sm90_d64_s2p
S=5000,8192,32768
OUT_DIR=$G/attn timeout 120 bench/run_ops.sh $L/ops_bench --only attn --attn-seq $S --kernels $K > $G/attn-table.log 2>&1; echo "attn rc=$?"
timeout 80 $L/ops_bench --only attn --attn-seq $S --kernels $K2 --json $G/attn/rwm2.jsonl > $G/attn2.log 2>&1; echo "attn2 rc=$?"
st moe
FK=grouped_gemm_fp8_swiglu_n192_lean_s4,grouped_gemm_fp8_swiglu_n192_lean_s4_mc,grouped_gemm_fp8_n192_lean_s4,grouped_gemm_fp8_n192_lean_s4_mc
OUT_DIR=$G/ops timeout 120 bench/run_ops.sh $L/ops_bench --only moe --kernels $FK > $G/ops-table.log 2>&1; echo "ops rc=$?"
FK2=grouped_gemm_fp8_n192_lean_s4_mc,grouped_gemm_fp8_n192_lean_s4,grouped_gemm_fp8_swiglu_n192_lean_s4_mc,grouped_gemm_fp8_swiglu_n192_lean_s4
timeout 60 $L/ops_bench --only moe --kernels $FK2 --json $G/ops/rwm2.jsonl > $G/ops2.log 2>&1; echo "ops2 rc=$?"
st llama
R="$L/rwm-dist run --backend cuda --target llama --variant optimized"
timeout 100 $R --profile bench --warmup 2 --iters 10 --output $OUT/llama.jsonl > $G/llama.log 2>&1; echo "llama 8K fused rc=$?"
timeout 100 $R --profile bench --warmup 2 --iters 10 --set llama.fused_swiglu=false --output $OUT/llama.jsonl >> $G/llama.log 2>&1; echo "llama 8K unfused rc=$?"
timeout 60 $R --profile long --warmup 0 --iters 2 --output $OUT/llama.jsonl >> $G/llama.log 2>&1; echo "llama 32K rc=$?"
timeout $(left) python3 bench/peers/hf_llama.py --seq 8192 32768 --iters 3 > $OUT/peers.jsonl 2> $G/hf.log; echo "hf rc=$?"
st done
cat $G/attn/rwm.jsonl $G/attn/rwm2.jsonl $G/attn/torch.jsonl > $OUT/attn-ops.jsonl; cat $G/ops/rwm.jsonl $G/ops/rwm2.jsonl $G/ops/torch.jsonl > $OUT/moe-ops.jsonl
grep -E '^\|' $G/attn-table.log | grep cudnn; grep -E "^attn_flash" $G/attn2.log
grep -E '^\|' $G/ops-table.log | grep -E "fp8" | grep -v ceiling; grep -E "fp8" $G/ops2.log
python3 -c "
import json
for l in open('$OUT/llama.jsonl'): r=json.loads(l); print('llama', r['tokens'], r['median_ms'], r['p10_ms'], r['p90_ms'], r['tokens_per_s'], r['status'])
for l in open('$OUT/peers.jsonl'): print(l.strip()[:300])
"
tar czf $OUT/logs.tgz -C $OUT logs && rm -rf $G
