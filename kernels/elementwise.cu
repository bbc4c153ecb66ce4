// Fills, adds, casts and row copies. 1-D kernels use grid-stride loops.
#include "common.cuh"

#define GRID_STRIDE(i, n) for (u64 i = blockIdx.x * (u64)blockDim.x + threadIdx.x; i < (n); i += (u64)gridDim.x * blockDim.x)

// Element i = a * rng_uniform(seed, i), a = std * sqrt(3) computed on the host in f32.
extern "C" __global__ void fill_random_f32(float* out, u64 n, u64 seed, float a) {
    GRID_STRIDE(i, n) out[i] = __fmul_rn(a, rng_uniform(seed, i));
}
extern "C" __global__ void fill_random_bf16(bf16* out, u64 n, u64 seed, float a) {
    GRID_STRIDE(i, n) out[i] = f2bf(__fmul_rn(a, rng_uniform(seed, i)));
}

// out = a + b, where b has `bn` elements repeated along a (bn == n: same shape; bn == row: a row broadcast).
template <class T> __device__ void add(T* out, const T* a, const T* b, u64 n, u64 bn) {
    GRID_STRIDE(i, n) out[i] = from_f<T>(to_f(a[i]) + to_f(b[bn == n ? i : i % bn]));
}
extern "C" __global__ void add_f32(float* o, const float* a, const float* b, u64 n, u64 bn) { add(o, a, b, n, bn); }
extern "C" __global__ void add_bf16(bf16* o, const bf16* a, const bf16* b, u64 n, u64 bn) { add(o, a, b, n, bn); }

// Paired bf16 add for the common same-shape case: 8 elements (16 bytes) per step.
extern "C" __global__ void add_bf16_vec8(uint4* out, const uint4* a, const uint4* b, u64 n8) {
    GRID_STRIDE(i, n8) {
        uint4 x = a[i], y = b[i], r;
        r.x = pack_bf16x2(bf_lo(x.x) + bf_lo(y.x), bf_hi(x.x) + bf_hi(y.x));
        r.y = pack_bf16x2(bf_lo(x.y) + bf_lo(y.y), bf_hi(x.y) + bf_hi(y.y));
        r.z = pack_bf16x2(bf_lo(x.z) + bf_lo(y.z), bf_hi(x.z) + bf_hi(y.z));
        r.w = pack_bf16x2(bf_lo(x.w) + bf_lo(y.w), bf_hi(x.w) + bf_hi(y.w));
        out[i] = r;
    }
}

extern "C" __global__ void cast_f32_bf16(bf16* out, const float* in, u64 n) {
    GRID_STRIDE(i, n) out[i] = f2bf(in[i]);
}
extern "C" __global__ void cast_bf16_f32(float* out, const bf16* in, u64 n) {
    GRID_STRIDE(i, n) out[i] = to_f(in[i]);
}

// out[r] = in[idx[r]] for rows of `row_bytes` bytes; one block per row. Indices
// outside [0, rows_in) produce a zero row (the host checks ids it can see).
extern "C" __global__ void gather_rows(char* out, const char* in, const int* idx, u64 row_bytes, u64 rows_in) {
    u64 r = blockIdx.x;
    int s = idx[r];
    bool valid = s >= 0 && (u64)s < rows_in;
    char* dst = out + r * row_bytes;
    const char* src = in + (valid ? (u64)s : 0) * row_bytes;
    if ((row_bytes & 15) == 0 && (((u64)dst | (u64)src) & 15) == 0) {
        uint4 z = make_uint4(0, 0, 0, 0);
        for (u64 j = threadIdx.x; j < row_bytes / 16; j += blockDim.x)
            ((uint4*)dst)[j] = valid ? ((const uint4*)src)[j] : z;
    } else {
        for (u64 j = threadIdx.x; j < row_bytes; j += blockDim.x) dst[j] = valid ? src[j] : 0;
    }
}
