// Grouped GEMM for MoE experts, warp-specialised for Hopper (sm_90a only):
//   Y[offsets[e] .. offsets[e+1]) = X[offsets[e] .. offsets[e+1]) W[e]^T  for each expert e,
//   X [R, K], W [E, N, K], Y [R, N], bf16 in and out, f32 accumulation (wgmma).
//
// Tile: BM = 128 rows x BN (128 or 256) columns, BK = 64. 384 threads = 3 warpgroups:
//   warpgroup 0, the producer (setmaxnreg 40): one thread issues TMA loads of the A tile (rows of X,
//     one 2-D tensor map over all R rows) and the B tile (W viewed as [E*N, K], one tensor map) into
//     STAGES 128-byte-swizzled stages; each stage has a full mbarrier (expect-tx bytes) and an empty
//     mbarrier (one arrival per consumer warp).
//   warpgroups 1 and 2, the consumers (setmaxnreg 232): 64 rows x BN each, m64nBNk16 wgmma straight
//     from shared memory; one k-tile's wgmma group stays in flight, and the stage it read is released
//     only after wgmma.wait_group confirms the previous group retired.
// Persistent: gridDim.x <= #SMs blocks walk tiles t = blockIdx.x, + gridDim.x, ...; the tile list is
// expert by expert, and within an expert column block by column block with the row blocks inner
// (M_INNER) or the other way round, so a wave of blocks shares one expert's weights and rows in L2. The list is built per block from
// the offsets on the device (prefix sums of ceil(rows / BM) * ceil(N / BN) into shared memory): the
// offsets never go to the host.
// Ragged edges cost nothing to load: TMA zero-fills past R, past E*N and past K; a tile's rows of the
// next expert (or columns of the next expert's weight rows) are computed and not stored.
// Epilogue: either registers straight to global memory (masked to the tile's rows and N), or (SMEM_EPI,
// the default) through a 64 x BN staging buffer per consumer warpgroup, stored by TMA when all of the
// warpgroup's 64 rows belong to the tile's expert and N is a multiple of 8 (asynchronous: the
// warpgroup starts the next tile while the store drains), else by 16-byte stores of the valid rows.
// Limits (checked by the host, src/backend/cuda/moe.rs): K a multiple of 8 and > 0 (16-byte TMA row
// strides), E <= 1024 (shared memory for the tile list), E*N and R below 2^31; 16-byte aligned X, W.
#include "common.cuh"
#include "wgmma.cuh"

#define TG_BM 128
#define TG_BK 64
#define TG_THREADS 384
#define TG_MAX_E 1024

// CUtensorMap: 128 opaque bytes built by cuTensorMapEncodeTiled on the host.
struct __align__(64) TmaMap {
    u64 v[16];
};

__device__ __forceinline__ u32 tg_smem(const void* p) { return (u32)__cvta_generic_to_shared(p); }

__device__ __forceinline__ void mbar_init(u32 bar, u32 count) {
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(bar), "r"(count));
}
__device__ __forceinline__ void mbar_expect_tx(u32 bar, u32 bytes) {
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(bar), "r"(bytes) : "memory");
}
__device__ __forceinline__ void mbar_arrive(u32 bar) {
    asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(bar) : "memory");
}
__device__ __forceinline__ void mbar_wait(u32 bar, u32 parity) {
    u32 done;
    do {
        asm volatile(
            "{\n.reg .pred p;\nmbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\nselp.u32 %0, 1, 0, p;\n}\n"
            : "=r"(done)
            : "r"(bar), "r"(parity)
            : "memory");
    } while (!done);
}

// 2-D TMA load of the box at (c0 = inner/K, c1 = row) into shared memory, completing on `bar`.
__device__ __forceinline__ void tma_load_2d(u32 dst, const TmaMap* map, int c0, int c1, u32 bar) {
    asm volatile(
        "cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3}], [%4];\n" ::"r"(
            dst),
        "l"((u64)map), "r"(c0), "r"(c1), "r"(bar)
        : "memory");
}

