#!/usr/bin/env bash
# fp8g follow-up: is the V3 fused-SwiGLU bf16 slowdown in run 1 this branch's grouped_gemm_tma.cu?
# ops_bench --only moe with this branch (mine), main's grouped_gemm_tma.cu (A), this branch without
# the empty-warpgroup skip (B), alternating.
set -uo pipefail
D=/work/main/.dev/fp8g
export PYTHONUNBUFFERED=1 RUST_LOG=warn
mkdir -p $OUT/r2; t0=$SECONDS
for round in 1 2; do for v in mine A B; do
  [ $((SECONDS-t0)) -lt 95 ] || { echo "skipped $v round $round"; continue; }
  bin=$D/ops_bench; [ $v = mine ] || bin=$D/ops_bench_$v
  RWM_KERNEL_CACHE=/tmp/rwm-kernels-$v timeout 40 $bin --only moe --json $OUT/r2/ops-$v-$round.jsonl > $OUT/r2/ops-$v-$round.log 2>&1
  echo "== $v round $round rc=$? at $((SECONDS-t0)) s"
  grep -E "^(grouped_gemm_gate_up|grouped_gemm_down|moe_expert_mlp)" $OUT/r2/ops-$v-$round.log | grep -v fp8
done; done
cd $OUT && tar czf r2.tgz r2 && rm -rf r2
