#!/usr/bin/env bash
# Issue 19: why gpt4 cp4 ring through NCCL on one GPU is bimodal, and the 14 layouts + one-GPU test after
# K and V go in one NCCL group per ring step.
set -uo pipefail
cd /work/main
T=.dev/time
mkdir -p /work && ln -sfn /work/main /work/wt-time
mkdir -p target/release && cp $T/rwm-dist target/release/rwm-dist
export RWM_KERNEL_CACHE=/tmp/rwm-kernels OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
{ date -u; nvidia-smi --query-gpu=name,driver_version,clocks.sm,compute_mode,mig.mode.current --format=csv,noheader
  nvidia-smi compute-policy -l 2>&1 | head -20; echo "nproc $(nproc)"; nvidia-cuda-mps-control -h 2>&1 | head -1; pgrep -a mps || echo "no MPS daemon"; } >$OUT/env.txt 2>&1
D=$OUT/diag
one() { # name bin [env...]: one 4-rank gpt4 cp4 ring run
  local name=$1 bin=$2; shift 2
  local t0=$(date +%s%N)
  env "$@" RWM_LAYOUTS=gpt4-cp4-ring RWM_RUN_ARGS="${ARGS:---variant optimized}" timeout 60 bench/nccl_one_gpu.sh $bin $D/$name 4 >/dev/null 2>&1 </dev/null
  echo "$name $(cat $D/$name/summary.txt) $(( ($(date +%s%N) - t0) / 1000000 )) ms" >>$D/runs.txt
}
mkdir -p $D
for i in 1 2 3; do one old-$i $T/rwm-dist-main; [ $i = 3 ] || one new-$i $T/rwm-dist; done
one new-info $T/rwm-dist NCCL_DEBUG=INFO NCCL_DEBUG_SUBSYS=INIT,NET
one new-sock $T/rwm-dist NCCL_SOCKET_NTHREADS=4 NCCL_NSOCKS_PERTHREAD=4
ARGS="--variant optimized --warmup 10 --iters 20" one new-warm $T/rwm-dist
cat $D/runs.txt
# Every layout with ours.
t0=$(date +%s)
RWM_RUN_ARGS="--variant optimized" timeout 200 bench/nccl_one_gpu.sh $T/rwm-dist $OUT/layouts 2 4 8 >/dev/null 2>&1 </dev/null
echo "layouts: $(( $(date +%s) - t0 )) s"; cat $OUT/layouts/summary.txt
# The one-GPU prediction test.
t0=$(date +%s)
RWM_STEP_TIME_DIR=$OUT/onegpu timeout 120 $T/step_time --exact one_gpu_predictions_are_within_15_percent --nocapture >$OUT/onegpu-test.log 2>&1
echo "one-gpu test exit $? after $(( $(date +%s) - t0 )) s"; tail -8 $OUT/onegpu-test.log
python3 - <<'PY'
import json, glob, os, statistics
out = os.environ["OUT"]
for f in sorted(glob.glob(f"{out}/diag/*/*.jsonl")) + sorted(glob.glob(f"{out}/layouts/*.jsonl")):
    rs = [json.loads(l) for l in open(f) if l.strip()]
    ok = all(r["status"] == "ok" for r in rs)
    med = statistics.median(r["median_ms"] for r in rs if r["status"] == "ok") if ok else float("nan")
    per = " ".join(f"{r['median_ms']:.2f}" for r in rs)
    cp = rs[0].get("metrics", {}).get("cp", {}).get("sum_over_layers", {})
    extra = f"comm {cp.get('comm_ms', 0):.2f} exposed {cp.get('exposed_comm_ms', 0):.2f}" if cp else ""
    sr = all("single_rank" in r or r.get("reference") == "single-rank" for r in rs)
    print(f"{os.path.relpath(f, out):45s} ok={ok} single_rank={sr} median {med:8.3f} ms ranks [{per}] {extra}")
PY
cd $OUT && tar czf diag.tgz diag && tar czf layouts.tgz layouts && tar czf onegpu.tgz onegpu && rm -rf diag layouts onegpu
