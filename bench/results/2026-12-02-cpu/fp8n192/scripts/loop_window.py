#!/usr/bin/env python3
"""Print the address range (LO HI, hex) of the main k loop of a math warpgroup in FILE.sass: the
loop whose body holds the wgmma wait (WARPGROUP.DEPBAR), from its back edge's target to the back edge.
  python3 loop_window.py FILE.sass"""
import re, sys

ins = []
for line in open(sys.argv[1]):
    m = re.match(r"\s*/\*([0-9a-f]{4,})\*/\s+(.*?);", line)
    if m:
        ins.append((int(m.group(1), 16), re.sub(r"\s+", " ", m.group(2).strip())))
dep = next(a for a, op in ins if "WARPGROUP.DEPBAR" in op)
for a, op in ins:
    m = re.match(r"(@!?U?P\d+ )?BRA (0x[0-9a-f]+)", op)
    if a > dep and m and int(m.group(2), 16) < dep:
        print(f"{int(m.group(2), 16):#x} {a:#x}")
        break
