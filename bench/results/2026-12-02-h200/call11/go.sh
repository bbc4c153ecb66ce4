#!/usr/bin/env bash
# Session 8, call 11 (H200): the d = 64 default is now `_w3` (three consumer warpgroups): memcheck on every flash
# instantiation; the attention defaults against cuDNN at the standard lengths; gpt4's small config (d = 64) through
# the context-parallel ring and all-gather with 2 ranks on the GPU through NCCL, against one rank; Llama 3.1 8B at
# 8K beside HF once more (the banded fused gate/up + SwiGLU, on by default since call 8).
cd /work/main || exit 2
. bench/device_go.sh
st memcheck
timeout 150 compute-sanitizer --tool memcheck $L/backend_ops --test-threads 1 cuda_kernel_variants_flash > $G/memcheck.log 2>&1; echo "memcheck rc=$? $(grep -E 'ERROR SUMMARY|test result' $G/memcheck.log | tr '\n' ' ')"
st attn
OUT_DIR=$G/attn timeout 100 bench/run_ops.sh $L/ops_bench --only attn > $G/attn-table.log 2>&1; echo "attn rc=$?"
cat $G/attn/rwm.jsonl $G/attn/torch.jsonl > $OUT/attn-ops.jsonl
st nccl
RWM_LAYOUTS='gpt4-cp2.*' timeout 120 bench/nccl_one_gpu.sh $L/rwm-dist $G/nccl 2 > $G/nccl.log 2>&1; echo "nccl rc=$?"; cat $G/nccl/summary.txt
cat $G/nccl/*.jsonl > $OUT/nccl.jsonl 2>/dev/null
st llama
timeout 100 $L/rwm-dist run --backend cuda --target llama --variant optimized --profile bench --warmup 2 --iters 10 --output $OUT/llama.jsonl > $G/llama.log 2>&1; echo "llama 8K rc=$?"
timeout "$(left)" python3 bench/peers/hf_llama.py --seq 8192 --iters 3 > $OUT/peers.jsonl 2> $G/hf.log; echo "hf rc=$?"
st done
grep -E '^\|' $G/attn-table.log | grep -E "cudnn"
python3 -c "
import json
for l in open('$OUT/nccl.jsonl'): r=json.loads(l); print('nccl', r['rank'], r['target'], r['variant'], r['layout'], r['status'], r.get('max_err'))
for l in open('$OUT/llama.jsonl'): r=json.loads(l); print('llama', r['tokens'], r['median_ms'], r['p10_ms'], r['p90_ms'], r['tokens_per_s'], r['status'])
for l in open('$OUT/peers.jsonl'): print(l.strip()[:300])
" 2>&1 | grep -v "'rank': [1-9]" | head -30
tar czf $OUT/logs.tgz -C $OUT logs && rm -rf $G
