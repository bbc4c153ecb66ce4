// RMSNorm: one block per row, f32 statistics. The weight may be bf16 or f32.
// rms_norm_x8_* / add_rms_norm_x8_*: bf16 rows of h % 8 == 0 columns with 16-byte loads and stores; each
// thread keeps its C 8-column chunks in registers between the sum of squares and the scaling, so x and
// the residual are read once and the sum is not reread (the scalar kernels' second pass rereads it).
// Same arithmetic and rounding as the scalar kernels. 16-byte aligned rows, h / 8 <= C * blockDim.x:
// the host checks (src/backend/cuda/layers.rs).
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

// Eight weights from chunk c (columns 8c .. 8c + 7), bf16 or f32.
__device__ __forceinline__ void load_w8(const bf16* w, int c, float* out) {
    const uint4 v = *(const uint4*)(w + 8 * c);
    const u32 a[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
    for (int i = 0; i < 4; i++) {
        out[2 * i] = bf_lo(a[i]);
        out[2 * i + 1] = bf_hi(a[i]);
    }
}
__device__ __forceinline__ void load_w8(const float* w, int c, float* out) {
    const float4 a = *(const float4*)(w + 8 * c), b = *(const float4*)(w + 8 * c + 4);
    out[0] = a.x, out[1] = a.y, out[2] = a.z, out[3] = a.w, out[4] = b.x, out[5] = b.y, out[6] = b.z, out[7] = b.w;
}

// RES: sum = x + res (stored bf16, rounded as the scalar kernel) and out = rms_norm(sum); else out = rms_norm(x).
template <int C, bool RES, class W>
__device__ void rms_norm_x8(bf16* sum, bf16* out, const bf16* x, const bf16* res, const W* w, int h, float eps) {
    const int h8 = h >> 3;
    const u64 base = (u64)blockIdx.x * h;
    uint4 v[C];
    float ss = 0.f;
#pragma unroll
    for (int i = 0; i < C; i++) {
        const int c = threadIdx.x + i * blockDim.x;
        if (c >= h8) continue;
        uint4 a = *(const uint4*)(x + base + 8 * c);
        if (RES) {
            const uint4 b = *(const uint4*)(res + base + 8 * c);
            a.x = pack_bf16x2(bf_lo(a.x) + bf_lo(b.x), bf_hi(a.x) + bf_hi(b.x));
            a.y = pack_bf16x2(bf_lo(a.y) + bf_lo(b.y), bf_hi(a.y) + bf_hi(b.y));
            a.z = pack_bf16x2(bf_lo(a.z) + bf_lo(b.z), bf_hi(a.z) + bf_hi(b.z));
            a.w = pack_bf16x2(bf_lo(a.w) + bf_lo(b.w), bf_hi(a.w) + bf_hi(b.w));
            *(uint4*)(sum + base + 8 * c) = a;
        }
        v[i] = a;
        const u32 p[4] = {a.x, a.y, a.z, a.w};
#pragma unroll
        for (int j = 0; j < 4; j++) ss += bf_lo(p[j]) * bf_lo(p[j]) + bf_hi(p[j]) * bf_hi(p[j]);
    }
    const float inv = 1.0f / sqrtf(block_sum(ss) / (float)h + eps);
#pragma unroll
    for (int i = 0; i < C; i++) {
        const int c = threadIdx.x + i * blockDim.x;
        if (c >= h8) continue;
        float wv[8];
        load_w8(w, c, wv);
        const u32 p[4] = {v[i].x, v[i].y, v[i].z, v[i].w};
        u32 o[4];
#pragma unroll
        for (int j = 0; j < 4; j++) o[j] = pack_bf16x2(bf_lo(p[j]) * inv * wv[2 * j], bf_hi(p[j]) * inv * wv[2 * j + 1]);
        *(uint4*)(out + base + 8 * c) = make_uint4(o[0], o[1], o[2], o[3]);
    }
}

// Chunks a thread (1, 2 or 4) and the weight's type; the host table is NORM_X8 in src/backend/cuda/layers.rs.
#define NORM_X8(C, WN, W)                                                                                          \
    extern "C" __global__ void __launch_bounds__(1024) rms_norm_x8_c##C##_##WN(bf16* o, const bf16* x, const W* w, \
                                                                                int h, float eps) {              \
        rms_norm_x8<C, false>(nullptr, o, x, nullptr, w, h, eps);                                                  \
    }                                                                                                              \
    extern "C" __global__ void __launch_bounds__(1024) add_rms_norm_x8_c##C##_##WN(                               \
        bf16* s, bf16* o, const bf16* x, const bf16* r, const W* w, int h, float eps) {                           \
        rms_norm_x8<C, true>(s, o, x, r, w, h, eps);                                                               \
    }
NORM_X8(1, bf16, bf16)
NORM_X8(2, bf16, bf16)
NORM_X8(4, bf16, bf16)
NORM_X8(1, f32, float)
NORM_X8(2, f32, float)
NORM_X8(4, f32, float)
