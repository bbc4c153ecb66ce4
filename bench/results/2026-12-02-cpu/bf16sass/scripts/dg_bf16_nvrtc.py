#!/usr/bin/env python3
"""Compile DeepGEMM's sm90 bf16 kernel (sm90_bf16_gemm.cuh, M-grouped contiguous, bf16 out) with NVRTC as
DeepGEMM's NVRTCCompiler does (-std=c++20, register-usage-level=10, -default-device, --device-int128), for
the configuration its heuristic picks (dg_bf16_heuristic.py); the template arguments as
csrc/jit_kernels/impls/sm90_bf16_gemm.hpp generates them (compiled dims n, k).
  LIBNVRTC=... python3 dg_bf16_nvrtc.py DG_INCLUDE CUTLASS_INCLUDE OUT.cubin N K GROUPS BM BN STAGES MCAST
Env: EXTRA_INC, PDL_SHIM (as ../fp8sass/scripts/dg_nvrtc.py)."""
import pathlib, sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "fp8sass" / "scripts"))
from dg_nvrtc import compile_dg  # noqa: E402

inc_dg, inc_cu, out, N, K, G, BM, BN, ST, MC = sys.argv[1:11]
swz_d = next(m for m in (128, 64, 32, 16) if int(BN) * 2 % m == 0)
code = f"""
#include <deep_gemm/impls/sm90_bf16_gemm.cuh>
using namespace deep_gemm;
static void __instantiate_kernel() {{
    auto ptr = reinterpret_cast<void*>(&sm90_bf16_gemm_impl<
        cute::UMMA::Major::K, cute::UMMA::Major::K,
        0, {N}, {K},
        {G},
        {BM}, {BN}, 64,
        128, 128, {swz_d},
        {ST},
        128, {256 if int(BM) > 64 else 128},
        {MC}, false,
        132,
        GemmType::MGroupedContiguous, false,
        cutlass::bfloat16_t
    >);
}};
"""
compile_dg(code, inc_dg, inc_cu, out)
