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

extern "C" __global__ void swiglu_bf16(bf16* o, const bf16* g, const bf16* u, u64 n) { swiglu(o, g, u, n); }
extern "C" __global__ void swiglu_f32(float* o, const float* g, const float* u, u64 n) { swiglu(o, g, u, n); }
extern "C" __global__ void swiglu_fused_bf16(bf16* o, const bf16* gu, u64 rows, u64 f) { swiglu_fused(o, gu, rows, f); }
extern "C" __global__ void swiglu_fused_f32(float* o, const float* gu, u64 rows, u64 f) { swiglu_fused(o, gu, rows, f); }
