#!/usr/bin/env bash
# Session 10, call 23 (H200): why FlashAttention-3 is 1.08-1.11x our d = 128 defaults (call 22).
# 1. Nsight Compute (clocks locked) on one S = 8192 launch of each: per-clock efficiency, instructions, stalls,
#    and the per-instruction stall samples (source page, SASS).
# 2. S = 32768 timed alone, ours then FA3, SM clock and power sampled every 20 ms for each.
# 3. Our persistent dynamic-scheduler (`_dyn`) lean kernels beside the defaults, both orders, at 8192 and 32768.
cd /work/main || exit 2
. bench/device_go.sh
smi() { nvidia-smi --query-gpu=timestamp,clocks.sm,power.draw,clocks_event_reasons.active --format=csv,noheader -lms 20 > "$1" 2>/dev/null & }
F=/work/main/.dev/fa3
top() {  # the SASS lines with the most stall samples
    python3 - "$1" <<'PY'
import csv, sys
rows = list(csv.reader(open(sys.argv[1])))
if not rows: sys.exit()
h = rows[0]; print("columns:", [c for c in h][:40])
ci = [i for i, c in enumerate(h) if "Sampling" in c and "All" in c and "Not" not in c]
si = [i for i, c in enumerate(h) if c in ("Source", "# Source")] or [1]
if not ci: sys.exit()
def num(x):
    try: return float(x.replace(",", ""))
    except: return 0.0
body = [r for r in rows[1:] if len(r) > ci[0]]
tot = sum(num(r[ci[0]]) for r in body) or 1
print("instructions", len(body), "samples", tot)
for r in sorted(body, key=lambda r: -num(r[ci[0]]))[:45]:
    print(f"{100 * num(r[ci[0]]) / tot:5.1f}%", r[si[0]][:110])
PY
}
st ncu
NCU_COUNT=1 timeout 120 bench/ncu_kernels.sh $G/ncu/ours 'flash_fwd_sm90' -- $L/ops_bench --only attn --attn-seq 8192 --iters 1; echo "ncu ours rc=$?"
NCU_COUNT=1 timeout 120 bench/ncu_kernels.sh $G/ncu/fa3 'device_kernel|FlashAttnFwd' -- $F/fa3_bench --attn-seq 8192 --iters 1; echo "ncu fa3 rc=$?"
for k in ours fa3; do
  ncu --import $G/ncu/$k.ncu-rep --page source --csv --print-source sass > $G/ncu/$k.sass.csv 2> $G/ncu/$k.sass.err; echo "source page $k rc=$? $(wc -l < $G/ncu/$k.sass.csv) lines"; head -c 300 $G/ncu/$k.sass.err
  top $G/ncu/$k.sass.csv > $G/ncu/$k.top.txt 2>&1
  grep -E "^    (Duration|SM Frequency|Elapsed Cycles|Issue Slots Busy|Executed Ipc A|Compute \(SM\) Throughput|Registers Per|L2 Cache Throughput|Memory Throughput)" $G/ncu/$k.txt | head -12 | sed "s/^/$k /"
done
rm -f $G/ncu/*.ncu-rep
st clocks
smi $G/smi-ours32k.csv; p=$!
timeout 60 $L/ops_bench --only attn --attn-seq 32768 --iters 60 --json $G/ours32k.jsonl > $G/ours32k.log 2>&1; echo "ours32k rc=$?"
kill $p; sleep 1
smi $G/smi-fa332k.csv; p=$!
timeout 60 $F/fa3_bench --attn-seq 32768 --iters 60 --json $G/fa332k.jsonl > /dev/null 2> $G/fa332k.log; echo "fa3 32k rc=$?"
kill $p
st dyn
A=flash_fwd_sm90_d128_s2p_lean_th,flash_fwd_sm90_d128_s3p_lean_l2_th_mc,flash_fwd_sm90_d128_s3p_lean_l2,flash_fwd_sm90_d128_s3p_lean_l2_dyn,flash_fwd_sm90_d128_s3p_lean_dyn,flash_fwd_sm90_d128_s2p_lean_l2_dyn
B=$(echo $A | tr ',' '\n' | tac | paste -sd,)
timeout 120 $L/ops_bench --only attn --attn-seq 8192,32768 --kernels $A --json $G/dyn1.jsonl > $G/dyn1.log 2>&1; echo "dyn1 rc=$?"
timeout 120 $L/ops_bench --only attn --attn-seq 8192,32768 --kernels $B --json $G/dyn2.jsonl > $G/dyn2.log 2>&1; echo "dyn2 rc=$?"
st done
cat $G/ours32k.jsonl $G/fa332k.jsonl $G/dyn1.jsonl $G/dyn2.jsonl > $OUT/attn-ops.jsonl
python3 - $G/dyn1.jsonl $G/dyn2.jsonl $G/ours32k.jsonl $G/fa332k.jsonl <<'PY'
import json, sys, collections
rows = collections.defaultdict(list)
for f in sys.argv[1:]:
    for l in open(f):
        r = json.loads(l)
        if "tflops" in r and "d=128" in r["shape"]: rows[(r["shape"].split()[0], r["op"] + " " + r["impl"][:30])].append(round(r["tflops"], 1))
for k in sorted(rows): print(k[0], k[1], rows[k])
PY
for f in $G/smi-*.csv; do echo "## $f"; awk -F', ' '{c=$2; sub(/ MHz/,"",c); b=int(c/100)*100; n[b]++; p[b]+=$3} END {for (b in n) printf "%d MHz: %d samples, mean %.0f W\n", b, n[b], p[b]/n[b]}' $f | sort -n; done
for k in ours fa3; do echo "## top $k"; head -25 $G/ncu/$k.top.txt | cut -c1-150; done
tar czf $OUT/logs.tgz -C $OUT logs && rm -rf $G
