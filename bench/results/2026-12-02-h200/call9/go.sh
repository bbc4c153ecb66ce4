#!/usr/bin/env bash
# Session 8, call 9 (H200): the MoE layers with this session's defaults (FP8 multicast where experts average
# at most 1024 rows: V3's down) beside torch's layers; compute-sanitizer on the new defaults (racecheck: the
# banded SwiGLU kernel and every grouped instantiation; memcheck: the FP8 grouped GEMM's default choice);
# then ncu at d = 64, 32K, ours against cuDNN (where d = 64 stands at 0.95x).
cd /work/main || exit 2
. bench/device_go.sh
st moe
for p in deepseek-v2-lite deepseek-v3; do for d in bf16 fp8; do
  timeout 60 $L/rwm-dist run --backend cuda --profile bench --target moe --set moe.preset=$p --skew none --dtype $d --warmup 2 --iters 5 --output $OUT/moe.jsonl > $G/moe-$p-$d.log 2>&1; echo "moe $p $d rc=$?"; done
  timeout 60 $L/rwm-dist run --backend cuda --profile bench --target moe --set moe.preset=$p --skew zipf:1.2 --dtype bf16 --warmup 2 --iters 5 --output $OUT/moe.jsonl > $G/moe-$p-zipf.log 2>&1; echo "moe $p zipf rc=$?"; done
timeout 60 python3 bench/peers/torch_moe.py > $OUT/peers.jsonl 2> $G/torch-moe-v2lite.log; echo "torch v2lite rc=$?"
timeout 90 python3 bench/peers/torch_moe.py --tokens 8192 --experts 256 --top-k 8 --hidden 7168 --ffn 2048 --shared 1 >> $OUT/peers.jsonl 2> $G/torch-moe-v3.log; echo "torch v3 rc=$?"
st sanitizer
timeout 150 compute-sanitizer --tool racecheck $L/backend_ops --test-threads 1 cuda_kernel_variants_grouped matmul_swiglu > $G/racecheck.log 2>&1; echo "racecheck rc=$? $(grep -E 'RACECHECK SUMMARY|test result' $G/racecheck.log | tr '\n' ' ')"
timeout 90 compute-sanitizer --tool memcheck $L/backend_ops --test-threads 1 grouped_matmul_fp8 moe_layer > $G/memcheck.log 2>&1; echo "memcheck rc=$? $(grep -E 'ERROR SUMMARY|test result' $G/memcheck.log | tr '\n' ' ')"
st ncu
cat > $G/cudnn_d64.py <<'PY'
import torch, torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel
q = torch.randn(1, 32, 32768, 64, device="cuda", dtype=torch.bfloat16)
k, v = (torch.randn(1, 8, 32768, 64, device="cuda", dtype=torch.bfloat16) for _ in range(2))
with sdpa_kernel(SDPBackend.CUDNN_ATTENTION):
    for _ in range(4):
        F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
torch.cuda.synchronize()
PY
NCU_COUNT=1 NCU_SKIP=2 timeout 100 bench/ncu_kernels.sh $G/ncu/cudnn-d64 'cudnn|fprop|sdpa' -- python3 $G/cudnn_d64.py; echo "ncu cudnn rc=$?"
NCU_COUNT=1 NCU_SKIP=2 timeout "$(left)" bench/ncu_kernels.sh $G/ncu/ours-d64 'flash_fwd_sm90_d64' -- $L/ops_bench --only attn --attn-seq 32768 --iters 1 --kernels flash_fwd_sm90_d64_s2p; echo "ncu ours rc=$?"
for r in $G/ncu/*.ncu-rep; do ncu --import "$r" --page raw > "${r%.ncu-rep}.raw.txt" 2>&1; rm -f "$r"; done
st done
python3 -c "
import json
for l in open('$OUT/moe.jsonl'): r=json.loads(l); c=r['config']; print('moe', c['num_experts'], r['gemm_dtype'], c['skew'], r['variant'], round(r['median_ms'],3), round(r['p10_ms'],3), round(r['p90_ms'],3), r.get('max_err'), r['status'])
for l in open('$OUT/peers.jsonl'): print(l.strip()[:220])
"
for f in $G/ncu/*.txt; do echo "## $f"; grep -E "^  [a-z_]|Duration|Issue Slots Busy|No Eligible|Registers Per|L2 Hit|Compute \(SM\) Th" $f | head -12; done
for f in $G/ncu/*.raw.txt; do echo "## $f"; grep -E "pipe_(tensor|xu|fma|alu|fp16|fmaheavy|fmalite).*(pct|active)|warp_issue_stalled_(barrier|long_scoreboard|math_pipe_throttle|wait|membar|short_scoreboard|mio_throttle|no_instruction|dispatch_stall|sleeping|lg_throttle|selected|not_selected|branch_resolving|drain|misc|tex_throttle|imc_miss)_per_warp_active.pct" $f | head -40; done
tar czf $OUT/logs.tgz -C $OUT logs && rm -rf $G
