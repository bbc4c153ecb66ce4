#!/usr/bin/env bash
# Session 10, call 26 (H200): the final build. compute-sanitizer racecheck and memcheck on the kernels the defaults
# run (d = 128 short and long, d = 64) after the mbar_wait change; the attention defaults beside torch SDPA (cuDNN)
# and FlashAttention-3; Llama 3.1 8B prefill at 8K and 32K beside HF transformers; as time allows, the MoE GEMMs
# beside torch and DeepGEMM.
cd /work/main || exit 2
. bench/device_go.sh
F=/work/main/.dev/fa3 P=/work/main/.dev/peer
export RWM_TEST_KERNELS=flash_fwd_sm90_d128_s2p_lean_th,flash_fwd_sm90_d128_s3p_lean_l2_th_mc,flash_fwd_sm90_d64_s2p_w3
st racecheck
timeout 110 compute-sanitizer --tool racecheck $L/backend_ops --test-threads 1 --nocapture cuda_kernel_variants_flash > $G/racecheck.log 2>&1; echo "racecheck rc=$? $(grep -E 'RACECHECK SUMMARY|test result' $G/racecheck.log | tr '\n' ' ')"
st memcheck
timeout 80 compute-sanitizer --tool memcheck $L/backend_ops --test-threads 1 --nocapture cuda_kernel_variants_flash > $G/memcheck.log 2>&1; echo "memcheck rc=$? $(grep -E 'ERROR SUMMARY|test result' $G/memcheck.log | tr '\n' ' ')"
unset RWM_TEST_KERNELS
st attn
S=5000,8192,12345,32768
OUT_DIR=$G/attn timeout 80 bench/run_ops.sh $L/ops_bench --only attn --attn-seq $S > $G/attn-table.log 2>&1; echo "attn rc=$?"
timeout 40 $F/fa3_bench --attn-seq $S --iters 20 --json $G/attn/fa3.jsonl > /dev/null 2> $G/fa3.log; echo "fa3 rc=$?"
cat $G/attn/rwm.jsonl $G/attn/torch.jsonl $G/attn/fa3.jsonl > $OUT/attn-ops.jsonl
st llama
R="$L/rwm-dist run --backend cuda --target llama --variant optimized"
timeout 80 $R --profile bench --warmup 2 --iters 10 --output $OUT/llama.jsonl > $G/llama.log 2>&1; echo "llama 8K rc=$?"
timeout 60 $R --profile long --warmup 0 --iters 2 --output $OUT/llama.jsonl >> $G/llama.log 2>&1; echo "llama 32K rc=$?"
timeout 150 python3 bench/peers/hf_llama.py --seq 8192 32768 --iters 3 > $OUT/peers.jsonl 2> $G/hf.log; echo "hf rc=$?"
st moe
if [ "$(left)" -gt 100 ]; then
  OUT_DIR=$G/moe timeout $(( $(left) - 40 )) bench/run_ops.sh $L/ops_bench --only moe > $G/moe-table.log 2>&1; echo "moe rc=$?"
  timeout $(( $(left) - 5 )) $P/deepgemm_bench --offsets $G/moe/offsets.json --json $G/moe/deepgemm.jsonl > $G/dg.log 2>&1; echo "deepgemm rc=$?"
  cat $G/moe/rwm.jsonl $G/moe/torch.jsonl $G/moe/deepgemm.jsonl > $OUT/moe-ops.jsonl 2>/dev/null
fi
st done
python3 - $OUT <<'PY'
import json, sys, os, collections
o = sys.argv[1]
for f in ("attn-ops.jsonl", "moe-ops.jsonl"):
    if not os.path.exists(f"{o}/{f}"): continue
    rows = collections.defaultdict(list)
    for l in open(f"{o}/{f}"):
        r = json.loads(l)
        if "tflops" in r and r["op"].startswith(("attn_flash", "grouped_gemm")): rows[(r["op"][:26], r["shape"][:34])].append(f"{r['impl'][:22]} {r['tflops']:.1f}")
    for k, v in rows.items(): print(k[0], "|", k[1], "|", "; ".join(v))
for l in open(f"{o}/llama.jsonl"): r = json.loads(l); print("llama", r["tokens"], round(r["median_ms"], 2), round(r["tokens_per_s"]), r["status"])
for l in open(f"{o}/peers.jsonl"): print(l.strip()[:200])
PY
tar czf $OUT/logs.tgz -C $OUT logs && rm -rf $G
