#!/usr/bin/env bash
# fp8g session 4, run 1 (README.md): GPU tests, sanitizer, the untimed FP8
# kernels (_ov, _m256) vs the default and bf16 with torch peers, moe layer phases (ncu), layer times
# with and without moe.shared_fp8. Build (worktree) and copy rwm-dist, examples/ops_bench, the
# backend_ops test binary and summary.py into /work/main/.dev/fp8g/, then run `bash .dev/fp8g/go.sh`.
set -uo pipefail
D=/work/main/.dev/fp8g
export RWM_KERNEL_CACHE=/tmp/rwm-kernels PYTHONUNBUFFERED=1 RUST_LOG=warn
mkdir -p /work/wt-fp8g/target/release
for f in /work/main/* ; do [ "$(basename $f)" = target ] || ln -sfn "$f" /work/wt-fp8g/; done
cp $D/rwm-dist /work/wt-fp8g/target/release/rwm-dist
L=$OUT/logs; mkdir -p $L
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv > $L/gpu.txt
python3 -c "import torch; print('torch', torch.__version__)" >> $L/gpu.txt
t0=$SECONDS; step() { echo "== $1 at $((SECONDS-t0)) s"; }
# Runs the rest only while under 215 s of this script (the device allowance).
fits() { [ $((SECONDS-t0+$1)) -lt 215 ] || { echo "skipped: $2"; return 1; }; }
step tests
timeout 90 $D/backend_ops --test-threads 1 grouped cuda_kernel_variants cuda_fp8_kernel_variants --nocapture > $L/tests.log 2>&1; echo "tests rc=$?"
grep -E "^test |error against|panicked|test result" $L/tests.log | cut -c1-200
step sanitizer
for tool in memcheck racecheck; do
  timeout 60 compute-sanitizer --tool $tool $D/backend_ops --test-threads 1 cuda_fp8_kernel_variants grouped_matmul_uses > $L/sanitizer-$tool.log 2>&1
  echo "$tool rc=$? $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY|test result' $L/sanitizer-$tool.log | tr '\n' ' ')"
done
step ops
K=grouped_gemm_fp8_s6,grouped_gemm_fp8_s6_ov,grouped_gemm_fp8_m256_s4,grouped_gemm_fp8_swiglu_s6,grouped_gemm_fp8_swiglu_s6_ov,grouped_gemm_fp8_swiglu_m256_s4
mkdir -p $OUT/ops; OUT_DIR=$OUT/ops timeout 90 /work/main/bench/run_ops.sh $D/ops_bench --only moe --variants --kernels $K > $L/ops-table.log 2>&1; echo "ops rc=$?"
grep -E "^\| (grouped|moe)" $L/ops-table.log
moe() { n=moe-$1-${2/:/}-$3${4:+-sharedfp8}; fits 15 $n || return
  timeout 30 $D/rwm-dist run --backend cuda --profile bench --target moe --set moe.preset=$1 --skew $2 --dtype $3 "${@:4}" --warmup 2 --iters 5 --output $OUT/$n.jsonl > $L/$n.log 2>&1; echo "$n rc=$?"; }
step moe
moe deepseek-v2-lite none fp8
moe deepseek-v2-lite none fp8 --set moe.shared_fp8=true
fits 15 torch && { timeout 30 python3 /work/main/bench/peers/torch_moe.py > $OUT/torch-moe-v2lite.jsonl 2> $L/torch-moe-v2lite.log; echo "torch v2lite rc=$?"; }
step ncu
fits 30 ncu && { timeout 40 ncu --nvtx --nvtx-include "moe optimized/step 0/" --profile-from-start off --metrics gpu__time_duration.sum \
  -f -o $L/moe-fp8-step0 $D/rwm-dist run --backend cuda --profile bench --target moe --dtype fp8 --variant optimized --warmup 1 --iters 1 --profile-steps \
  --output /tmp/moe-ncu.jsonl > $L/ncu-run.log 2>&1; echo "ncu rc=$?"; }
[ -f $L/moe-fp8-step0.ncu-rep ] && ncu --import $L/moe-fp8-step0.ncu-rep --csv --print-units base --page raw --metrics gpu__time_duration.sum > $L/ncu-kernels.csv 2>&1
[ -f $L/moe-fp8-step0.ncu-rep ] && ncu --import $L/moe-fp8-step0.ncu-rep --print-summary per-nvtx > $L/ncu-per-nvtx.txt 2>&1
step moe2
moe deepseek-v2-lite none bf16
moe deepseek-v2-lite zipf:1.2 fp8
moe deepseek-v2-lite zipf:1.2 bf16
fits 25 v3 && { timeout 35 $D/rwm-dist run --backend cuda --profile bench --target moe --set moe.preset=deepseek-v3 --skew zipf:1.2 --dtype bf16 --warmup 2 --iters 5 --output $OUT/moe-deepseek-v3-zipf1.2-bf16.jsonl > $L/moe-v3-zipf-bf16.log 2>&1; echo "v3 rc=$?"; }
step done
python3 $D/summary.py $OUT | tee $L/summary.txt
cd $OUT && mkdir -p raw && mv *.jsonl raw/ 2>/dev/null; cp ops/rwm.jsonl raw/ops-rwm.jsonl; cp ops/torch.jsonl raw/ops-torch.jsonl; cp ops/offsets.json raw/ops-offsets.json
tar czf logs.tgz logs ops && tar czf raw.tgz raw && rm -rf logs ops raw
