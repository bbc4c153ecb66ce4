#!/usr/bin/env python3
"""Table of distributed runs from rwm-dist JSON Lines: per file, target and variant, every
rank's status against one rank alone, the worst error, the median step time across ranks,
and the bytes and bus bandwidth of the EP all-to-all / CP ring as this rank measured them.

  python3 bench/summarize_layouts.py OUT_DIR/*.jsonl
"""
import json
import pathlib
import statistics
import sys


def main():
    rows = []
    for path in sys.argv[1:]:
        recs = [json.loads(line) for line in open(path) if line.strip()]
        by = {}
        for r in recs:
            by.setdefault((r["target"], r["variant"]), []).append(r)
        for (target, variant), rs in by.items():
            lay = rs[0].get("layout") or {}
            ok = sum(r["status"] == "ok" for r in rs)
            refs = {r["reference"] for r in rs}
            rel = max((r["rel_l2_err"] or 0.0) for r in rs)
            off = sum((r["metrics"].get("single_rank") or {}).get("rows_off", 0) for r in rs)
            med = statistics.median(r["median_ms"] for r in rs if r["median_ms"] is not None)
            ep = [r["metrics"].get("ep") or {} for r in rs]
            ep = [e.get("sum_over_layers", e) for e in ep]
            # From bytes and time (gpt4 sums its layers' stats, so a summed bandwidth means nothing).
            n = lay.get("ep") or 1
            busbw = [e["bytes_sent"] / (e["a2a_ms"] * 1e6) * (n - 1) / n for e in ep if e.get("a2a_ms")]
            rows.append((pathlib.Path(path).stem, target, variant, len(rs), f"cp {lay.get('cp')} ep {lay.get('ep')} dp {lay.get('dp')}",
                         f"{ok}/{len(rs)}", ",".join(sorted(refs)), f"{rel:.2e}", off, f"{med:.2f}",
                         f"{statistics.median(busbw):.2f}" if busbw else "-"))
    head = ("run", "target", "variant", "ranks", "layout", "ok", "reference", "worst rel_l2", "rows off", "median ms", "EP busbw GB/s")
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in rows:
        print("| " + " | ".join(str(x) for x in r) + " |")


if __name__ == "__main__":
    main()
