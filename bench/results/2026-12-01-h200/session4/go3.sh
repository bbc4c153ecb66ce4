#!/usr/bin/env bash
# Session 4, after merging fp8g and making the sm90 d = 64 kernel the default: GPU ops tests, memcheck of attention,
# gpt4 (d = 64) cp2 ring through NCCL on one GPU against one rank, the estimate sweep (bf16, FP8, EP 2), and
# Llama 3.1 8B prefill at 8K (16-byte SwiGLU) beside HF transformers in the same run.
set -uo pipefail
cd /work/main
L=.dev/lead
export RWM_KERNEL_CACHE=/tmp/rwm-kernels PYTHONUNBUFFERED=1 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
mkdir -p target/release && cp $L/rwm-dist target/release/rwm-dist   # the sweep test runs CARGO_BIN_EXE_rwm-dist
t0=$(date +%s); st() { echo "== $1 at $(( $(date +%s)-t0 )) s"; }
st tests
timeout 200 $L/backend_ops --test-threads 1 > $OUT/backend_ops.log 2>&1; echo "backend_ops rc=$?"
grep -E "^test result|FAILED|panicked" $OUT/backend_ops.log | head -8
timeout 90 compute-sanitizer --tool memcheck $L/backend_ops --test-threads 1 attention > $OUT/memcheck.log 2>&1
echo "memcheck attention rc=$? $(grep -E 'ERROR SUMMARY|test result' $OUT/memcheck.log | tr '\n' ' ')"
st nccl
mkdir -p $OUT/nccl
RWM_LAYOUTS="gpt4-cp2-ring|gpt4-cp2-allgather" timeout 120 bench/nccl_one_gpu.sh $L/rwm-dist $OUT/nccl 2 > $OUT/nccl/run.log 2>&1 </dev/null; echo "nccl rc=$?: $(cat $OUT/nccl/summary.txt | tr '\n' ' ')"
st llama
mkdir -p $OUT/llama
timeout 120 $L/rwm-dist run --backend cuda --profile bench --target llama --output $OUT/llama/llama.jsonl > $OUT/llama/llama.log 2>&1; echo "llama rc=$?"
timeout 150 python3 bench/peers/hf_llama.py --seq 8192 > $OUT/llama/peers.jsonl 2> $OUT/llama/peers.log; echo "hf rc=$?"
python3 - $OUT/llama/llama.jsonl $OUT/llama/peers.jsonl <<'PY'
import json, sys
for l in open(sys.argv[1]):
    r = json.loads(l)
    print("rwm", r["variant"], r["status"], r["median_ms"], r["tokens_per_s"], r["peak_mem_bytes"], r["est_err"])
for l in open(sys.argv[2]): print("hf", l.strip()[:200])
PY
st sweep
mkdir -p $OUT/sweep
RWM_SWEEP_OUT=$OUT/sweep timeout 300 $L/estimate_sweep --nocapture gpu_estimates > $OUT/sweep/test.log 2>&1; echo "sweep rc=$?"
st done
tar czf $OUT/runs.tgz -C $OUT nccl llama sweep && rm -rf $OUT/nccl $OUT/llama/*.log && mv $OUT/sweep/test.log $OUT/sweep-test.log; rm -rf $OUT/sweep
grep -E "^\||result|FAIL|panick" $OUT/sweep-test.log | tail -34
