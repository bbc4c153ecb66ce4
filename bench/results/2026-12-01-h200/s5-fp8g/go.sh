#!/usr/bin/env bash
# fp8g session 5 (issue 14, the V2-Lite layer's cheap cuts), call 2: GPU tests of the touched
# kernels, compute-sanitizer memcheck on them, the V2-Lite layer bf16 and fp8 and torch's layer in
# the same call, ops_bench --only moe (the layer's passes and the quantiser). Call 1 (run1/) also
# timed the shared gate/up cuBLAS vs fused and FP8 s6 vs _ov (--kernels, since removed).
# Build (worktree) rwm-dist, examples/ops_bench and the backend_ops test binary, copy them with this script and summary.py into /work/main/.dev/fp8g/, run `bash .dev/fp8g/go.sh`.
set -uo pipefail
D=/work/main/.dev/fp8g
export RWM_KERNEL_CACHE=/tmp/rwm-kernels PYTHONUNBUFFERED=1 RUST_LOG=warn
mkdir -p /work && ln -sfn /work/main /work/wt-fp8g
L=$OUT/logs; mkdir -p $L
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv > $L/gpu.txt
python3 -c "import torch; print('torch', torch.__version__)" >> $L/gpu.txt
t0=$SECONDS; step() { echo "== $1 at $((SECONDS-t0)) s"; }
fits() { [ $((SECONDS-t0+$1)) -lt 230 ] || { echo "skipped: $2"; return 1; }; }
moe() { n=moe-v2lite-$1; fits 20 $n || return
  timeout 40 $D/rwm-dist run --backend cuda --profile bench --target moe --set moe.preset=deepseek-v2-lite --skew none --dtype $1 --warmup 2 --iters 5 --output $OUT/$n.jsonl > $L/$n.log 2>&1; echo "$n rc=$?"; }
step moe
moe bf16
moe fp8
fits 20 torch && { timeout 40 python3 /work/main/bench/peers/torch_moe.py > $OUT/torch-moe-v2lite.jsonl 2> $L/torch-moe-v2lite.log; echo "torch rc=$?"; }
step tests
T="permute grouped_matmul moe_layer cuda_fp8_kernel_variants"
timeout 100 $D/backend_ops --test-threads 1 $T --nocapture > $L/tests.log 2>&1; echo "tests rc=$?"
grep -E "^test |panicked|test result" $L/tests.log | cut -c1-200
step memcheck
fits 40 memcheck && { timeout 45 compute-sanitizer --tool memcheck $D/backend_ops --test-threads 1 permute grouped_matmul_fp8_matches > $L/memcheck.log 2>&1
  echo "memcheck rc=$? $(grep -E 'ERROR SUMMARY|test result' $L/memcheck.log | tr '\n' ' ')"; }
step ops
fits 30 ops && { timeout $((225-(SECONDS-t0))) $D/ops_bench --only moe --json $OUT/ops-rwm.jsonl > $L/ops.log 2>&1; echo "ops rc=$?"; }
step done
grep -E "^(moe_|quantize|shared|grouped_gemm_fp8)" $L/ops.log
python3 $D/summary.py $OUT | tee $L/summary.txt
tar czf $OUT/logs.tgz -C $OUT logs && rm -rf $L
