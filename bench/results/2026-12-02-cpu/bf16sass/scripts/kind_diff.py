#!/usr/bin/env python3
"""Whole-function instruction counts by opcode of two SASS dumps (cuobjdump -fun), and their difference:
  python3 kind_diff.py A.sass B.sass   (used for the SwiGLU epilogue: IEEE division against __fdividef)"""
import collections, pathlib, sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[4]))  # bench/
from sass_count import parse  # noqa: E402


def cnt(f):
    return collections.Counter(op.split()[0] for _, op, _ in parse(f))


a, b = cnt(sys.argv[1]), cnt(sys.argv[2])
print(f"{sys.argv[1]}: {sum(a.values())} instructions; {sys.argv[2]}: {sum(b.values())}")
for k, v in sorted(((k, a[k] - b[k]) for k in set(a) | set(b) if a[k] != b[k]), key=lambda x: (-abs(x[1]), x[0]))[:16]:
    print(f"  {k:28s} {a[k]:5d} {b[k]:5d} {v:+5d}")
