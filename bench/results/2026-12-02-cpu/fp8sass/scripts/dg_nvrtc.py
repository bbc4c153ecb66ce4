#!/usr/bin/env python3
"""Compile DeepGEMM's sm90 FP8 1D2D kernel (M-grouped contiguous) with NVRTC as DeepGEMM's
NVRTCCompiler does (csrc/jit/compiler.hpp: -std=c++20, --diag-suppress, register-usage-level=10,
-default-device, --device-int128), for the configuration its heuristic picks (dg_heuristic.py).
  LIBNVRTC=... python3 dg_nvrtc.py DG_INCLUDE CUTLASS_INCLUDE OUT.cubin N K GROUPS BM BN STAGES MCAST
Env: EXTRA_INC (colon-separated include dirs: shims, CCCL, CUDA runtime headers), PDL_SHIM (header
pre-included for cudaGridDependencySynchronize). run.sh sets both.
"""
import os, pathlib, sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[4]))  # bench/
from nvrtc_check import compile_nvrtc  # noqa: E402


def compile_dg(code, inc_dg, inc_cu, out):
    """Compiles a DeepGEMM instantiation `code` with DeepGEMM's NVRTC options into `out` (exits 1 on failure)."""
    opts = ["-std=c++20", "--diag-suppress=39,161,174,177,186,940", "--ptxas-options=--register-usage-level=10",
            "--ptxas-options=--verbose", "--ptxas-options=--warn-on-local-memory-usage", f"-I{inc_dg}", f"-I{inc_cu}",
            "--gpu-architecture=sm_90a", "-default-device", "--device-int128"]
    opts += ["--pre-include=" + os.environ["PDL_SHIM"]] if os.environ.get("PDL_SHIM") else []
    opts += [f"-I{d}" for d in os.environ.get("EXTRA_INC", "").split(":") if d]
    ok, log, cubin = compile_nvrtc(code.encode(), "kernel.cu", opts)
    print(log[-6000:])
    if not ok:
        sys.exit(1)
    open(out, "wb").write(cubin)
    print("wrote", out)


def main():
    inc_dg, inc_cu, out, N, K, G, BM, BN, ST, MC = sys.argv[1:11]
    swz_d = next(m for m in (128, 64, 32, 16) if int(BN) * 2 % m == 0)
    code = f"""
#include <deep_gemm/impls/sm90_fp8_gemm_1d2d.cuh>
using namespace deep_gemm;
static void __instantiate_kernel() {{
    auto ptr = reinterpret_cast<void*>(&sm90_fp8_gemm_1d2d_impl<
        cute::UMMA::Major::K,
        0, {N}, {K},
        {G},
        {BM}, {BN}, 128,
        128, 128, {swz_d},
        {ST},
        128, {256 if int(BM) > 64 else 128},
        {MC}, false,
        132, GemmType::MGroupedContiguous,
        cutlass::bfloat16_t,
        epilogue::transform::EpilogueIdentity
    >);
}};
"""
    compile_dg(code, inc_dg, inc_cu, out)


if __name__ == "__main__":
    main()
