#!/usr/bin/env bash
# Session 4, last call: (1) gpt4 S=32K L=2 E=8 optimized peak with the session-3 binary (c2fbe4a) and today's, and
# today's allocation trace (the sweep found today's peak 1.5 GiB lower than the estimate); (2) fresh rates; (3) the
# one-GPU prediction test; (4) the 14 one-GPU NCCL layouts with serial context creation, twice (fit on one, check the other).
set -uo pipefail
cd /work/main
L=.dev/lead
mkdir -p target/release && cp $L/rwm-dist target/release/rwm-dist
export RWM_KERNEL_CACHE=/tmp/rwm-kernels OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1 RUST_LOG=warn
t0=$(date +%s); st() { echo "== $1 at $(( $(date +%s)-t0 )) s"; }
mkdir -p $OUT/mem
G="run --backend cuda --profile bench --target gpt4 --seq-len 32768 --layers 2 --set gpt4.num_experts=8 --variant optimized --iters 1 --warmup 0"
$L/rwm-dist-old $G --output $OUT/mem/old.jsonl > $OUT/mem/old.log 2>&1
$L/rwm-dist $G --output $OUT/mem/new.jsonl > $OUT/mem/new.log 2>&1
RWM_MEM_TRACE=1 $L/rwm-dist $G --output $OUT/mem/trace.jsonl > $OUT/mem/trace.log 2>&1
for f in old new trace; do python3 -c "
import json
for l in open('$OUT/mem/$f.jsonl'):
    r=json.loads(l); print('$f', r['variant'], r['status'], round(r['peak_mem_bytes']/2**30,3), round(r['est_mem_bytes']/2**30,3), r['median_ms'])"; done
st rates
timeout 60 $L/rwm-dist calibrate -o $OUT/rates.json > $OUT/calibrate.log 2>&1; echo "calibrate rc=$?"
st onegpu
RWM_STEP_TIME_DIR=$OUT/onegpu timeout 120 $L/step_time --exact one_gpu_predictions_are_within_15_percent --nocapture > $OUT/onegpu-test.log 2>&1
echo "one-gpu test rc=$?"; grep -E "^\||result" $OUT/onegpu-test.log | tail -8
st layouts-a
RWM_RUN_ARGS="--variant optimized" timeout 220 bench/nccl_one_gpu.sh $L/rwm-dist $OUT/layouts-a 2 4 8 > /dev/null 2>&1 </dev/null
cat $OUT/layouts-a/summary.txt | tr '\n' ';'; echo
if [ $(( $(date +%s)-t0 )) -lt 300 ]; then
  st layouts-b
  RWM_RUN_ARGS="--variant optimized" timeout 200 bench/nccl_one_gpu.sh $L/rwm-dist $OUT/layouts-b 2 4 8 > /dev/null 2>&1 </dev/null
  cat $OUT/layouts-b/summary.txt | tr '\n' ';'; echo
fi
st done
python3 - <<'PY'
import json, glob, os, statistics
out = os.environ["OUT"]
for f in sorted(glob.glob(f"{out}/layouts-*/*.jsonl")):
    rs = [json.loads(l) for l in open(f) if l.strip()]
    ok = all(r["status"] == "ok" for r in rs)
    meds = [r["median_ms"] for r in rs if r["status"] == "ok" and r["variant"] != "baseline"]
    print(f.split("/")[-2], f.split("/")[-1], ok, round(statistics.median(meds), 2) if meds else None)
PY
cd $OUT && tar czf runs.tgz mem onegpu layouts-* 2>/dev/null; rm -rf mem onegpu layouts-*
