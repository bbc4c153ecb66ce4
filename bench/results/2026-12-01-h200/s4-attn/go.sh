#!/usr/bin/env bash
# attn (issue 13) device call, prepared in session 4 and not yet run (no device was lent):
# attention and SwiGLU GPU tests, compute-sanitizer on the new kernels, the attention table (every flash
# instantiation by name at d 128 and 64, torch SDPA flash and cuDNN in the same run), and one
# 2-layer Llama 8K prefill step per kernel under ncu.
# Needs in .dev/attn: rwm-dist, ops_bench (examples), backend_ops (the test binary), this script.
# run: carry [".dev/attn"], command `bash .dev/attn/go.sh`, about 4 minutes after the start.
set -uo pipefail
cd /work/main
D=.dev/attn
mkdir -p /work && ln -sfn /work/main /work/wt-attn
export RWM_KERNEL_CACHE=/tmp/rwm-kernels PYTHONUNBUFFERED=1
t0=$(date +%s); st() { echo "== $1 at $(( $(date +%s)-t0 )) s"; }
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader
st tests
timeout 150 $D/backend_ops --test-threads 1 attention attn_merge cuda_kernel_variants swiglu > $OUT/backend_ops.log 2>&1
echo "backend_ops rc=$?"; grep -E "^test |^test result|panicked" $OUT/backend_ops.log | head -12
st sanitizer
# cuda_kernel_variants runs every flash instantiation by name (the new d 64 and _l2 ones too) on small shapes.
for t in "memcheck attention_long_and_odd_lengths" "racecheck attention_long_and_odd_lengths" "memcheck swiglu" \
         "memcheck cuda_kernel_variants" "racecheck cuda_kernel_variants"; do
  set -- $t
  timeout 150 compute-sanitizer --tool $1 $D/backend_ops --test-threads 1 $2 >> $OUT/sanitizer.log 2>&1
  echo "$1 $2 rc=$? $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY|test result' $OUT/sanitizer.log | tail -2 | tr '\n' ' ')"
done
st ops
mkdir -p $OUT/ops
OUT_DIR=$OUT/ops timeout 240 bench/run_ops.sh $D/ops_bench --only attn --variants > $OUT/ops/table.log 2>&1
echo "run_ops rc=$?"
st ncu
timeout 120 ncu --nvtx --nvtx-include "llama optimized/step 0/" --profile-from-start off --cache-control none \
  --clock-control none --metrics gpu__time_duration.sum -f -o /tmp/llama2 $D/rwm-dist run --backend cuda \
  --profile bench --target llama --variant optimized --layers 2 --warmup 1 --iters 1 --profile-steps \
  --output /tmp/l.jsonl > $OUT/ops/llama-ncu-run.log 2>&1; echo "ncu rc=$?"
ncu --import /tmp/llama2.ncu-rep --csv --page raw --metrics gpu__time_duration.sum > $OUT/ops/llama2-raw.csv 2>&1
python3 - $OUT/ops/llama2-raw.csv <<'PY' | tee $OUT/ops/llama2-kernels.txt
import csv, sys, collections
rows = list(csv.reader(open(sys.argv[1])))
hi = next(i for i, r in enumerate(rows) if "Kernel Name" in r)
h = rows[hi]; k, t = h.index("Kernel Name"), h.index("gpu__time_duration.sum")
scale = {"nsecond": 1e-3, "usecond": 1.0, "msecond": 1e3}.get(rows[hi + 1][t], 1.0)
agg = collections.defaultdict(lambda: [0, 0.0])
for r in rows[hi + 2:]:
    if len(r) > t and r[t]:
        a = agg[r[k][:70]]; a[0] += 1; a[1] += float(r[t].replace(",", "")) * scale
tot = sum(v[1] for v in agg.values())
print(f"llama 8K, 2 layers, one step: {tot:.0f} us in {sum(v[0] for v in agg.values())} kernels")
for n, (c, us) in sorted(agg.items(), key=lambda x: -x[1][1]):
    print(f"{us:10.1f} us {100 * us / tot:5.1f}%  x{c:<3d} {n}")
PY
st done
cd $OUT/ops && tar czf ../ops.tgz . && cd .. && rm -rf ops
tar xzf ops.tgz -O ./table.log | grep -E "^\| attn" | grep -v "flash_fwd_d128_w\|flash_fwd_d64_w4"
