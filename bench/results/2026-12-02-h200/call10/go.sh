#!/usr/bin/env bash
# Session 8, call 10 (H200): the d = 64 attention with three consumer warpgroups (`_w3`: FA3's 192 x 128 tile,
# 512 threads, ping-pong turns of three; call 9's ncu had ours at 0.95x cuDNN with MUFU and the tensor pipe both
# near half busy). GPU tests of every flash instantiation, then d = 64 at 8K and 32K in two orders beside cuDNN,
# then racecheck on every flash instantiation.
cd /work/main || exit 2
. bench/device_go.sh
st tests
timeout 120 $L/backend_ops --test-threads 1 cuda_kernel_variants_flash attention > $G/tests.log 2>&1; echo "tests rc=$? $(grep -E '^test result' $G/tests.log | tail -1)"
grep -E "panicked|FAILED" $G/tests.log | head -5
st attn
K=flash_fwd_sm90_d64_s2p,flash_fwd_sm90_d64_s2p_w3,flash_fwd_sm90_d64_s2p_lean_w3,flash_fwd_sm90_d64_s3p_w3
K2=flash_fwd_sm90_d64_s3p_w3,flash_fwd_sm90_d64_s2p_lean_w3,flash_fwd_sm90_d64_s2p_w3,flash_fwd_sm90_d64_s2p
S=8192,32768
OUT_DIR=$G/attn timeout 120 bench/run_ops.sh $L/ops_bench --only attn --attn-seq $S --kernels $K > $G/attn-table.log 2>&1; echo "attn rc=$?"
timeout 80 $L/ops_bench --only attn --attn-seq $S --kernels $K2 --json $G/attn/rwm2.jsonl > $G/attn2.log 2>&1; echo "attn2 rc=$?"
cat $G/attn/rwm.jsonl $G/attn/rwm2.jsonl $G/attn/torch.jsonl > $OUT/attn-ops.jsonl
grep -E '^\|' $G/attn-table.log | grep cudnn | grep "d=64"; grep -E "^attn_flash.*d=64" $G/attn2.log
st racecheck
timeout "$(left)" compute-sanitizer --tool racecheck $L/backend_ops --test-threads 1 cuda_kernel_variants_flash > $G/racecheck.log 2>&1; echo "racecheck rc=$? $(grep -E 'RACECHECK SUMMARY|test result' $G/racecheck.log | tr '\n' ' ')"
st done
tar czf $OUT/logs.tgz -C $OUT logs && rm -rf $G
