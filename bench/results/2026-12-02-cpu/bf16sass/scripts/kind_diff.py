#!/usr/bin/env python3
"""Whole-function instruction counts by opcode of two SASS dumps (cuobjdump -fun), and their difference:
  python3 kind_diff.py A.sass B.sass   (used for the SwiGLU epilogue: IEEE division against __fdividef)"""
import re, sys, collections
def cnt(f):
    c = collections.Counter()
    for l in open(f):
        m = re.match(r"\s*/\*([0-9a-f]{4,})\*/\s+(.*?);", l)
        if m:
            c[re.sub(r"^@!?U?P[T0-9]+\s+", "", m.group(2).strip()).split()[0]] += 1
    return c
a, b = cnt(sys.argv[1]), cnt(sys.argv[2])
print(f"{sys.argv[1]}: {sum(a.values())} instructions; {sys.argv[2]}: {sum(b.values())}")
for k, v in sorted(((k, a[k] - b[k]) for k in set(a) | set(b) if a[k] != b[k]), key=lambda x: -abs(x[1]))[:16]:
    print(f"  {k:28s} {a[k]:5d} {b[k]:5d} {v:+5d}")
