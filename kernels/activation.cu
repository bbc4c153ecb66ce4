// SwiGLU: silu(gate) * up, with silu(x) = x / (1 + exp(-x)) as the host computes it.
#include "common.cuh"

__device__ __forceinline__ float silu(float x) { return x / (1.0f + expf(-x)); }

template <class T> __device__ void swiglu(T* out, const T* g, const T* u, u64 n) {
    for (u64 i = blockIdx.x * (u64)blockDim.x + threadIdx.x; i < n; i += (u64)gridDim.x * blockDim.x)
        out[i] = from_f<T>(silu(to_f(g[i])) * to_f(u[i]));
}

// Rows of width 2f (gate then up) -> rows of width f.
template <class T> __device__ void swiglu_fused(T* out, const T* gu, u64 rows, u64 f) {
    for (u64 i = blockIdx.x * (u64)blockDim.x + threadIdx.x; i < rows * f; i += (u64)gridDim.x * blockDim.x) {
        u64 r = i / f, c = i % f;
        out[i] = from_f<T>(silu(to_f(gu[r * 2 * f + c])) * to_f(gu[r * 2 * f + f + c]));
    }
}

// The same for bf16 with 16-byte loads and stores, 8 columns a thread and no 64-bit divide per element
// (the scalar kernel's i / f and i % f kept it near 1.4 TB/s): f % 8 == 0 and 16-byte aligned bases,
// which the host checks. Grid (ceil(f / 8 / blockDim.x), up to 65535 rows; y strides over the rest).
extern "C" __global__ void swiglu_fused_bf16_x8(bf16* out, const bf16* gu, u64 rows, u64 f) {
    const u64 c = ((u64)blockIdx.x * blockDim.x + threadIdx.x) * 8;
    if (c >= f) return;
    for (u64 r = blockIdx.y; r < rows; r += gridDim.y) {
        const uint4 g = *(const uint4*)(gu + r * 2 * f + c);
        const uint4 u = *(const uint4*)(gu + r * 2 * f + f + c);
        const u32 gw[4] = {g.x, g.y, g.z, g.w}, uw[4] = {u.x, u.y, u.z, u.w};
        u32 ow[4];
#pragma unroll
        for (int i = 0; i < 4; i++)
            ow[i] = pack_bf16x2(silu(bf_lo(gw[i])) * bf_lo(uw[i]), silu(bf_hi(gw[i])) * bf_hi(uw[i]));
        *(uint4*)(out + r * f + c) = make_uint4(ow[0], ow[1], ow[2], ow[3]);
    }
}

extern "C" __global__ void swiglu_bf16(bf16* o, const bf16* g, const bf16* u, u64 n) { swiglu(o, g, u, n); }
extern "C" __global__ void swiglu_f32(float* o, const float* g, const float* u, u64 n) { swiglu(o, g, u, n); }
extern "C" __global__ void swiglu_fused_bf16(bf16* o, const bf16* gu, u64 rows, u64 f) { swiglu_fused(o, gu, rows, f); }
extern "C" __global__ void swiglu_fused_f32(float* o, const float* gu, u64 rows, u64 f) { swiglu_fused(o, gu, rows, f); }
