#!/usr/bin/env bash
# Builds fa3_bench: FA3's own hopper forward kernel (bf16, causal, head dim 128 and 64) + our timing harness.
# Needs: nvcc (CUDA >= 12.3; built with 13.0), FA3 sources (hopper/) and the CUTLASS that FA3 pins in csrc/cutlass.
#   FA3_HOPPER   path to flash-attention/hopper      (default $OUT/src/fa3/hopper, else /tmp/fa3src/hopper)
#   CUTLASS_DIR  path to cutlass (with include/)      (default $OUT/src/cutlass, else /tmp/fa3cutlass)
#   CUDA_HOME    toolkit root (bin/nvcc)              (default /usr/local/cuda, else the pip wheels in /tmp/fa3cuda)
#   OUT          output folder                        (default <repo>/.dev/fa3)
#   ($OUT/src is unpacked from $OUT/fa3_src.tar.gz, made by vendor_sources.sh; FORCE=1 recompiles the objects)
#   FA3_COMMIT   FA3 commit, printed in the "impl" field (default: read from FA3_HOPPER/../.fa3_commit if present)
# Usage: bench/peers/fa3/build.sh [hdim128 hdim64]   (default both; the binary runs the head dims it was built with)
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
REPO="$(cd "$HERE/../../.." && pwd)"
OUT="${OUT:-$REPO/.dev/fa3}"
# Sources: FA3_HOPPER/CUTLASS_DIR if given; else $OUT/src unpacked from $OUT/fa3_src.tar.gz (vendor_sources.sh);
# else the /tmp extractions.
if [ -z "${FA3_HOPPER:-}" ] && [ -f "$OUT/fa3_src.tar.gz" ]; then
  if [ ! -d "$OUT/src/fa3/hopper" ] || [ "$OUT/fa3_src.tar.gz" -nt "$OUT/src/fa3/.fa3_commit" ]; then
    rm -rf "$OUT/src"; mkdir -p "$OUT/src"; tar -xzf "$OUT/fa3_src.tar.gz" -C "$OUT/src"; touch "$OUT/src/fa3/.fa3_commit"
  fi
  FA3_HOPPER="$OUT/src/fa3/hopper"; CUTLASS_DIR="${CUTLASS_DIR:-$OUT/src/cutlass}"
fi
FA3_HOPPER="${FA3_HOPPER:-/tmp/fa3src/hopper}"
CUTLASS_DIR="${CUTLASS_DIR:-/tmp/fa3cutlass}"
if [ -z "${CUDA_HOME:-}" ]; then
  if [ -x /usr/local/cuda/bin/nvcc ]; then CUDA_HOME=/usr/local/cuda; else CUDA_HOME=/tmp/fa3cuda/x/nvidia/cu13; fi
