#!/usr/bin/env bash
# Session 5, attn helper (issue 13): the persistent sm90 flash kernels (`_pers`). One device call:
# attention GPU tests (default kernels and the persistent ones, grid capped at 1 and 3 blocks too),
# compute-sanitizer memcheck and racecheck of cuda_flash_persistent_tiles, and the attention table
# (bench/run_ops.sh --only attn --kernels ...: ours and torch SDPA flash / cuDNN in the same run);
# if time is left, ours once more (rep 2, no peers). Ran as call 1 (call1/: tests pass, memcheck clean, racecheck cut at 45 s).
# Needs in .dev/attn: ops_bench (examples), backend_ops (the test binary), this script.
# run: carry [".dev/attn"], command `bash .dev/attn/go.sh`.
set -uo pipefail
cd /work/main
D=.dev/attn
mkdir -p /work && ln -sfn /work/main /work/wt-attn
export RWM_KERNEL_CACHE=/tmp/rwm-kernels PYTHONUNBUFFERED=1
t0=$(date +%s); el() { echo $(( $(date +%s) - t0 )); }; st() { echo "== $1 at $(el) s"; }
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader
st tests
timeout 60 $D/backend_ops --test-threads 1 attention cuda_flash_persistent > $OUT/backend_ops.log 2>&1
echo "backend_ops rc=$?"; grep -E "^test |^test result|panicked" $OUT/backend_ops.log | head -12
st sanitizer
for t in "memcheck 30" "racecheck 45"; do
  set -- $t
  timeout $2 compute-sanitizer --tool $1 $D/backend_ops --test-threads 1 cuda_flash_persistent >> $OUT/sanitizer.log 2>&1
  echo "$1 rc=$? $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY|test result' $OUT/sanitizer.log | tail -2 | tr '\n' ' ')"
done
st ops
K=flash_fwd_sm90_d128_s2p,flash_fwd_sm90_d128_s2p_pers,flash_fwd_sm90_d128_s3p_pers,flash_fwd_sm90_d64_s2p,flash_fwd_sm90_d64_s2p_pers
mkdir -p $OUT/ops
OUT_DIR=$OUT/ops timeout 110 bench/run_ops.sh $D/ops_bench --only attn --kernels $K > $OUT/ops/table.log 2>&1
echo "run_ops rc=$?"
if [ $(el) -lt 150 ]; then
  st rep2
  timeout $(( 200 - $(el) )) $D/ops_bench --only attn --kernels $K --json $OUT/ops/rwm-rep2.jsonl > $OUT/ops/rep2.log 2>&1
  echo "rep2 rc=$?"
fi
st done
cp $OUT/ops/rwm.jsonl $OUT/rwm.jsonl; cp $OUT/ops/torch.jsonl $OUT/torch.jsonl 2>/dev/null
cp $OUT/ops/rwm-rep2.jsonl $OUT/rwm-rep2.jsonl 2>/dev/null
cd $OUT/ops && tar czf ../ops.tgz . && cd .. && rm -rf ops
python3 - $OUT/rwm.jsonl $OUT/torch.jsonl $OUT/rwm-rep2.jsonl <<'PY'
import json, sys, os
rd = lambda p: [json.loads(l) for l in open(p)] if os.path.exists(p) else []
rwm, peers, rep2 = rd(sys.argv[1]), rd(sys.argv[2]), rd(sys.argv[3])
r2 = {(r["op"], r["shape"]): r["tflops"] for r in rep2}
pk = lambda shape, impl: next((p["tflops"] for p in peers if p["shape"] == shape and impl in p["impl"]), float("nan"))
print("| shape | kernel | ours (rep2) | sdpa_flash | cuDNN | ours/cuDNN |")
for r in rwm:
    if r["op"].startswith("attn_naive"): continue
    s = r["shape"].replace(" hq=32 hkv=8", "").replace(" causal", "")
    c = pk(r["shape"], "cudnn")
    print(f"| {s} | {r['op'].replace('attn_flash','').replace('flash_fwd_sm90_','') or 'default'} | {r['tflops']:.1f} ({r2.get((r['op'], r['shape']), float('nan')):.1f}) | {pk(r['shape'], 'sdpa_flash'):.1f} | {c:.1f} | {r['tflops']/c:.3f} |")
PY
