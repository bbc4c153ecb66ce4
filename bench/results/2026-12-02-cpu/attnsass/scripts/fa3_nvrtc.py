#!/usr/bin/env python3
"""Compile FlashAttention-3's Hopper forward kernel with NVRTC 13.0 for sm_90a, for the case
run_mha_fwd_ picks at hdim 128, bf16, causal (tile_size_fwd_sm90: 128 x 128, MmaPV_is_RS, IntraWGOverlap;
2 stages; ClusterM 1 since causal; no split/paged/softcap/varlen/packgqa/appendkv/qv; causal ->
DynamicPersistentTileScheduler). The kernel is cutlass::device_kernel<flash::enable_sm90<FlashAttnFwdSm90<...>>>
exactly as run_flash_fwd builds it (flash_fwd_launch_template.h), without that file's host-side launch code.
  LIBNVRTC=... python3 fa3_nvrtc.py FA3_HOPPER_DIR CUTLASS_INCLUDE OUT.cubin
Env: EXTRA_INC (colon-separated: shims, CCCL, CUDA runtime headers), PRE_INC (header pre-included).
FA3 builds with nvcc -O3 --use_fast_math (setup.py); NVRTC gets --use_fast_math too.
"""
import os, pathlib, sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[4]))  # bench/
from nvrtc_check import compile_nvrtc  # noqa: E402

hop, inc_cu, out = sys.argv[1:4]
code = r"""
#include "cute/tensor.hpp"
#include "cutlass/cutlass.h"
#include "cutlass/device_kernel.h"
#include "tile_size.h"
#include "tile_scheduler.hpp"
#include "flash_fwd_kernel_sm90.h"
#include "mainloop_fwd_sm90_tma_gmma_ws.hpp"
#include "epilogue_fwd.hpp"
using namespace cute;
constexpr int kHeadDim = 128, kHeadDimV = 128, ClusterM = 1;
using Element = cutlass::bfloat16_t; using ElementOut = cutlass::bfloat16_t;
constexpr bool Is_causal = true, Is_local = false, Has_softcap = false, Varlen = false, PagedKVNonTMA = false,
    AppendKV = false, HasQv = false, PackGQA = false, Split = false, V_colmajor = false;
constexpr auto cfg = tile_size_fwd_sm90(kHeadDim, kHeadDimV, Is_causal, Is_local, 2, V_colmajor, PagedKVNonTMA, Has_softcap);
constexpr int kBlockM = std::get<0>(cfg), kBlockN = std::get<1>(cfg);
constexpr bool MmaPV_is_RS = std::get<2>(cfg), IntraWGOverlap = std::get<3>(cfg);
static_assert(kBlockM == 128 && kBlockN == 128 && MmaPV_is_RS && IntraWGOverlap, "FA3 config for hdim128 causal");
constexpr int kStages = 2;
using TileShape_MNK = cute::Shape<Int<kBlockM>, Int<kBlockN>, Int<kHeadDim>>;
using TileShape_MNK_PV = cute::Shape<Int<kBlockM>, Int<kHeadDimV>, Int<kBlockN>>;
using ClusterShape = cute::Shape<Int<ClusterM>, _1, _1>;
using CollectiveMainloop = flash::CollectiveMainloopFwdSm90<kStages, ClusterShape, TileShape_MNK, kHeadDimV, Element, float, cutlass::arch::Sm90, Is_causal, Is_local, Has_softcap, Varlen, PagedKVNonTMA, AppendKV, HasQv, MmaPV_is_RS, IntraWGOverlap, PackGQA, Split, V_colmajor>;
using CollectiveEpilogue = flash::CollectiveEpilogueFwd<TileShape_MNK_PV, ClusterShape, ElementOut, cutlass::arch::Sm90, CollectiveMainloop::NumMmaThreads, Varlen, PackGQA, Split, false>;
using Scheduler = flash::DynamicPersistentTileScheduler<CollectiveMainloop::NumMmaThreads, CollectiveMainloop::NumProducerThreads, Split, PackGQA, true>;
using AttnKernel = flash::enable_sm90<flash::FlashAttnFwdSm90<CollectiveMainloop, CollectiveEpilogue, Scheduler>>;
static void __instantiate_kernel() {
    auto ptr = reinterpret_cast<void*>(&cutlass::device_kernel<AttnKernel>);
    (void)ptr;
}
"""
opts = ["-std=c++17", "--diag-suppress=39,161,174,177,186,940,20012,20013,20014,20015", "--use_fast_math",
        "--ptxas-options=--verbose", "--ptxas-options=--warn-on-local-memory-usage", f"-I{hop}", f"-I{inc_cu}",
        "--gpu-architecture=sm_90a", "-default-device", "-DNDEBUG", "-DCUTLASS_ENABLE_GDC_FOR_SM90",
        "-DFLASHATTENTION_DISABLE_BACKWARD", "-DFLASHATTENTION_DISABLE_DROPOUT", "-DFLASHATTENTION_DISABLE_SM8x"]
opts += ["--pre-include=" + os.environ["PRE_INC"]] if os.environ.get("PRE_INC") else []
opts += [f"-I{d}" for d in os.environ.get("EXTRA_INC", "").split(":") if d]
ok, log, cubin = compile_nvrtc(code.encode(), "fa3.cu", opts)
print(log[:6000])
if not ok:
    sys.exit(1)
open(out, "wb").write(cubin)
print("wrote", out)