fi
FA3_COMMIT="${FA3_COMMIT:-$(cat "$FA3_HOPPER/../.fa3_commit" 2>/dev/null || echo unknown)}"
HDIMS=("$@"); [ ${#HDIMS[@]} -eq 0 ] && HDIMS=(hdim128 hdim64)
NVCC="$CUDA_HOME/bin/nvcc"
mkdir -p "$OUT"
export PATH="$CUDA_HOME/bin:$CUDA_HOME/nvvm/bin:$PATH"

# FA3's hopper/setup.py nvcc flags for sm90 (+ torch CUDAExtension's COMMON_NVCC_FLAGS), and its feature switches
# to cut everything this peer does not use.
FLAGS=(-O3 -std=c++17 --ftemplate-backtrace-limit=0 --use_fast_math -lineinfo
  -DCUTE_SM90_EXTENDED_MMA_SHAPES_ENABLED -DCUTLASS_ENABLE_GDC_FOR_SM90 -DCUTLASS_DEBUG_TRACE_LEVEL=0 -DNDEBUG
  -D__CUDA_NO_HALF_OPERATORS__ -D__CUDA_NO_HALF_CONVERSIONS__ -D__CUDA_NO_BFLOAT16_CONVERSIONS__
  -D__CUDA_NO_HALF2_OPERATORS__ --expt-relaxed-constexpr
  -gencode arch=compute_90a,code=sm_90a
  -DFLASHATTENTION_DISABLE_BACKWARD -DFLASHATTENTION_DISABLE_SPLIT -DFLASHATTENTION_DISABLE_PAGEDKV
  -DFLASHATTENTION_DISABLE_APPENDKV -DFLASHATTENTION_DISABLE_LOCAL -DFLASHATTENTION_DISABLE_SOFTCAP
  -DFLASHATTENTION_DISABLE_PACKGQA -DFLASHATTENTION_DISABLE_FP16 -DFLASHATTENTION_DISABLE_FP8
  -DFLASHATTENTION_DISABLE_VARLEN -DFLASHATTENTION_DISABLE_CLUSTER -DFLASHATTENTION_DISABLE_HDIM96
  -DFLASHATTENTION_DISABLE_HDIM192 -DFLASHATTENTION_DISABLE_HDIM256 -DFLASHATTENTION_DISABLE_SM8x
  -DFLASH_ATTENTION_DISABLE_HDIMDIFF64 -DFLASH_ATTENTION_DISABLE_HDIMDIFF192
  -I"$FA3_HOPPER" -I"$CUTLASS_DIR/include")

HARNESS_DEFS=(-DFA3_COMMIT="\"$FA3_COMMIT\"")
OBJS=()
pids=()
for h in "${HDIMS[@]}"; do
  case "$h" in
    hdim128) HARNESS_DEFS+=(-DFA3_HAVE_HDIM128) ;;
    hdim64) HARNESS_DEFS+=(-DFA3_HAVE_HDIM64) ;;
    *) echo "build.sh: unknown head dim '$h' (hdim128|hdim64)" >&2; exit 2 ;;
  esac
  src="$HERE/fa3_fwd_${h}_causal_sm90.cu"; obj="$OUT/fa3_fwd_${h}_causal_sm90.o"
  OBJS+=("$obj")
  # Reuse an object newer than its source and this script (the instantiations take minutes each).
  if [ -f "$obj" ] && [ "$obj" -nt "$src" ] && [ "$obj" -nt "$0" ] && [ -z "${FORCE:-}" ]; then continue; fi
  ( t0=$(date +%s)
    "$NVCC" "${FLAGS[@]}" --threads 2 -Xptxas -v -c "$src" -o "$obj.tmp" > "$OUT/ptxas_${h}.log" 2>&1 \
      || { cat "$OUT/ptxas_${h}.log" >&2; exit 1; }
    mv "$obj.tmp" "$obj"; echo "$h: $(( $(date +%s) - t0 )) s" ) &
  pids+=($!)
done
"$NVCC" "${FLAGS[@]}" "${HARNESS_DEFS[@]}" -Xptxas -v -c "$HERE/fa3_bench.cu" -o "$OUT/fa3_bench.o" \
  > "$OUT/ptxas_harness.log" 2>&1 || { cat "$OUT/ptxas_harness.log" >&2; exit 1; }
for p in "${pids[@]}"; do wait "$p"; done
# cudart linked statically (the driver API, cuTensorMapEncodeTiled for TMA, is reached through
# cudaGetDriverEntryPoint by CUTLASS). libstdc++ stays dynamic: static, it would pull arc4random (glibc 2.36).
"$NVCC" -gencode arch=compute_90a,code=sm_90a -cudart static -L"$CUDA_HOME/lib64" -L"$CUDA_HOME/lib" \
  "$OUT/fa3_bench.o" "${OBJS[@]}" -o "$OUT/fa3_bench"
echo "built $OUT/fa3_bench (FA3 $FA3_COMMIT; head dims: ${HDIMS[*]})"
grep -h -A2 'device_kernel' "$OUT"/ptxas_hdim*.log | grep -E 'registers|spill' || true
