#!/usr/bin/env bash
# Reproduces this folder's numbers without a GPU (session 6, helper attnsass).
# Needs: the rwm-dist worktree W (branch attnsass), NVRTC 13.0 (as the backend uses it), git mirrors of
# Dao-AILab/flash-attention (0251105, 2026-08-15) and NVIDIA/cutlass (FA3's submodule pin 7127592).
set -euo pipefail
W=${W:-/work/wt-attnsass} T=${T:-/tmp/attnsass} S=$(cd "$(dirname "$0")" && pwd)
BASE=${BASE:-d0e79ec}  # main when this branch was cut: the default kernels
FA_GIT=${FA_GIT:-/work/.mirror/Dao-AILab+flash-attention/repo} CU_GIT=${CU_GIT:-/work/.mirror/NVIDIA+cutlass/repo}
export LD_LIBRARY_PATH=${NVRTC_LIB:-/root/.cache/rwm-dist/nvidia-cuda-nvrtc-13.0.88/nvidia/cu13/lib}
export LIBNVRTC=$LD_LIBRARY_PATH/libnvrtc.so.13
mkdir -p $T/shim $T/cubin_base $T/cubin $T/base $T/fa3 $T/cutlass
# cuobjdump 13.5 (reads sm_90a cubins); CCCL, runtime and crt headers that cutlass/cute include under NVRTC.
[ -x $T/tools/nvidia/cu13/bin/cuobjdump ] || pip install -q --target $T/tools nvidia-cuda-cuobjdump nvidia-cuda-nvdisasm
[ -d $T/cccl/nvidia ] || pip install -q --no-deps --target $T/cccl "nvidia-cuda-cccl==13.0.*"
[ -d $T/cudart/nvidia ] || pip install -q --no-deps --target $T/cudart "nvidia-cuda-runtime==13.0.*"
[ -d $T/crt/nvidia ] || pip install -q --no-deps --target $T/crt "nvidia-cuda-crt==13.0.*"
CO=$T/tools/nvidia/cu13/bin/cuobjdump EX=$S/../../fp8sass/scripts/excerpt.py
# FA3: hdim 128, bf16, causal, as run_mha_fwd_ instantiates it (fa3_nvrtc.py), with header shims for NVRTC.
git --git-dir=$FA_GIT archive 0251105a2fb19d2957484b7f023cd8c115286ced hopper | tar -x -C $T/fa3
git --git-dir=$CU_GIT archive 7127592069c2fe01b041e174ba4345ef9b279671 include | tar -x -C $T/cutlass
for f in tuple cmath assert.h stdint.h stdlib.h pre.h utility; do cp $S/shim_$f $T/shim/$f; done
I=$T/cccl/nvidia/cu13/include
EXTRA_INC=$T/shim:$I:$I/cccl:$T/cudart/nvidia/cu13/include:$T/crt/nvidia/cu13/include PRE_INC=$T/shim/pre.h \
  python3 $S/fa3_nvrtc.py $T/fa3/hopper $T/cutlass/include $T/cubin/fa3.cubin | grep -E 'registers|spill|wrote'
# Ours: the base commit's kernels and this branch's, compiled as the backend does.
git -C $W archive $BASE kernels bench/nvrtc_check.py | tar -x -C $T/base
(cd $T/base && python3 bench/nvrtc_check.py --arch sm_90a --cubin-dir $T/cubin_base flash_attention_sm90.cu | grep -c 'Compiling')
(cd $W && python3 bench/nvrtc_check.py --arch sm_90a --cubin-dir $T/cubin flash_attention_sm90.cu | grep -E 'spill' | sort | uniq -c)
# Every instantiation the base has: SASS identical on this branch.
python3 $S/same_sass.py $CO $T/cubin_base/flash_attention_sm90.cubin $T/cubin/flash_attention_sm90.cubin
$CO --dump-sass $T/cubin/fa3.cubin > $T/fa3.sass
for k in d128_s2p d128_s3p d64_s2p; do $CO --dump-sass -fun flash_fwd_sm90_$k $T/cubin_base/flash_attention_sm90.cubin > $T/$k.sass; done
for k in d128_s2p_lean d128_s3p_lean d64_s2p_lean; do $CO --dump-sass -fun flash_fwd_sm90_$k $T/cubin/flash_attention_sm90.cubin > $T/$k.sass; done
for k in d128_s2p_lean d128_s3p_lean d64_s2p_lean fa3; do echo "$k loops: $(python3 $S/find_loops.py $T/$k.sass | tr '\n' ' ')"; done
# One KV tile (addresses of this build; SKIP = the masking block, branched around on unmasked tiles).
python3 $S/tile_counts.py $T/d128_s2p.sass 0x3420 0x6220 0x3c90-0x49f0
python3 $S/tile_counts.py $T/d128_s3p.sass 0x3460 0x6260 0x3cd0-0x4a30
python3 $S/tile_counts.py $T/d64_s2p.sass 0x2f20 0x5930 0x35a0-0x4300
python3 $S/tile_counts.py $T/d128_s2p_lean.sass 0x5d80 0x7ca0   # the unmasked loop
python3 $S/tile_counts.py $T/d128_s3p_lean.sass 0x5dc0 0x7ce0
python3 $S/tile_counts.py $T/d64_s2p_lean.sass 0x5850 0x7340
python3 $S/tile_counts.py $T/fa3.sass 0x6440 0x81d0              # FA3's unmasked loop
python3 $S/tile_counts.py $T/fa3.sass 0x3d20 0x63c0              # FA3's causal-mask loop
# Where ptxas puts the P V wait, for variants of the base loop; and the PTX order (the wait after every ex2).
python3 $S/pin_experiments.py $T/base $T/pinexp $CO
python3 $S/nvrtc_ptx.py $T/base flash_attention_sm90.cu $T/base.ptx
