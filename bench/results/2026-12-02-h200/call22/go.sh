#!/usr/bin/env bash
# Session 10, call 22 (H200): the record holders as same-run peers. MoE grouped GEMMs: ours (defaults), torch,
# DeepGEMM (its heuristic's configs, bench/peers/deepgemm), ours again; attention: ours (defaults), torch SDPA
# (flash, cuDNN), FlashAttention-3 (bench/peers/fa3, nvcc 13 and ptxas 12.8 builds), ours again. SM clock and
# power sampled every 20 ms in each phase.
cd /work/main || exit 2
. bench/device_go.sh
smi() { nvidia-smi --query-gpu=timestamp,clocks.sm,power.draw,clocks_event_reasons.active --format=csv,noheader -lms 20 > "$1" 2>/dev/null & }
P=/work/main/.dev/peer F=/work/main/.dev/fa3
st moe
smi $G/smi-moe.csv; p=$!
OUT_DIR=$G/moe timeout 150 bench/run_ops.sh $L/ops_bench --only moe > $G/moe-table.log 2>&1; echo "moe rc=$?"
timeout 100 $P/deepgemm_bench --offsets $G/moe/offsets.json --json $G/moe/deepgemm.jsonl > $G/dg.log 2>&1; echo "deepgemm rc=$?"
tail -25 $G/dg.log | grep -iE "err|fail|check|config" | head -12
timeout 90 $L/ops_bench --only moe --json $G/moe/rwm2.jsonl > $G/moe2.log 2>&1; echo "moe2 rc=$?"
kill $p
st attn
smi $G/smi-attn.csv; p=$!
S=5000,8192,12345,32768
OUT_DIR=$G/attn timeout 120 bench/run_ops.sh $L/ops_bench --only attn --attn-seq $S > $G/attn-table.log 2>&1; echo "attn rc=$?"
timeout 60 $F/fa3_bench --iters 20 --json $G/attn/fa3.jsonl > /dev/null 2> $G/fa3.log; echo "fa3 rc=$?"
timeout 60 $F/fa3_bench_ptxas12.8.93 --iters 20 --json $G/attn/fa3b.jsonl > /dev/null 2> $G/fa3b.log; echo "fa3b rc=$?"
grep -iE "fail|error|max" $G/fa3.log | head -8
timeout 60 $L/ops_bench --only attn --attn-seq $S --json $G/attn/rwm2.jsonl > $G/attn2.log 2>&1; echo "attn2 rc=$?"
kill $p
st done
cat $G/moe/rwm.jsonl $G/moe/rwm2.jsonl $G/moe/torch.jsonl $G/moe/deepgemm.jsonl > $OUT/moe-ops.jsonl 2>/dev/null
cat $G/attn/rwm.jsonl $G/attn/rwm2.jsonl $G/attn/torch.jsonl $G/attn/fa3.jsonl $G/attn/fa3b.jsonl > $OUT/attn-ops.jsonl 2>/dev/null
python3 - $OUT/moe-ops.jsonl $OUT/attn-ops.jsonl <<'PY'
import json, sys, collections
for f in sys.argv[1:]:
    rows = collections.defaultdict(list)
    for l in open(f):
        r = json.loads(l)
        if "tflops" in r: rows[(r["op"], r["shape"][:40])].append((r["impl"][:44], round(r["tflops"], 1)))
    for k, v in rows.items(): print(k[0][:34], "|", k[1], "|", "; ".join(f"{i} {t}" for i, t in v))
PY
for f in $G/smi-*.csv; do echo "## $f"; awk -F', ' '{c=$2; sub(/ MHz/,"",c); b=int(c/100)*100; n[b]++; p[b]+=$3} END {for (b in n) printf "%d MHz: %d samples, mean %.0f W\n", b, n[b], p[b]/n[b]}' $f | sort -n; done
tar czf $OUT/logs.tgz -C $OUT logs && rm -rf $G
