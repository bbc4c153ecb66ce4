#!/usr/bin/env bash
# fp8g device run: GPU tests, sanitizer, grouped GEMM table with torch peers, gpt4 memory, moe layer times.
set -uo pipefail
D=/work/main/.dev/fp8g
export RWM_KERNEL_CACHE=/tmp/rwm-kernels PYTHONUNBUFFERED=1 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# Test binaries find fixtures and the rwm-dist binary under CARGO_MANIFEST_DIR=/work/wt-fp8g.
mkdir -p /work/wt-fp8g/target/release
for f in /work/main/* ; do [ "$(basename $f)" = target ] || ln -sfn "$f" /work/wt-fp8g/; done
cp $D/rwm-dist /work/wt-fp8g/target/release/rwm-dist
L=$OUT/logs; mkdir -p $L
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv > $L/gpu.txt
python3 -c "import torch; print('torch', torch.__version__)" >> $L/gpu.txt
t0=$SECONDS; step() { echo "== $1 at $((SECONDS-t0)) s"; }
step tests
timeout 120 $D/backend_ops --test-threads 1 grouped cuda_kernel_variants --nocapture 2>&1 | tee $L/tests.log | grep -E "test |error against|panicked|result" 
timeout 60 $D/layouts moe_records_the_dtype_that_ran 2>&1 | tee -a $L/tests.log | grep -E "test |panicked|result"
step sanitizer
for tool in memcheck racecheck; do
  timeout 120 compute-sanitizer --tool $tool $D/backend_ops --test-threads 1 grouped_matmul_fp8 > $L/sanitizer-$tool.log 2>&1
  echo "$tool rc=$? $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY|Hazard|test result' $L/sanitizer-$tool.log | tr '\n' ' ')"
done
step ops
mkdir -p $OUT/ops; OUT_DIR=$OUT/ops timeout 200 $D/bench/run_ops.sh $D/ops_bench --only moe > $L/ops-table.log 2>&1; echo "ops rc=$?"
grep -E "^\|" $L/ops-table.log
step gpt4
for dt in bf16 fp8; do
  timeout 90 $D/rwm-dist run --backend cuda --profile bench --target gpt4 --dtype $dt --variant optimized --output $OUT/gpt4-$dt.jsonl > $L/gpt4-$dt.log 2>&1; echo "gpt4 $dt rc=$?"
done
step moe
for preset in deepseek-v2-lite deepseek-v3; do for skew in none zipf:1.2; do for dt in bf16 fp8; do
  n=moe-$preset-${skew/:/}-$dt
  timeout 120 $D/rwm-dist run --backend cuda --profile bench --target moe --set moe.preset=$preset --skew $skew --dtype $dt --warmup 2 --iters 5 --output $OUT/$n.jsonl > $L/$n.log 2>&1; echo "$n rc=$?"
done; done; done
step torch_moe
timeout 60 python3 $D/bench/peers/torch_moe.py > $OUT/torch-moe-v2lite.jsonl 2> $L/torch-moe-v2lite.log; echo "torch v2lite rc=$?"
timeout 90 python3 $D/bench/peers/torch_moe.py --tokens 8192 --experts 256 --top-k 8 --hidden 7168 --ffn 2048 --shared 1 > $OUT/torch-moe-v3.jsonl 2> $L/torch-moe-v3.log; echo "torch v3 rc=$?"
step done
cd $OUT && tar czf logs.tgz logs ops && rm -rf logs ops
python3 - <<'PY'
import json, glob, os
g = 2**30
for f in sorted(glob.glob(os.environ["OUT"] + "/*.jsonl")):
    for l in open(f):
        r = json.loads(l)
        if "variant" in r:
            pk, es = r.get("peak_mem_bytes"), r.get("est_mem_bytes")
            print(os.path.basename(f)[:-6], r["variant"], r["gemm_dtype"], r["status"], r["median_ms"], r["max_err"], r["rel_l2_err"], r["tolerance"],
                  pk and round(pk / g, 2), es and round(es / g, 2))
        else:
            print(os.path.basename(f)[:-6], {k: v for k, v in r.items() if k in ("impl", "ms", "tokens_per_s", "variant")})
PY
