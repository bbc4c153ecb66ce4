// RMSNorm: one block per row, f32 statistics. The weight may be bf16 or f32.
#include "common.cuh"

template <class T, class W>
__device__ void rms_norm(T* out, const T* x, const W* w, int h, float eps) {
    const T* xr = x + (u64)blockIdx.x * h;
    T* orow = out + (u64)blockIdx.x * h;
    float ss = 0.f;
    for (int i = threadIdx.x; i < h; i += blockDim.x) {
        float v = to_f(xr[i]);
        ss += v * v;
    }
    float inv = 1.0f / sqrtf(block_sum(ss) / (float)h + eps);
    for (int i = threadIdx.x; i < h; i += blockDim.x) orow[i] = from_f<T>(to_f(xr[i]) * inv * to_f(w[i]));
}

// sum = x + residual (stored in T), normed = rms_norm(sum as stored).
template <class T, class W>
__device__ void add_rms_norm(T* sum, T* out, const T* x, const T* res, const W* w, int h, float eps) {
    u64 base = (u64)blockIdx.x * h;
    float ss = 0.f;
    for (int i = threadIdx.x; i < h; i += blockDim.x) {
        T s = from_f<T>(to_f(x[base + i]) + to_f(res[base + i]));
        sum[base + i] = s;
        float v = to_f(s);
        ss += v * v;
    }
    float inv = 1.0f / sqrtf(block_sum(ss) / (float)h + eps);
    // Each thread rereads only the elements it wrote itself.
    for (int i = threadIdx.x; i < h; i += blockDim.x) out[base + i] = from_f<T>(to_f(sum[base + i]) * inv * to_f(w[i]));
}

#define NORM(TN, T, WN, W)                                                                                        \
    extern "C" __global__ void rms_norm_##TN##_##WN(T* o, const T* x, const W* w, int h, float eps) {            \
        rms_norm(o, x, w, h, eps);                                                                                \
    }                                                                                                             \
    extern "C" __global__ void add_rms_norm_##TN##_##WN(T* s, T* o, const T* x, const T* r, const W* w, int h,   \
                                                        float eps) {                                              \
        add_rms_norm(s, o, x, r, w, h, eps);                                                                      \
    }
NORM(bf16, bf16, bf16, bf16)
NORM(bf16, bf16, f32, float)
NORM(f32, float, bf16, bf16)
NORM(f32, float, f32, float)
