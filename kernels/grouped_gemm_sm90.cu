// Grouped GEMM on Hopper's warpgroup MMA (wgmma, sm_90a): the same function and
// tile scheduling as grouped_gemm.cu (offsets read on the device), with a
// 128 x 256 block tile computed by two warpgroups of 64 x 256 each. Operands are
// staged by cp.async into the 128-byte-swizzled K-major layout that wgmma reads
// through shared-memory descriptors (the layout of swz<8> in mma.cuh).
#include "mma.cuh"
#include "grouped_tiles.cuh"

#define WG_BM 128
#define WG_BK 64
#define WG_THREADS 256


// Shared-memory matrix descriptor: K-major, 128-byte swizzle, 8-row groups 1024 bytes apart.
__device__ __forceinline__ u64 wg_desc(u32 saddr) {
    return (u64)((saddr & 0x3FFFF) >> 4) | ((u64)1 << 16) | ((u64)(1024 >> 4) << 32) | ((u64)1 << 62);
}

__device__ __forceinline__ void wg_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wg_commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
template <int N> __device__ __forceinline__ void wg_wait() {
    asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
}
__device__ __forceinline__ void fence_proxy_async() { asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory"); }

// D[64 x 128] (+)= A[64 x 16] B[128 x 16]^T, both K-major in shared memory.
__device__ __forceinline__ void wgmma_m64n128k16(float (&d)[64], u64 da, u64 db, int accumulate) {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 "
        "{%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31,%32,%33,%34,%35,%36,%37,%38,%39,%40,%41,%42,%43,%44,%45,%46,%47,%48,%49,%50,%51,%52,%53,%54,%55,%56,%57,%58,%59,%60,%61,%62,%63}, %64, %65, p, 1, 1, 0, 0;\n}\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
        : "l"(da), "l"(db), "r"(accumulate));
}

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

// Name, stages, n128 halves, WAIT_ALL, min blocks per SM. The host table is src/backend/cuda/variants.rs.
#define WG(NAME, ST, HV, WA, MINB)                                                                                \
    extern "C" __global__ void __launch_bounds__(WG_THREADS, MINB)                                                \
        NAME(const bf16* X, const bf16* W, const int* off, bf16* Y, int E, int N, int K) {                        \
        grouped_gemm_wg<ST, HV, WA>(X, W, off, Y, E, N, K);                                                       \
    }
WG(grouped_gemm_wgmma_s4, 4, 2, false, 1)
WG(grouped_gemm_wgmma_s4w, 4, 2, true, 1)
WG(grouped_gemm_wgmma_128_s3, 3, 1, false, 2)
WG(grouped_gemm_wgmma_128_s3w, 3, 1, true, 2)
