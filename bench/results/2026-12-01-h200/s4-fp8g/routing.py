# Rows per tile and experts touched, from the routing loads of moe records (metrics.routing.load,
# summed over `batches` batches): python3 routing.py records.jsonl ...
import json, sys
for f in sys.argv[1:]:
    for line in open(f):
        r = json.loads(line)
        rt = (r.get("metrics") or {}).get("routing")
        if not rt:
            continue
        per = [x / rt["batches"] for x in rt["load"]]
        rows = sum(per)
        tiles = lambda bm: sum(-(-x // bm) * bm for x in per) / rows  # computed rows / routed rows
        print(f"{r['variant']:9} rows {rows:.0f} experts with >= 1 row per batch {sum(x >= 1 for x in per)}"
              f" (any {sum(x > 0 for x in per)}) of {len(per)}, max/mean {max(per) * len(per) / rows:.2f},"
              f" computed/routed rows: 128-row tiles {tiles(128):.3f}, 256-row {tiles(256):.3f},"
              f" 64-row halves skipped {tiles(64):.3f}")
