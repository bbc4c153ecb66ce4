import json, glob, os, sys
out = sys.argv[1]; g = 2**30
def pad(load, bm, batches):
    rows = [x / batches for x in load]
    return sum(-(-r // bm) * bm for r in rows) / max(1, sum(rows))
for f in sorted(glob.glob(out + "/*.jsonl")):
    for l in open(f):
        r = json.loads(l)
        if "variant" in r:
            pk = r.get("peak_mem_bytes"); m = r.get("metrics") or {}; rt = m.get("routing") or {}
            ld = rt.get("load"); nb = rt.get("batches") or 1
            extra = f"tile rows/rows bm128 {pad(ld,128,nb):.3f} bm256 {pad(ld,256,nb):.3f} max/mean {max(ld)*len(ld)/sum(ld):.2f}" if ld else ""
            print(os.path.basename(f)[:-6], r["variant"], r["gemm_dtype"], r["status"], r["median_ms"], r["p10_ms"], r["p90_ms"], r["max_err"], pk and round(pk / g, 2), extra)
        else:
            print(os.path.basename(f)[:-6], {k: v for k, v in r.items() if k in ("impl", "ms", "tokens_per_s", "variant")})
