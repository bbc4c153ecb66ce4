"""Prints the V2-Lite layer table of a go.sh call: ours (baseline / optimized / balanced, bf16 and
fp8) and torch's layers from the same call, ms and ratios.  python3 summary.py OUT_DIR"""
import json, glob, os, sys
out = sys.argv[1]
torch = {}
for l in open(os.path.join(out, "torch-moe-v2lite.jsonl")) if os.path.exists(os.path.join(out, "torch-moe-v2lite.jsonl")) else []:
    r = json.loads(l); torch[r["peer"]] = r["median_ms"]
tg = torch.get("torch-grouped_mm")
print("| dtype | variant | status | median ms | p10 / p90 | max err | rel L2 | peak GiB | torch grouped ms | vs torch |")
print("|---|---|---|---:|---|---:|---:|---:|---:|---:|")
for f in sorted(glob.glob(out + "/moe-*.jsonl")):
    for l in open(f):
        r = json.loads(l)
        pk = r.get("peak_mem_bytes")
        vs = f"{tg / r['median_ms']:.2f}x" if tg and r.get("median_ms") else "-"
        print(f"| {r['gemm_dtype']} | {r['variant']} | {r['status']} | {r['median_ms']:.3f} | {r['p10_ms']:.2f} / {r['p90_ms']:.2f} | {r['max_err']} | {r['rel_l2_err']} | {pk and round(pk / 2**30, 2)} | {tg and round(tg, 3)} | {vs} |")
print("torch:", torch)
