#!/usr/bin/env python3
"""Recompute a record's routing figures from its raw per-batch figures (docs/metrics.md).

    python3 docs/recompute_routing.py RESULTS.jsonl [RESULTS.jsonl ...]

For every record with routing metrics (`metrics.routing`, `metrics.routing_layer`, the
balanced variant's `metrics.balance.learning`, and gpt4's `metrics.routing_by_block[*]`'s
`routing` and `routing_layer`) it recomputes, from `per_batch` (tokens, capacity,
loads, mean router probabilities, router entropy) and the config's capacity factor:
each batch's Gini, aux loss, capacity and drops, their mean and standard deviation over batches,
the summed load with its Gini and max/mean, and the mean probability over all tokens; prints them
beside the recorded values and exits 1 if any differs (relative 1e-9). Standard library only.
"""

import json
import math
import sys

TOL = 1e-9


def gini(x):
    n, total = len(x), sum(x)
    if n == 0 or total <= 0:
        return 0.0
    s = sorted(x)
    return 2.0 * sum((i + 1) * v for i, v in enumerate(s)) / (n * total) - (n + 1) / n


def max_mean(x):
    total = sum(x)
    return 1.0 if not x or total <= 0 else max(x) / (total / len(x))


def capacity(cf, slots, experts):
    # docs/metrics.md "Capacity rounding": within 1e-9 of an integer counts as that integer.
    v = cf * slots / experts
    r = round(v)
    return int(r) if abs(v - r) <= 1e-9 * max(1.0, abs(v)) else math.ceil(v)


def spread(values):
    n = len(values)
    mean = sum(values) / n
    return {"mean": mean, "std": math.sqrt(sum((v - mean) ** 2 for v in values) / n),
            "min": min(values), "max": max(values)}


def recompute(stats, cf):
    """The figures of one RoutingStats object, from its per_batch list."""
    k, experts = stats["top_k"], stats["experts"]
    batches = stats["per_batch"]
    ginis, aux, dropped, drop_frac, cap, ent = [], [], [], [], [], []
    for b in batches:
        load, p = b["load"], b["mean_prob"]
        slots = b["tokens"] * k
        f = [c / slots for c in load]
        c = capacity(cf, slots, experts)
        d = sum(max(0, x - c) for x in load)
        ginis.append(gini(load))
        aux.append(experts * sum(fi * pi for fi, pi in zip(f, p)))
        cap.append(c)
        dropped.append(d)
        drop_frac.append(d / slots)
        ent.append(b["router_entropy"])
    total = [sum(b["load"][i] for b in batches) for i in range(experts)]
    tokens = sum(b["tokens"] for b in batches)
    mean_prob = [sum(b["tokens"] * b["mean_prob"][i] for b in batches) / tokens for i in range(experts)]
    return {
        "gini": spread(ginis),
        "aux_loss": spread(aux),
        "dropped": spread(dropped),
        "drop_fraction": spread(drop_frac),
        "router_entropy": spread(ent),
        "capacity": cap,
        "load": total,
        "overall.gini": gini(total),
        "overall.max_mean": max_mean(total),
        "mean_prob": mean_prob,
    }


def close(a, b):
    if isinstance(a, list):
        return len(a) == len(b) and all(close(x, y) for x, y in zip(a, b))
    return abs(a - b) <= TOL * max(1.0, abs(a), abs(b))


def check(name, stats, cf):
    got = recompute(stats, cf)
    want = {
        "load": stats["load"],
        "overall.gini": stats["overall"]["gini"],
        "overall.max_mean": stats["overall"]["max_mean"],
        "mean_prob": stats["mean_prob"],
        "capacity": [b["capacity"] for b in stats["per_batch"]],
    }
    for key in ["gini", "aux_loss", "dropped", "drop_fraction", "router_entropy"]:
        for s in ["mean", "std", "min", "max"]:
            want[f"{key}.{s}"] = stats[key][s]
            got[f"{key}.{s}"] = got[key][s]
    bad = 0
    for key, w in want.items():
        ok = close(got[key], w)
        bad += not ok
        if not isinstance(w, list) or not ok:
            print(f"{name} {key}: recomputed {got[key]} recorded {w} {'ok' if ok else 'DIFFERS'}")
    return bad


def main(paths):
    bad = checked = 0
    for path in paths:
        with open(path) as fh:
            for line in fh:
                r = json.loads(line)
                m, cf = r.get("metrics", {}), r["config"].get("capacity_factor")
                where = f"{r['target']} {r['variant']} rank {r['rank']}"
                objects = [("routing", m.get("routing")), ("routing_layer", m.get("routing_layer")),
                           ("balance.learning", (m.get("balance") or {}).get("learning"))]
                # gpt4: each block's routing, under the same names.
                for b in m.get("routing_by_block") or []:
                    objects += [(f"block {b['block']} {k}", b.get(k)) for k in ("routing", "routing_layer")]
                for key, stats in objects:
                    if stats:
                        bad += check(f"{where} {key}", stats, cf)
                        checked += 1
    print(f"{checked} routing object(s) recomputed, {bad} figure(s) differ")
    return 1 if bad or not checked else 0


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1:]))
