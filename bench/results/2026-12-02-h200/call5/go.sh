#!/usr/bin/env bash
# Session 7 call 5 (H200): racecheck on every kernel (the lean L2-section attention kernel is new), the attention
# defaults against cuDNN, then Llama 3.1 8B at 8K (10 steps) and 32K beside HF in the same call.
cd /work/main || exit 2
. bench/device_go.sh  # (as run, these lines were inline; some calls set no Open MPI variables)
st racecheck
timeout 170 compute-sanitizer --tool racecheck $L/backend_ops --test-threads 1 cuda_kernel_variants > $G/racecheck.log 2>&1; echo "racecheck rc=$? $(grep -E 'RACECHECK SUMMARY|test result' $G/racecheck.log | tr '\n' ' ')"
st attn
OUT_DIR=$G/attn timeout 80 bench/run_ops.sh $L/ops_bench --only attn > $G/attn-table.log 2>&1; echo "attn rc=$?"
cat $G/attn/rwm.jsonl $G/attn/torch.jsonl > $OUT/attn-ops.jsonl
st llama
R="$L/rwm-dist run --backend cuda --target llama --variant optimized"
timeout 100 $R --profile bench --warmup 2 --iters 10 --output $OUT/llama.jsonl > $G/llama.log 2>&1; echo "llama 8K rc=$?"
timeout 60 $R --profile long --warmup 0 --iters 2 --output $OUT/llama.jsonl >> $G/llama.log 2>&1; echo "llama 32K rc=$?"
timeout 150 python3 bench/peers/hf_llama.py --seq 8192 32768 --iters 3 > $OUT/peers.jsonl 2> $G/hf.log; echo "hf rc=$?"
st done
grep -E '^\|' $G/attn-table.log | grep -v sdpa_flash | grep -v naive
python3 -c "
import json
for l in open('$OUT/llama.jsonl'): r=json.loads(l); print('llama', r['tokens'], r['median_ms'], r['p10_ms'], r['p90_ms'], r['tokens_per_s'], r['status'])
for l in open('$OUT/peers.jsonl'): print(l.strip())
"
tar czf $OUT/logs.tgz -C $OUT logs && rm -rf $G
