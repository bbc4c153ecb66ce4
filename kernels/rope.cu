// Rotary embedding, rotate-half convention: pairs (j, j + d/2) of each head rotate by
// angle pos * inv_freq[j]. The angle and its cos/sin are computed in f64 as the host
// reference does (positions reach 10^5, where an f32 angle loses the low digits).
// rope_bf16_x8 (below): the same with 16-byte vectors and several rows a block (Llama: 2.3 ms of
// scalar 2-byte accesses a prefill at 2.3 TB/s).
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

// The same for bf16 with 16-byte loads and stores, d % 16 == 0: a thread rotates 8 pairs (columns
// j .. j + 7 with j + d/2 .. j + d/2 + 7) of one head. A block of blockDim.x threads takes R rows: their
// R * d/2 cos/sin in f64 into shared memory first (the angle as the scalar kernel and the host compute
// it), then (row, head, chunk) items. Grid: ceil(s / R) blocks; shared memory R * d floats.
extern "C" __global__ void rope_bf16_x8(bf16* out, const bf16* x, const float* inv_freq, int heads, int d, u64 start,
                                        u64 rows, int R) {
    extern __shared__ float cs_rows[];  // per row: [half] cos then [half] sin
    const int half = d / 2, chunks = half / 8;
    const u64 row0 = (u64)blockIdx.x * R;
    const int nr = (int)min((u64)R, rows - row0);
    for (int i = threadIdx.x; i < nr * half; i += blockDim.x) {
        const int r = i / half, j = i - r * half;
        double s, c;
        sincos((double)(start + row0 + r) * (double)inv_freq[j], &s, &c);
        cs_rows[r * d + j] = (float)c;
        cs_rows[r * d + half + j] = (float)s;
    }
    __syncthreads();
    const int per_row = heads * chunks;
    for (int i = threadIdx.x; i < nr * per_row; i += blockDim.x) {
        const int r = i / per_row, p = i - r * per_row, h = p / chunks, j = (p - h * chunks) * 8;
        const u64 at = (row0 + r) * (u64)heads * d + (u64)h * d + j;
        const uint4 av = *(const uint4*)(x + at), bv = *(const uint4*)(x + at + half);
        const u32 a[4] = {av.x, av.y, av.z, av.w}, b[4] = {bv.x, bv.y, bv.z, bv.w};
        const float* c = cs_rows + r * d + j;
        const float* s = c + half;
        u32 lo[4], hi[4];
#pragma unroll
        for (int k = 0; k < 4; k++) {
            const float a0 = bf_lo(a[k]), a1 = bf_hi(a[k]), b0 = bf_lo(b[k]), b1 = bf_hi(b[k]);
            const float c0 = c[2 * k], c1 = c[2 * k + 1], s0 = s[2 * k], s1 = s[2 * k + 1];
            lo[k] = pack_bf16x2(a0 * c0 - b0 * s0, a1 * c1 - b1 * s1);
            hi[k] = pack_bf16x2(b0 * c0 + a0 * s0, b1 * c1 + a1 * s1);
        }
        *(uint4*)(out + at) = make_uint4(lo[0], lo[1], lo[2], lo[3]);
        *(uint4*)(out + at + half) = make_uint4(hi[0], hi[1], hi[2], hi[3]);
    }
}
