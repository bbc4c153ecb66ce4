#!/usr/bin/env bash
# Session 5, attn helper, call 2 (after go.sh showed the static `_pers` kernels losing at 32K): the dynamic
# persistent kernels (`_dyn`, FA3's atomic tile counter) against the default in one run_ops call (ours and
# torch SDPA flash / cuDNN), then their GPU test and compute-sanitizer on them only (--kernel-name).
# Ran as call 2 (call2/): the first _dyn launch hung (producer setmaxnreg 32, since fixed to 24), so nothing past
# the first row came back. Timeouts since raised for a rerun on a fresh machine (the NVRTC compile comes first):
# about 4 minutes with binaries built after commit b083f56.
# Needs in .dev/attn: ops_bench, backend_ops, this script. run: carry [".dev/attn"], `bash .dev/attn/go2.sh`.
set -uo pipefail
cd /work/main
D=.dev/attn
mkdir -p /work && ln -sfn /work/main /work/wt-attn
export RWM_KERNEL_CACHE=/tmp/rwm-kernels PYTHONUNBUFFERED=1
t0=$(date +%s); el() { echo $(( $(date +%s) - t0 )); }; st() { echo "== $1 at $(el) s"; }
left() { local l=$(( $1 - $(el) )); [ $l -gt 1 ] && echo $l || echo 1; }
st ops
K=flash_fwd_sm90_d128_s2p,flash_fwd_sm90_d128_s2p_dyn,flash_fwd_sm90_d64_s2p,flash_fwd_sm90_d64_s2p_dyn
mkdir -p $OUT/ops
OUT_DIR=$OUT/ops timeout 90 bench/run_ops.sh $D/ops_bench --only attn --kernels $K > $OUT/ops/table.log 2>&1
echo "run_ops rc=$?"
st tests
timeout $(left 130) $D/backend_ops --test-threads 1 cuda_flash_persistent > $OUT/backend_ops.log 2>&1
echo "backend_ops rc=$?"; grep -E "^test |^test result|panicked" $OUT/backend_ops.log | head -4
st sanitizer
for t in "memcheck kns=_dyn 160" "racecheck kns=flash_fwd_sm90_d128_s2p_dyn 220"; do
  set -- $t
  timeout $(left $3) compute-sanitizer --tool $1 --kernel-name $2 $D/backend_ops --test-threads 1 cuda_flash_persistent >> $OUT/sanitizer.log 2>&1
  echo "$1 $2 rc=$? $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY|test result' $OUT/sanitizer.log | tail -2 | tr '\n' ' ')"
done
st done
cp $OUT/ops/rwm.jsonl $OUT/rwm.jsonl; cp $OUT/ops/torch.jsonl $OUT/torch.jsonl 2>/dev/null
cd $OUT/ops && tar czf ../ops.tgz . && cd .. && rm -rf ops
python3 - $OUT/rwm.jsonl $OUT/torch.jsonl <<'PY'
import json, sys, os
rd = lambda p: [json.loads(l) for l in open(p)] if os.path.exists(p) else []
rwm, peers = rd(sys.argv[1]), rd(sys.argv[2])
pk = lambda shape, impl: next((p["tflops"] for p in peers if p["shape"] == shape and impl in p["impl"]), float("nan"))
print("| shape | kernel | ours | sdpa_flash | cuDNN | ours/cuDNN |")
for r in rwm:
    if r["op"].startswith("attn_naive"): continue
    s = r["shape"].replace(" hq=32 hkv=8", "").replace(" causal", "")
    c = pk(r["shape"], "cudnn")
    print(f"| {s} | {r['op'].replace('attn_flash','').replace('flash_fwd_sm90_','') or 'default'} | {r['tflops']:.1f} | {pk(r['shape'], 'sdpa_flash'):.1f} | {c:.1f} | {r['tflops']/c:.3f} |")
PY
