#!/usr/bin/env python3
"""CPU check of swiglu_fused_bf16_x8 (kernels/activation.cu): the text of both fused SwiGLU kernels,
compiled as host C++ with small shims for the CUDA built-ins, must give bit-equal bf16 outputs (the x8
kernel launched on the host's grid, rows past 65535 included). Run from the repository root."""
import os, subprocess, sys, tempfile
src = open("kernels/activation.cu").read()
body = src[src.index("__device__ __forceinline__ float silu"):]
body = body.replace('extern "C" __global__', "static").replace("__device__ __forceinline__", "static").replace("template <class T> __device__", "template <class T> static")
prog = r'''
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <cmath>
#include <vector>
typedef unsigned long long u64; typedef unsigned int u32; typedef unsigned short u16;
struct bf16 { u16 x; };
struct uint4 { u32 x, y, z, w; };
static uint4 make_uint4(u32 a, u32 b, u32 c, u32 d) { return {a, b, c, d}; }
struct D3 { u64 x, y; } blockIdx, blockDim, gridDim, threadIdx;
static float __uint_as_float(u32 v) { float f; memcpy(&f, &v, 4); return f; }
static u32 f2u(float f) { u32 v; memcpy(&v, &f, 4); return v; }
static u16 rne(float f) { u32 v = f2u(f); if ((v & 0x7fffffff) > 0x7f800000) return (v >> 16) | 0x40; return (v + 0x7fff + ((v >> 16) & 1)) >> 16; }
static float to_f(float v) { return v; }
static float to_f(bf16 v) { return __uint_as_float(((u32)v.x) << 16); }
static u32 pack_bf16x2(float lo, float hi) { return (u32)rne(lo) | ((u32)rne(hi) << 16); }
static float bf_lo(u32 v) { return __uint_as_float(v << 16); }
static float bf_hi(u32 v) { return __uint_as_float(v & 0xffff0000u); }
template <class T> T from_f(float v);
template <> float from_f<float>(float v) { return v; }
template <> bf16 from_f<bf16>(float v) { return bf16{rne(v)}; }
''' + body + r'''
int main() {
  int bad = 0, n = 0;
  u64 shapes[][2] = {{9, 1408}, {1, 8}, {3, 16}, {7, 2056}, {2, 14336}, {70000, 8}, {5, 4104}};
  for (auto& sh : shapes) {
    u64 rows = sh[0], f = sh[1];
    std::vector<bf16> gu(rows * 2 * f), a(rows * f), b(rows * f);
    for (auto& x : gu) x.x = rne((rand() / (float)RAND_MAX - 0.5f) * 8.f);
    // the scalar kernel: one block holding a thread per element
    blockDim.x = rows * f; gridDim.x = 1; blockIdx.x = 0;
    for (u64 t = 0; t < rows * f; t++) { threadIdx.x = t; swiglu_fused_bf16(a.data(), gu.data(), rows, f); }
    // the x8 kernel with the host's grid
    blockDim.x = 256; gridDim.x = (f + 8 * 256 - 1) / (8 * 256); gridDim.y = rows < 65535 ? rows : 65535;
    for (u64 bx = 0; bx < gridDim.x; bx++) for (u64 by = 0; by < gridDim.y; by++) for (u64 tx = 0; tx < 256; tx++) {
      blockIdx.x = bx; blockIdx.y = by; threadIdx.x = tx; swiglu_fused_bf16_x8(b.data(), gu.data(), rows, f); }
    for (u64 i = 0; i < rows * f; i++) { n++; if (a[i].x != b[i].x) bad++; }
  }
  printf("%d elements, %d differ\n", n, bad);
  return bad != 0;
}
'''
with tempfile.TemporaryDirectory() as d:
    open(os.path.join(d, "sw.cpp"), "w").write(prog)
    subprocess.run(["g++", "-O2", "-o", os.path.join(d, "sw"), os.path.join(d, "sw.cpp")], check=True)
    sys.exit(subprocess.run([os.path.join(d, "sw")]).returncode)
