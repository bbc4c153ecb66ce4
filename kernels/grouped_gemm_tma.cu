// Grouped GEMM for MoE experts, warp-specialised for Hopper (sm_90a only):
//   Y[offsets[e] .. offsets[e+1]) = X[offsets[e] .. offsets[e+1]) W[e]^T  for each expert e,
//   X [R, K], W [E, N, K], Y [R, N], bf16 in and out, f32 accumulation (wgmma);
//   with SW (fused SwiGLU), W [E, 2N, K] holds each expert's N gate rows then N up rows and
//   Y [R, N] = silu(X W_gate^T) * (X W_up^T), from the f32 accumulators.
//
// Tile: BM = 128 rows x BN (128 or 256) columns, BK = 64. 384 threads = 3 warpgroups:
//   warpgroup 0, the producer (setmaxnreg 40): one thread issues TMA loads of the A tile (rows of X,
//     one 2-D tensor map over all R rows) and the B tile (W viewed as [E*N, K], one tensor map) into
//     STAGES (3 or 4) 128-byte-swizzled stages; each stage has a full mbarrier (expect-tx bytes) and
//     an empty mbarrier (one arrival per consumer warp).
//   warpgroups 1 and 2, the consumers (setmaxnreg 232): 64 rows x BN each, m64nBNk16 wgmma straight
//     from shared memory; one k-tile's wgmma group stays in flight, and the stage it read is released
//     only after wgmma.wait_group confirms the previous group retired.
// Persistent: gridDim.x <= #SMs blocks walk tiles t = blockIdx.x, + gridDim.x, ...; the tile list is
// expert by expert, and within an expert column block by column block with the row blocks inner
// (M_INNER) or the other way round, so a wave of blocks shares one expert's weights and rows in L2.
// The list is built per block from the offsets on the device (prefix sums of ceil(rows / BM) *
// ceil(N / BN) into shared memory): the offsets never go to the host.
// MC: clusters of two blocks on neighbouring row blocks (over all experts, in bands of 8 pairs);
// when both belong to one expert each loads half of the weight tile and multicasts it to both, and
// the consumers release a stage to both producers. Correct, but slower than the plain kernel on
// H200 (not a default; BENCHMARKS.md).
// LEAN (the `_lean` instantiations, TGL; the defaults since session 7): the consumer's k loop with
// warp-uniform descriptors (DeepGEMM's per-k-tile budget: 46 instructions a warp against 72), and with
// SW silu's division by __fdividef in the epilogue, which the tensor cores wait for
// (bench/results/2026-12-02-cpu/bf16sass compares the SASS).
// Ragged edges cost nothing to load: TMA zero-fills past R, past E*N and past K; a tile's rows of the
// next expert (or columns of the next expert's weight rows) are computed and not stored.
// Epilogue: either registers straight to global memory (masked to the tile's rows and N), or (EPI
// parts, the default 1) through a 64 x BN / EPI staging buffer per consumer warpgroup, stored by TMA
// when all of the warpgroup's 64 rows belong to the tile's expert and N is a multiple of 8
// (asynchronous: the warpgroup starts the next tile while the store drains), else by 16-byte stores
// of the valid rows.
// Limits (checked by the host, src/backend/cuda/tiles.rs tma_fits): K a multiple of 8 and > 0
// (16-byte TMA row strides), the tile list (8 bytes per expert) fitting next to the stages in 227 KiB
// of shared memory (E <= 1024 for the default 3-stage BN = 256 kernel), E*N and R below 2^31;
// 16-byte aligned X, W, Y (whole allocations).
#include "common.cuh"
#include "tma.cuh"
#include "wgmma.cuh"

#define TG_BK 64

