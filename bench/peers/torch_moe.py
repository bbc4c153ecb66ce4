"""Peer for the `moe` target: one DeepSeek-V2-Lite MoE layer in PyTorch, same work as rwm-dist's:
router GEMM (f32 logits), softmax top-k, permutation by expert, routed experts (SwiGLU), weighted
combine, shared experts. Two versions: a loop over experts and torch._grouped_mm.

  python3 torch_moe.py [--tokens 16384] [--experts 64] [--top-k 6] [--hidden 2048] [--ffn 1408] [--shared 2]
"""
import argparse
import json

import torch
import torch.nn.functional as F

p = argparse.ArgumentParser()
p.add_argument("--tokens", type=int, default=16384)
p.add_argument("--experts", type=int, default=64)
p.add_argument("--top-k", type=int, default=6)
p.add_argument("--hidden", type=int, default=2048)
p.add_argument("--ffn", type=int, default=1408)
p.add_argument("--shared", type=int, default=2)
p.add_argument("--iters", type=int, default=20)
a = p.parse_args()
T, E, K, H, Fd = a.tokens, a.experts, a.top_k, a.hidden, a.ffn
dev, bf = "cuda", torch.bfloat16
torch.manual_seed(0)
x = torch.randn(T, H, device=dev, dtype=bf)
w_router = torch.randn(E, H, device=dev, dtype=bf) / H**0.5
w_gu = torch.randn(E, 2 * Fd, H, device=dev, dtype=bf) / H**0.5
w_down = torch.randn(E, H, Fd, device=dev, dtype=bf) / Fd**0.5
Fs = Fd * a.shared
s_gu = torch.randn(2 * Fs, H, device=dev, dtype=bf) / H**0.5
s_down = torch.randn(H, Fs, device=dev, dtype=bf) / Fs**0.5


def swiglu(h):
    g, u = h.chunk(2, dim=-1)
    return F.silu(g) * u


def route(x):
    probs = torch.softmax((x @ w_router.t()).float(), dim=-1)
    w, ids = probs.topk(K, dim=-1)
    flat = ids.flatten()
    order = flat.argsort(stable=True)
    counts = torch.bincount(flat, minlength=E)
    return w, order, counts


def combine(x, y_sorted, w, order):
    y = torch.empty_like(y_sorted)
    y[order] = y_sorted
    routed = (y.view(T, K, H).float() * w.unsqueeze(-1)).sum(1).to(bf)
    return routed + swiglu(x @ s_gu.t()) @ s_down.t()


def moe_loop(x):
    w, order, counts = route(x)
    xs = x[order // K]
    outs, start = [], 0
    for e, c in enumerate(counts.tolist()):
        if c:
            outs.append(swiglu(xs[start:start + c] @ w_gu[e].t()) @ w_down[e].t())
        start += c
    return combine(x, torch.cat(outs), w, order)


def moe_grouped(x):
    w, order, counts = route(x)
    xs = x[order // K]
    offs = counts.cumsum(0).to(torch.int32)
    h = torch._grouped_mm(xs, w_gu.transpose(-2, -1), offs=offs)
    y = torch._grouped_mm(swiglu(h), w_down.transpose(-2, -1), offs=offs)
    return combine(x, y, w, order)


def bench(fn):
    for _ in range(3):
        fn(x)
    torch.cuda.synchronize()
    ts = []
    for _ in range(a.iters):
        e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        e0.record()
        fn(x)
        e1.record()
        torch.cuda.synchronize()
        ts.append(e0.elapsed_time(e1))
    ts.sort()
    return ts[len(ts) // 2]


ref = moe_loop(x).float()
got = moe_grouped(x).float()
rel = ((got - ref).norm() / ref.norm()).item()
for name, fn in [("torch-loop", moe_loop), ("torch-grouped_mm", moe_grouped)]:
    ms = bench(fn)
    print(json.dumps({"peer": name, "target": "moe", "tokens": T, "experts": E, "top_k": K, "hidden": H, "ffn": Fd,
                      "median_ms": ms, "tokens_per_s": T / (ms / 1e3), "grouped_vs_loop_rel_l2": rel}), flush=True)
