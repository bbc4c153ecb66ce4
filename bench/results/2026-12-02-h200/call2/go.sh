#!/usr/bin/env bash
# Session 7 call 2 (H200): the new defaults (FP8 n192 lean, bf16 lean grouped + SwiGLU, flash lean s2p/s3p)
# through the models beside their peers in the same call, then the attention crossover and a bf16 A/B.
cd /work/main || exit 2
. bench/device_go.sh  # (as run, these lines were inline; some calls set no Open MPI variables)
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv > $G/gpu.txt
st tests
timeout 90 $L/backend_ops --test-threads 1 moe_layer grouped_matmul attention matmul_swiglu > $G/tests.log 2>&1; echo "tests rc=$? $(grep -E '^test result' $G/tests.log | tail -1)"
grep -E "FAILED|panicked" $G/tests.log | head -5
st moe
for p in deepseek-v2-lite deepseek-v3; do for d in bf16 fp8; do
  timeout 60 $L/rwm-dist run --backend cuda --profile bench --target moe --set moe.preset=$p --skew none --dtype $d --warmup 2 --iters 5 --output $OUT/moe.jsonl > $G/moe-$p-$d.log 2>&1; echo "moe $p $d rc=$?"; done; done
timeout 60 python3 bench/peers/torch_moe.py > $OUT/peers.jsonl 2> $G/torch-moe-v2lite.log; echo "torch v2lite rc=$?"
timeout 90 python3 bench/peers/torch_moe.py --tokens 8192 --experts 256 --top-k 8 --hidden 7168 --ffn 2048 --shared 1 >> $OUT/peers.jsonl 2> $G/torch-moe-v3.log; echo "torch v3 rc=$?"
st llama
R="$L/rwm-dist run --backend cuda --target llama --variant optimized"
timeout 90 $R --profile bench --warmup 1 --iters 5 --output $OUT/llama.jsonl > $G/llama.log 2>&1; echo "llama 8K rc=$?"
timeout 60 $R --profile long --warmup 0 --iters 2 --output $OUT/llama.jsonl >> $G/llama.log 2>&1; echo "llama 32K rc=$?"
timeout 150 python3 bench/peers/hf_llama.py --seq 8192 32768 --iters 3 >> $OUT/peers.jsonl 2> $G/hf.log; echo "hf rc=$?"
st attn
OUT_DIR=$G/attn timeout 80 bench/run_ops.sh $L/ops_bench --only attn --attn-seq 4096,10240,16384,32768 --kernels flash_fwd_sm90_d128_s2p_lean,flash_fwd_sm90_d128_s3p_lean > $G/attn-table.log 2>&1; echo "attn rc=$?"
st ab
OUT_DIR=$G/ab timeout 80 bench/run_ops.sh $L/ops_bench --only moe --kernels grouped_gemm_tma_256_s3e,grouped_gemm_tma_256_s3e_lean,grouped_gemm_swiglu_tma_256_s4 > $G/ab-table.log 2>&1; echo "ab rc=$?"
timeout 40 $L/ops_bench --only moe --kernels grouped_gemm_tma_256_s3e_lean,grouped_gemm_tma_256_s3e --json $G/ab/rwm2.jsonl > $G/ab2.log 2>&1; echo "ab2 rc=$?"
st done
cat $G/attn/rwm.jsonl $G/attn/torch.jsonl > $OUT/attn-ops.jsonl; cat $G/ab/rwm.jsonl $G/ab/rwm2.jsonl $G/ab/torch.jsonl > $OUT/ab-ops.jsonl
python3 - $OUT <<'PY'
import json,sys
o=sys.argv[1]
for f in ("moe","llama"):
    for l in open(f"{o}/{f}.jsonl"):
        r=json.loads(l); c=r.get("config",{})
        print(f, json.dumps(c)[:80] if f=="moe" else r["tokens"], r["gemm_dtype"], r["variant"], r["median_ms"], r.get("tokens_per_s"), r.get("max_err"), r["status"])
for l in open(f"{o}/peers.jsonl"):
    print("peer", l.strip()[:240])
PY
grep -E '^\|' $G/attn-table.log | grep cudnn; grep -E '^\|' $G/ab-table.log | grep -E "grouped_gemm_(gate|down)"; grep -E "^grouped_gemm_(gate|down)" $G/ab2.log
tar czf $OUT/logs.tgz -C $OUT logs && rm -rf $G
