#!/usr/bin/env python3
"""CPU check of the sm90 flash kernel's L2-section tile order (f3_tile_l2 in
kernels/flash_attention_sm90.cu): the function's own text, compiled as host C++ with g++, must map
the 1-D grid onto every (head, query tile) exactly once for many shapes, and put the heaviest query
tile of the first section's heads first. Run from the repository root: python3 <this file>."""
import os, subprocess, sys, tempfile

src = open("kernels/flash_attention_sm90.cu").read()
a = src.index("__device__ __forceinline__ void f3_tile_l2")
b = src.index("template <int D, int STAGES")
fn = src[a:b].replace("__device__ __forceinline__", "static")
prog = r"""
#include <cstdio>
#include <vector>
#include <algorithm>
typedef long long i64;
#define F3_BQ 128
#define F3_L2_KV (32 << 20)
using std::min;
struct U3 { int x, y, z; } blockIdx, gridDim;  // f3_tile (session 5) sits beside f3_tile_l2
""" + fn + r"""
int main() {
  int bad = 0, cases = 0;
  int hqs[][2] = {{32,8},{6,3},{12,3},{8,8},{4,1},{40,8},{28,4},{64,8},{10,5},{1,1}};
  int lens[] = {1, 127, 128, 300, 5000, 8192, 12345, 32768, 65536, 131072};
  for (auto& g : hqs) for (int sq : lens) for (int sk : lens) for (int D : {64, 128}) for (int causal = 0; causal < 2; causal++) {
    int hq = g[0], hkv = g[1], nqt = (sq + 127) / 128;
    std::vector<int> seen((size_t)hq * nqt, 0);
    for (int t = 0; t < hq * nqt; t++) {
      int h, qt; f3_tile_l2(t, D, sq, sk, hq, hkv, causal, h, qt);
      if (h < 0 || h >= hq || qt < 0 || qt >= nqt) { bad++; continue; }
      seen[(size_t)h * nqt + qt]++;
    }
    for (int x : seen) if (x != 1) bad++;
    cases++;
  }
  int h, qt;
  f3_tile_l2(9, 128, 32768, 32768, 32, 8, 1, h, qt);  // 32K: sections of 8 heads; block 9 = head 1, tile 254
  if (h != 1 || qt != 254) bad++;
  f3_tile_l2(2048, 128, 32768, 32768, 32, 8, 1, h, qt);  // the second section starts at head 8, tile 255
  if (h != 8 || qt != 255) bad++;
  f3_tile_l2(33, 128, 8192, 8192, 32, 8, 1, h, qt);  // 8K: one section (the (hq, tiles) order)
  if (h != 1 || qt != 62) bad++;
  printf("%d shapes, %d bad\n", cases, bad);
  return bad != 0;
}
"""
with tempfile.TemporaryDirectory() as d:
    open(os.path.join(d, "t.cpp"), "w").write(prog)
    subprocess.run(["g++", "-O2", "-o", os.path.join(d, "t"), os.path.join(d, "t.cpp")], check=True)
    sys.exit(subprocess.run([os.path.join(d, "t")]).returncode)
