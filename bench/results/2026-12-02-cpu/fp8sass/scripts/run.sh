#!/usr/bin/env bash
# Reproduces this folder's numbers on a machine without a GPU (session 6, helper fp8sass).
# Needs: the rwm-dist worktree (W), NVRTC 13.0 (as the backend uses it), git mirrors of
# deepseek-ai/DeepGEMM (54e2261, 2026-06-23) and NVIDIA/cutlass (DeepGEMM's submodule pin f3fde58).
set -euo pipefail
W=${W:-/work/wt-fp8sass} T=${T:-/tmp/fp8sass} S=$(cd "$(dirname "$0")" && pwd)
DG_GIT=${DG_GIT:-/work/.mirror/deepseek-ai+DeepGEMM/repo} CU_GIT=${CU_GIT:-/work/.mirror/NVIDIA+cutlass/repo}
export LD_LIBRARY_PATH=${NVRTC_LIB:-/root/.cache/rwm-dist/nvidia-cuda-nvrtc-13.0.88/nvidia/cu13/lib}
export LIBNVRTC=$LD_LIBRARY_PATH/libnvrtc.so.13
mkdir -p $T/dg $T/cutlass $T/shim $T/cubin
# cuobjdump 13.5 (reads sm_90a cubins); CCCL and the runtime headers that cutlass/cute include under NVRTC.
[ -x $T/tools/nvidia/cu13/bin/cuobjdump ] || pip install -q --target $T/tools nvidia-cuda-cuobjdump nvidia-cuda-nvdisasm
[ -d $T/cccl/nvidia ] || pip install -q --no-deps --target $T/cccl "nvidia-cuda-cccl==13.0.*"
[ -d $T/cudart/nvidia ] || pip install -q --no-deps --target $T/cudart "nvidia-cuda-runtime==13.0.*"
git --git-dir=$DG_GIT archive 54e22612409371d6364144b69086735beb54e98b deep_gemm/include | tar -x -C $T/dg
git --git-dir=$CU_GIT archive f3fde58372d33e9a5650ba7b80fc48b3b49d40c8 include | tar -x -C $T/cutlass
cp $S/shim_utility $T/shim/utility && cp $S/shim_pdl.h $T/shim/pdl.h
I=$T/cccl/nvidia/cu13/include
export EXTRA_INC=$T/shim:$I:$I/cccl:$T/cudart/nvidia/cu13/include PDL_SHIM=$T/shim/pdl.h
python3 $S/dg_heuristic.py
# DeepGEMM's choice for V2-Lite: BLOCK_M 128, BLOCK_N 192, 4 stages, cluster 2 (B multicast), 256 math threads.
python3 $S/dg_nvrtc.py $T/dg/deep_gemm/include $T/cutlass/include $T/cubin/dg_gateup.cubin 2816 2048 64 128 192 4 2
python3 $S/dg_nvrtc.py $T/dg/deep_gemm/include $T/cutlass/include $T/cubin/dg_down.cubin 2048 1408 64 128 192 4 2
(cd $W && python3 bench/nvrtc_check.py --arch sm_90a --cubin-dir $T/cubin grouped_gemm_fp8.cu)
CO=$T/tools/nvidia/cu13/bin/cuobjdump
$CO --dump-sass $T/cubin/dg_gateup.cubin > $T/dg_gateup.sass
$CO --dump-sass $T/cubin/dg_down.cubin > $T/dg_down.sass
for k in s6 swiglu_s6 lean_s6 swiglu_lean_s6; do
  $CO --dump-sass -fun grouped_gemm_fp8_$k $T/cubin/grouped_gemm_fp8.cubin > $T/$k.sass
done
# One k-tile window each (addresses of this build: the k loop's body for ours, k-tile 2 of the
# unrolled loop for DeepGEMM; ktile_counts.py without addresses lists every DeepGEMM window).
python3 $S/ktile_counts.py $T/s6.sass 0x14b0 0x1eb0
python3 $S/ktile_counts.py $T/swiglu_s6.sass 0x1570 0x2000
python3 $S/ktile_counts.py $T/lean_s6.sass 0x1a70 0x2200
python3 $S/ktile_counts.py $T/swiglu_lean_s6.sass 0x1ba0 0x23b0
python3 $S/ktile_counts.py $T/dg_gateup.sass
python3 $S/ktile_counts.py $T/dg_down.sass
