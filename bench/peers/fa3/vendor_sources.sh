#!/usr/bin/env bash
# Packs the third-party sources fa3_bench builds from into $OUT/fa3_src.tar.gz (git-ignored; never committed), so
# build.sh can run on a machine without the mirrors (e.g. the GPU machine, carrying .dev/fa3):
#   fa3/hopper/*.h *.hpp *.cu + fa3/.fa3_commit   from Dao-AILab/flash-attention at FA3_COMMIT
#   cutlass/include                               from NVIDIA/cutlass at the commit FA3 pins in csrc/cutlass
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
REPO="$(cd "$HERE/../../.." && pwd)"
OUT="${OUT:-$REPO/.dev/fa3}"
FA3_GIT="${FA3_GIT:-/work/.mirror/Dao-AILab+flash-attention/repo}"
CUTLASS_GIT="${CUTLASS_GIT:-/work/.mirror/NVIDIA+cutlass/repo}"
FA3_COMMIT="${FA3_COMMIT:-0251105a2fb19d2957484b7f023cd8c115286ced}"
CUTLASS_COMMIT="$(git --git-dir="$FA3_GIT" ls-tree "$FA3_COMMIT" csrc/cutlass | awk '{print $3}')"
[ -n "$CUTLASS_COMMIT" ] || { echo "vendor_sources.sh: no csrc/cutlass pin in FA3 $FA3_COMMIT" >&2; exit 1; }
TMP="$(mktemp -d)"; trap 'rm -rf "$TMP"' EXIT
mkdir -p "$TMP/fa3" "$TMP/cutlass" "$OUT"
git --git-dir="$FA3_GIT" archive "$FA3_COMMIT" hopper | tar -x -C "$TMP/fa3"
find "$TMP/fa3/hopper" -type f ! -name '*.h' ! -name '*.hpp' -delete
echo "$FA3_COMMIT" > "$TMP/fa3/.fa3_commit"
git --git-dir="$CUTLASS_GIT" archive "$CUTLASS_COMMIT" include | tar -x -C "$TMP/cutlass"
echo "$CUTLASS_COMMIT" > "$TMP/cutlass/.cutlass_commit"
tar -czf "$OUT/fa3_src.tar.gz" -C "$TMP" fa3 cutlass
echo "wrote $OUT/fa3_src.tar.gz (FA3 $FA3_COMMIT, CUTLASS $CUTLASS_COMMIT, $(du -h "$OUT/fa3_src.tar.gz" | cut -f1))"
