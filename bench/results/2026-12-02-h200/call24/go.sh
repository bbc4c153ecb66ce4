#!/usr/bin/env bash
# Session 10, call 24 (H200): mbar_wait with CUTLASS's suspend-time hint (every kernel) and the flash loop's
# descriptors in uniform registers, against the build before (ops_bench_old), alternating old, new, new, old;
# FlashAttention-3 in the same call. 1. GPU tests (every test of backend_ops). 2. attention at four lengths.
# 3. the MoE grouped GEMMs (bf16, FP8), as time allows.
cd /work/main || exit 2
. bench/device_go.sh
F=/work/main/.dev/fa3
st tests
timeout 170 $L/backend_ops --test-threads 1 > $G/tests.log 2>&1; echo "tests rc=$? $(grep -E '^test result' $G/tests.log | tail -1)"
grep -E "panicked|FAILED" $G/tests.log | head -5
st attn
S=5000,8192,12345,32768
n=0
for b in ops_bench_old ops_bench ops_bench ops_bench_old; do
  n=$((n+1)); timeout 60 $L/$b --only attn --attn-seq $S --json $G/attn-$n-$b.jsonl > $G/attn-$n.log 2>&1; echo "attn $n $b rc=$?"
done
timeout 60 $F/fa3_bench --attn-seq $S --iters 20 --json $G/attn-fa3.jsonl > /dev/null 2> $G/fa3.log; echo "fa3 rc=$?"
st moe
n=0
for b in ops_bench_old ops_bench ops_bench ops_bench_old; do
  n=$((n+1)); [ "$(left)" -gt 45 ] || break
  timeout 45 $L/$b --only moe --json $G/moe-$n-$b.jsonl > $G/moe-$n.log 2>&1; echo "moe $n $b rc=$?"
done
st done
python3 - $G <<'PY'
import json, sys, glob, collections, statistics as st, os
g = sys.argv[1]
for kind in ("attn", "moe"):
    rows = collections.defaultdict(lambda: collections.defaultdict(list))
    for f in sorted(glob.glob(f"{g}/{kind}-*.jsonl")):
        who = "fa3" if "fa3" in f else ("old" if f.endswith("_old.jsonl") else "new")
        for l in open(f):
            r = json.loads(l)
            if "tflops" in r: rows[(r["op"][:36], r["shape"][:36])][who].append(r["tflops"])
    for k, v in rows.items():
        o, n = v.get("old", []), v.get("new", [])
        line = f"{k[0]:36s} {k[1]:36s} old {[round(x,1) for x in o]} new {[round(x,1) for x in n]}"
        if o and n: line += f" new/old {st.median(n)/st.median(o):.3f}"
        if v.get("fa3"): line += f" fa3 {v['fa3'][0]:.1f} new/fa3 {st.median(n)/v['fa3'][0]:.3f}"
        print(line)
PY
cat $G/attn-*.jsonl > $OUT/attn-ops.jsonl; cat $G/moe-*.jsonl > $OUT/moe-ops.jsonl 2>/dev/null
tar czf $OUT/logs.tgz -C $OUT logs && rm -rf $G
