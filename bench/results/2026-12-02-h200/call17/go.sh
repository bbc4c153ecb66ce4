#!/usr/bin/env bash
# Session 9, call 17 (H200): confirm FA4's rescale rule (`_th`) at d = 128 (call 16: 1.006-1.022x the defaults in
# both orders), alternating each default with its `_th` twice in each order at four lengths; SM clock and power
# sampled every 20 ms during the attention runs and during the V2-Lite FP8 / bf16 grouped GEMMs (is the timed
# phase held by the power cap?).
cd /work/main || exit 2
. bench/device_go.sh
smi() { nvidia-smi --query-gpu=timestamp,clocks.sm,power.draw,clocks_event_reasons.active --format=csv,noheader -lms 20 > "$1" 2>/dev/null & }
st attn
S=5000,8192,12345,32768
A=flash_fwd_sm90_d128_s2p_lean,flash_fwd_sm90_d128_s2p_lean_th,flash_fwd_sm90_d128_s3p_lean_l2,flash_fwd_sm90_d128_s3p_lean_l2_th
B=flash_fwd_sm90_d128_s2p_lean_th,flash_fwd_sm90_d128_s2p_lean,flash_fwd_sm90_d128_s3p_lean_l2_th,flash_fwd_sm90_d128_s3p_lean_l2
smi $OUT/smi-attn.csv; p=$!
OUT_DIR=$G/attn timeout 200 bench/run_ops.sh $L/ops_bench --only attn --attn-seq $S --kernels $A,$B > $G/attn-table.log 2>&1; echo "attn rc=$?"
timeout 150 $L/ops_bench --only attn --attn-seq $S --kernels $B,$A --json $G/attn/rwm2.jsonl > $G/attn2.log 2>&1; echo "attn2 rc=$?"
kill $p
st moe
smi $OUT/smi-moe.csv; p=$!
timeout 100 $L/ops_bench --only moe_v2lite --kernels grouped_gemm_fp8_n192_lean_s4,grouped_gemm_tma_256_s3e_lean --json $G/moe.jsonl > $G/moe.log 2>&1; echo "moe rc=$?"
kill $p
st done
cat $G/attn/rwm.jsonl $G/attn/rwm2.jsonl $G/attn/torch.jsonl > $OUT/attn-ops.jsonl; cp $G/moe.jsonl $OUT/moe-ops.jsonl
python3 - "$G" <<'PY'
import json, sys, statistics as st, collections
g = sys.argv[1]
rows = collections.defaultdict(list)
for f in (g + "/attn/rwm.jsonl", g + "/attn/rwm2.jsonl"):
    for l in open(f):
        r = json.loads(l)
        if "[" in r.get("op", ""):
            rows[(r["op"], r["shape"].split()[0])].append(r["tflops"])
for k in sorted(rows, key=lambda k: (k[1], k[0])):
    print(k[1], k[0], [round(x, 1) for x in rows[k]], round(st.median(rows[k]), 1))
PY
grep -E '^\|' $G/attn-table.log | grep cudnn | grep -v "\[" | awk -F'|' '{print $2,$3,$4,$6,$7}'
grep -E "^grouped_gemm" $G/moe.log | cut -c1-150
for f in $OUT/smi-*.csv; do echo "## $f"; awk -F', ' '{c=$2; sub(/ MHz/,"",c); b=int(c/100)*100; n[b]++; p[b]+=$3} END {for (b in n) printf "%d MHz: %d samples, mean %.0f W\n", b, n[b], p[b]/n[b]}' $f | sort -n; done
tar czf $OUT/logs.tgz -C $OUT logs && rm -rf $G
