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

// ---- DeepSeek-V3 block scaling (the FP8 grouped GEMM's operands, kernels/grouped_gemm_fp8.cu) ----
// One f32 scale per block, scale = amax / 448 (1 for an all-zero block), and q = e4m3(x * (448 / amax))
// (DeepGEMM's per-token cast: one division a block and a multiply a value, where x / scale took the
// IEEE division's ~10 instructions a value), as src/ops/block_fp8.rs. K a multiple of 16 (checked by
// the host); `one` is the q tensor's per-tensor scale slot, set to 1 (the block scales live beside it).

__device__ __forceinline__ float block_scale(float amax) { return amax > 0.f ? __fdiv_rn(amax, 448.0f) : 1.0f; }
// 448 / amax, at most FLT_MAX (a subnormal amax), 1 for an all-zero block.
__device__ __forceinline__ float block_inv(float amax) {
    return amax > 0.f ? fminf(__fdiv_rn(448.0f, amax), 3.402823466e38f) : 1.0f;
}
// e4m3 of one 16-byte chunk of 8 bf16 times inv: 8 bytes.
__device__ __forceinline__ uint2 e4m3x8(uint4 u, float inv) {
    const u32 w[4] = {u.x, u.y, u.z, u.w};
    u32 p[2];
#pragma unroll
    for (int c = 0; c < 2; c++)
        p[c] = (u32)pack_e4m3x2(__fmul_rn(bf_lo(w[2 * c]), inv), __fmul_rn(bf_hi(w[2 * c]), inv)) |
               ((u32)pack_e4m3x2(__fmul_rn(bf_lo(w[2 * c + 1]), inv), __fmul_rn(bf_hi(w[2 * c + 1]), inv)) << 16);
    return make_uint2(p[0], p[1]);
}

// 1 x 128 blocks (activations): x [R, K] -> q [R, K], s [ceil(K / 128), R] (k-block major). Half a
// warp per (row, k block), one 16-byte load (8 columns) per lane; blocks are numbered row-major so
// that a block's loads are contiguous, and each thread issues its QR_ITEMS loads before the first
// reduction. 32-bit block numbers (R x KB < 2^31, checked by the host), divided once per thread:
// one warp per block of 128 and 8-byte loads ran at 1.5 TB/s on the H200, and this layout with a
// 64-bit divide per block 2.2 TB/s (instruction-bound).
#define QR_ITEMS 4
#define QR_HALVES 16  // half-warps in a block of 256
extern "C" __global__ void __launch_bounds__(256)
    quantize_rows_bf16(const bf16* x, unsigned char* q, float* s, float* one, int R, int K) {
    if (blockIdx.x == 0 && threadIdx.x == 0) *one = 1.0f;
    const u32 KB = (K + 127) / 128, j = threadIdx.x & 15, blocks = (u32)R * KB;
    const u32 g0 = blockIdx.x * (QR_ITEMS * QR_HALVES) + (threadIdx.x >> 4);
    u32 row[QR_ITEMS], kb[QR_ITEMS];
    row[0] = g0 / KB;
    kb[0] = g0 - row[0] * KB;
#pragma unroll
    for (int i = 1; i < QR_ITEMS; i++) {  // block g0 + 16 i
        row[i] = row[i - 1], kb[i] = kb[i - 1] + QR_HALVES;
        while (kb[i] >= KB) kb[i] -= KB, row[i]++;
    }
    uint4 u[QR_ITEMS];
#pragma unroll
    for (int i = 0; i < QR_ITEMS; i++) {
        const u32 col = kb[i] * 128 + j * 8;
        u[i] = make_uint4(0, 0, 0, 0);
        if (g0 + i * QR_HALVES < blocks && col < (u32)K) u[i] = *(const uint4*)(x + (u64)row[i] * K + col);  // K % 8 == 0
    }
#pragma unroll
    for (int i = 0; i < QR_ITEMS; i++) {
        const u32 col = kb[i] * 128 + j * 8;
        const u32 w[4] = {u[i].x, u[i].y, u[i].z, u[i].w};
        float m = 0.f;
#pragma unroll
        for (int c = 0; c < 4; c++) m = fmaxf(m, fmaxf(fabsf(bf_lo(w[c])), fabsf(bf_hi(w[c]))));
#pragma unroll
        for (int o = 8; o > 0; o >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, o));  // within the half-warp
        if (g0 + i * QR_HALVES >= blocks) continue;
        if (col < (u32)K) *(uint2*)(q + (u64)row[i] * K + col) = e4m3x8(u[i], block_inv(m));
        if (j == 0) s[(u64)kb[i] * R + row[i]] = block_scale(m);
    }
}

// The scales of row-blocked FP8 values ([KB, rows_in], k-block major) of the rows idx picks:
// out [KB, m] (the values themselves go through gather_rows). Rows out of range get scale 1
// (gather_rows zeroes their values). Sets the values' per-tensor scale slot `one` to 1.
extern "C" __global__ void gather_row_scales(float* out, const float* in, const int* idx, u64 m, u64 rows_in, int KB,
                                             float* one) {
    if (blockIdx.x == 0 && threadIdx.x == 0) *one = 1.0f;
    for (u64 i = blockIdx.x * (u64)blockDim.x + threadIdx.x; i < m * KB; i += (u64)gridDim.x * blockDim.x) {
        const u64 kb = i / m;
        const int r = idx[i % m];
        out[i] = r >= 0 && (u64)r < rows_in ? in[kb * rows_in + r] : 1.0f;
    }
}

// 128 x 128 blocks (weights): x [G, M, K] -> q [G, M, K], s [G, ceil(M / 128), ceil(K / 128)].
// Block (k block, row block, group) of 256 threads: thread t holds row t / 2, 64 columns (8 x 8).
extern "C" __global__ void __launch_bounds__(256)
    quantize_tiles_bf16(const bf16* x, unsigned char* q, float* s, float* one, int M, int K) {
    if (blockIdx.x == 0 && blockIdx.y == 0 && blockIdx.z == 0 && threadIdx.x == 0) *one = 1.0f;
    const int kb = blockIdx.x, mb = blockIdx.y, g = blockIdx.z;
    const int r = mb * 128 + (threadIdx.x >> 1), c0 = kb * 128 + (threadIdx.x & 1) * 64;
    const u64 base = ((u64)g * M + r) * K;
    uint4 u[8];
    float m = 0.f;
#pragma unroll
    for (int i = 0; i < 8; i++) {
        const int col = c0 + i * 8;
        if (r < M && col < K) {  // K % 8 == 0: whole chunks
            u[i] = *(const uint4*)(x + base + col);
        } else {
            u[i] = make_uint4(0, 0, 0, 0);
        }
        const u32 w[4] = {u[i].x, u[i].y, u[i].z, u[i].w};
#pragma unroll
        for (int j = 0; j < 4; j++) m = fmaxf(m, fmaxf(fabsf(bf_lo(w[j])), fabsf(bf_hi(w[j]))));
    }
    const float amax = block_reduce(m, MaxOp(), 0.f), inv = block_inv(amax);
#pragma unroll
    for (int i = 0; i < 8; i++) {
        const int col = c0 + i * 8;
        if (r < M && col < K) *(uint2*)(q + base + col) = e4m3x8(u[i], inv);
    }
    if (threadIdx.x == 0) s[((u64)g * gridDim.y + mb) * gridDim.x + kb] = block_scale(amax);
}
