#!/usr/bin/env bash
# Session 8, call 13 (H200): why V3's optimized bf16 steps are bimodal (11.7 ms, then 12.8-13.1 after 2-4
# steps): SM clock and power sampled every 20 ms beside the V3 bf16 layer (15 steps).
cd /work/main || exit 2
. bench/device_go.sh
nvidia-smi --query-gpu=timestamp,clocks.sm,clocks.mem,power.draw,temperature.gpu,clocks_event_reasons.active --format=csv,noheader -lms 20 > $OUT/smi.csv 2>$G/smi.err &
smi=$!
st moe
timeout 120 $L/rwm-dist run --backend cuda --profile bench --target moe --set moe.preset=deepseek-v3 --skew none --dtype bf16 --warmup 2 --iters 15 --output $OUT/moe.jsonl > $G/moe.log 2>&1; echo "moe rc=$?"
kill $smi
st done
python3 -c "
import json
for l in open('$OUT/moe.jsonl'): r=json.loads(l); print(r['variant'], round(r['median_ms'],3), [round(x,2) for x in r['samples_ms']])
"
awk -F', ' '{print \$2, \$4, \$6}' $OUT/smi.csv | sort | uniq -c | sort -rn | head -15
tar czf $OUT/logs.tgz -C $OUT logs && rm -rf $G
