# Re-implementation of DeepGEMM's sm90 heuristic (csrc/jit_kernels/heuristics/sm90.hpp + common.hpp,
# commit 54e2261) for the M-grouped contiguous FP8 1D2D kernel, bf16 output.
import math, sys
SMEM = 232448
def align(x, a): return (x + a - 1) // a * a
def cdiv(a, b): return (a + b - 1) // b
def swz(bytes_):
    for m in (128, 64, 32, 16):
        if bytes_ % m == 0: return m
def stages(m, n, k, bm, bn, bk=128):
    smem_cd = align(bm * bn * 2, 1024); bars = 16 * 8 * 2
    a, b = bm * bk, bn * bk
    sfa = align(bm * 4, 128)
    extra_sfb = align(cdiv(k, bk) * 4 * (1 if bk % bn == 0 else 2), 8)
    extra = smem_cd + bars + extra_sfb
    per = a + b + sfa
    ns = min((SMEM - extra) // per, 16)
    return ns, extra + ns * per
def cycles(m, n, k, bm, bn, cm, cn, sms=132, elem=1):
    """DeepGEMM's cost of one candidate (get_best_config): operands of `elem` bytes (1 FP8, 2 bf16), bf16
    output; (cycles, waves, efficiency). Also dg_bf16_heuristic.py's."""
    nb = cdiv(m, bm) * cdiv(n, bn)
    waves = cdiv(nb, sms)
    l2bw = int(min(64. * sms, 8e6 / 1.3e3)); l1bw = 128 * sms
    l2ab = k * (bm // cn + bn // cm) * elem
    l1ab = k * (bm + bn) * elem
    l1tc = k * (max(64, bm) + bn) * elem + bm * bn * 2
    cd = bm * bn * 2
    l2c = (l2ab + cd) * nb // l2bw
    l1c = (l1ab + l1tc + cd) * nb // l1bw
    eff = nb / (waves * sms)
    cyc = int(max(l1c, l2c) / eff)
    if cn * cm > 1 and waves <= 1: cyc = 2**63
    return cyc, waves, round(eff, 4)
def choose(m, n, k, sms=132, verbose=False):
    bk = 128
    cands = []
    bns = list(range(16, 193, 16))
    for cm in (1, 2):
        for cn in (1, 2):
            if cm * cn > 2 or sms % (cm * cn): continue
            for bm in (128,):
                for bn in bns:
                    if bn > bk and (bn % (bn - bk) != 0 and bk % (bn - bk) != 0): continue
                    if swz(bk) % 64 or swz(bk) % 64: continue
                    ns, smem = stages(m, n, k, bm, bn)
                    if ns < 3 or (bm * bn < 128 * 192 and ns < 4): continue
                    cands.append((bm, bn, cm, cn, ns, smem))
    best = None
    for bm, bn, cm, cn, ns, smem in cands:
        cyc, waves, eff = cycles(m, n, k, bm, bn, cm, cn, sms)
        row = (cyc, bm, bn, cm, cn, ns, smem, waves, eff)
        if verbose: print(row)
        if best is None or cyc < best[0]: best = row
    return best
if __name__ == "__main__":
    for name, m, n, k in [("v2lite gate/up", 98304, 2816, 2048), ("v2lite down", 98304, 2048, 1408),
                          ("v3 gate/up", 131072, 4096, 7168), ("v3 down", 131072, 7168, 2048)]:
        b = choose(m, n, k, verbose="-v" in sys.argv)
        print(f"{name:16s} m={m} n={n} k={k}: cycles={b[0]} BLOCK_M={b[1]} BLOCK_N={b[2]} cluster_m={b[3]} cluster_n={b[4]} stages={b[5]} smem={b[6]} waves={b[7]} eff={b[8]}")
