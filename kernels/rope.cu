// Rotary embedding, rotate-half convention: pairs (j, j + d/2) of each head rotate by
// angle pos * inv_freq[j]. The angle and its cos/sin are computed in f64 as the host
// reference does (positions reach 10^5, where an f32 angle loses the low digits).
#include "common.cuh"

template <class T>
__device__ void rope(T* out, const T* x, const float* inv_freq, int heads, int d, u64 start) {
    extern __shared__ float cs[];  // [half] cos then [half] sin
    int half = d / 2;
    u64 row = blockIdx.x;
    double pos = (double)(start + row);
    for (int j = threadIdx.x; j < half; j += blockDim.x) {
        double s, c;
        sincos(pos * (double)inv_freq[j], &s, &c);
        cs[j] = (float)c;
        cs[half + j] = (float)s;
    }
    __syncthreads();
    const T* xr = x + row * heads * d;
    T* orow = out + row * heads * d;
    for (int p = threadIdx.x; p < heads * half; p += blockDim.x) {
        int h = p / half, j = p % half;
        float a = to_f(xr[h * d + j]), b = to_f(xr[h * d + j + half]);
        float c = cs[j], s = cs[half + j];
        orow[h * d + j] = from_f<T>(a * c - b * s);
        orow[h * d + j + half] = from_f<T>(b * c + a * s);
    }
}

extern "C" __global__ void rope_bf16(bf16* o, const bf16* x, const float* f, int heads, int d, u64 start) {
    rope(o, x, f, heads, d, start);
}
extern "C" __global__ void rope_f32(float* o, const float* x, const float* f, int heads, int d, u64 start) {
    rope(o, x, f, heads, d, start);
}
