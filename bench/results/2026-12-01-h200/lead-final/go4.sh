#!/usr/bin/env bash
# A rank that stops before its first step, two ranks through NCCL on one GPU: the other rank waits in the
# ring's NCCL kernels; the job must end within the watchdog's limit naming what it waited in.
set -uo pipefail
cd "$(dirname "$0")/../.."
L=.dev/lead
export RWM_KERNEL_CACHE=/tmp/rwm-kernels OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
for case in "gpt4-cp2-ring hang:gpt4@1" "moe-ep2 hang:moe@1" "gpt4-cp2-ring hang:gpt4@0"; do
  set -- $case
  t0=$(date +%s)
  RWM_FAULT=$2 RWM_TIMEOUT_S=15 RWM_LAYOUTS="$1" timeout 150 bench/nccl_one_gpu.sh $L/rwm-dist $OUT/$2 2 > /dev/null 2>&1 </dev/null
  echo "== $1 $2: $(cat $OUT/$2/summary.txt) after $(( $(date +%s)-t0 )) s"
  grep -h "no progress\|rwm-dist: rank" $OUT/$2/*.log | head -4
done
tar czf $OUT/hang.tgz -C $OUT hang:gpt4@1 hang:moe@1 hang:gpt4@0 && rm -rf $OUT/hang:*
