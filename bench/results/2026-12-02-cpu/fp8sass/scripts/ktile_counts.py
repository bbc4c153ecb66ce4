#!/usr/bin/env python3
"""Count SASS instructions by kind per k-tile of a math warpgroup's main loop.

  python3 ktile_counts.py FILE.sass [LO_ADDR HI_ADDR]

A k-tile window runs from just after one `WARPGROUP.DEPBAR` (the wgmma wait of k-tile i) up to and
including the next one (k-tile i+1's wait), so it holds k-tile i's promotion and k-tile i+1's issue:
the steady-state work between two waits. Windows whose span holds no GMMA are skipped. With LO/HI
(hex addresses), only DEPBARs inside that range delimit windows (e.g. one loop body).
"""
import collections, pathlib, re, sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[4]))  # bench/
from sass_count import kind as kind_of, parse  # noqa: E402

KINDS = [
    ("GMMA", r"^[HQ]GMMA"),
    ("WARPGROUP.ARRIVE", r"^WARPGROUP\.ARRIVE"),
    ("WARPGROUP.DEPBAR", r"^WARPGROUP\.DEPBAR"),
    ("FFMA", r"^FFMA"), ("FMUL", r"^FMUL"), ("FADD/FSEL/FSETP", r"^F(ADD|SEL|SETP|MNMX)"),
    ("LDS", r"^LDS"), ("LDG", r"^LDG"), ("LDC", r"^LDC"), ("LDL/STL", r"^(LDL|STL)"),
    ("SYNCS.TRYWAIT", r"^SYNCS\.PHASECHK"), ("SYNCS.ARRIVE", r"^SYNCS\.ARRIVE"), ("SYNCS.other", r"^SYNCS"),
    ("BAR", r"^BAR"), ("SHFL", r"^SHFL"),
    ("R2UR", r"^R2UR"), ("MOV (MOV/IMAD.MOV/UMOV/S2R/CS2R)", r"^(MOV|IMAD\.MOV|UMOV|S2R|CS2R|S2UR)"),
    ("uniform int (U*)", r"^U(IADD|LOP|SHF|IMAD|LEA|SEL|ISETP|PRMT|MOV)"),
    ("int/addr (IADD3/IMAD/LOP3/LEA/SHF/SEL/ISETP/VIADD/PRMT)", r"^(IADD3|IMAD|LOP3|LEA|SHF|SEL|ISETP|VIADD|VIMNMX|PRMT|PLOP3|P2R|R2P|IABS|I2F|F2I)"),
    ("branch/converge (BRA/BSSY/BSYNC/WARPSYNC/ELECT/VOTE)", r"^(BRA|BSSY|BSYNC|WARPSYNC|ELECT|VOTEU?|NOP|YIELD)"),
]

def kind(op):
    return kind_of(op, KINDS)

def main():
    ins = parse(sys.argv[1])
    lo = int(sys.argv[2], 16) if len(sys.argv) > 2 else 0
    hi = int(sys.argv[3], 16) if len(sys.argv) > 3 else 1 << 40
    deps = [i for i, (a, op, _) in enumerate(ins) if op.startswith("WARPGROUP.DEPBAR") and lo <= a <= hi]
    # A loop that is not unrolled has one DEPBAR per body: then the window is the body [LO, HI].
    spans = [(i0 + 1, i1 + 1) for i0, i1 in zip(deps, deps[1:])]
    if len(deps) == 1:
        spans = [(min(i for i, x in enumerate(ins) if x[0] >= lo), max(i for i, x in enumerate(ins) if x[0] <= hi) + 1)]
    for j0, j1 in spans:
        win = ins[j0:j1]
        c = collections.Counter(kind(op) for _, op, _ in win)
        if c["GMMA"] == 0:
            continue
        shapes = collections.Counter(re.match(r"[HQ]GMMA\.(\S+)", op).group(1) for _, op, _ in win if re.match(r"[HQ]GMMA", op))
        # The stretch the other warpgroup's wgmmas must cover: from this warpgroup's wgmma wait to
        # its next k-tile's first wgmma (through the loop's back edge for a body window).
        ops = [op for _, op, _ in win]
        first = next(i for i, op in enumerate(ops) if re.match(r"[HQ]GMMA", op))
        dep = max(i for i, op in enumerate(ops) if op.startswith("WARPGROUP.DEPBAR"))
        stretch = first if dep == len(ops) - 1 else first + (len(ops) - 1 - dep)
        ffma = sum(1 for op in ops if op.startswith("FFMA"))
        print(f"window {win[0][0]:#06x}..{win[-1][0]:#06x}: {len(win)} instructions ({len(win) - ffma} besides FFMA); "
              f"wait->next wgmma {stretch}; GMMA {dict(shapes)}")
        for k, _ in KINDS:
            if c[k]:
                print(f"  {k:58s} {c[k]}")
        for k in sorted(x for x in c if x.startswith("other:")):
            print(f"  {k:58s} {c[k]}")

if __name__ == "__main__":
    main()
