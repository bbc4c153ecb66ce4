#!/usr/bin/env python3
"""Compare the SASS instruction lines of every function two cubins share (cuobjdump --dump-sass):
  python3 same_sass.py CUOBJDUMP A.cubin B.cubin   -> 'same'/'DIFFERENT' per function, functions only in B"""
import re, subprocess, sys
def funcs(co, cubin):
    out = subprocess.run([co, "--dump-sass", cubin], capture_output=True, text=True, check=True).stdout
    f, cur = {}, None
    for line in out.splitlines():
        m = re.match(r"\s+Function : (\S+)", line)
        if m:
            cur = m.group(1); f[cur] = []
        elif cur and re.match(r"\s*/\*[0-9a-f]{4,}\*/", line):
            f[cur].append(line.split("/*", 2)[1] + re.sub(r"\s+", " ", line.split("*/", 1)[1].split(";")[0]))
    return f
a, b = funcs(sys.argv[1], sys.argv[2]), funcs(sys.argv[1], sys.argv[3])
bad = 0
for k in sorted(a):
    ok = a[k] == b.get(k)
    bad += not ok
    print(f"{'same' if ok else 'DIFFERENT'} {k} ({len(a[k])} instructions)")
for k in sorted(set(b) - set(a)):
    print(f"new {k} ({len(b[k])} instructions)")
sys.exit(1 if bad else 0)
