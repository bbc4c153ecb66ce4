#!/usr/bin/env python3
"""Print the SASS instructions of FILE.sass between two hex addresses (inclusive), without encodings.
  python3 excerpt.py FILE.sass LO HI"""
import re, sys
lo, hi = int(sys.argv[2], 16), int(sys.argv[3], 16)
for line in open(sys.argv[1]):
    m = re.match(r"\s*/\*([0-9a-f]{4,})\*/\s+(.*?;)", line)
    if m and lo <= int(m.group(1), 16) <= hi:
        print(f"/*{m.group(1)}*/ " + re.sub(r"\s+", " ", m.group(2)))
