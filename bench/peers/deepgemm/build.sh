#!/usr/bin/env bash
# Builds deepgemm_bench (DeepGEMM's SM90 grouped GEMM kernels, ahead of time) into $OUT_DIR.
#
#   bench/peers/deepgemm/build.sh            # build (headers from the mirrors, else from the tarball)
#   bench/peers/deepgemm/build.sh --tarball  # also write $OUT_DIR/deepgemm-headers.tar.gz (for a rebuild
#                                            # where there are no mirrors, e.g. on the device)
#
# Environment:
#   CUDA_HOME      toolkit with bin/nvcc (default /usr/local/cuda; here e.g. an unpacked set of the
#                  CUDA 13.0 wheels: nvidia-cuda-nvcc, -crt, -runtime, -cccl, nvidia-nvvm, at .../nvidia/cu13)
#   DG_HEADERS     a headers tarball made by --tarball (default $OUT_DIR/deepgemm-headers.tar.gz when
#                  the mirrors are absent)
#   DG_MIRRORS     folder of the bare mirrors (default /work/.mirror)
#   OUT_DIR        where the binary goes (default <repo>/.dev/peer)
#   PTXAS_VERBOSE  1: print ptxas register / spill reports (-Xptxas -v)
#   DG_SWEEP       1: also compile in the sweep configs (instances_sweep.inc, ~170 kernels, for
#                  --all-configs) and name the binary deepgemm_bench_sweep
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../../.." && pwd)"
CUDA_HOME="${CUDA_HOME:-/usr/local/cuda}"
OUT_DIR="${OUT_DIR:-$repo/.dev/peer}"
DG_MIRRORS="${DG_MIRRORS:-/work/.mirror}"
make_tarball=0
[[ "${1:-}" == "--tarball" ]] && make_tarball=1

# The DeepGEMM commit, and the CUTLASS commit DeepGEMM pins as its third-party/cutlass submodule.
DG_GIT="$DG_MIRRORS/deepseek-ai+DeepGEMM/repo"
CUTLASS_GIT="$DG_MIRRORS/NVIDIA+cutlass/repo"
DG_COMMIT="${DG_COMMIT:-54e22612409371d6364144b69086735beb54e98b}"

mkdir -p "$OUT_DIR"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
inc="$work/include"
mkdir -p "$inc"

if [[ -z "${DG_HEADERS:-}" && -d "$DG_GIT" && -d "$CUTLASS_GIT" ]]; then
    cutlass_commit="$(git --git-dir="$DG_GIT" ls-tree "$DG_COMMIT" third-party/cutlass | awk '{print $3}')"
    if ! git --git-dir="$CUTLASS_GIT" cat-file -e "$cutlass_commit^{commit}" 2>/dev/null; then
        echo "build.sh: the mirror lacks CUTLASS $cutlass_commit (DeepGEMM's pin); using its HEAD" >&2
        cutlass_commit="$(git --git-dir="$CUTLASS_GIT" rev-parse HEAD)"
    fi
    git --git-dir="$DG_GIT" archive "$DG_COMMIT" deep_gemm/include | tar -x -C "$work"
    mv "$work/deep_gemm/include/deep_gemm" "$inc/deep_gemm"
    # (the CUTLASS mirror is partial: `git archive` may complain about blobs outside include/)
    git --git-dir="$CUTLASS_GIT" archive "$cutlass_commit" include/cute include/cutlass 2>/dev/null | tar -x -C "$work"
    mv "$work/include/cute" "$work/include/cutlass" "$inc/" 2>/dev/null || true
    [[ -f "$inc/cute/tensor.hpp" && -f "$inc/cutlass/arch/barrier.h" ]] || { echo "build.sh: CUTLASS headers incomplete" >&2; exit 1; }
    printf 'DeepGEMM %s\nCUTLASS %s\n' "$DG_COMMIT" "$cutlass_commit" > "$inc/VERSIONS"
else
    tarball="${DG_HEADERS:-$OUT_DIR/deepgemm-headers.tar.gz}"
    [[ -f "$tarball" ]] || { echo "build.sh: no mirrors at $DG_MIRRORS and no headers tarball at $tarball" >&2; exit 1; }
    tar -xzf "$tarball" -C "$inc"
fi
echo "build.sh: headers: $(tr '\n' ' ' < "$inc/VERSIONS")" >&2

if [[ $make_tarball == 1 ]]; then
    tar -czf "$OUT_DIR/deepgemm-headers.tar.gz" -C "$inc" VERSIONS deep_gemm cute cutlass
    echo "build.sh: wrote $OUT_DIR/deepgemm-headers.tar.gz ($(du -h "$OUT_DIR/deepgemm-headers.tar.gz" | cut -f1))" >&2
fi

NVCC="$CUDA_HOME/bin/nvcc"
[[ -x "$NVCC" ]] || { echo "build.sh: no nvcc at $NVCC (set CUDA_HOME)" >&2; exit 1; }
libdirs=()
for d in "$CUDA_HOME/lib64" "$CUDA_HOME/lib"; do [[ -d "$d" ]] && libdirs+=("-L$d"); done
verbose=()
[[ "${PTXAS_VERBOSE:-0}" == 1 ]] && verbose=(-Xptxas -v)
sweep=()
bin=deepgemm_bench
[[ "${DG_SWEEP:-0}" == 1 ]] && sweep=(-DDG_SWEEP) && bin=deepgemm_bench_sweep

# The flags DeepGEMM's JIT compiles with (csrc/jit/compiler.hpp, NVCC path), plus the host program.
# (nvcc 13 with -arch=sm_90a also makes compute_90 PTX, which cannot hold wgmma: ask for sm_90a SASS only.)
set -x
"$NVCC" -std=c++20 -gencode=arch=compute_90a,code=sm_90a -O3 \
    --diag-suppress=39,161,174,177,186,940 --ptxas-options=--register-usage-level=10 \
    --expt-relaxed-constexpr --expt-extended-lambda \
    -Xcompiler=-Wno-deprecated-declarations,-Wno-abi \
    "${verbose[@]}" "${sweep[@]}" \
    -I"$inc" -I"$here" \
    "$here/deepgemm_bench.cu" -o "$OUT_DIR/$bin" \
    "${libdirs[@]}" --cudart static
