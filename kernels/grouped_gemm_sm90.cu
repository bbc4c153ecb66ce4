// Grouped GEMM on Hopper's warpgroup MMA (wgmma, sm_90a): the same function and
// tile scheduling as grouped_gemm.cu (offsets read on the device), with a
// 128 x 256 block tile computed by two warpgroups of 64 x 256 each. Operands are
// staged by cp.async into the 128-byte-swizzled K-major layout that wgmma reads
// through shared-memory descriptors (the layout of swz<8> in mma.cuh). On sm_90a it is the fallback
// for shapes the TMA kernel (grouped_gemm_tma.cu) does not take.
#include "mma.cuh"
#include "grouped_tiles.cuh"
#include "wgmma.cuh"

#define WG_BM 128
#define WG_BK 64
#define WG_THREADS 256


// HALVES n128 halves per warpgroup (block tile 128 x 128*HALVES). WAIT_ALL retires
// each k-tile's wgmma before the next barrier, which lets the loads run STAGES - 1
// tiles ahead instead of STAGES - 2.
template <int STAGES, int HALVES, bool WAIT_ALL>
__device__ void grouped_gemm_wg(const bf16* __restrict__ X, const bf16* __restrict__ W, const int* __restrict__ offsets,
                                bf16* __restrict__ Y, int E, int N, int K) {
    constexpr int CH = WG_BK / 8;
    constexpr int BN = 128 * HALVES;
    constexpr u32 A_BYTES = WG_BM * WG_BK * 2, STAGE_BYTES = (WG_BM + BN) * WG_BK * 2;
    // Tiles loaded ahead: the slot refilled was read by a wgmma group already retired.
    constexpr int DIST = WAIT_ALL ? STAGES - 1 : STAGES - 2;
    extern __shared__ unsigned char smem_raw[];
    Tile tile = find_tile<WG_BM>(offsets, E, blockIdx.y);
    if (tile.e < 0) return;
    const u32 sbase = (smem_addr(smem_raw) + 1023) & ~1023u;  // swizzle atoms are 1024-byte aligned
    const int n0 = blockIdx.x * BN;
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, wg = warp >> 2;
    const bf16* A = X + (u64)tile.row0 * K;
    const bf16* B = W + ((u64)tile.e * N + n0) * K;
    const int nrows_b = min(BN, N - n0);
    const int ktiles = (K + WG_BK - 1) / WG_BK;

    auto load = [&](int slot, int kt) {
        u32 sa = sbase + slot * STAGE_BYTES, sb = sa + A_BYTES;
        int k0 = kt * WG_BK;
#pragma unroll
        for (int i = 0; i < WG_BM * CH / WG_THREADS; i++) {
            int c = tid + i * WG_THREADS, r = c / CH, ch = c % CH;
            int gk = k0 + ch * 8;
            bool ok = r < tile.rows && gk < K;
            cp_async16(sa + swz<CH>(r, ch), ok ? (const void*)(A + (u64)r * K + gk) : (const void*)A, ok ? 16 : 0);
        }
#pragma unroll
        for (int i = 0; i < BN * CH / WG_THREADS; i++) {
            int c = tid + i * WG_THREADS, r = c / CH, ch = c % CH;
            int gk = k0 + ch * 8;
            bool ok = r < nrows_b && gk < K;
            cp_async16(sb + swz<CH>(r, ch), ok ? (const void*)(B + (u64)r * K + gk) : (const void*)B, ok ? 16 : 0);
        }
    };

    float acc[HALVES][64];
#pragma unroll
    for (int h = 0; h < HALVES; h++)
#pragma unroll
        for (int i = 0; i < 64; i++) acc[h][i] = 0.f;

#pragma unroll
    for (int s = 0; s < DIST; s++) {
        if (s < ktiles) load(s, s);
        cp_async_commit();
    }
    for (int kt = 0; kt < ktiles; kt++) {
        cp_async_wait<DIST - 1>();
        fence_proxy_async();  // cp.async wrote through the generic proxy; wgmma reads through the async one
        __syncthreads();      // and every warpgroup has retired the wgmma that read the slot refilled below
        int pf = kt + DIST;
        if (pf < ktiles) load(pf % STAGES, pf);
        cp_async_commit();

        u32 sa = sbase + (kt % STAGES) * STAGE_BYTES + wg * 64 * WG_BK * 2, sb = sbase + (kt % STAGES) * STAGE_BYTES + A_BYTES;
        wg_fence();
#pragma unroll
        for (int kk = 0; kk < WG_BK / 16; kk++) {
            u64 da = wg_desc(sa + kk * 32);
#pragma unroll
            for (int h = 0; h < HALVES; h++) wgmma_m64n128k16(acc[h], da, wg_desc(sb + h * 128 * WG_BK * 2 + kk * 32), 1);
        }
        wg_commit();
        if (WAIT_ALL) {
            wg_wait<0>();
        } else {
            wg_wait<1>();
        }
    }
    wg_wait<0>();
    cp_async_wait<0>();
    // Order the epilogue's reads of the accumulators after the wait (the compiler sees no dependency otherwise).
#pragma unroll
    for (int h = 0; h < HALVES; h++)
#pragma unroll
        for (int i = 0; i < 64; i++) asm volatile("" : "+f"(acc[h][i])::"memory");

    const int g = lane >> 2, q = lane & 3, wrow = wg * 64 + (warp & 3) * 16;
#pragma unroll
    for (int half = 0; half < 2; half++) {
        int r = wrow + g + half * 8;
        if (r >= tile.rows) continue;
        bf16* yrow = Y + (u64)(tile.row0 + r) * N;
#pragma unroll
        for (int h2 = 0; h2 < HALVES; h2++) {
#pragma unroll
            for (int j = 0; j < 16; j++) {
                int c = n0 + h2 * 128 + j * 8 + q * 2;
                float v0 = acc[h2][j * 4 + half * 2], v1 = acc[h2][j * 4 + half * 2 + 1];
                if (c + 1 < N && !(N & 1)) {
                    *(u32*)(yrow + c) = pack_bf16x2(v0, v1);
                } else {
                    if (c < N) yrow[c] = f2bf(v0);
                    if (c + 1 < N) yrow[c + 1] = f2bf(v1);
                }
            }
        }
    }
}

// Name, stages, n128 halves, WAIT_ALL, min blocks per SM. The host table is src/backend/cuda/tiles.rs.
#define WG(NAME, ST, HV, WA, MINB)                                                                                \
    extern "C" __global__ void __launch_bounds__(WG_THREADS, MINB)                                                \
        NAME(const bf16* X, const bf16* W, const int* off, bf16* Y, int E, int N, int K) {                        \
        grouped_gemm_wg<ST, HV, WA>(X, W, off, Y, E, N, K);                                                       \
    }
WG(grouped_gemm_wgmma_s4, 4, 2, false, 1)
WG(grouped_gemm_wgmma_s4w, 4, 2, true, 1)
WG(grouped_gemm_wgmma_128_s3, 3, 1, false, 2)
WG(grouped_gemm_wgmma_128_s3w, 3, 1, true, 2)