// Named barrier of consumer warpgroup c (ids 1 and 2; 0 is __syncthreads).
__device__ __forceinline__ void epi_sync(int c) {
    if (c == 0) {
        asm volatile("bar.sync 1, 128;\n" ::: "memory");
    } else {
        asm volatile("bar.sync 2, 128;\n" ::: "memory");
    }
}

struct TgTile {
    int e, row0, rows, n0;
};

// Tile t of the list in shared memory (start[e] = tiles before expert e, start[E] = total).
template <int BN, bool M_INNER>
__device__ __forceinline__ TgTile tg_tile(int t, const int* start, const int* off, const int* cnt, int E, int N) {
    int lo = 0, hi = E - 1;  // the last expert whose first tile is <= t (skips empty experts)
    while (lo < hi) {
        int mid = (lo + hi + 1) >> 1;
        if (start[mid] <= t) {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    int e = lo, local = t - start[e];
    int mb = (cnt[e] + TG_BM - 1) / TG_BM;
    int nb, m;
    if (M_INNER) {  // column block outer: the blocks of a wave share weight rows
        nb = local / mb;
        m = local - nb * mb;
    } else {  // row block outer: the blocks of a wave share rows of X
        int nblocks = (N + BN - 1) / BN;
        m = local / nblocks;
        nb = local - m * nblocks;
    }
    TgTile r;
    r.e = e;
    r.row0 = off[e] + m * TG_BM;
    r.rows = min(TG_BM, cnt[e] - m * TG_BM);
    r.n0 = nb * BN;
    return r;
}

template <int BN, int STAGES, bool SMEM_EPI, bool M_INNER>
__device__ void grouped_gemm_tma(const TmaMap* tma_x, const TmaMap* tma_w, const TmaMap* tma_y,
                                 const int* __restrict__ offsets, bf16* __restrict__ Y, int E, int N, int K, int y_tma) {
    constexpr u32 A_BYTES = TG_BM * TG_BK * 2, B_BYTES = BN * TG_BK * 2, STAGE_BYTES = A_BYTES + B_BYTES;
    extern __shared__ unsigned char smem_raw[];
    const u32 sbase = (tg_smem(smem_raw) + 1023) & ~1023u;  // swizzle atoms are 1024-byte aligned
    unsigned char* gbase = smem_raw + (sbase - tg_smem(smem_raw));
    // Epilogue staging (SMEM_EPI): 64 rows x BN per consumer warpgroup.
    constexpr u32 EPI_BYTES = SMEM_EPI ? 2 * 64 * BN * 2 : 0;
    const u32 bars = sbase + STAGES * STAGE_BYTES + EPI_BYTES;  // full[STAGES], then empty[STAGES]
    int* start = (int*)(gbase + STAGES * STAGE_BYTES + EPI_BYTES + 16 * STAGES);
    int* off = start + E + 1;
    int* cnt = off + E;
    auto full = [&](int s) { return bars + 8 * s; };
    auto empty = [&](int s) { return bars + 8 * (STAGES + s); };

    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, wg = warp >> 2;
    const int nblocks = (N + BN - 1) / BN;
    if (warp == 0) {
        int base = 0;
        for (int e0 = 0; e0 < E; e0 += 32) {
            int e = e0 + lane;
            int lo = e < E ? offsets[e] : 0;
            int c = e < E ? offsets[e + 1] - lo : 0;
            int tiles = (c + TG_BM - 1) / TG_BM * nblocks;
            int inc = tiles;
#pragma unroll
            for (int o = 1; o < 32; o <<= 1) {
                int v = __shfl_up_sync(0xffffffffu, inc, o);
                if (lane >= o) inc += v;
            }
            if (e < E) {
                start[e] = base + inc - tiles;
                off[e] = lo;
                cnt[e] = c;
            }
            base += __shfl_sync(0xffffffffu, inc, 31);
        }
        if (lane == 0) start[E] = base;
    } else if (warp == 1 && lane == 0) {
        for (int s = 0; s < STAGES; s++) {
            mbar_init(full(s), 1);
            mbar_init(empty(s), 8);  // lane 0 of each consumer warp
        }
        asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
    }
    __syncthreads();
    const int total = start[E];

    if (wg == 0) {
        asm volatile("setmaxnreg.dec.sync.aligned.u32 40;\n");
        if (tid == 0) {
            asm volatile("prefetch.tensormap [%0];\n" ::"l"((u64)tma_x) : "memory");
            asm volatile("prefetch.tensormap [%0];\n" ::"l"((u64)tma_w) : "memory");
            int stage = 0;
            u32 phase = 0;
            const int ktiles = (K + TG_BK - 1) / TG_BK;
            for (int t = blockIdx.x; t < total; t += gridDim.x) {
                TgTile tile = tg_tile<BN, M_INNER>(t, start, off, cnt, E, N);
                const int wrow = tile.e * N + tile.n0;
                for (int kt = 0; kt < ktiles; kt++) {
                    mbar_wait(empty(stage), phase ^ 1);
                    mbar_expect_tx(full(stage), STAGE_BYTES);
                    u32 sa = sbase + stage * STAGE_BYTES;
                    tma_load_2d(sa, tma_x, kt * TG_BK, tile.row0, full(stage));
                    tma_load_2d(sa + A_BYTES, tma_w, kt * TG_BK, wrow, full(stage));
                    if (++stage == STAGES) {
                        stage = 0;
                        phase ^= 1;
                    }
                }
            }
        }
        return;
    }

    asm volatile("setmaxnreg.inc.sync.aligned.u32 232;\n");
    const int c = wg - 1;  // consumer: rows 64c .. 64c + 63 of the tile
    const int ktiles = (K + TG_BK - 1) / TG_BK;
    float acc[BN / 2];
    int stage = 0;
    u32 phase = 0;
    for (int t = blockIdx.x; t < total; t += gridDim.x) {
        TgTile tile = tg_tile<BN, M_INNER>(t, start, off, cnt, E, N);
        int prev = 0;
        for (int kt = 0; kt < ktiles; kt++) {
            mbar_wait(full(stage), phase);
            const u32 sa = sbase + stage * STAGE_BYTES;
            const u64 da = wg_desc(sa + c * 64 * TG_BK * 2), db = wg_desc(sa + A_BYTES);
            wg_fence();
#pragma unroll
            for (int kk = 0; kk < TG_BK / 16; kk++) {
                if constexpr (BN == 256) {
                    wgmma_m64n256k16(acc, da + 2 * kk, db + 2 * kk, (kt | kk) != 0);
                } else {
                    wgmma_m64n128k16(acc, da + 2 * kk, db + 2 * kk, (kt | kk) != 0);
                }
            }
            wg_commit();
            wg_wait<1>();  // the previous k-tile's group has retired: its stage may be refilled
            if (kt > 0 && lane == 0) mbar_arrive(empty(prev));
            prev = stage;
            if (++stage == STAGES) {
                stage = 0;
                phase ^= 1;
            }
        }
        wg_wait<0>();
        if (lane == 0) mbar_arrive(empty(prev));
        wg_pin(acc);

        const int g = lane >> 2, q = lane & 3, wrow = c * 64 + (warp & 3) * 16;
        if constexpr (SMEM_EPI) {
            // Through shared memory: BN / 64 slabs of 64 rows x 128 bytes, 16-byte chunks XOR-swizzled by
            // row (TMA's SWIZZLE_128B layout; conflict-free writes from the accumulator layout). A warpgroup
            // whose 64 rows all belong to the tile's expert stores its slabs with TMA (asynchronous: the
            // warpgroup goes on to the next tile, and waits for the reads of this buffer before refilling
            // it); otherwise its threads store 16-byte chunks of the valid rows.
            unsigned char* epi = gbase + STAGES * STAGE_BYTES + c * (64 * BN * 2);
            const u32 epi_s = sbase + STAGES * STAGE_BYTES + c * (64 * BN * 2);
            const int tid_c = tid & 127;
            if (tid_c == 0) asm volatile("cp.async.bulk.wait_group.read 0;\n" ::: "memory");
            epi_sync(c);  // the previous tile's stores have read this buffer
#pragma unroll
            for (int half = 0; half < 2; half++) {
                int r = (warp & 3) * 16 + g + half * 8;
#pragma unroll
                for (int j = 0; j < BN / 8; j++) {
                    u32 v = pack_bf16x2(acc[j * 4 + half * 2], acc[j * 4 + half * 2 + 1]);
                    *(u32*)(epi + (j >> 3) * 8192 + r * 128 + (((j & 7) ^ (r & 7)) * 16) + q * 4) = v;
                }
            }
            const bool by_tma = y_tma && tile.rows >= (c + 1) * 64;
            if (by_tma) fence_proxy_async();  // generic-proxy writes, read by the TMA (async proxy)
            epi_sync(c);
            if (by_tma) {
                if (tid_c == 0) {
#pragma unroll
                    for (int sl = 0; sl < BN / 64; sl++) {
                        if (tile.n0 + sl * 64 >= N) break;
                        asm volatile(
                            "cp.async.bulk.tensor.2d.global.shared::cta.bulk_group [%0, {%1, %2}], [%3];\n" ::"l"(
                                (u64)tma_y),
                            "r"(tile.n0 + sl * 64), "r"(tile.row0 + c * 64), "r"(epi_s + sl * 8192)
                            : "memory");
                    }
                    asm volatile("cp.async.bulk.commit_group;\n" ::: "memory");
                }
            } else {
#pragma unroll 4
                for (int i = tid_c; i < 64 * (BN / 8); i += 128) {
                    int r = i / (BN / 8), ch = i % (BN / 8);
                    int row = c * 64 + r, col = tile.n0 + ch * 8;
                    if (row >= tile.rows || col >= N) continue;
                    const unsigned char* src = epi + (ch >> 3) * 8192 + r * 128 + (((ch & 7) ^ (r & 7)) * 16);
                    bf16* dst = Y + (u64)(tile.row0 + row) * N + col;
                    if (col + 8 <= N && !(N & 7)) {
                        *(uint4*)dst = *(const uint4*)src;
                    } else {
                        for (int x = 0; x < 8 && col + x < N; x++) dst[x] = ((const bf16*)src)[x];
                    }
                }
            }
        } else {
#pragma unroll
        for (int half = 0; half < 2; half++) {
            int r = wrow + g + half * 8;
            if (r >= tile.rows) continue;
            bf16* yrow = Y + (u64)(tile.row0 + r) * N;
#pragma unroll
            for (int j = 0; j < BN / 8; j++) {
                int col = tile.n0 + j * 8 + q * 2;
                float v0 = acc[j * 4 + half * 2], v1 = acc[j * 4 + half * 2 + 1];
                if (col + 1 < N && !(N & 1)) {
                    *(u32*)(yrow + col) = pack_bf16x2(v0, v1);
                } else {
                    if (col < N) yrow[col] = f2bf(v0);
                    if (col + 1 < N) yrow[col + 1] = f2bf(v1);
                }
            }
        }
        }
    }
    // The last TMA stores must have read shared memory before the block exits.
    if (SMEM_EPI && (tid & 127) == 0) asm volatile("cp.async.bulk.wait_group.read 0;\n" ::: "memory");
}

// Name, BN, stages, epilogue through shared memory, row blocks inner. The host table (and its
// shared-memory sizes) is src/backend/cuda/variants.rs.
#define TG(NAME, BN, ST, SE, MI)                                                                                      \
    extern "C" __global__ void __launch_bounds__(TG_THREADS, 1)                                                \
        NAME(const __grid_constant__ TmaMap tma_x, const __grid_constant__ TmaMap tma_w,                      \
             const __grid_constant__ TmaMap tma_y, const int* off, bf16* Y, int E, int N, int K, int y_tma) {  \
        grouped_gemm_tma<BN, ST, SE, MI>(&tma_x, &tma_w, &tma_y, off, Y, E, N, K, y_tma);                         \
    }
TG(grouped_gemm_tma_256_s4, 256, 4, false, true)
TG(grouped_gemm_tma_256_s3e, 256, 3, true, true)
TG(grouped_gemm_tma_256_s3e_n, 256, 3, true, false)
TG(grouped_gemm_tma_128_s6, 128, 6, false, true)
TG(grouped_gemm_tma_128_s4e, 128, 4, true, true)
TG(grouped_gemm_tma_128_s4e_n, 128, 4, true, false)
