#!/usr/bin/env python3
"""Where Llama 3.1 8B bf16 prefill at S = 8192 spends its time on the H200, from rates measured on
that GPU today (no new device time): the GEMM rates and memory-bound kernel bandwidths of our
backend at exactly Llama's shapes (time-model/rates-h200-measured.json, `rwm-dist calibrate`,
17:32 UTC), the flash attention rate of the default sm90 kernel (attention/ops-default-rep*,
583.7-587.2 TFLOP/s at 8K), and the measured prefill (attention/llama-8192.jsonl: 224.5 ms). The
op list and byte counts are those of src/step_time/work.rs `llama` (the optimized variant).
Run from the repository root."""
import json

R = json.load(open("bench/results/2026-12-01-h200/time-model/rates-h200-measured.json"))
s, h, f, hq, hkv, d, layers = 8192, 4096, 14336, 32, 8, 128, 32
gemm_rate = {(g["m"], g["n"], g["k"]): g["tflops"] for g in R["gemm"] if not g["fp8"]}
mem = R["memory"]  # GB/s over the bytes work.rs counts
BF16 = 2


def gemm(n, k):
    fl = 2.0 * s * n * k
    return fl, fl / (gemm_rate[(s, n, k)] * 1e12) * 1e3


rows = []  # (op, per-layer FLOP, per-layer ms)
for name, n, k in [("q proj", hq * d, h), ("k proj", hkv * d, h), ("v proj", hkv * d, h),
                   ("o proj", h, hq * d), ("gate+up proj", 2 * f, h), ("down proj", h, f)]:
    rows.append((name, *gemm(n, k)))
attn_fl = 4.0 * hq * d * s * (s + 1) / 2
attn_rate = 585.5  # TFLOP/s, mean of the two same-run repeats of the default kernel at 8K
rows.append(("flash attention", attn_fl, attn_fl / (attn_rate * 1e12) * 1e3))
x = s * h * BF16
for name, kind, byts in [("add + RMSNorm x2", "norm_add", 2 * 4 * x), ("RoPE q, k", "rope", 2 * s * (hq + hkv) * d * BF16),
                         ("SwiGLU", "swiglu", s * 3 * f * BF16)]:
    rows.append((name, 0.0, byts / (mem[kind] * 1e9) * 1e3))

total_ms = sum(r[2] for r in rows) * layers
total_fl = sum(r[1] for r in rows) * layers
measured_ms = 224.5
print(f"{'op':18s} {'ms/layer':>9s} {'x32 ms':>8s} {'share':>6s} {'TFLOP/s':>8s}")
for name, fl, ms in rows:
    rate = f"{fl / ms / 1e9:8.1f}" if fl else "       -"
    print(f"{name:18s} {ms:9.3f} {ms * layers:8.1f} {100 * ms * layers / total_ms:5.1f}% {rate}")
print(f"sum of ops: {total_ms:.1f} ms ({s / total_ms * 1e3 / 1e3:.1f}K tokens/s); measured {measured_ms} ms; "
      f"{total_fl / 1e12:.1f} TFLOP (LM head on one row: negligible)")
print(f"40K tokens/s = {s / 40e3 * 1e3:.1f} ms = {total_fl / (s / 40e3) / 1e12:.0f} TFLOP/s overall")
gemm_ms = sum(r[2] for r in rows[:6]) * layers
print(f"GEMMs alone at the measured cuBLASLt rates: {gemm_ms:.1f} ms; "
      f"room left for attention + memory-bound ops at 40K: {s / 40e3 * 1e3 - gemm_ms:.1f} ms")
