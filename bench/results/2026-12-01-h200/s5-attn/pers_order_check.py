#!/usr/bin/env python3
"""CPU check of the persistent sm90 flash kernels' tile walk (f3_tile<PERS = true> in
kernels/flash_attention_sm90.cu): the function's own text, compiled as host C++ with g++ (blockIdx and
gridDim as globals), must give every (head, query tile) to exactly one block for many shapes and grids,
(a block that stopped early would leave tiles unseen), and the first round must take the heaviest query tile.
It also prints the causal balance (max block work / mean, in key tiles) of the boustrophedon against a
plain round robin at the benchmark shapes on 132 SMs. Run from the repository root: python3 <this file>."""
import os, subprocess, sys, tempfile

src = open("kernels/flash_attention_sm90.cu").read()
a = src.index("__device__ __forceinline__ void f3_tile_l2")
b = src.index("template <int D, int STAGES")  # f3_tile_l2 and f3_tile
fn = src[a:b].replace("__device__ __forceinline__", "static")
prog = r"""
#include <cstdio>
#include <vector>
#include <algorithm>
typedef long long i64;
#define F3_BQ 128
#define F3_L2_KV (32 << 20)
using std::min;
struct U3 { int x, y, z; } blockIdx, gridDim;
""" + fn + r"""
int main() {
  int bad = 0, cases = 0;
  int hqs[][2] = {{32,8},{6,3},{2,2},{4,1},{40,8},{1,1}};
  int lens[] = {1, 127, 128, 300, 640, 5000, 8192, 12345, 32768};
  int grids[] = {1, 2, 3, 7, 131, 132, 1000};
  for (auto& g : hqs) for (int sq : lens) for (int G0 : grids) for (int causal = 0; causal < 2; causal++) {
    int hq = g[0], hkv = g[1], nqt = (sq + 127) / 128, T = hq * nqt, G = std::min(G0, T);
    std::vector<int> seen((size_t)T, 0);
    gridDim = {G, 1, 1};
    for (int b = 0; b < G; b++) {
      blockIdx = {b, 0, 0};
      int h, qt, rd = 0;
      for (; f3_tile<true, false>(rd, 128, sq, sq, hq, hkv, causal, h, qt); rd++) {
        if (h < 0 || h >= hq || qt < 0 || qt >= nqt) { bad++; break; }
        seen[(size_t)h * nqt + qt]++;
        if (rd == 0 && b == 0 && causal && qt != nqt - 1) bad++;  // heaviest first
      }
    }
    for (int x : seen) if (x != 1) bad++;
    cases++;
  }
  printf("%d shapes and grids, %d bad\n", cases, bad);
  // Causal balance at the benchmark shapes (32 query heads, 132 SMs): key tiles a block, max / mean.
  for (int sq : {8192, 32768, 5000, 12345}) {
    int hq = 32, nqt = (sq + 127) / 128, T = hq * nqt, G = 132;
    double tot = 0, mx = 0, mx_rr = 0;
    std::vector<double> w(G, 0), rr(G, 0);
    gridDim = {G, 1, 1};
    for (int b = 0; b < G; b++) {
      blockIdx = {b, 0, 0};
      int h, qt;
      for (int rd = 0; f3_tile<true, false>(rd, 128, sq, sq, hq, 8, 1, h, qt); rd++) w[b] += qt + 1;
    }
    for (int t = 0; t < T; t++) rr[t % G] += nqt - t / hq;
    for (int b = 0; b < G; b++) { tot += w[b]; mx = std::max(mx, w[b]); mx_rr = std::max(mx_rr, rr[b]); }
    printf("S=%d: boustrophedon max/mean %.3f, round robin %.3f\n", sq, mx / (tot / G), mx_rr / (tot / G));
  }
  return bad != 0;
}
"""
with tempfile.TemporaryDirectory() as d:
    open(os.path.join(d, "t.cpp"), "w").write(prog)
    subprocess.run(["g++", "-O2", "-o", os.path.join(d, "t"), os.path.join(d, "t.cpp")], check=True)
    sys.exit(subprocess.run([os.path.join(d, "t")]).returncode)
