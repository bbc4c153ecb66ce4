#!/usr/bin/env bash
# Builds fa3_bench: FA3's own hopper forward kernel (bf16, causal, head dim 128 and 64) + our timing harness.
# Needs: nvcc (CUDA >= 12.3; built with 13.0), FA3 sources (hopper/) and the CUTLASS that FA3 pins in csrc/cutlass.
#   FA3_HOPPER   path to flash-attention/hopper      (default: from $OUT/fa3_src.tar.gz, else /tmp/fa3src/hopper)
#   CUTLASS_DIR  path to cutlass (with include/)      (default: from $OUT/fa3_src.tar.gz, else /tmp/fa3cutlass)
#   CUDA_HOME    toolkit root (bin/nvcc)              (default /usr/local/cuda, else the pip wheels in /tmp/fa3cuda)
#   OUT          output folder                        (default <repo>/.dev/fa3)
#   PTXAS        optional other ptxas to assemble with (see below); FORCE=1 recompiles the objects
#   FA3_COMMIT   FA3 commit, printed in the "impl" field (default: read from FA3_HOPPER/../.fa3_commit if present)
# Usage: bench/peers/fa3/build.sh [hdim128 hdim64]   (default both; the binary runs the head dims it was built with)
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
REPO="$(cd "$HERE/../../.." && pwd)"
OUT="${OUT:-$REPO/.dev/fa3}"
# Sources: FA3_HOPPER/CUTLASS_DIR if given; else $OUT/fa3_src.tar.gz (vendor_sources.sh) unpacked to a temp dir;
# else the /tmp extractions.
WORK="$(mktemp -d)"; trap 'rm -rf "$WORK"' EXIT  # unpacked sources and the ptxas shadow toolkit, build-time only
if [ -z "${FA3_HOPPER:-}" ] && [ -f "$OUT/fa3_src.tar.gz" ]; then
  mkdir -p "$WORK/src"; tar -xzf "$OUT/fa3_src.tar.gz" -C "$WORK/src"
  FA3_HOPPER="$WORK/src/fa3/hopper"; CUTLASS_DIR="${CUTLASS_DIR:-$WORK/src/cutlass}"
fi
FA3_HOPPER="${FA3_HOPPER:-/tmp/fa3src/hopper}"
CUTLASS_DIR="${CUTLASS_DIR:-/tmp/fa3cutlass}"
if [ -z "${CUDA_HOME:-}" ]; then
  if [ -x /usr/local/cuda/bin/nvcc ]; then CUDA_HOME=/usr/local/cuda; else CUDA_HOME=/tmp/fa3cuda/x/nvidia/cu13; fi
