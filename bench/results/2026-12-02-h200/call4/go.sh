#!/usr/bin/env bash
# Session 7 call 4 (H200): the lean loop in L2 sections and persistent (dynamic), by name: GPU tests, then timed
# beside s3p_lean and cuDNN in the same run (twice, the order reversed).
cd /work/main || exit 2
. bench/device_go.sh  # (as run, these lines were inline; some calls set no Open MPI variables)
st tests
timeout 150 $L/backend_ops --test-threads 1 cuda_kernel_variants attention > $G/tests.log 2>&1; echo "tests rc=$? $(grep -E '^test result' $G/tests.log | tail -1)"
grep -E "FAILED|panicked" $G/tests.log | head -5
st attn
K=flash_fwd_sm90_d128_s3p_lean,flash_fwd_sm90_d128_s3p_lean_l2,flash_fwd_sm90_d128_s3p_lean_dyn,flash_fwd_sm90_d128_s2p_lean
OUT_DIR=$G/attn timeout 120 bench/run_ops.sh $L/ops_bench --only attn --kernels $K > $G/attn-table.log 2>&1; echo "attn rc=$?"
K2=flash_fwd_sm90_d128_s2p_lean,flash_fwd_sm90_d128_s3p_lean_dyn,flash_fwd_sm90_d128_s3p_lean_l2,flash_fwd_sm90_d128_s3p_lean
timeout 60 $L/ops_bench --only attn --kernels $K2 --json $G/attn/rwm2.jsonl > $G/attn2.log 2>&1; echo "attn2 rc=$?"
st done
cat $G/attn/rwm.jsonl $G/attn/rwm2.jsonl $G/attn/torch.jsonl > $OUT/attn-ops.jsonl
grep -E '^\|' $G/attn-table.log | grep -v sdpa_flash | grep "d=128"; grep -E "^attn_flash" $G/attn2.log | grep "d=128"
tar czf $OUT/logs.tgz -C $OUT logs && rm -rf $G
