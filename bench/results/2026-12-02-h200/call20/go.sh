#!/usr/bin/env bash
# Session 9, call 20 (H200): the final build (d = 128 `_th` defaults, the long one `_mc`): compute-sanitizer racecheck and
# memcheck on every flash instantiation, every GPU test of backend_ops, the attention defaults beside cuDNN at
# 5000, 8192, 12345 and 32768, Llama 3.1 8B prefill at 8K and 32K beside HF transformers.
cd /work/main || exit 2
. bench/device_go.sh
st racecheck
timeout 150 compute-sanitizer --tool racecheck $L/backend_ops --test-threads 1 --nocapture cuda_kernel_variants_flash > $G/racecheck.log 2>&1; echo "racecheck rc=$? $(grep -E 'RACECHECK SUMMARY|test result' $G/racecheck.log | tr '\n' ' ')"
st memcheck
timeout 120 compute-sanitizer --tool memcheck $L/backend_ops --test-threads 1 --nocapture cuda_kernel_variants_flash > $G/memcheck.log 2>&1; echo "memcheck rc=$? $(grep -E 'ERROR SUMMARY|test result' $G/memcheck.log | tr '\n' ' ')"
grep -ciE "skip" $G/racecheck.log $G/memcheck.log
st tests
timeout 160 $L/backend_ops --test-threads 1 > $G/tests.log 2>&1; echo "tests rc=$? $(grep -E '^test result' $G/tests.log | tail -1)"
grep -E "panicked|FAILED" $G/tests.log | head -5
st attn
OUT_DIR=$G/attn timeout 80 bench/run_ops.sh $L/ops_bench --only attn --attn-seq 5000,8192,12345,32768 > $G/attn-table.log 2>&1; echo "attn rc=$?"
cat $G/attn/rwm.jsonl $G/attn/torch.jsonl > $OUT/attn-ops.jsonl
st llama
R="$L/rwm-dist run --backend cuda --target llama --variant optimized"
timeout 80 $R --profile bench --warmup 2 --iters 10 --output $OUT/llama.jsonl > $G/llama.log 2>&1; echo "llama 8K rc=$?"
timeout 60 $R --profile long --warmup 0 --iters 2 --output $OUT/llama.jsonl >> $G/llama.log 2>&1; echo "llama 32K rc=$?"
timeout "$(left)" python3 bench/peers/hf_llama.py --seq 8192 32768 --iters 3 > $OUT/peers.jsonl 2> $G/hf.log; echo "hf rc=$?"
st done
grep -E '^\|' $G/attn-table.log | grep -E "cudnn" | awk -F'|' '{print $2,$3,$4,$6,$7}'
python3 -c "
import json
for l in open('$OUT/llama.jsonl'): r=json.loads(l); print('llama', r['tokens'], r['median_ms'], r['p10_ms'], r['p90_ms'], r['tokens_per_s'], r['status'])
for l in open('$OUT/peers.jsonl'): print(l.strip()[:300])
"
tar czf $OUT/logs.tgz -C $OUT logs && rm -rf $G
