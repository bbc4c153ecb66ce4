#!/usr/bin/env python3
"""DeepGEMM's sm90 heuristic (csrc/jit_kernels/heuristics/sm90.hpp, commit 54e2261) for its bf16 kernel
(KernelNoSF, sm90_bf16_gemm.cuh), bf16 output, 132 SMs, rewritten in Python:
M-grouped contiguous (BLOCK_M = the 128-row alignment) for the MoE shapes, Normal for Llama's gate/up."""
SMS, SMEM = 132, 232448
def align(x, a): return (x + a - 1) // a * a
def cdiv(a, b): return (a + b - 1) // b
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
                    nb = cdiv(m, bm) * cdiv(n, bn)
                    waves = cdiv(nb, SMS)
                    l2bw = int(min(64. * SMS, 8e6 / 1.3e3)); l1bw = 128 * SMS
                    l2ab = k * (bm // cn + bn // cm) * 2
                    l1ab = k * (bm + bn) * 2
                    l1tc = k * (max(64, bm) + bn) * 2 + bm * bn * 2
                    cd = bm * bn * 2
                    l2c = (l2ab + cd) * nb // l2bw
                    l1c = (l1ab + l1tc + cd) * nb // l1bw
                    eff = nb / (waves * SMS)
                    cyc = int(max(l1c, l2c) / eff)
                    if cm * cn > 1 and waves <= 1: cyc = 2**63
                    row = (cyc, bm, bn, cm, cn, ns, smem, waves, round(eff, 4))
                    if verbose: print(row)
                    if best is None or cyc < best[0]: best = row
    return best
def ours(m, n, k, bm=128, bn=256):
    """Our s3e tile (128 x 256, no cluster) under the same cost model."""
    nb = cdiv(m, bm) * cdiv(n, bn); waves = cdiv(nb, SMS)
    l2bw = int(min(64. * SMS, 8e6 / 1.3e3)); l1bw = 128 * SMS
    l2c = (k * (bm + bn) * 2 + bm * bn * 2) * nb // l2bw
    l1c = (k * (bm + bn) * 2 + k * (bm + bn) * 2 + 2 * bm * bn * 2) * nb // l1bw
    return int(max(l1c, l2c) / (nb / (waves * SMS)))
for name, m, n, k, g in [("v2lite gate/up", 98304, 2816, 2048, True), ("v2lite down", 98304, 2048, 1408, True),
                         ("llama 8K gate/up (Normal)", 8192, 28672, 4096, False)]:
    c = choose(m, n, k, g)
    print(f"{name:26s} m={m} n={n} k={k}: cycles={c[0]} BLOCK_M={c[1]} BLOCK_N={c[2]} cluster_m={c[3]} "
          f"cluster_n={c[4]} stages={c[5]} smem={c[6]} waves={c[7]} eff={c[8]}; ours 128x256: {ours(m, n, k)}")