fi
# PTXAS=/path/to/ptxas (e.g. 12.8.93, which FA3's setup.py pairs with nvcc 12.6 for its wheels): compile with this
# nvcc but assemble with that ptxas, through a shadow toolkit (temp dir) whose bin/ptxas is a shim that relabels nvcc's
# PTX ISA (9.0 for CUDA 13.0) as 8.7 (the newest ptxas 12.8 reads). Outputs get the suffix _ptxas<version>.
SUFFIX=""
if [ -n "${PTXAS:-}" ]; then
  PV="$("$PTXAS" --version | sed -n 's/.*, V\([0-9.]*\)$/\1/p')"
  [ -n "$PV" ] || { echo "build.sh: cannot read the version of PTXAS=$PTXAS" >&2; exit 2; }
  SUFFIX="_ptxas$PV"
  SHADOW="$WORK/toolkit$SUFFIX"
  rm -rf "$SHADOW"; mkdir -p "$SHADOW/bin"
  for f in "$CUDA_HOME"/*; do [ "$(basename "$f")" = bin ] || ln -s "$f" "$SHADOW/"; done
  for f in "$CUDA_HOME"/bin/*; do ln -s "$f" "$SHADOW/bin/"; done
  rm "$SHADOW/bin/nvcc" "$SHADOW/bin/nvcc.profile" "$SHADOW/bin/ptxas"
  cp "$CUDA_HOME/bin/nvcc" "$CUDA_HOME/bin/nvcc.profile" "$SHADOW/bin/"  # nvcc finds its tools next to its real path
  cat > "$SHADOW/bin/ptxas" <<SHIM
#!/usr/bin/env bash
args=()
for a in "\$@"; do
  if [[ "\$a" == *.ptx && -f "\$a" ]]; then
    t="\$(mktemp -p "$WORK" --suffix=.ptx)"; sed 's/^\.version 9\.[0-9]\$/.version 8.7/' "\$a" > "\$t"; args+=("\$t")
  else args+=("\$a"); fi
done
exec "$PTXAS" "\${args[@]}"
SHIM
  chmod +x "$SHADOW/bin/ptxas"
  CUDA_HOME="$SHADOW"
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
  -gencode "arch=compute_90a,code=sm_90a"
  -DFLASHATTENTION_DISABLE_BACKWARD -DFLASHATTENTION_DISABLE_SPLIT -DFLASHATTENTION_DISABLE_PAGEDKV
  -DFLASHATTENTION_DISABLE_APPENDKV -DFLASHATTENTION_DISABLE_LOCAL -DFLASHATTENTION_DISABLE_SOFTCAP
  -DFLASHATTENTION_DISABLE_PACKGQA -DFLASHATTENTION_DISABLE_FP16 -DFLASHATTENTION_DISABLE_FP8
  -DFLASHATTENTION_DISABLE_VARLEN -DFLASHATTENTION_DISABLE_CLUSTER -DFLASHATTENTION_DISABLE_HDIM96
  -DFLASHATTENTION_DISABLE_HDIM192 -DFLASHATTENTION_DISABLE_HDIM256 -DFLASHATTENTION_DISABLE_SM8x
  -DFLASH_ATTENTION_DISABLE_HDIMDIFF64 -DFLASH_ATTENTION_DISABLE_HDIMDIFF192
  -I"$FA3_HOPPER" -I"$CUTLASS_DIR/include")

HARNESS_DEFS=(-DFA3_COMMIT="\"$FA3_COMMIT\"")
[ -n "$SUFFIX" ] && HARNESS_DEFS+=(-DFA3_IMPL_NOTE="\", ptxas $PV\"")
OBJS=()
pids=()
for h in "${HDIMS[@]}"; do
  case "$h" in
    hdim128) HARNESS_DEFS+=(-DFA3_HAVE_HDIM128) ;;
    hdim64) HARNESS_DEFS+=(-DFA3_HAVE_HDIM64) ;;
    *) echo "build.sh: unknown head dim '$h' (hdim128|hdim64)" >&2; exit 2 ;;
  esac
  src="$HERE/fa3_fwd_${h}_causal_sm90.cu"; obj="$OUT/fa3_fwd_${h}_causal_sm90$SUFFIX.o"
  OBJS+=("$obj")
  # Reuse an object newer than its source and this script (the instantiations take minutes each).
  if [ -f "$obj" ] && [ "$obj" -nt "$src" ] && [ "$obj" -nt "$0" ] && [ -z "${FORCE:-}" ]; then continue; fi
  ( t0=$(date +%s)
    "$NVCC" "${FLAGS[@]}" --threads 2 -Xptxas -v -c "$src" -o "$obj.tmp" > "$OUT/ptxas_${h}$SUFFIX.log" 2>&1 \
      || { cat "$OUT/ptxas_${h}$SUFFIX.log" >&2; exit 1; }
    mv "$obj.tmp" "$obj"; echo "$h: $(( $(date +%s) - t0 )) s" ) &
  pids+=($!)
done
"$NVCC" "${FLAGS[@]}" "${HARNESS_DEFS[@]}" -Xptxas -v -c "$HERE/fa3_bench.cu" -o "$OUT/fa3_bench$SUFFIX.o" \
  > "$OUT/ptxas_harness$SUFFIX.log" 2>&1 || { cat "$OUT/ptxas_harness$SUFFIX.log" >&2; exit 1; }
for p in "${pids[@]}"; do wait "$p"; done
# cudart linked statically (the driver API, cuTensorMapEncodeTiled for TMA, is reached through
# cudaGetDriverEntryPoint by CUTLASS). libstdc++ stays dynamic: static, it would pull arc4random (glibc 2.36).
"$NVCC" -gencode arch=compute_90a,code=sm_90a -cudart static -L"$CUDA_HOME/lib64" -L"$CUDA_HOME/lib" \
  "$OUT/fa3_bench$SUFFIX.o" "${OBJS[@]}" -o "$OUT/fa3_bench$SUFFIX"
echo "built $OUT/fa3_bench$SUFFIX (FA3 $FA3_COMMIT; head dims: ${HDIMS[*]})"
for h in "${HDIMS[@]}"; do grep -h -A2 'device_kernel' "$OUT/ptxas_${h}$SUFFIX.log"; done | grep -E 'registers|spill' || true
