#!/usr/bin/env bash
# Session 5, last call (main ea0620c after merging attn5, fp8g5, llama5): GPU tests of the merged build (the persistent
# attention kernels under their own timeout: _dyn never ran after its fix), the estimate sweep (fp8g5 changed the FP8
# working set), the one-GPU step-time check, _dyn vs the default attention beside SDPA/cuDNN, then, time permitting,
# a fresh run C of the 14 one-GPU NCCL layouts against the loopback link fitted to session 4's run A.
set -uo pipefail
cd /work/main
L=.dev/lead
LIMIT=${LIMIT:-520}
export RWM_KERNEL_CACHE=/tmp/rwm-kernels PYTHONUNBUFFERED=1 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1 RUST_LOG=warn
mkdir -p target/release && cp $L/rwm-dist target/release/rwm-dist
t0=$(date +%s); el() { echo $(( $(date +%s) - t0 )); }; st() { echo "== $1 at $(el) s"; }
left() { local l=$(( LIMIT - $(el) )); [ $l -gt 1 ] && echo $l || echo 1; }
mkdir -p $OUT/c
st tests
timeout 180 $L/backend_ops --test-threads 1 --skip cuda_flash_persistent_tiles --skip cuda_kernel_variants > $OUT/tests.log 2>&1
echo "backend_ops (rest) rc=$? $(grep -E '^test result' $OUT/tests.log | tail -1)"
timeout 100 $L/backend_ops --test-threads 1 cuda_flash_persistent_tiles cuda_kernel_variants >> $OUT/tests.log 2>&1
echo "backend_ops (flash variants, persistent) rc=$? $(grep -E '^test result' $OUT/tests.log | tail -1)"
timeout 30 $L/backend_memory --test-threads 1 >> $OUT/tests.log 2>&1; echo "backend_memory rc=$?"
grep -E "FAILED|panicked" $OUT/tests.log | head -6
st sweep
mkdir -p $OUT/c/sweep
RWM_SWEEP_OUT=$OUT/c/sweep timeout 120 $L/estimate_sweep --nocapture gpu_estimates > $OUT/sweep-test.log 2>&1; echo "sweep rc=$?"
grep -E "^\|" $OUT/sweep-test.log | awk -F'|' '$7 ~ /[0-9]/ { v=$7; gsub(/[ %+-]/,"",v); if (v+0 > 3.0) print }'
st onegpu
timeout 60 $L/rwm-dist calibrate -o $OUT/c/rates.json > $OUT/c/calibrate.log 2>&1; echo "calibrate rc=$?"
RWM_STEP_TIME_DIR=$OUT/c/onegpu timeout 120 $L/step_time --exact one_gpu_predictions_are_within_15_percent --nocapture > $OUT/c/onegpu-test.log 2>&1
echo "one-gpu test rc=$?"; grep -E "predicted" $OUT/c/onegpu-test.log
st attn
K=flash_fwd_sm90_d128_s2p,flash_fwd_sm90_d128_s2p_dyn,flash_fwd_sm90_d128_s3p_dyn,flash_fwd_sm90_d64_s2p,flash_fwd_sm90_d64_s2p_dyn
mkdir -p $OUT/c/attn
OUT_DIR=$OUT/c/attn timeout $(left) bench/run_ops.sh $L/ops_bench --only attn --kernels $K > $OUT/c/attn/table.log 2>&1
echo "run_ops rc=$?"; cp $OUT/c/attn/rwm.jsonl $OUT/attn-rwm.jsonl 2>/dev/null; cp $OUT/c/attn/torch.jsonl $OUT/attn-torch.jsonl 2>/dev/null
l=$(( $(left) - 10 ))
if [ $l -gt 150 ]; then
  st "layouts-c (timeout $l s)"
  cp $OUT/c/rates.json $OUT/c/rates-with-link.json
  $L/rwm-dist calibrate -o $OUT/c/rates-with-link.json --link-from tests/fixtures/loopback/a/*.jsonl > $OUT/c/link.log 2>&1
  RWM_RUN_ARGS="--variant optimized" timeout $l bench/nccl_one_gpu.sh $L/rwm-dist $OUT/c/layouts-c 2 4 8 > /dev/null 2>&1 </dev/null
  cat $OUT/c/layouts-c/summary.txt | tr '\n' ';'; echo
  python3 bench/step_time_check.py $L/rwm-dist $OUT/c/rates-with-link.json --one-gpu $OUT/c/layouts-c/*.jsonl > $OUT/check-layouts-c.md 2>&1
fi
st done
tar czf $OUT/c.tgz -C $OUT c && rm -rf $OUT/c
python3 - $OUT/attn-rwm.jsonl $OUT/attn-torch.jsonl <<'PY'
import json, sys, os
rd = lambda p: [json.loads(l) for l in open(p)] if os.path.exists(p) else []
rwm, peers = rd(sys.argv[1]), rd(sys.argv[2])
pk = lambda shape, impl: next((p["tflops"] for p in peers if p["shape"] == shape and impl in p["impl"]), float("nan"))
for r in rwm:
    if r["op"].startswith("attn_naive"): continue
    s = r["shape"].replace(" hq=32 hkv=8", "").replace(" causal", "")
    c = pk(r["shape"], "cudnn")
    print(f"| {s} | {r['op'].replace('attn_flash','').replace('flash_fwd_sm90_','') or 'default'} | {r['tflops']:.1f} | {pk(r['shape'], 'sdpa_flash'):.1f} | {c:.1f} | {r['tflops']/c:.3f} |")
PY
cat $OUT/check-layouts-c.md 2>/dev/null | tail -17
