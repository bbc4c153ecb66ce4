#!/usr/bin/env bash
# Second check: the step-time test after the fused-SwiGLU op list, and the NCCL one-GPU layouts of 2 and 4 ranks.
set -uo pipefail
cd "$(dirname "$0")/../.."
L=.dev/lead
export RWM_KERNEL_CACHE=/tmp/rwm-kernels OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
mkdir -p target/release && cp $L/rwm-dist target/release/rwm-dist
t0=$(date +%s)
RWM_STEP_TIME_DIR=$OUT/step-time $L/step_time one_gpu_predictions_are_within_15_percent --nocapture > $OUT/step_time.log 2>&1; echo "step_time exit $? ($(( $(date +%s)-t0 )) s)"; grep -E "predicted|test result" $OUT/step_time.log | head -6
timeout 200 bench/nccl_one_gpu.sh $L/rwm-dist $OUT/nccl 2 > /dev/null 2>&1 </dev/null; echo "nccl 2 exit $?"
RWM_LAYOUTS='gpt4-cp2-ep2|moe-ep4' timeout 150 bench/nccl_one_gpu.sh $L/rwm-dist $OUT/nccl 4 > /dev/null 2>&1 </dev/null; echo "nccl 4 exit $? ($(( $(date +%s)-t0 )) s)"
cat $OUT/nccl/summary.txt
python3 - "$OUT/nccl" <<'PY'
import json, glob, sys
for f in sorted(glob.glob(sys.argv[1] + "/*.jsonl")):
    rs = [json.loads(l) for l in open(f)]
    bad = [r for r in rs if r["status"] != "ok"]
    print(f.split("/")[-1], len(rs), "records,", len(bad), "not ok", sorted({r.get("reference") for r in rs}))
PY
rm -f $OUT/step-time/rates.json
tar czf $OUT/nccl.tgz -C $OUT nccl && rm -rf $OUT/nccl
