#!/usr/bin/env python3
"""PyTorch's numbers for the ops that examples/ops_bench.rs times, same shapes,
same method (CUDA events, median of N after warm-up, random data, inputs rotated
among sets larger than L2). One JSON object per line on stdout (or --json FILE).

  python3 bench/peers/torch_ops.py [--iters 20] [--offsets offsets.json] [--json out.jsonl]
"""
import argparse
import json
import sys
import time

import torch
import torch.nn.functional as F


def median_ms(fn, iters):
    """Same policy as ops_bench: warm-up of at least 3 calls and 100 ms, then at least
    `iters` timed calls and 300 ms of them (so both sides run at sustained clocks)."""
    t0, i = time.perf_counter(), 0
    while i < 3 or time.perf_counter() - t0 < 0.1:
        fn(i)
        torch.cuda.synchronize()
        i += 1
    times = []
    while len(times) < iters or (sum(times) < 300.0 and len(times) < 1000):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn(i)
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b))
        i += 1
    times.sort()
    return times[len(times) // 2]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--offsets", help="expert offsets per MoE shape (JSON {key: [E+1 ints]}) from ops_bench --offsets")
    ap.add_argument("--json")
    ap.add_argument("--only", default="gemm,fp8,attn,moe")
    ap.add_argument("--variants", action="store_true", help="ignored (ops_bench's kernel sweep)")
    ap.add_argument("--kernels", help="ignored (ops_bench's kernel sweep)")
    ap.add_argument("--attn-seq", help="attention lengths, e.g. 32768,5000: d = 128 at each, d = 64 at those of the default list (as ops_bench)")
    args = ap.parse_args()
    only = set(args.only.split(","))
    out = open(args.json, "w") if args.json else sys.stdout
    dev = torch.device("cuda")

    def rand(*shape, std=1.0, dtype=torch.bfloat16):
        # uniform with the given standard deviation, like the Rust side (never zeros)
        return ((torch.rand(*shape, device=dev) * 2 - 1) * (std * 3**0.5)).to(dtype)

    def record(impl, op, shape, flops, ms):
        tf = flops / ms / 1e9
        print(f"{impl:<22} {op:<24} {shape:<40} {ms:10.3f} ms {tf:9.1f} TFLOP/s", file=sys.stderr)
        out.write(json.dumps({"impl": impl, "op": op, "shape": shape, "ms": ms, "tflops": tf}) + "\n")
        out.flush()

    print(f"torch {torch.__version__} on {torch.cuda.get_device_name()}", file=sys.stderr)
    n = 8192
    if "gemm" in only or "fp8" in only:
        xs = [rand(n, n) for _ in range(2)]
        ws = [rand(n, n, std=0.02) for _ in range(2)]
        ms = median_ms(lambda i: torch.matmul(xs[i % 2], ws[i % 2].t()), args.iters)
        record("torch.matmul", "gemm_bf16", "8192x8192x8192 (x w^T, bf16 out)", 2 * n**3, ms)
        e4 = torch.float8_e4m3fn

        def q(t):
            s = t.abs().amax().float() / 448.0
            return (t.float() / s).to(e4), s

        xq = [q(x) for x in xs]
        wq = [q(w) for w in ws]
        del xs, ws
        ms = median_ms(
            lambda i: torch._scaled_mm(
                xq[i % 2][0], wq[i % 2][0].t(), scale_a=xq[i % 2][1], scale_b=wq[i % 2][1], out_dtype=torch.bfloat16
            ),
            args.iters,
        )
        record("torch._scaled_mm", "gemm_fp8", "8192x8192x8192 (e4m3 per-tensor, bf16 out)", 2 * n**3, ms)
        del xq, wq

    if "attn" in only:
        from torch.nn.attention import SDPBackend, sdpa_kernel

        hq, hkv = 32, 8
        default = [(128, 8192), (128, 32768), (128, 5000), (128, 12345), (64, 8192), (64, 32768)]
        shapes = default
        if args.attn_seq:
            seqs = [int(x) for x in args.attn_seq.split(",")]
            shapes = [(128, s) for s in seqs] + [(d, s) for d, s in default if d == 64 and s in seqs]
        for d, s in shapes:
            flops = 4 * s * s * hq * d / 2
            sets = 2 if s <= 8192 else 1
            qkv = [(rand(1, hq, s, d), rand(1, hkv, s, d), rand(1, hkv, s, d)) for _ in range(sets)]
            shape = f"S={s} hq={hq} hkv={hkv} d={d} causal"
            for name, be in (("sdpa_flash", SDPBackend.FLASH_ATTENTION), ("sdpa_cudnn", SDPBackend.CUDNN_ATTENTION)):

                def run(i, be=be):
                    qq, kk, vv = qkv[i % sets]
                    with sdpa_kernel(be):
                        try:
                            return F.scaled_dot_product_attention(qq, kk, vv, is_causal=True, enable_gqa=True)
                        except RuntimeError:
                            # A backend without native GQA: expand K/V to the query heads.
                            g = hq // hkv
                            return F.scaled_dot_product_attention(
                                qq, kk.repeat_interleave(g, 1), vv.repeat_interleave(g, 1), is_causal=True
                            )

                try:
                    ms = median_ms(run, args.iters)
                    record(f"torch {name}", "attn_flash", shape, flops, ms)
                except Exception as e:  # a backend missing on this build must not hide the others
                    print(f"{name} at S={s}: {e}", file=sys.stderr)
            del qkv

    # The expert shapes of examples/ops_bench.rs (MOE_SHAPES): key, tokens, experts, top-k, hidden, FFN, MLP too.
    shapes = [("v2lite", 16384, 64, 6, 2048, 1408, True), ("v3", 16384, 256, 8, 7168, 2048, True)]
    saved = json.load(open(args.offsets)) if args.offsets else {}
    if isinstance(saved, list):  # an older ops_bench wrote the V2-Lite offsets alone
        saved = {"v2lite": saved}
    for key, t, e, k, h, f, with_mlp in shapes:
        if "moe" not in only and f"moe_{key}" not in only:
            continue
        moe(args, dev, rand, record, key, t, e, k, h, f, with_mlp, saved.get(key))
        torch.cuda.empty_cache()


def moe(args, dev, rand, record, key, t, e, k, h, f, with_mlp, offsets):
    rows = t * k
    if offsets is None:
        offsets = [round(i * rows / e) for i in range(e + 1)]
    ends = torch.tensor(offsets[1:], dtype=torch.int32, device=dev)
    xs = [rand(rows, h) for _ in range(2)]
    w1 = rand(e, 2 * f, h, std=0.02)
    w2 = rand(e, h, f, std=0.02)
    acts = [rand(rows, f) for _ in range(2)]
    f1, f2 = 2 * rows * 2 * f * h, 2 * rows * h * f

    def mlp(x):
        gu = torch._grouped_mm(x, w1.transpose(-2, -1), offs=ends)
        a = F.silu(gu[:, :f]) * gu[:, f:]
        return torch._grouped_mm(a, w2.transpose(-2, -1), offs=ends)

    ms = median_ms(lambda i: torch._grouped_mm(xs[i % 2], w1.transpose(-2, -1), offs=ends), args.iters)
    record("torch._grouped_mm", "grouped_gemm_gate_up", f"{rows}x{2 * f}x{h}, {e} experts", f1, ms)
    ms = median_ms(lambda i: torch._grouped_mm(acts[i % 2], w2.transpose(-2, -1), offs=ends), args.iters)
    record("torch._grouped_mm", "grouped_gemm_down", f"{rows}x{h}x{f}, {e} experts", f2, ms)
    if not with_mlp:
        return
    ms = median_ms(lambda i: mlp(xs[i % 2]), args.iters)
    record("torch._grouped_mm", "moe_expert_mlp", f"{rows} rows, gate/up + swiglu + down", f1 + f2, ms)

    def loop(x):
        y = torch.empty(rows, h, device=dev, dtype=torch.bfloat16)
        for j in range(e):
            a, b = offsets[j], offsets[j + 1]
            if a == b:
                continue
            gu = x[a:b] @ w1[j].t()
            y[a:b] = (F.silu(gu[:, :f]) * gu[:, f:]) @ w2[j].t()
        return y

    ms = median_ms(lambda i: loop(xs[i % 2]), args.iters)
    record("torch loop", "moe_expert_mlp", f"{rows} rows, gate/up + swiglu + down", f1 + f2, ms)
    del loop, mlp
    moe_fp8(args, rand, record, key, rows, e, h, f, ends, xs, acts, w1, w2)


def moe_fp8(args, rand, record, key, rows, e, h, f, ends, xs, acts, w1, w2):
    """FP8 peers of ops_bench's grouped_gemm_fp8 rows, same operands' shapes and FLOPs: torch's
    block-scaled grouped GEMM (F.scaled_grouped_mm, 1x128 / 128x128) where this build runs it on
    this GPU, else torch._scaled_grouped_mm with row-wise scales (coarser scaling, same GEMMs), and
    torch._scaled_mm over one dense GEMM of the same size as a ceiling. Each labelled by its impl."""
    e4 = torch.float8_e4m3fn
    f1, f2 = 2 * rows * 2 * f * h, 2 * rows * h * f
    cases = [
        ("grouped_gemm_fp8_gate_up", f"{rows}x{2 * f}x{h}, {e} experts", xs, w1, f1),
        ("grouped_gemm_fp8_down", f"{rows}x{h}x{f}, {e} experts", acts, w2, f2),
    ]
    for op, shape, ins, w, flops in cases:
        g, n, k = w.shape

        def rowwise(t):  # one scale per row of the last dim's owner
            s = t.float().abs().amax(-1).clamp(min=1e-12) / 448.0
            return (t.float() / s.unsqueeze(-1)).to(e4), s

        xq = [rowwise(x) for x in ins]
        wq, ws = rowwise(w)  # [g, n, k], scales [g, n]
        done = False
        try:  # block scales (DeepSeek-V3): x [m, k/128], w [g, n/128, k/128]
            from torch.nn.functional import ScalingType, scaled_grouped_mm

            def block(t, rb):
                lead = t.shape[:-2]
                m = t.shape[-2]
                v = t.float().reshape(*lead, m // rb, rb, k // 128, 128)
                s = v.abs().amax(dim=(-3, -1)).clamp(min=1e-12) / 448.0  # [.., m/rb, k/128]
                q = (v / s.unsqueeze(-2).unsqueeze(-1)).reshape(t.shape).to(e4)
                return q, s

            xb = [block(x, 1) for x in ins]
            wb, wbs = block(w, 128)
            run = lambda i: scaled_grouped_mm(
                xb[i % 2][0], wb.transpose(-2, -1), xb[i % 2][1].t().contiguous().t(), ScalingType.BlockWise1x128,
                wbs, ScalingType.BlockWise128x128, offs=ends, output_dtype=torch.bfloat16)
            run(0)
            torch.cuda.synchronize()
            record("torch scaled_grouped_mm (1x128, 128x128 blocks)", op, shape, flops, median_ms(run, args.iters))
            done = True
            del xb, wb, wbs
        except Exception as ex:
            print(f"{key} {op}: block-scaled F.scaled_grouped_mm unavailable here: {str(ex).splitlines()[0][:300]}", file=sys.stderr)
        if not done:
            try:
                run = lambda i: torch._scaled_grouped_mm(
                    xq[i % 2][0], wq.transpose(-2, -1), xq[i % 2][1], ws, offs=ends, out_dtype=torch.bfloat16)
                run(0)
                torch.cuda.synchronize()
                record("torch._scaled_grouped_mm (row-wise scales)", op, shape, flops, median_ms(run, args.iters))
            except Exception as ex:
                print(f"{key} {op}: torch._scaled_grouped_mm failed: {str(ex).splitlines()[0][:300]}", file=sys.stderr)
        # Ceiling: one dense [rows, k] x [k, n] FP8 GEMM (per-tensor scales) of the same FLOPs.
        one = torch.ones((), device=xq[0][0].device)
        wd = rand(n, k, std=0.02).to(e4)
        run = lambda i: torch._scaled_mm(xq[i % 2][0], wd.t(), scale_a=one, scale_b=one, out_dtype=torch.bfloat16)
        record("torch._scaled_mm dense (ceiling)", op, shape, flops, median_ms(run, args.iters))
        del xq, wq, ws, wd
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
