#!/usr/bin/env python3
"""Compile DeepGEMM's sm90 bf16 kernel (sm90_bf16_gemm.cuh, M-grouped contiguous, bf16 out) with NVRTC as
DeepGEMM's NVRTCCompiler does (-std=c++20, register-usage-level=10, -default-device, --device-int128), for
the configuration its heuristic picks (dg_bf16_heuristic.py); the template arguments as
csrc/jit_kernels/impls/sm90_bf16_gemm.hpp generates them (compiled dims n, k).
  LIBNVRTC=... python3 dg_bf16_nvrtc.py DG_INCLUDE CUTLASS_INCLUDE OUT.cubin N K GROUPS BM BN STAGES MCAST
Env: EXTRA_INC, PDL_SHIM (as ../fp8sass/scripts/dg_nvrtc.py)."""
import ctypes, os, sys
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
lib = ctypes.CDLL(os.environ["LIBNVRTC"])
prog = ctypes.c_void_p()
assert lib.nvrtcCreateProgram(ctypes.byref(prog), code.encode(), b"kernel.cu", 0, None, None) == 0
opts = ["-std=c++20", "--diag-suppress=39,161,174,177,186,940", "--ptxas-options=--register-usage-level=10",
        "--ptxas-options=--verbose", "--ptxas-options=--warn-on-local-memory-usage", f"-I{inc_dg}", f"-I{inc_cu}",
        "--gpu-architecture=sm_90a", "-default-device", "--device-int128"]
opts += ["--pre-include=" + os.environ["PDL_SHIM"]] if os.environ.get("PDL_SHIM") else []
opts += [f"-I{d}" for d in os.environ.get("EXTRA_INC", "").split(":") if d]
c = (ctypes.c_char_p * len(opts))(*[o.encode() for o in opts])
r = lib.nvrtcCompileProgram(prog, len(opts), c)
size = ctypes.c_size_t()
lib.nvrtcGetProgramLogSize(prog, ctypes.byref(size))
log = ctypes.create_string_buffer(size.value)
lib.nvrtcGetProgramLog(prog, log)
print(log.value.decode(errors="replace")[-6000:])
if r != 0:
    sys.exit(1)
lib.nvrtcGetCUBINSize(prog, ctypes.byref(size))
buf = ctypes.create_string_buffer(size.value)
lib.nvrtcGetCUBIN(prog, buf)
open(out, "wb").write(buf.raw)
print("wrote", out)
