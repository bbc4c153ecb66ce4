#!/usr/bin/env bash
# Reproduces this folder's numbers on a machine without a GPU (session 6, helper bf16sass).
# Needs: the rwm-dist worktree (W) and main's tree (M, for the byte-identity check), NVRTC 13.0, and the
# DeepGEMM / cutlass / CCCL / CUDA-runtime trees that ../fp8sass/scripts/run.sh sets up under $FP8T
# (deepseek-ai/DeepGEMM 54e2261 with its cutlass pin f3fde58; the shims of ../fp8sass/scripts).
set -euo pipefail
W=${W:-/work/wt-bf16sass} M=${M:-/work/main} T=${T:-/tmp/bf16sass} FP8T=${FP8T:-/tmp/fp8sass}
S=$(cd "$(dirname "$0")" && pwd) F=$(cd "$(dirname "$0")/../../fp8sass/scripts" && pwd)
A=$(cd "$(dirname "$0")/../../attnsass/scripts" && pwd)
export LD_LIBRARY_PATH=${NVRTC_LIB:-/root/.cache/rwm-dist/nvidia-cuda-nvrtc-13.0.88/nvidia/cu13/lib}
export LIBNVRTC=$LD_LIBRARY_PATH/libnvrtc.so.13
CO=$FP8T/tools/nvidia/cu13/bin/cuobjdump
mkdir -p $T/cubin_main $T/cubin_new $T/cubin_dg
(cd $M && python3 bench/nvrtc_check.py --arch sm_90a --cubin-dir $T/cubin_main grouped_gemm_tma.cu >/dev/null)
(cd $W && python3 bench/nvrtc_check.py --arch sm_90a --cubin-dir $T/cubin_new grouped_gemm_tma.cu | grep -A2 "_lean'")
# Every existing instantiation's SASS against main's (instruction lines per function).
python3 $A/same_sass.py $CO $T/cubin_main/grouped_gemm_tma.cubin $T/cubin_new/grouped_gemm_tma.cubin
# DeepGEMM's heuristic (bf16, M-grouped contiguous): BLOCK_M 128, BLOCK_N 256, 3 stages, cluster 2 (B multicast).
python3 $S/dg_bf16_heuristic.py
I=$FP8T/cccl/nvidia/cu13/include
EXTRA_INC=$FP8T/shim:$I:$I/cccl:$FP8T/cudart/nvidia/cu13/include PDL_SHIM=$FP8T/shim/pdl.h \
  python3 $S/dg_bf16_nvrtc.py $FP8T/dg/deep_gemm/include $FP8T/cutlass/include $T/cubin_dg/dg_bf16_gateup.cubin \
  2816 2048 64 128 256 3 2 | grep -A2 "Function properties"
$CO --dump-sass $T/cubin_dg/dg_bf16_gateup.cubin > $T/dg_gateup.sass
for k in grouped_gemm_tma_256_s3e grouped_gemm_swiglu_tma_256_s4; do
  $CO --dump-sass -fun $k $T/cubin_main/grouped_gemm_tma.cubin > $T/$k.sass
  $CO --dump-sass -fun ${k}_lean $T/cubin_new/grouped_gemm_tma.cubin > $T/${k}_lean.sass
done
# One k-tile (the k loop's body; addresses of this build). DeepGEMM unrolls its loop twice (the trip count
# is compiled in): the two windows are its two k-tiles.
python3 $F/ktile_counts.py $T/grouped_gemm_tma_256_s3e.sass 0x1180 0x15f0
python3 $F/ktile_counts.py $T/grouped_gemm_tma_256_s3e_lean.sass 0x12a0 0x1570
python3 $F/ktile_counts.py $T/grouped_gemm_swiglu_tma_256_s4.sass 0x11a0 0x1620
python3 $F/ktile_counts.py $T/grouped_gemm_swiglu_tma_256_s4_lean.sass 0x12c0 0x1590
python3 $F/ktile_counts.py $T/dg_gateup.sass 0x0c10 0x0f20
python3 $F/ktile_counts.py $T/dg_gateup.sass 0x0f20 0x1190
# The SwiGLU kernels whole (the lean one's epilogue divides with __fdividef: no FCHK / slow-path call).
python3 $S/kind_diff.py $T/grouped_gemm_swiglu_tma_256_s4.sass $T/grouped_gemm_swiglu_tma_256_s4_lean.sass
