#!/usr/bin/env bash
# Session 10, call 25 (H200): with the producer no longer spinning, FA3's dynamic persistent order on the defaults'
# loop (`_th_dyn`, three kinds) against the grid-order defaults and `s3p_lean_l2_th`, both orders, beside torch SDPA
# (cuDNN) and FlashAttention-3 in the same call. GPU tests of the new kernels first.
cd /work/main || exit 2
. bench/device_go.sh
F=/work/main/.dev/fa3
st tests
RWM_TEST_KERNELS=flash_fwd_sm90_d128_s2p_lean_th_dyn,flash_fwd_sm90_d128_s2p_lean_l2_th_dyn,flash_fwd_sm90_d128_s3p_lean_l2_th_dyn timeout 100 $L/backend_ops --test-threads 1 --nocapture cuda_kernel_variants_flash > $G/tests.log 2>&1; echo "tests rc=$? $(grep -E '^test result' $G/tests.log | tail -1)"
grep -E "panicked|FAILED" $G/tests.log | head -5
st attn
S=5000,8192,12345,32768
A=flash_fwd_sm90_d128_s2p_lean_th,flash_fwd_sm90_d128_s3p_lean_l2_th_mc,flash_fwd_sm90_d128_s3p_lean_l2_th,flash_fwd_sm90_d128_s2p_lean_th_dyn,flash_fwd_sm90_d128_s2p_lean_l2_th_dyn,flash_fwd_sm90_d128_s3p_lean_l2_th_dyn
B=$(echo $A | tr ',' '\n' | tac | paste -sd,)
OUT_DIR=$G/attn timeout 200 bench/run_ops.sh $L/ops_bench --only attn --attn-seq $S --kernels $A > $G/attn-table.log 2>&1; echo "attn rc=$?"
timeout 60 $F/fa3_bench --attn-seq $S --iters 20 --json $G/attn/fa3.jsonl > /dev/null 2> $G/fa3.log; echo "fa3 rc=$?"
timeout 150 $L/ops_bench --only attn --attn-seq $S --kernels $B --json $G/attn/rwm2.jsonl > $G/attn2.log 2>&1; echo "attn2 rc=$?"
st done
cat $G/attn/rwm.jsonl $G/attn/rwm2.jsonl $G/attn/torch.jsonl $G/attn/fa3.jsonl > $OUT/attn-ops.jsonl
python3 - $OUT/attn-ops.jsonl <<'PY'
import json, sys, collections, statistics as st
rows = collections.defaultdict(list)
for l in open(sys.argv[1]):
    r = json.loads(l)
    if "tflops" in r and "d=128" in r["shape"]:
        k = r["op"].split("[")[-1].rstrip("]").replace("flash_fwd_sm90_d128_", "") if "[" in r["op"] else r["impl"][:20] + ("" if r["impl"] != "rwm" else " default")
        rows[(int(r["shape"].split()[0][2:]), k)].append(r["tflops"])
for s in sorted({k[0] for k in rows}):
    cud = st.median(rows.get((s, "torch sdpa_cudnn"), [0])) or 1
    print(s, " | ".join(f"{k[1]} {st.median(v):.1f} ({st.median(v)/cud:.3f})" for k, v in sorted(rows.items()) if k[0] == s))
PY
tar czf $OUT/logs.tgz -C $OUT logs && rm -rf $G
