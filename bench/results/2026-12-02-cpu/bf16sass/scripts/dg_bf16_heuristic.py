#!/usr/bin/env python3
"""DeepGEMM's sm90 heuristic (csrc/jit_kernels/heuristics/sm90.hpp, commit 54e2261) for its bf16 kernel
(KernelNoSF, sm90_bf16_gemm.cuh), bf16 output, 132 SMs, rewritten in Python:
M-grouped contiguous (BLOCK_M = the 128-row alignment) for the MoE shapes, Normal for Llama's gate/up.
The cost of a candidate is ../../fp8sass/scripts/dg_heuristic.py's `cycles` with 2-byte operands."""
import pathlib, sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "fp8sass" / "scripts"))
from dg_heuristic import align, cycles  # noqa: E402

SMS, SMEM = 132, 232448
def stages(bm, bn, bk=64):
    extra = align(bm * bn * 2, 1024) + 16 * 8 * 2
    per = (bm + bn) * bk * 2
    ns = min((SMEM - extra) // per, 16)
    return ns, extra + ns * per
def choose(m, n, k, grouped, verbose=False):
    bms = [128] if grouped else [64, 128, 256]
    best = None
    for cm in (1, 2):
        for cn in (1, 2):
            if cm * cn > 2 or SMS % (cm * cn): continue
            for bm in bms:
                for bn in range(16, 257, 16):
                    if bm > 128 and bn > 128: continue
                    ns, smem = stages(bm, bn)
                    if ns < 3 or (bm * bn < 128 * 192 and ns < 4): continue
                    cyc, waves, eff = cycles(m, n, k, bm, bn, cm, cn, SMS, elem=2)
                    row = (cyc, bm, bn, cm, cn, ns, smem, waves, eff)
                    if verbose: print(row)
                    if best is None or cyc < best[0]: best = row
    return best
def ours(m, n, k, bm=128, bn=256):
    """Our s3e tile (128 x 256, no cluster) under the same cost model."""
    return cycles(m, n, k, bm, bn, 1, 1, SMS, elem=2)[0]
for name, m, n, k, g in [("v2lite gate/up", 98304, 2816, 2048, True), ("v2lite down", 98304, 2048, 1408, True),
                         ("llama 8K gate/up (Normal)", 8192, 28672, 4096, False)]:
    c = choose(m, n, k, g)
    print(f"{name:26s} m={m} n={n} k={k}: cycles={c[0]} BLOCK_M={c[1]} BLOCK_N={c[2]} cluster_m={c[3]} "
          f"cluster_n={c[4]} stages={c[5]} smem={c[6]} waves={c[7]} eff={c[8]}; ours 128x256: {ours(m, n, k)}")