template <int BN, int STAGES, int EPI, bool M_INNER, bool MC, bool SW, bool LEAN = false, int BAND = 0>
__device__ void grouped_gemm_tma(const TmaMap* tma_x, const TmaMap* tma_w, const TmaMap* tma_y,
                                 const int* __restrict__ offsets, bf16* __restrict__ Y, int E, int N, int K, int y_tma) {
    constexpr u32 A_BYTES = TG_BM * TG_BK * 2, B_BYTES = BN * TG_BK * 2, STAGE_BYTES = A_BYTES + B_BYTES;
    // SW (fused SwiGLU): W[e] is [2N, K], gate rows then up rows; a tile's weight rows are BN / 2 gate
    // rows and the BN / 2 up rows of the same outputs, so a tile writes ON = BN / 2 output columns.
    static_assert(!(SW && (MC || EPI == 0)), "fused SwiGLU: no multicast, epilogue through shared memory");
    constexpr int ON = SW ? BN / 2 : BN;
    // Dynamic shared memory starts 1024-byte aligned (no static shared memory here), as the swizzle
    // atoms need (TgSmem checks it).
    // Epilogue staging (EPI parts): 64 rows x BN / EPI per consumer warpgroup.
    constexpr u32 EPI_BYTES = EPI > 0 ? 2 * 64 * (ON / EPI) * 2 : 0;
    extern __shared__ __align__(1024) unsigned char smem_raw[];
    const TgSmem<STAGES> sm(smem_raw, STAGE_BYTES, EPI_BYTES, E);
    const u32 sbase = sm.base;
    int *start = sm.start, *off = sm.off;

    const int tid = threadIdx.x, lane = tid & 31, warp = tg_warp<LEAN>(), wg = warp >> 2;
    const int nblocks = (N + ON - 1) / ON;
    if (warp == 0) {
        tg_list(offsets, E, MC ? 1 : nblocks, start, off, lane);  // units: tiles, or row blocks of pairs
    } else if (warp == 1 && lane == 0) {
        sm.init_bars(MC ? 16 : 8);  // lane 0 of each consumer warp (of both CTAs)
    }
    if (MC) {
        cluster_sync();  // the peer's barriers are initialised before anything lands on them
    } else {
        __syncthreads();
    }
    const int total = MC ? (start[E] + 1) / 2 * nblocks : start[E];
    const int rank = MC ? cluster_reg(0) : 0;
    const int first = MC ? cluster_reg(1) : blockIdx.x, step = MC ? cluster_reg(2) : gridDim.x;
    auto tile_of = [&](int t) {
        if constexpr (MC) {
            return tg_pair_tile<ON, M_INNER>(t, rank, start, off, E, N);
        } else {
            return tg_tile<ON, M_INNER, TG_BM, BAND>(t, start, off, E, N);
        }
    };
    // Consumers release a stage to the producers of every CTA that may write it.
    auto release = [&](int s) { mbar_release<MC>(sm.empty(s)); };

    if (wg == 0) {
        asm volatile("setmaxnreg.dec.sync.aligned.u32 40;\n");
        if (tid == 0) {
            asm volatile("prefetch.tensormap [%0];\n" ::"l"((u64)tma_x) : "memory");
            asm volatile("prefetch.tensormap [%0];\n" ::"l"((u64)tma_w) : "memory");
            int stage = 0;
            u32 phase = 0;
            const int ktiles = (K + TG_BK - 1) / TG_BK;
            for (int t = first; t < total; t += step) {
                TgTile tile = tile_of(t);
                const int wrow = SW ? tile.e * 2 * N + tile.n0 : tile.e * N + tile.n0;
                for (int kt = 0; kt < ktiles; kt++) {
                    mbar_wait(sm.empty(stage), phase ^ 1);
                    u32 sa = sbase + stage * STAGE_BYTES;
                    if (!tile.valid) {
                        mbar_arrive(sm.full(stage));  // nothing to load: the consumers only pass the stage on
                    } else if (SW) {  // the W map's box is BN / 2 rows: gate rows, then up rows
                        mbar_expect_tx(sm.full(stage), STAGE_BYTES);
                        tma_load_2d(sa, tma_x, kt * TG_BK, tile.row0, sm.full(stage));
                        tma_load_2d(sa + A_BYTES, tma_w, kt * TG_BK, wrow, sm.full(stage));
                        tma_load_2d(sa + A_BYTES + B_BYTES / 2, tma_w, kt * TG_BK, wrow + N, sm.full(stage));
                    } else if (!MC) {
                        mbar_expect_tx(sm.full(stage), STAGE_BYTES);
                        tma_load_2d(sa, tma_x, kt * TG_BK, tile.row0, sm.full(stage));
                        tma_load_2d(sa + A_BYTES, tma_w, kt * TG_BK, wrow, sm.full(stage));
                    } else {
                        // The W map's box is BN / 2 rows: each CTA of a pair loads one half of the weight
                        // tile for both (multicast), or both halves for itself when the pair is split.
                        mbar_expect_tx(sm.full(stage), STAGE_BYTES);
                        tma_load_2d(sa, tma_x, kt * TG_BK, tile.row0, sm.full(stage));
                        const u32 sb = sa + A_BYTES, half = B_BYTES / 2;
                        if (tile.mc) {
                            tma_load_2d_mc(sb + rank * half, tma_w, kt * TG_BK, wrow + rank * (BN / 2), sm.full(stage), 3);
                        } else {
                            tma_load_2d(sb, tma_w, kt * TG_BK, wrow, sm.full(stage));
                            tma_load_2d(sb + half, tma_w, kt * TG_BK, wrow + BN / 2, sm.full(stage));
                        }
                    }
                    if (++stage == STAGES) {
                        stage = 0;
                        phase ^= 1;
                    }
                }
            }
        }
        if (MC) cluster_sync();  // no CTA leaves while its peer may still signal its barriers
        return;
    }

    asm volatile("setmaxnreg.inc.sync.aligned.u32 232;\n");
    const int c = wg - 1;  // consumer: rows 64c .. 64c + 63 of the tile
    const int ktiles = (K + TG_BK - 1) / TG_BK;
    float acc[BN / 2];
    int stage = 0;
    u32 phase = 0;
    for (int t = first; t < total; t += step) {
        TgTile tile = tile_of(t);
        // Nothing to compute (a pair's missing second block): pass the stages on. (Skipping a warpgroup
        // whose 64 rows hold none of the expert's, as the FP8 kernel does, lets it run ahead of the other
        // and starves both of prefetched stages: V3 gate/up 13.0 -> 15.2 ms on the H200, BENCHMARKS.md.)
        if (!tile.valid) {
            for (int kt = 0; kt < ktiles; kt++) {
                mbar_wait(sm.full(stage), phase);
                if (lane == 0) release(stage);
                if (++stage == STAGES) {
                    stage = 0;
                    phase ^= 1;
                }
            }
            continue;
        }
        int prev = 0;
        // LEAN: warp-uniform descriptors (bench/results/2026-12-02-cpu/bf16sass): the default loop rebuilds
        // both from the stage address in ordinary registers and moves them to uniform ones with 4 R2UR per
        // wgmma (16 a k-tile); the lean one takes the shuffled bases plus the stage offset, in uniform
        // registers (UIADD3).
        const u32 du_hi = wg_desc_hi(), da_lo = LEAN ? wg_desc_lo_uniform(sbase + c * 64 * TG_BK * 2) : 0;
        const u32 db_lo = LEAN ? wg_desc_lo_uniform(sbase + A_BYTES) : 0;
        for (int kt = 0; kt < ktiles; kt++) {
            mbar_wait(sm.full(stage), phase);
            const u32 sa = sbase + stage * STAGE_BYTES, so = stage * (STAGE_BYTES >> 4);
            const u64 da = wg_desc(sa + c * 64 * TG_BK * 2), db = wg_desc(sa + A_BYTES);
            wg_fence();
#pragma unroll
            for (int kk = 0; kk < TG_BK / 16; kk++) {
                const u64 a = LEAN ? wg_desc_at(du_hi, da_lo + so, 2 * kk) : da + 2 * kk;
                const u64 b = LEAN ? wg_desc_at(du_hi, db_lo + so, 2 * kk) : db + 2 * kk;
                if constexpr (BN == 256) {
                    wgmma_m64n256k16(acc, a, b, (kt | kk) != 0);
                } else {
                    wgmma_m64n128k16(acc, a, b, (kt | kk) != 0);
                }
            }
            wg_commit();
            wg_wait<1>();  // the previous k-tile's group has retired: its stage may be refilled
            if (kt > 0 && lane == 0) release(prev);
            prev = stage;
            if (++stage == STAGES) {
                stage = 0;
                phase ^= 1;
            }
        }
        wg_wait<0>();
        if (lane == 0) release(prev);
        wg_pin(acc);

        const int g = lane >> 2, q = lane & 3, wrow = c * 64 + (warp & 3) * 16;
        // Output element i (0..3) of 8-column chunk j: the accumulator, or silu(gate) * up.
        auto outv = [&](int j, int i) {
            if constexpr (SW) {
                float gt = acc[j * 4 + i], up = acc[(j + ON / 8) * 4 + i];
                if constexpr (LEAN) {
                    // The IEEE division costs about 10 instructions an element (FCHK and a slow-path call
                    // around RCP and its Newton steps) in an epilogue that the tensor cores wait for;
                    // __fdividef is RCP and a multiply (2 ulp; 0 past 2^126, where silu is -0 anyway).
                    return __fdividef(gt, 1.f + __expf(-gt)) * up;
                } else {
                    return gt / (1.f + __expf(-gt)) * up;
                }
            } else {
                return acc[j * 4 + i];
            }
        };
        if constexpr (EPI > 0) {
            // Through shared memory in EPI parts of ON / EPI columns (tg_store_rows, tma.cuh): by TMA when
            // all of the warpgroup's 64 rows belong to the tile's expert, else by its threads.
            constexpr int PW = ON / EPI, PJ = PW / 8;
            unsigned char* epi = smem_raw + STAGES * STAGE_BYTES + c * (64 * PW * 2);
            const u32 epi_s = sbase + STAGES * STAGE_BYTES + c * (64 * PW * 2);
            const bool by_tma = y_tma && tile.rows >= (c + 1) * 64;
#pragma unroll
            for (int p = 0; p < EPI; p++) {
                tg_store_rows<PJ>([&](int jj, int i) { return outv(p * PJ + jj, i); }, epi, epi_s, c, tma_y, by_tma, Y,
                                  N, tile.row0 + c * 64, tile.rows - c * 64, tile.n0 + p * PW);
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
    if (EPI > 0 && (tid & 127) == 0) asm volatile("cp.async.bulk.wait_group.read 0;\n" ::: "memory");
    if (MC) cluster_sync();
}

// Name, BN, stages, epilogue parts through shared memory (0: straight from registers), row blocks
// inner, clusters of two with the weight tile multicast, fused SwiGLU; TGX also the lean loop and the
// band (tg_tile). The host table (and its shared-memory sizes) is src/backend/cuda/tiles.rs.
#define TGX(NAME, BN, ST, SE, MI, MC, SW, LEAN, BAND)                                                           \
    extern "C" __global__ void __launch_bounds__(TG_THREADS, 1)                                                \
        NAME(const __grid_constant__ TmaMap tma_x, const __grid_constant__ TmaMap tma_w,                      \
             const __grid_constant__ TmaMap tma_y, const int* off, bf16* Y, int E, int N, int K, int y_tma) {  \
        grouped_gemm_tma<BN, ST, SE, MI, MC, SW, LEAN, BAND>(&tma_x, &tma_w, &tma_y, off, Y, E, N, K, y_tma); \
    }
#define TG(NAME, BN, ST, SE, MI, MC, SW) TGX(NAME, BN, ST, SE, MI, MC, SW, false, 0)
TG(grouped_gemm_tma_256_s4, 256, 4, 0, true, false, false)
TG(grouped_gemm_tma_256_s3e, 256, 3, 1, true, false, false)
TG(grouped_gemm_tma_256_s3e_n, 256, 3, 1, false, false, false)
TG(grouped_gemm_tma_128_s6, 128, 6, 0, true, false, false)
TG(grouped_gemm_tma_128_s4e, 128, 4, 1, true, false, false)
TG(grouped_gemm_tma_128_s4e_n, 128, 4, 1, false, false, false)
TG(grouped_gemm_tma_256_s3e_mc, 256, 3, 1, true, true, false)
TG(grouped_gemm_tma_256_s3e_mcn, 256, 3, 1, false, true, false)
TG(grouped_gemm_tma_128_s4e_mc, 128, 4, 1, true, true, false)
TG(grouped_gemm_tma_256_s4h, 256, 4, 2, true, false, false)
TG(grouped_gemm_swiglu_tma_256_s4, 256, 4, 1, true, false, true)
// The lean main loop (LEAN above).
#define TGL(NAME, BN, ST, SE, MI, MC, SW) TGX(NAME, BN, ST, SE, MI, MC, SW, true, 0)
TGL(grouped_gemm_tma_256_s3e_lean, 256, 3, 1, true, false, false)
TGL(grouped_gemm_swiglu_tma_256_s4_lean, 256, 4, 1, true, false, true)
// The same in bands of BAND row blocks (tg_tile); the SwiGLU one is GROUPED_SWIGLU (tiles.rs).
#define TGLB(NAME, BN, ST, SE, MI, MC, SW, BAND) TGX(NAME, BN, ST, SE, MI, MC, SW, true, BAND)
TGLB(grouped_gemm_tma_256_s3e_lean_b16, 256, 3, 1, true, false, false, 16)
TGLB(grouped_gemm_swiglu_tma_256_s4_lean_b16, 256, 4, 1, true, false, true, 16)
