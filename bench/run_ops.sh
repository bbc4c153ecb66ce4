#!/usr/bin/env bash
# Runs examples/ops_bench (the CUDA backend) and bench/peers/torch_ops.py (PyTorch)
# in one go on the same GPU and prints one table: TFLOP/s of each and the ratio.
#
#   cargo build --release --example ops_bench
#   bench/run_ops.sh [path/to/ops_bench] [--iters N]
# Env: OUT_DIR (default a temp dir) keeps the JSON lines and logs; RWM_PEERS, paths of the record holders'
# peers built by bench/peers/deepgemm/build.sh and bench/peers/fa3/build.sh (each takes this script's options
# and --offsets, and writes --json lines of the same form), run after PyTorch and put in the table.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
bin="${1:-$here/../target/release/examples/ops_bench}"
shift || true
out="${OUT_DIR:-$(mktemp -d)}"
mkdir -p "$out"
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader 2>/dev/null | sed 's/^/gpu: /' || true
"$bin" --json "$out/rwm.jsonl" --offsets "$out/offsets.json" "$@" | tee "$out/rwm.log"
python3 "$here/peers/torch_ops.py" --offsets "$out/offsets.json" --json "$out/torch.jsonl" "$@" 2> >(tee "$out/torch.log" >&2)
peer_files=("$out/torch.jsonl")
for p in ${RWM_PEERS:-}; do
    name=$(basename "$p")
    "$p" --offsets "$out/offsets.json" --json "$out/$name.jsonl" "$@" > /dev/null 2> "$out/$name.log" ||
        { echo "$p failed (exit $?): $out/$name.log" >&2; exit 1; }
    if [ -f "$out/$name.jsonl" ]; then peer_files+=("$out/$name.jsonl"); fi
done
python3 - "$out/rwm.jsonl" "${peer_files[@]}" <<'EOF'
import json, sys
rwm = [json.loads(l) for l in open(sys.argv[1])]
peers = [json.loads(l) for f in sys.argv[2:] for l in open(f)]
print()
print(f"| op | shape | rwm TFLOP/s | peer | peer TFLOP/s | rwm / peer |")
print(f"|---|---|---:|---|---:|---:|")
for r in rwm:
    if "tb_s" in r:  # memory-bound rows (no peer)
        print(f"| {r['op']} | {r['shape']} | {r['tb_s']:.2f} TB/s | - | - | - |")
        continue
    base = r["op"].split("[")[0]  # op[kernel] rows of --variants compare with the same peers
    ps = [p for p in peers if p["op"] == base and p["shape"] == r["shape"]]
    if not ps:
        print(f"| {r['op']} | {r['shape']} | {r['tflops']:.1f} | - | - | - |")
    for p in ps:
        print(f"| {r['op']} | {r['shape']} | {r['tflops']:.1f} | {p['impl']} | {p['tflops']:.1f} | {r['tflops'] / p['tflops']:.2f}x |")
EOF
