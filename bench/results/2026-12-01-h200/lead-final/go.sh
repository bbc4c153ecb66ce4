#!/usr/bin/env bash
# Lead's end-of-session check of merged main on the GPU: op tests, CP on the GPU, every target
# (quick) on CUDA, moe --dtype fp8's records, NCCL 2 ranks on one GPU, calibrate + the step-time test.
set -uo pipefail
cd "$(dirname "$0")/../.."
L=.dev/lead
export RWM_KERNEL_CACHE=/tmp/rwm-kernels OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
mkdir -p target/release && cp $L/rwm-dist target/release/rwm-dist
mkdir -p $OUT/logs
t0=$(date +%s)
$L/backend_ops --test-threads 1 > $OUT/logs/backend_ops.log 2>&1; echo "backend_ops exit $? ($(( $(date +%s)-t0 )) s)"; grep -E "test result|FAILED|panicked" $OUT/logs/backend_ops.log | head -5
$L/parallel --test-threads 1 > $OUT/logs/parallel.log 2>&1; echo "parallel exit $?"; grep -E "test result|FAILED" $OUT/logs/parallel.log | head -3
$L/moe_target > $OUT/logs/moe_target.log 2>&1; echo "moe_target exit $?"; grep -E "test result|FAILED" $OUT/logs/moe_target.log | head -3
$L/rwm-dist run --backend cuda --output $OUT/quick.jsonl > $OUT/logs/quick.log 2>&1; echo "quick (all targets, cuda) exit $? ($(( $(date +%s)-t0 )) s)"; tail -14 $OUT/logs/quick.log
$L/rwm-dist run --backend cuda --target moe,gpt4 --dtype fp8 --output $OUT/fp8.jsonl > $OUT/logs/fp8.log 2>&1; echo "moe,gpt4 --dtype fp8 exit $?"
python3 -c "
import json
for r in map(json.loads, open('$OUT/fp8.jsonl')): print(r['target'], r['variant'], r['gemm_dtype'], r['status'], r.get('rel_l2_err'), r.get('max_err'))"
RWM_LAYOUTS='moe-ep2|gpt4-cp2-ep2|gpt4-cp2$' timeout 240 bench/nccl_one_gpu.sh $L/rwm-dist /tmp/n2 2 > $OUT/logs/nccl.log 2>&1 </dev/null; echo "nccl one gpu exit $? ($(( $(date +%s)-t0 )) s)"
cat /tmp/n2/summary.txt 2>/dev/null | head -20; cp /tmp/n2/*.jsonl $OUT/logs/ 2>/dev/null

RWM_STEP_TIME_DIR=$OUT/step-time $L/step_time one_gpu_predictions_are_within_15_percent --nocapture > $OUT/logs/step_time.log 2>&1; echo "step_time exit $? ($(( $(date +%s)-t0 )) s)"; grep -E "predicted|test result|panicked" $OUT/logs/step_time.log | head -8
tar czf $OUT/logs.tgz -C $OUT logs && rm -rf $OUT/logs
