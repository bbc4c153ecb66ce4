"""Peer for the `llama` target: Hugging Face transformers LlamaForCausalLM prefill, same shapes.

Random bf16 weights (Llama 3.1 8B architecture), eager PyTorch with SDPA attention, the LM head on the
last position only (logits_to_keep=1, as rwm-dist does). Prints one JSON line per sequence length.

  python3 hf_llama.py [--seq 8192 32768] [--iters 5] [--layers 32]
"""
import argparse
import json

import torch
from transformers import LlamaConfig, LlamaForCausalLM

p = argparse.ArgumentParser()
p.add_argument("--seq", type=int, nargs="+", default=[8192])
p.add_argument("--iters", type=int, default=5)
p.add_argument("--layers", type=int, default=32)
p.add_argument("--attn", default="sdpa")
a = p.parse_args()

cfg = LlamaConfig(vocab_size=128256, hidden_size=4096, intermediate_size=14336, num_hidden_layers=a.layers,
                  num_attention_heads=32, num_key_value_heads=8, head_dim=128, max_position_embeddings=131072,
                  rms_norm_eps=1e-5, rope_theta=500000.0,
                  rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                "high_freq_factor": 4.0, "original_max_position_embeddings": 8192},
                  tie_word_embeddings=False)
cfg._attn_implementation = a.attn
torch.manual_seed(0)
with torch.device("cuda"):
    model = LlamaForCausalLM(cfg).to(torch.bfloat16).eval()

for s in a.seq:
    ids = torch.randint(0, cfg.vocab_size, (1, s), device="cuda")
    with torch.inference_mode():
        for _ in range(2):
            model(ids, logits_to_keep=1)
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        times = []
        for _ in range(a.iters):
            e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            e0.record()
            model(ids, logits_to_keep=1)
            e1.record()
            torch.cuda.synchronize()
            times.append(e0.elapsed_time(e1))
    times.sort()
    med = times[len(times) // 2]
    print(json.dumps({"peer": f"hf-transformers-{a.attn}", "target": "llama", "seq_len": s, "layers": a.layers,
                      "median_ms": med, "tokens_per_s": s / (med / 1e3),
                      "peak_gib": torch.cuda.max_memory_allocated() / 2**30}), flush=True)
