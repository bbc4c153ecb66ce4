#!/usr/bin/env bash
# Session 9, call 16 (H200): O rescaled only when a row of the warp moved its max (`_sk`), or by FA4's rule (the
# max moves only past a growth of 8 in log2: `_th`), in the d = 128 defaults (s2p_lean, s3p_lean_l2) and the
# d = 64 one (s2p_w3), beside the defaults and cuDNN, both orders.
cd /work/main || exit 2
. bench/device_go.sh
st tests
timeout 200 $L/backend_ops --test-threads 1 cuda_kernel_variants_flash attention > $G/tests.log 2>&1; echo "tests rc=$? $(grep -E '^test result' $G/tests.log | tail -1)"
grep -E "panicked|FAILED" $G/tests.log | head -5
st attn
K=flash_fwd_sm90_d128_s2p_lean,flash_fwd_sm90_d128_s2p_lean_sk,flash_fwd_sm90_d128_s2p_lean_th,flash_fwd_sm90_d128_s3p_lean_l2,flash_fwd_sm90_d128_s3p_lean_l2_sk,flash_fwd_sm90_d128_s3p_lean_l2_th,flash_fwd_sm90_d64_s2p_w3,flash_fwd_sm90_d64_s2p_w3_sk,flash_fwd_sm90_d64_s2p_w3_th
S=5000,8192,12345,32768
OUT_DIR=$G/attn timeout 200 bench/run_ops.sh $L/ops_bench --only attn --attn-seq $S --kernels $K > $G/attn-table.log 2>&1; echo "attn rc=$?"
K2=$(echo $K | tr ',' '\n' | tac | paste -sd,)
timeout "$(left)" $L/ops_bench --only attn --attn-seq $S --kernels $K2 --json $G/attn/rwm2.jsonl > $G/attn2.log 2>&1; echo "attn2 rc=$?"
st done
cat $G/attn/rwm.jsonl $G/attn/rwm2.jsonl $G/attn/torch.jsonl > $OUT/attn-ops.jsonl
grep -E '^\|' $G/attn-table.log | grep -E "cudnn" | awk -F'|' '{print $2,$3,$4,$6,$7}' | cut -c1-150
grep -E "^attn_flash" $G/attn2.log | cut -c1-150
tar czf $OUT/logs.tgz -C $OUT logs && rm -rf $G
