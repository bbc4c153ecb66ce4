// Shared device helpers. No CUDA headers: NVRTC compiles these sources with only
// this file and the other kernels/*.cuh as named headers, so the few bf16/fp8
// conversions are written with PTX here.
#pragma once

typedef unsigned long long u64;
typedef unsigned int u32;
typedef unsigned short u16;
typedef long long i64;

// bf16 as raw bits: a distinct type so that templates can overload on it.
struct __align__(2) bf16 {
    u16 x;
};

__device__ __forceinline__ float to_f(float v) { return v; }
__device__ __forceinline__ float to_f(bf16 v) { return __uint_as_float(((u32)v.x) << 16); }

// Round to nearest even (NaN stays NaN), as half::bf16::from_f32 on the host.
__device__ __forceinline__ bf16 f2bf(float v) {
    bf16 r;
    asm("cvt.rn.bf16.f32 %0, %1;" : "=h"(r.x) : "f"(v));
    return r;
}

// Two floats to packed bf16x2: `lo` in the low half (the lower address).
__device__ __forceinline__ u32 pack_bf16x2(float lo, float hi) {
    u32 r;
    asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
    return r;
}
__device__ __forceinline__ float bf_lo(u32 v) { return __uint_as_float(v << 16); }
__device__ __forceinline__ float bf_hi(u32 v) { return __uint_as_float(v & 0xffff0000u); }

template <class T> __device__ __forceinline__ T from_f(float v);
template <> __device__ __forceinline__ float from_f<float>(float v) { return v; }
template <> __device__ __forceinline__ bf16 from_f<bf16>(float v) { return f2bf(v); }

// Two floats to e4m3x2 (OCP fn: saturate to +-448, round to nearest even); `lo` in the low byte.
__device__ __forceinline__ u16 pack_e4m3x2(float lo, float hi) {
    u16 r;
    asm("cvt.rn.satfinite.e4m3x2.f32 %0, %1, %2;" : "=h"(r) : "f"(hi), "f"(lo));
    return r;
}

// ---- counter-based RNG: bit-identical to src/rng.rs ----
__device__ __forceinline__ u64 splitmix64(u64 z) {
    z += 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

// Uniform in [-1, 1). The _rn intrinsics keep the compiler from contracting into
// an FMA, so the value matches the host's separate multiply and subtract.
__device__ __forceinline__ float rng_uniform(u64 seed, u64 i) {
    u64 h = splitmix64(seed ^ splitmix64(i));
    float u = __fmul_rn((float)(u32)(h >> 40), 1.0f / 16777216.0f);
    return __fsub_rn(__fmul_rn(2.0f, u), 1.0f);
}

// ---- reductions ----
struct SumOp {
    __device__ __forceinline__ float operator()(float a, float b) const { return a + b; }
};
struct MaxOp {
    __device__ __forceinline__ float operator()(float a, float b) const { return fmaxf(a, b); }
};

template <class Op> __device__ __forceinline__ float warp_reduce(float v, Op op) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = op(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}
__device__ __forceinline__ float warp_sum(float v) { return warp_reduce(v, SumOp()); }
__device__ __forceinline__ float warp_max(float v) { return warp_reduce(v, MaxOp()); }

// Inclusive prefix sum over the warp's lanes (every lane takes part; `lane` is threadIdx.x & 31).
__device__ __forceinline__ int warp_inclusive_scan(int v, int lane) {
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
        const int y = __shfl_up_sync(0xffffffffu, v, o);
        if (lane >= o) v += y;
    }
    return v;
}

// Reduce over the block (blockDim.x a multiple of 32, at most 1024); every thread gets
// the result. `identity` fills the slots of warps the block does not have.
template <class Op> __device__ __forceinline__ float block_reduce(float v, Op op, float identity) {
    __shared__ float part[32];
    __shared__ float total;
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
    v = warp_reduce(v, op);
    __syncthreads();
    if (lane == 0) part[w] = v;
    __syncthreads();
    if (w == 0) {
        float s = lane < (int)(blockDim.x >> 5) ? part[lane] : identity;
        s = warp_reduce(s, op);
        if (lane == 0) total = s;
    }
    __syncthreads();
    return total;
}
__device__ __forceinline__ float block_sum(float v) { return block_reduce(v, SumOp(), 0.f); }
__device__ __forceinline__ float block_max(float v) { return block_reduce(v, MaxOp(), __int_as_float(0xff800000)); }

__device__ __forceinline__ float neg_inf() { return __int_as_float(0xff800000); }
