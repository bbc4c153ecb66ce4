#!/usr/bin/env bash
# Session 9, call 15 (H200): where the grouped GEMMs' time goes. Nsight Compute on V2-Lite's gate/up: our FP8
# n192 kernel and bf16 s3e_lean kernel, torch's bf16 _grouped_mm (CUTLASS) on the same shape, and cuBLAS's dense
# FP8 GEMM (8192^3) as the FP8 reference: tensor pipe, shared-memory and L2 throughput, stalls.
cd /work/main || exit 2
. bench/device_go.sh
mkdir -p $G/ncu
st ncu
export NCU_COUNT=1 NCU_SKIP=2
timeout 120 bench/ncu_kernels.sh $G/ncu/ours-fp8 'grouped_gemm_fp8_n192_lean_s4' -- $L/ops_bench --only moe_v2lite --iters 1 --kernels grouped_gemm_fp8_n192_lean_s4; echo "ours fp8 rc=$?"
timeout 120 bench/ncu_kernels.sh $G/ncu/ours-bf16 'grouped_gemm_tma_256_s3e_lean' -- $L/ops_bench --only moe_v2lite --iters 1 --kernels grouped_gemm_tma_256_s3e_lean; echo "ours bf16 rc=$?"
timeout 120 bench/ncu_kernels.sh $G/ncu/torch-bf16 'cutlass|grouped|Grouped' -- python3 bench/peers/torch_ops.py --only moe_v2lite --iters 1; echo "torch bf16 rc=$?"
timeout 120 bench/ncu_kernels.sh $G/ncu/torch-fp8 'gemm|xmma|cutlass' -- python3 bench/peers/torch_ops.py --only fp8 --iters 1; echo "torch fp8 rc=$?"
for r in $G/ncu/*.ncu-rep; do ncu --import "$r" --page raw > "${r%.ncu-rep}.raw.txt" 2>&1; rm -f "$r"; done
st done
for f in $G/ncu/*.raw.txt; do
  echo "## $f"
  grep -E "^\s+(Function Name|Grid Size|Block Size)|launch__grid_size |launch__block_size |gpu__time_duration.sum|sm__cycles_elapsed.avg.per_second|sm__pipe_tensor_op_gmma_cycles_active.avg.pct_of_peak_sustained_active|sm__inst_executed_pipe_tensor_op_gmma.avg.pct_of_peak_sustained_active|l1tex__data_pipe_lsu_wavefronts_mem_shared.sum.pct_of_peak_sustained_elapsed|l1tex__data_bank_(reads|writes).avg.pct_of_peak_sustained_elapsed|smsp__inst_executed_op_shared|lts__throughput.avg.pct_of_peak_sustained_elapsed|lts__t_sector_hit_rate.pct |dram__throughput.avg.pct_of_peak_sustained_elapsed|l1tex__throughput.avg.pct_of_peak_sustained_active|sm__throughput.avg.pct_of_peak_sustained_elapsed|smsp__issue_active.avg.pct_of_peak_sustained_active" $f | awk '{print $1, $(NF)}' | head -30
done
for f in $G/ncu/*.raw.txt; do echo "## $f"; grep -E "warp_issue_stalled_(barrier|long_scoreboard|math_pipe_throttle|wait|membar|short_scoreboard|mio_throttle|no_instruction|dispatch_stall|sleeping|lg_throttle|selected|not_selected|branch_resolving|misc)_per_warp_active.pct" $f | awk '{print $1, $NF}' | head -16; done
grep -E "l1tex__data|shared" $G/ncu/ours-fp8.raw.txt | grep pct | awk '{print $1, $NF}' | head -30
tar czf $OUT/logs.tgz -C $OUT logs && rm -rf $G
