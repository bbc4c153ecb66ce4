#!/usr/bin/env bash
# Session 8, call 12 (H200): the final build (setmaxnreg immediates through F3_DEC / F3_INC, the same SASS values;
# ops_bench's --kernels order): every GPU test of backend_ops, then the d = 64 kernels in both orders beside cuDNN
# (the first run with two orders that really differ).
cd /work/main || exit 2
. bench/device_go.sh
st tests
timeout 200 $L/backend_ops --test-threads 1 > $G/tests.log 2>&1; echo "tests rc=$? $(grep -E '^test result' $G/tests.log | tail -1)"
grep -E "panicked|FAILED" $G/tests.log | head -5
st attn
K=flash_fwd_sm90_d64_s2p,flash_fwd_sm90_d64_s2p_w3
OUT_DIR=$G/attn timeout 100 bench/run_ops.sh $L/ops_bench --only attn --attn-seq 8192,32768 --kernels $K > $G/attn-table.log 2>&1; echo "attn rc=$?"
timeout "$(left)" $L/ops_bench --only attn --attn-seq 8192,32768 --kernels flash_fwd_sm90_d64_s2p_w3,flash_fwd_sm90_d64_s2p --json $G/attn/rwm2.jsonl > $G/attn2.log 2>&1; echo "attn2 rc=$?"
cat $G/attn/rwm.jsonl $G/attn/rwm2.jsonl $G/attn/torch.jsonl > $OUT/attn-ops.jsonl
st done
grep -E '^\|' $G/attn-table.log | grep cudnn; grep -E "^attn_flash" $G/attn2.log
tar czf $OUT/logs.tgz -C $OUT logs && rm -rf $G
