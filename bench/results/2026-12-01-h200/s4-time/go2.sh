#!/usr/bin/env bash
# Experiment: CUDA contexts created one rank at a time in rank order (RWM_SERIAL_CONTEXTS, an
# uncommitted build): does gpt4 cp4 ring through NCCL on one GPU still take two values?
set -uo pipefail
cd /work/main
T=.dev/time
export RWM_KERNEL_CACHE=/tmp/rwm-kernels RWM_SERIAL_CONTEXTS=1
for i in 1 2 3 4 5; do
  RWM_LAYOUTS=gpt4-cp4-ring RWM_RUN_ARGS="--variant optimized" timeout 30 bench/nccl_one_gpu.sh $T/rwm-dist-serial $OUT/serial-$i 4 >/dev/null 2>&1 </dev/null
  python3 -c "
import json,statistics,sys
rs=[json.loads(l) for l in open('$OUT/serial-$i/4-gpt4-cp4-ring.jsonl')]
print('serial-$i', all(r['status']=='ok' for r in rs), round(statistics.median(r['median_ms'] for r in rs),2), [round(r['median_ms'],2) for r in rs])"
done
cd $OUT && tar czf serial.tgz serial-* && rm -rf serial-*
