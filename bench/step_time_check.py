#!/usr/bin/env python3
"""Predicted (estimate --time) vs measured step time of every results file given.

    bench/step_time_check.py BIN RATES [--one-gpu] FILE.jsonl...

For each file: the target, profile, layout and world of its records, the median step of each
modelled variant (optimized, fp8, balanced) over the ranks' medians, and the prediction of
`BIN estimate --time --rates RATES` for the same target, profile, layout and world (--one-gpu:
every rank on one GPU through loopback sockets, as bench/nccl_one_gpu.sh runs them).
Prints a Markdown table; exits 1 if a file cannot be predicted."""
import json, re, statistics, subprocess, sys

def main():
    args = sys.argv[1:]
    one_gpu = "--one-gpu" in args
    args = [a for a in args if a != "--one-gpu"]
    bin_, rates, files = args[0], args[1], args[2:]
    print("| file | target | world | layout | variant | predicted ms | measured ms | error |")
    print("|---|---|---:|---|---|---:|---:|---:|")
    worst = 0.0
    for f in files:
        recs = [json.loads(l) for l in open(f) if l.strip()]
        by_variant = {}
        for r in recs:
            if r["status"] == "ok" and r["variant"] != "baseline":
                by_variant.setdefault(r["variant"], []).append(r)
        for variant, rs in sorted(by_variant.items()):
            r = rs[0]
            lay, world = r["layout"], r["world_size"]
            cmd = [bin_, "estimate", "--time", "--rates", rates, "--target", r["target"], "--profile", r["profile"],
                   "--world", str(world), "--cp", str(lay["cp"]), "--ep", str(lay["ep"])]
            cfg = r["config"]
            if r["target"] == "gpt4":
                cmd += ["--cp-kind", cfg["cp_kind"], "--seq-len", str(cfg["seq_len"])]
            if r["target"] == "moe":
                cmd += ["--seq-len", str(cfg["tokens"])]
            if r["gemm_dtype"] == "fp8" or variant == "fp8":
                cmd += ["--dtype", "fp8"]
            if one_gpu:
                cmd.append("--one-gpu")
            out = subprocess.run(cmd, capture_output=True, text=True).stdout
            m = re.search(r"([0-9.]+) ms per step", out)
            if not m:
                print(f"{f}: no prediction:\n{out}", file=sys.stderr)
                sys.exit(1)
            pred = float(m.group(1))
            meas = statistics.median(x["median_ms"] for x in rs)
            err = pred / meas - 1
            worst = max(worst, abs(err))
            layout = f"cp {lay['cp']} ep {lay['ep']} dp {lay['dp']}"
            print(f"| {f.split('/')[-1]} | {r['target']} | {world} | {layout} | {variant} | {pred:.3f} | {meas:.3f} | {100 * err:+.1f}% |")
    print(f"\nworst |error|: {100 * worst:.1f}%")

main()
