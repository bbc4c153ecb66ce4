#!/usr/bin/env bash
# ops (issue 15 f): ncu shows the NVTX phase ranges of one moe step (one rank) and of one gpt4
# step with CP 2 (two ranks on one GPU through NCCL, rank 1 profiled by launch/profile-rank.sh).
set -u
mkdir -p /work && ln -sfn /work/main /work/wt-ops
cd /work/main
D=.dev/ops
B=$D/rwm-dist
export RWM_KERNEL_CACHE=/tmp/rwm-kernels OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 RUST_LOG=warn
ncu --version | tail -1 > $OUT/versions.txt
t0=$(date +%s)
# 1. moe, one rank.
timeout 60 ncu --nvtx --nvtx-include "moe optimized/step 0/" --profile-from-start off --metrics gpu__time_duration.sum \
  -f -o $OUT/moe-step0 $B run --backend cuda --target moe --variant optimized --warmup 1 --iters 2 --profile-steps \
  --output /tmp/moe.jsonl > $OUT/moe-run.log 2>&1; echo "moe rc $?" >> $OUT/versions.txt
t1=$(date +%s)
# 2. gpt4 cp 2, rank 1 under ncu through the wrapper.
RANK_TO_PROFILE=1 RWM_PROFILE_BIN=$B RWM_NVTX_INCLUDE="gpt4 optimized/step 0/" RWM_PROFILE_OUT=$OUT/gpt4-rank \
RWM_PROFILE_ARGS="--metrics gpu__time_duration.sum" RWM_TIMEOUT_S=120 timeout 70 mpirun -np 2 --bind-to none \
  -x RANK_TO_PROFILE -x RWM_PROFILE_BIN -x RWM_NVTX_INCLUDE -x RWM_PROFILE_OUT -x RWM_PROFILE_ARGS \
  $D/rank-env.sh $D/profile-rank.sh run --backend cuda --target gpt4 --cp 2 --variant optimized --warmup 1 --iters 2 \
  --profile-steps --topology $D/one-gpu-x2.toml --output /tmp/gpt4.jsonl </dev/null > $OUT/gpt4-run.log 2>&1
echo "gpt4 rc $?" >> $OUT/versions.txt
t2=$(date +%s)
for r in moe-step0 gpt4-rank1; do
  [ -f $OUT/$r.ncu-rep ] || continue
  ncu --import $OUT/$r.ncu-rep --print-summary per-nvtx > $OUT/$r-per-nvtx.txt 2>&1
  ncu --import $OUT/$r.ncu-rep --print-nvtx-rename kernel --print-summary per-kernel > $OUT/$r-renamed.txt 2>&1
  ncu --import $OUT/$r.ncu-rep --nvtx > $OUT/$r-details.txt 2>&1
done
tar czf $OUT/logs.tgz -C $OUT moe-step0-details.txt gpt4-rank1-details.txt 2>/dev/null
rm -f $OUT/moe-step0-details.txt $OUT/gpt4-rank1-details.txt
echo "moe ${t0}->${t1} s=$((t1-t0)); gpt4 s=$((t2-t1))" >> $OUT/versions.txt
cat $OUT/versions.txt
grep -c "" $OUT/*.txt
head -40 $OUT/gpt4-rank1-per-nvtx.txt 2>/dev/null
tail -5 $OUT/gpt4-run.log
