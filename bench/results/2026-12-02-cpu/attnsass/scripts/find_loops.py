#!/usr/bin/env python3
"""List the main loops of a flash kernel's SASS: backward branches whose body (under 1000 instructions)
holds a WARPGROUP.DEPBAR.LE gsb0, 0x1 (the S wait of the intra-warpgroup overlap).
  python3 find_loops.py FILE.sass   -> LO HI per loop (hex), for tile_counts.py"""
import re, sys
L = []
for line in open(sys.argv[1]):
    m = re.match(r"\s*/\*([0-9a-f]{4,})\*/\s+(.*?);", line)
    if m:
        L.append((int(m.group(1), 16), re.sub(r"\s+", " ", m.group(2)).strip()))
for a, ins in L:
    m = re.search(r"BRA (0x[0-9a-f]+)$", ins)
    if m and int(m.group(1), 16) < a:
        t = int(m.group(1), 16)
        body = [x for x in L if t <= x[0] <= a]
        if len(body) < 1000 and any("DEPBAR.LE gsb0, 0x1" in x[1] for x in body):
            print(f"{t:#x} {a:#x}")
