#!/usr/bin/env bash
# Session 7 call 6 (H200): the block quantisers multiply by 448 / amax (DeepGEMM's cast) instead of dividing by
# the scale: the FP8 GPU tests (bits against the CPU reference), then the quantiser and dispatch rates and the
# V2-Lite FP8 layer beside torch's layer.
cd /work/main || exit 2
. bench/device_go.sh  # (as run, these lines were inline; some calls set no Open MPI variables)
st tests
timeout 80 $L/backend_ops --test-threads 1 grouped_matmul_fp8 permute_fp8 cuda_fp8_kernel_variants moe_layer quantize > $G/tests.log 2>&1; echo "tests rc=$? $(grep -E '^test result' $G/tests.log | tail -1)"
grep -E "FAILED|panicked" $G/tests.log | head -5
st ops
timeout 40 $L/ops_bench --only moe_v2lite --json $OUT/ops-rwm.jsonl > $G/ops.log 2>&1; echo "ops rc=$?"
st layer
timeout 30 $L/rwm-dist run --backend cuda --profile bench --target moe --set moe.preset=deepseek-v2-lite --skew none --dtype fp8 --warmup 2 --iters 10 --output $OUT/moe.jsonl > $G/moe.log 2>&1; echo "moe rc=$?"
timeout 40 python3 bench/peers/torch_moe.py > $OUT/peers.jsonl 2> $G/torch-moe.log; echo "torch rc=$?"
st done
grep -E "^(quantize|moe_dispatch|grouped_gemm_fp8|moe_expert_mlp_fp8)" $G/ops.log
python3 -c "
import json
for l in open('$OUT/moe.jsonl'): r=json.loads(l); print('moe', r['gemm_dtype'], r['variant'], r['median_ms'], r['p10_ms'], r['p90_ms'], r.get('max_err'), r['status'])
for l in open('$OUT/peers.jsonl'): print(l.strip()[:200])
"
tar czf $OUT/logs.tgz -C $OUT logs && rm -rf $G
