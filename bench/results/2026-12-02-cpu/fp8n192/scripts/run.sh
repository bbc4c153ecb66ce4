#!/usr/bin/env bash
# Reproduces this folder's numbers without a GPU (session 6, helper fp8n192): ptxas's registers and
# spills of grouped_gemm_fp8.cu (NVRTC 13.0, sm_90a, as the backend compiles it), the k-loop counts
# of the new kernels (with ../fp8sass/scripts/ktile_counts.py), and the SASS of every other kernel
# of the sm_90a files that include tma.cuh against the branch point on main (byte-identical
# instruction lines).
set -euo pipefail
W=${W:-/work/wt-fp8n192} T=${T:-/tmp/fp8n192/repro} S=$(cd "$(dirname "$0")" && pwd) BASE=${BASE:-$(git -C $W merge-base main HEAD)}
export LD_LIBRARY_PATH=${NVRTC_LIB:-/root/.cache/rwm-dist/nvidia-cuda-nvrtc-13.0.88/nvidia/cu13/lib}
export LIBNVRTC=$LD_LIBRARY_PATH/libnvrtc.so.13
mkdir -p $T/new $T/base
[ -x $T/tools/nvidia/cu13/bin/cuobjdump ] || pip install -q --target $T/tools nvidia-cuda-cuobjdump
CO=$T/tools/nvidia/cu13/bin/cuobjdump
FILES="grouped_gemm_fp8.cu grouped_gemm_tma.cu flash_attention_sm90.cu"
(cd $W && python3 bench/nvrtc_check.py --arch sm_90a --cubin-dir $T/new $FILES)
rm -rf $T/base_tree && mkdir -p $T/base_tree && git -C $W archive $BASE kernels bench/nvrtc_check.py | tar -x -C $T/base_tree
python3 $T/base_tree/bench/nvrtc_check.py --arch sm_90a --cubin-dir $T/base $FILES > /dev/null
# Every kernel of main: instruction lines (address, instruction, encoding) identical?
for f in $FILES; do
  c=${f%.cu}.cubin
  for k in $($CO --dump-resource-usage $T/base/$c | grep -o 'Function [A-Za-z0-9_]*' | awk '{print $2}'); do
    if cmp -s <($CO --dump-sass --function $k $T/base/$c | grep -E '^\s+/\*[0-9a-f]{4}\*/') \
              <($CO --dump-sass --function $k $T/new/$c | grep -E '^\s+/\*[0-9a-f]{4}\*/'); then
      echo "same SASS as $BASE: $k"
    else
      echo "DIFFERENT SASS from $BASE: $k"
    fi
  done
done
for k in n192_lean_s4 n192_lean_s4_mc swiglu_n192_lean_s4 lean_s6 swiglu_lean_s6; do
  $CO --dump-sass -fun grouped_gemm_fp8_$k $T/new/grouped_gemm_fp8.cubin > $T/$k.sass
  read lo hi < <(python3 $S/loop_window.py $T/$k.sass)
  echo "== grouped_gemm_fp8_$k: k loop $lo..$hi"
  python3 $S/../../fp8sass/scripts/ktile_counts.py $T/$k.sass $lo $hi
  python3 $S/../../fp8sass/scripts/excerpt.py $T/$k.sass $lo $hi > $T/${k}_ktile.sass
done
