#!/usr/bin/env bash
# Session 7 call 3 (H200): compute-sanitizer on the new default kernels, the NCCL paths with 2 ranks on one GPU
# (session 6's exchange! macro), Llama 8K with 10 steps beside HF, then ncu: attention at 32K (ours vs cuDNN)
# and the FP8 n192 default.
cd /work/main || exit 2
. bench/device_go.sh  # (as run, these lines were inline; some calls set no Open MPI variables)
mkdir -p target/release && cp $L/rwm-dist target/release/rwm-dist
st sanitizer
timeout 150 compute-sanitizer --tool racecheck $L/backend_ops --test-threads 1 cuda_kernel_variants > $G/racecheck.log 2>&1; echo "racecheck rc=$? $(grep -E 'RACECHECK SUMMARY' $G/racecheck.log)"
timeout 100 compute-sanitizer --tool memcheck $L/backend_ops --test-threads 1 cuda_fp8_kernel_variants moe_layer > $G/memcheck.log 2>&1; echo "memcheck rc=$? $(grep -E 'ERROR SUMMARY' $G/memcheck.log)"
st nccl2
timeout 120 bench/nccl_one_gpu.sh $L/rwm-dist $G/nccl 2 > $G/nccl.log 2>&1 </dev/null; echo "nccl rc=$?"
cat $G/nccl/summary.txt
st llama
timeout 100 $L/rwm-dist run --backend cuda --target llama --variant optimized --profile bench --warmup 2 --iters 10 --output $OUT/llama.jsonl > $G/llama.log 2>&1; echo "llama rc=$?"
timeout 80 python3 bench/peers/hf_llama.py --seq 8192 --iters 5 > $OUT/peers.jsonl 2> $G/hf.log; echo "hf rc=$?"
st ncu
NCU_COUNT=1 timeout 80 bench/ncu_kernels.sh $G/ncu/attn-ours 'flash_fwd_sm90' -- $L/ops_bench --only attn --attn-seq 32768 --iters 1 --kernels flash_fwd_sm90_d128_s3p_lean; echo "ncu ours rc=$?"
NCU_COUNT=2 timeout 80 bench/ncu_kernels.sh $G/ncu/attn-cudnn 'cudnn|fprop|sdpa' -- python3 bench/peers/torch_ops.py --only attn --attn-seq 32768 --iters 1; echo "ncu cudnn rc=$?"
NCU_COUNT=2 timeout "$(left)" bench/ncu_kernels.sh $G/ncu/fp8 grouped_gemm_fp8 -- $L/ops_bench --only moe_v2lite --iters 1; echo "ncu fp8 rc=$?"
st done
for f in $G/ncu/*.txt; do echo "## $f"; grep -E "^  [a-z_]|Compute \(SM\) Throughput|Memory Throughput|Duration|Issue Slots Busy|No Eligible|Registers Per|Executed Ipc A|Block Limit|Grid Size|Theoretical Occ|Achieved Occ|L2 Hit|Stall" $f | head -40; done > $OUT/ncu-summary.txt
python3 -c "
import json
for l in open('$OUT/llama.jsonl'): r=json.loads(l); print('llama', r['median_ms'], r['p10_ms'], r['p90_ms'], r['tokens_per_s'], r['samples_ms'])
for l in open('$OUT/peers.jsonl'): print(l.strip())
"
tar czf $OUT/logs.tgz -C $OUT logs && rm -rf $G
head -120 $OUT/ncu-summary.txt
