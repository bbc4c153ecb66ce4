#!/usr/bin/env bash
# Session 4 first call: the TMA launch_maps change on a GPU (backend_ops), then a stopped rank in the gpt4 cp2 ring
# (issue 12: must end within the watchdog's limit naming the op), moe ep2 and rank 0 stopped as controls.
set -uo pipefail
cd "$(dirname "$0")/../.."
L=.dev/lead
mkdir -p /work && ln -sfn /work/main /work/main 2>/dev/null
export RWM_KERNEL_CACHE=/tmp/rwm-kernels OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
timeout 300 $L/backend_ops --test-threads 1 > $OUT/backend_ops.log 2>&1; echo "backend_ops rc=$?"; grep -E "^test result|FAILED|panicked" $OUT/backend_ops.log | head
for case in "gpt4-cp2-ring hang:gpt4@1 g1" "moe-ep2 hang:moe@1 m1" "gpt4-cp2-ring hang:gpt4@0 g0"; do
  set -- $case
  t0=$(date +%s)
  RWM_FAULT=$2 RWM_TIMEOUT_S=15 RWM_LAYOUTS="$1" timeout 150 bench/nccl_one_gpu.sh $L/rwm-dist $OUT/hang-$3 2 > /dev/null 2>&1 </dev/null
  echo "== $1 $2: $(cat $OUT/hang-$3/summary.txt 2>/dev/null) after $(( $(date +%s)-t0 )) s"
  grep -h "no progress\|rwm-dist: rank" $OUT/hang-$3/*.log | head -4
done
tar czf $OUT/hang.tgz -C $OUT hang-g1 hang-m1 hang-g0 && rm -rf $OUT/hang-*
