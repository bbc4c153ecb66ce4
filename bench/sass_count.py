"""SASS as `cuobjdump --dump-sass` prints it, read for counting instructions by kind (the main-loop
comparisons under bench/results/2026-12-02-cpu/ use it)."""
import re


def parse(path):
    """[(address, op without its predicate, instruction)] of a SASS dump, white space folded."""
    out = []
    for line in open(path):
        m = re.match(r"\s*/\*([0-9a-f]{4,})\*/\s+(.*?);", line)
        if m:
            ins = re.sub(r"\s+", " ", m.group(2).strip())
            out.append((int(m.group(1), 16), re.sub(r"^@!?U?P[T0-9]+ ", "", ins), ins))
    return out


def kind(op, kinds):
    """The name of the first of `kinds` [(name, regex)] that matches `op`, else "other:OPCODE"."""
    for k, rx in kinds:
        if re.match(rx, op):
            return k
    return "other:" + op.split()[0]
