#!/usr/bin/env bash
# Session 5, branch llama5: 16-byte add+RMSNorm / RMSNorm / RoPE kernels and SwiGLU in the gate/up GEMM
# (matmul_swiglu: the grouped TMA kernel's epilogue as one expert). GPU tests, Llama 3.1 8B prefill
# (32 layers, random weights) at 8K and 32K beside HF transformers SDPA in the same call, 8K with
# llama.fused_swiglu=false, ops_bench's Llama rows at 8K, memcheck of the new kernels (small shapes).
set -uo pipefail
mkdir -p /work && ln -sfn /work/main /work/wt-llama
cd /work/main
L=.dev/llama
export RWM_KERNEL_CACHE=/tmp/rwm-kernels PYTHONUNBUFFERED=1
t0=$(date +%s); st() { echo "== $1 at $(( $(date +%s)-t0 )) s"; }
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
st tests
timeout 50 $L/backend_ops --test-threads 1 rms_norm_and_fused_add rope_llama3_scaled matmul_swiglu swiglu_two_inputs grouped_matmul_swiglu captured_graph > $OUT/tests.log 2>&1; echo "backend_ops rc=$?"
timeout 25 $L/llama_fixture --test-threads 1 >> $OUT/tests.log 2>&1; echo "llama_fixture rc=$?"
grep -E "^test |FAILED|panicked" $OUT/tests.log | tr '\n' ';'; echo
R="$L/rwm-dist run --backend cuda --target llama --variant optimized"
st llama8k
timeout 40 $R --profile bench --warmup 1 --iters 5 --output $OUT/llama.jsonl > $OUT/llama.log 2>&1; echo "llama 8K rc=$?"
st hf
timeout 60 python3 bench/peers/hf_llama.py --seq 8192 32768 --iters 3 > $OUT/hf.jsonl 2> $OUT/hf.log; echo "hf rc=$?"
st llama32k
timeout 45 $R --profile long --warmup 0 --iters 2 --output $OUT/llama.jsonl >> $OUT/llama.log 2>&1; echo "llama 32K rc=$?"
st llama8k-unfused
timeout 30 $R --profile bench --warmup 1 --iters 5 --set llama.fused_swiglu=false --output $OUT/llama.jsonl >> $OUT/llama.log 2>&1; echo "llama 8K unfused rc=$?"
st ops
timeout 20 $L/ops_bench --only llama --iters 10 --json $OUT/ops.jsonl > $OUT/ops.log 2>&1; echo "ops rc=$?"
st memcheck
timeout 35 compute-sanitizer --tool memcheck $L/backend_ops --test-threads 1 rms_norm_and_fused_add rope_llama3_scaled matmul_swiglu > $OUT/memcheck.log 2>&1
echo "memcheck rc=$? $(grep -E 'ERROR SUMMARY|test result' $OUT/memcheck.log | tr '\n' ' ')"
st done
grep -E "^llama|^device" $OUT/ops.log
python3 - $OUT/llama.jsonl $OUT/hf.jsonl <<'PY'
import json, sys
hf = {}
for l in open(sys.argv[2]):
    r = json.loads(l); hf[r["seq_len"]] = r["tokens_per_s"]; print("hf", r["seq_len"], round(r["median_ms"], 1), round(r["tokens_per_s"]))
print("| S | variant | swiglu_in_gemm | ms | tok/s | rel_l2 | est_err | vs HF |")
for l in open(sys.argv[1]):
    r = json.loads(l); s = r["config"]["seq_len"]; m = r.get("metrics") or {}
    print(f"| {s} | {r['variant']} | {m.get('swiglu_in_gemm')} | {r['median_ms']:.1f} | {r['tokens_per_s']:.0f} | {r['rel_l2_err']} | {r['est_err']} | {r['tokens_per_s']/hf.get(s, float('nan')):.3f} |")
PY
