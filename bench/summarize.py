"""Print a markdown table of rwm-dist results next to their peers measured in the same run.

  python3 bench/summarize.py RESULTS.jsonl PEERS.jsonl
Peers are JSON lines from bench/peers/*.py ({"peer", "target", "median_ms", "tokens_per_s", ...}).
"""
import json
import sys

ours = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
peers = [json.loads(l) for l in open(sys.argv[2]) if l.strip()] if len(sys.argv) > 2 else []
gib = lambda b: "-" if b is None else f"{b / 2**30:.2f}"
print("| target | variant | config | median ms | tokens/s | TFLOP/s | max err | peak GiB | est GiB | status |")
print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
for r in ours:
    if r["rank"] != 0:
        continue
    c = r["config"]
    shape = {"llama": lambda: f"L{c['layers']} S{c['seq_len']}",
             "moe": lambda: f"E{c['num_experts']} k{c['top_k']} H{c['hidden']} F{c['expert_ffn']} T{c['tokens']}",
             "gpt4": lambda: f"L{c['layers']} H{c['hidden']} E{c['num_experts']} S{c['seq_len']}"}[r["target"]]()
    med = r["median_ms"]
    print(f"| {r['target']} | {r['variant']} ({r['gemm_dtype']}) | {shape} | {med and f'{med:.2f}' or '-'} | "
          f"{r['tokens_per_s'] and f'{r['tokens_per_s']:,.0f}' or '-'} | {r['tflops'] and f'{r['tflops']:.0f}' or '-'} | "
          f"{'ref' if r['reference'] == 'none' else (r['max_err'] is not None and f'{r['max_err']:.1e}' or '-')} | "
          f"{gib(r['peak_mem_bytes'])} | {gib(r['est_mem_bytes'])} | {r['status']} |")
for p in peers:
    extra = f"{p['peak_gib']:.2f}" if "peak_gib" in p else "-"
    print(f"| {p['target']} | peer: {p['peer']} | | {p['median_ms']:.2f} | {p['tokens_per_s']:,.0f} | | | {extra} | | |")
print()
best = {}
for r in ours:
    if r["rank"] == 0 and r["status"] == "ok" and r["tokens_per_s"]:
        best.setdefault(r["target"], []).append(r)
for p in peers:
    for r in best.get(p["target"], []):
        print(f"- {r['target']} {r['variant']} ({r['gemm_dtype']}) vs {p['peer']}: "
              f"{r['tokens_per_s'] / p['tokens_per_s']:.2f}x tokens/s, {r['median_ms'] / p['median_ms']:.2f}x time")
