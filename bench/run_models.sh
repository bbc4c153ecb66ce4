#!/usr/bin/env bash
# Model-level benchmarks on one GPU, each next to its PyTorch peer measured in the same run.
# Usage (on the GPU machine): bench/run_models.sh BIN OUT_DIR [PROFILE]
#   BIN      the rwm-dist binary (built with `cargo build --release`)
#   OUT_DIR  where results, peer lines and logs go
set -euo pipefail
bin=${1:?rwm-dist binary}
out=${2:?output directory}
profile=${3:-bench}
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$out"
export PYTHONUNBUFFERED=1
# A FAILED gate exits 1: note it and go on, the summary shows which.
r() { "$bin" run --backend cuda --profile "$profile" "$@" || echo "rwm-dist run $* exited $?" | tee -a "$out/errors.txt"; }
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv >"$out/gpu.txt"

r --target llama --output "$out/llama.jsonl" 2>"$out/llama.log"
r --target moe --output "$out/moe.jsonl" 2>"$out/moe.log"
r --target gpt4 --output "$out/gpt4.jsonl" 2>"$out/gpt4.log"
r --target gpt4 --dtype fp8 --variant optimized --output "$out/gpt4-fp8.jsonl" 2>"$out/gpt4-fp8.log"

seq=8192
[ "$profile" = long ] && seq=32768
python3 "$here/peers/hf_llama.py" --seq "$seq" >"$out/peers.jsonl" 2>"$out/peers.log"
python3 "$here/peers/torch_moe.py" >>"$out/peers.jsonl" 2>>"$out/peers.log"

cat "$out"/llama.jsonl "$out"/moe.jsonl "$out"/gpt4.jsonl "$out"/gpt4-fp8.jsonl >"$out/all.jsonl"
python3 "$here/summarize.py" "$out/all.jsonl" "$out/peers.jsonl" | tee "$out/summary.md"
