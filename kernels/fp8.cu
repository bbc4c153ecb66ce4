// Per-tensor FP8 e4m3 quantisation without a host round trip: amax into a device
// word, then scale = amax / 448 (1 when amax is 0) and q = e4m3(x / scale).
#include "common.cuh"

// |x| of non-negative floats orders like their bit patterns, so atomicMax on the bits works.
template <class T> __device__ void amax(const T* x, u64 n, u32* amax_bits) {
    float m = 0.f;
    for (u64 i = blockIdx.x * (u64)blockDim.x + threadIdx.x; i < n; i += (u64)gridDim.x * blockDim.x)
        m = fmaxf(m, fabsf(to_f(x[i])));
    m = warp_max(m);
    if ((threadIdx.x & 31) == 0) atomicMax(amax_bits, __float_as_uint(m));
}

template <class T> __device__ void quantize(unsigned char* q, float* scale_out, const T* x, u64 n, const u32* amax_bits) {
    float a = __uint_as_float(*amax_bits);
    float scale = a > 0.f ? __fdiv_rn(a, 448.0f) : 1.0f;
    if (blockIdx.x == 0 && threadIdx.x == 0) *scale_out = scale;
    for (u64 i = blockIdx.x * (u64)blockDim.x + threadIdx.x; i < n; i += (u64)gridDim.x * blockDim.x)
        q[i] = (unsigned char)(pack_e4m3x2(__fdiv_rn(to_f(x[i]), scale), 0.f) & 0xff);
}

extern "C" __global__ void amax_f32(const float* x, u64 n, u32* m) { amax(x, n, m); }
extern "C" __global__ void amax_bf16(const bf16* x, u64 n, u32* m) { amax(x, n, m); }
extern "C" __global__ void quantize_f32(unsigned char* q, float* s, const float* x, u64 n, const u32* m) {
    quantize(q, s, x, n, m);
}
extern "C" __global__ void quantize_bf16(unsigned char* q, float* s, const bf16* x, u64 n, const u32* m) {
    quantize(q, s, x, n, m);
}
