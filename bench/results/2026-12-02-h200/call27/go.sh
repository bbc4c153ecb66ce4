#!/usr/bin/env bash
# Session 10, call 27 (H200): why DeepGEMM's FP8 grouped GEMM is 1.05-1.14x ours (calls 22, 26). Nsight Compute
# (clocks locked) on one V2-Lite gate/up launch of each (ours: n192, the default there; DeepGEMM: 128 x 192, clusters
# of two multicasting B), source pages; then our n192 and n192_mc on V2-Lite, both orders; run_ops.sh with RWM_PEERS.
cd /work/main || exit 2
. bench/device_go.sh
P=/work/main/.dev/peer
top() {
    python3 - "$1" <<'PY'
import csv, sys, collections
rows = list(csv.reader(open(sys.argv[1])))
h = rows[1]; ix = {c: i for i, c in enumerate(h)}
def num(x):
    try: return float(x.replace(",", ""))
    except: return 0.0
body = rows[2:]; E = ix["Instructions Executed"]; S = ix["Warp Stall Sampling (All Samples)"]
tot = sum(num(r[S]) for r in body) or 1; ins = sum(num(r[E]) for r in body)
print("warp insts", ins, "samples", tot)
op = collections.Counter()
for r in body:
    s = r[ix["Source"]].split()
    if s: op[(s[1] if s[0].startswith("@") else s[0]).split(".")[0]] += num(r[E])
print({k: round(v / 1e6, 2) for k, v in op.most_common(24)})
for r in sorted(body, key=lambda r: -num(r[S]))[:16]:
    print(f"{100 * num(r[S]) / tot:5.1f}% exec {num(r[E]) / 1e3:8.1f}K {r[ix['Source']].strip()[:90]}")
PY
}
st ncu
NCU_COUNT=1 timeout 120 bench/ncu_kernels.sh $G/ncu/ours 'grouped_gemm_fp8' -- $L/ops_bench --only moe_v2lite --iters 1; echo "ncu ours rc=$?"
mkdir -p $G/o; cp bench/results/2026-12-02-h200/call22/logs/moe/offsets.json $G/o/  # the same routing (fixed seeds) as every run
NCU_COUNT=1 timeout 120 bench/ncu_kernels.sh $G/ncu/dg 'sm90_fp8_gemm_1d2d' -- $P/deepgemm_bench --offsets $G/o/offsets.json --iters 1; echo "ncu dg rc=$?"
for k in ours dg; do
  ncu --import $G/ncu/$k.ncu-rep --page source --csv --print-source sass > $G/ncu/$k.sass.csv 2> /dev/null
  grep -E "^    (Duration|Elapsed Cycles|Issue Slots Busy|Compute \(SM\) Throughput|L2 Cache Throughput|Grid Size|Block Size|Registers Per)" $G/ncu/$k.txt | sed "s/^/$k /"
  top $G/ncu/$k.sass.csv > $G/ncu/$k.top.txt 2>&1
done
rm -f $G/ncu/*.ncu-rep
st mc
K=grouped_gemm_fp8_n192_lean_s4,grouped_gemm_fp8_n192_lean_s4_mc
timeout 60 $L/ops_bench --only moe_v2lite --kernels $K,grouped_gemm_fp8_n192_lean_s4_mc,grouped_gemm_fp8_n192_lean_s4 --json $G/mc.jsonl > $G/mc.log 2>&1; echo "mc rc=$?"
st peers
RWM_PEERS="$P/deepgemm_bench /work/main/.dev/fa3/fa3_bench" OUT_DIR=$G/rp timeout 100 bench/run_ops.sh $L/ops_bench --only attn,moe_v2lite --attn-seq 8192 > $G/rp.log 2>&1; echo "run_ops with RWM_PEERS rc=$?"
grep -E "^\|" $G/rp.log | grep -E "DeepGEMM|FlashAttention" | cut -c1-170
st done
grep -E "^grouped_gemm_fp8" $G/mc.log | cut -c1-140
for k in ours dg; do echo "## $k"; cat $G/ncu/$k.top.txt | cut -c1-160; done
cp $G/mc.jsonl $OUT/moe-ops.jsonl
tar czf $OUT/logs.tgz -C $OUT logs && rm -rf $G
