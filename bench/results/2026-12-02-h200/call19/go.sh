#!/usr/bin/env bash
# Session 9, call 19 (H200): K and V multicast to clusters of two query heads of one KV head (`_mc`: half the K
# and V bytes from L2 a block) in the d = 128 defaults, GPU tests of every flash instantiation (odd groups take
# the twin), then each default against its `_mc` alternated twice in each order at four lengths, cuDNN beside.
cd /work/main || exit 2
. bench/device_go.sh
st tests
timeout 150 $L/backend_ops --test-threads 1 cuda_kernel_variants_flash attention > $G/tests.log 2>&1; echo "tests rc=$? $(grep -E '^test result' $G/tests.log | tail -1)"
grep -E "panicked|FAILED" $G/tests.log | head -5
st attn
S=5000,8192,12345,32768
A=flash_fwd_sm90_d128_s2p_lean_th,flash_fwd_sm90_d128_s2p_lean_th_mc,flash_fwd_sm90_d128_s3p_lean_l2_th,flash_fwd_sm90_d128_s3p_lean_l2_th_mc
B=flash_fwd_sm90_d128_s2p_lean_th_mc,flash_fwd_sm90_d128_s2p_lean_th,flash_fwd_sm90_d128_s3p_lean_l2_th_mc,flash_fwd_sm90_d128_s3p_lean_l2_th
OUT_DIR=$G/attn timeout 200 bench/run_ops.sh $L/ops_bench --only attn --attn-seq $S --kernels $A,$B > $G/attn-table.log 2>&1; echo "attn rc=$?"
timeout 150 $L/ops_bench --only attn --attn-seq $S --kernels $B,$A --json $G/attn/rwm2.jsonl > $G/attn2.log 2>&1; echo "attn2 rc=$?"
st done
cat $G/attn/rwm.jsonl $G/attn/rwm2.jsonl $G/attn/torch.jsonl > $OUT/attn-ops.jsonl
python3 - "$G" <<'PY'
import json, sys, statistics as st, collections
g = sys.argv[1]
rows = collections.defaultdict(list)
for f in (g + "/attn/rwm.jsonl", g + "/attn/rwm2.jsonl"):
    for l in open(f):
        r = json.loads(l)
        if "[" in r.get("op", ""):
            rows[(r["op"], r["shape"].split()[0])].append(r["tflops"])
for k in sorted(rows, key=lambda k: (int(k[1][2:]), k[0])):
    print(k[1], k[0], [round(x, 1) for x in rows[k]], round(st.median(rows[k]), 1))
PY
grep -E '^\|' $G/attn-table.log | grep cudnn | grep -v "\[" | awk -F'|' '{print $2,$3,$4,$6,$7}'
tar czf $OUT/logs.tgz -C $OUT logs && rm -rf $G
