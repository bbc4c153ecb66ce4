#!/usr/bin/env python3
"""Count the SASS of one KV tile of a flash-attention consumer warpgroup's main loop (one pass of the
loop body, one path through it), by kind and by stretch.

  python3 tile_counts.py FILE.sass LO HI [SKIP_LO-SKIP_HI ...]

LO..HI (hex, inclusive) is the loop body (HI: its back-edge branch); each SKIP range is a block the
counted path branches around (the masking of diagonal tiles). Stretches, in issue order:
  top    loop head .. the first HGMMA (barrier waits, turn wait, descriptors);
  issue  first .. last HGMMA of the tile (S = Q K^T and O += P V) and the turn pass;
  A      WARPGROUP.DEPBAR.LE gsb0,0x1 .. the DEPBAR 0x0: runs while the warpgroup's own P V is in flight;
  B      DEPBAR 0x0 .. the back edge: after its own GEMMs have completed.
B + top is the stretch from this warpgroup's last wait to its next wgmma issue: only the other
warpgroup's GEMMs (ping-pong) can cover it.
"""
import collections, pathlib, re, sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[4]))  # bench/
from sass_count import kind as kind_of, parse  # noqa: E402

KINDS = [
    ("HGMMA", r"^HGMMA"), ("WARPGROUP.ARRIVE", r"^WARPGROUP\.ARRIVE"), ("WARPGROUP.DEPBAR", r"^WARPGROUP\.DEPBAR"),
    ("MUFU.EX2", r"^MUFU\.EX2"), ("FFMA", r"^FFMA"), ("FMUL", r"^FMUL"), ("FADD", r"^FADD"),
    ("FMNMX", r"^FMNMX"), ("FSEL/FSETP", r"^(FSEL|FSETP)"), ("F2FP (bf16 pack)", r"^F2FP"),
    ("SHFL", r"^SHFL"), ("SYNCS try-wait", r"^SYNCS\.PHASECHK"), ("SYNCS arrive", r"^SYNCS\.ARRIVE"),
    ("BAR (turn)", r"^BAR"), ("R2UR", r"^R2UR"),
    ("moves (MOV/IMAD.MOV/UMOV/S2R/S2UR/CS2R)", r"^(MOV|IMAD\.MOV|UMOV|S2R|CS2R|S2UR|IMAD\.U32 R\d+, RZ, RZ, UR)"),
    ("uniform int (UIADD3/ULEA/ULOP3/USEL/USHF/UISETP...)", r"^U(IADD|LOP|SHF|IMAD|LEA|SEL|ISETP|PRMT|FLO|POPC|BREV)"),
    ("int/addr (IADD3/IMAD/LOP3/LEA/SHF/SEL/ISETP/VIADD...)", r"^(IADD3|IMAD|LOP3|LEA|SHF|SEL|ISETP|VIADD|VIMNMX|PRMT|PLOP3|P2R|R2P|IABS|I2F|F2I)"),
    ("branch/converge (BRA/BSSY/BSYNC/WARPSYNC/VOTE/NOP)", r"^(BRA|BSSY|BSYNC|WARPSYNC|ELECT|VOTEU?|NOP|YIELD)"),
]

def kind(op):
    return kind_of(op, KINDS)

def main():
    lo, hi = int(sys.argv[2], 16), int(sys.argv[3], 16)
    skips = [tuple(int(x, 16) for x in s.split("-")) for s in sys.argv[4:]]
    ins = [x for x in parse(sys.argv[1]) if lo <= x[0] <= hi and not any(a <= x[0] <= b for a, b in skips)]
    ops = [op for _, op, _ in ins]
    gm = [i for i, op in enumerate(ops) if op.startswith("HGMMA")]
    d1 = [i for i, op in enumerate(ops) if op.startswith("WARPGROUP.DEPBAR") and op.endswith("0x1")]
    d0 = [i for i, op in enumerate(ops) if op.startswith("WARPGROUP.DEPBAR") and op.endswith("0x0")]
    assert len(d1) == 1 and len(d0) == 1, (d1, d0)
    seg = {"top": (0, gm[0]), "issue": (gm[0], d1[0]), "A": (d1[0], d0[0]), "B": (d0[0], len(ops))}
    cols = list(seg) + ["total"]
    cnt = {s: collections.Counter(kind(op) for op in ops[a:b]) for s, (a, b) in seg.items()}
    cnt["total"] = collections.Counter(kind(op) for op in ops)
    print(f"{sys.argv[1]} {lo:#x}..{hi:#x} skip {[(hex(a), hex(b)) for a, b in skips]}")
    print(f"{'kind':56s}" + "".join(f"{c:>7s}" for c in cols))
    keys = [k for k, _ in KINDS] + sorted(k for k in cnt["total"] if k.startswith("other:"))
    for k in keys:
        if cnt["total"][k]:
            print(f"{k:56s}" + "".join(f"{cnt[c][k]:7d}" for c in cols))
    print(f"{'all':56s}" + "".join(f"{sum(cnt[c].values()):7d}" for c in cols))
    print(f"DEPBAR 0x1 -> DEPBAR 0x0 (A): {d0[0] - d1[0]}; DEPBAR 0x0 -> next HGMMA (B + top): {len(ops) - d0[0] + gm[0]}; "
          f"DEPBAR 0x1 -> next HGMMA: {len(ops) - d1[0] + gm[0]}; MUFU.EX2 before DEPBAR 0x0: {cnt['A']['MUFU.EX2']}")

if __name__ == "__main__":
    main()
