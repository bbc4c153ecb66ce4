// FP8 grouped GEMM for MoE experts with DeepSeek-V3 block scaling, warp-specialised for Hopper
// (sm_90a only), after DeepGEMM's grouped contiguous FP8 kernel:
//   Y[offsets[e] .. offsets[e+1]) = dequant(X)[rows] dequant(W[e])^T for each expert e, bf16 out,
//   X [R, K] e4m3 with one f32 scale per row and 128 columns, SX [ceil(K / 128), R] (k-block major),
//   W [E, NW, K] e4m3 with one f32 scale per 128 x 128 block, SW [E, ceil(NW / 128), ceil(K / 128)].
//   With SW (fused SwiGLU) W [E, 2N, K] holds each expert's N gate rows then N up rows and
//   Y [R, N] = silu(X W_gate^T) * (X W_up^T); otherwise NW = N.
// Two-level accumulation: per k-tile of 128 (one scale block), four m64n128k32 e4m3 wgmmas accumulate
// in the tensor cores (which keep fewer than f32's bits for FP8), then, after wgmma.wait, the partial
// sums are scaled by scale_x(row) * scale_w(column block) and added to a separate f32 accumulator.
// The stage is released as soon as the wgmmas that read it retired (before the promotion), and the two
// consumer warpgroups promote while each other's wgmmas run. (A second accumulator set, so that a
// warpgroup's own next k-tile's wgmmas ran while it promoted, was 0.88-1.02x of this on the H200 in
// three runs and was removed: BENCHMARKS.md, session 5.)
// Tile: BM = 128 or 256 rows x BN = 128 weight rows (64 outputs of gate and up with SW), BK = 128
// bytes (one 128-byte swizzle atom per row). 384 threads: warpgroup 0 produces (one thread issues the
// TMA loads of the X and W tiles into STAGES stages with full/empty mbarriers, kernels/tma.cuh),
// warpgroups 1 and 2 consume 64 rows each per wave: with BM = 256 (as DeepGEMM's BLOCK_M = 256) each
// runs two waves per k-tile (rows 64c and 128 + 64c) with one wgmma accumulator and two promoted ones,
// so a 48 KiB stage feeds twice the math of a 32 KiB one (less L2 and shared-memory traffic per
// FLOP). A wave whose 64 rows are all past the tile's expert is skipped (the other warpgroup has the
// tensor cores meanwhile). Scales are read by the consumers with __ldg before waiting for the stage
// (each warp reads 16 consecutive rows' scales of one k block: k-block-major SX).
// On the H200 the 256-row tiles were +3% on V2-Lite's gate/up and -3% to -17% elsewhere (BENCHMARKS.md):
// run only when named. LEAN (the `_lean` instantiations) is the same tile with
// DeepGEMM's per-k-tile instruction budget: the scales loaded a k-tile ahead, the liveness test out
// of the k loop, warp-uniform descriptors (bench/results/2026-12-02-cpu/fp8sass compares the SASS).
// BN = 192 (`_n192`, lean; the defaults since session 7) is the tile DeepGEMM's heuristic picks for our shapes
// (with 4 stages): m64n192k32 wgmmas, so the other warpgroup's four wgmmas cover 384 tensor cycles of a
// warpgroup's wait-promote-issue stretch instead of 256, and a stage of X feeds 1.5x the math. Its
// tiles are 192 output columns wide (96 with SW: 96 gate and 96 up rows) and span two 128-row
// weight-scale blocks (two per half with SW; bench/results/2026-12-02-cpu/fp8n192). `_mc` adds
// DeepGEMM's clusters of two with the weight tile multicast (MC below).
// Persistent tiles, expert by expert with row blocks inner (tg_tile); rows past an expert are
// computed and not stored; TMA zero-fills past R, past E * NW and past K.
// Epilogue: tg_store_rows (tma.cuh, shared with grouped_gemm_tma.cu) per wave, through a 64 x ON bf16
// staging buffer (whole 64-column slabs) per consumer warpgroup, by TMA when the wave's 64 rows all
// belong to the tile's expert.
// Limits (checked by the host, src/backend/cuda/grouped_fp8.rs): K a multiple of 16 and > 0, N (with
// SW) a multiple of 64 so that 64 gate or up rows never straddle a 128-row scale block (with BN = 192,
// so that 32-row pieces of up rows never do), the tile list (8 bytes per expert) fitting next to the
// stages; 16-byte aligned X, W, Y.
#include "common.cuh"
#include "tma.cuh"
#include "wgmma.cuh"

#define TF_BK 128

template <int STAGES, bool SW, int BM, bool LEAN, int BN, bool MC>
__device__ void grouped_gemm_fp8(const TmaMap* tma_x, const TmaMap* tma_w, const TmaMap* tma_y,
                                 const float* __restrict__ sx, const float* __restrict__ sw,
                                 const int* __restrict__ offsets, bf16* __restrict__ Y, int R, int E, int N, int K,
                                 int y_tma) {
    static_assert(BM == 128 || BM == 256, "one or two 128-row waves");
    static_assert(!LEAN || BM == 128, "the lean main loop runs 128-row tiles");
    static_assert(BN == 128 || (BN == 192 && LEAN), "192 weight rows: the lean loop");
    static_assert(!MC || (BN == 192 && LEAN && !SW), "multicast: the 192-row lean kernel without SwiGLU");
    // NA: accumulators per thread of a 64 x BN wgmma (and per wave of fin). The staging holds whole
    // 64-column slabs (EPI_ON columns: ON = 96 with SwiGLU on 192 weight rows takes two).
    constexpr int ON = SW ? BN / 2 : BN, WAVES = BM / 128, NA = BN / 2, EPI_ON = (ON + 63) / 64 * 64;
    constexpr u32 A_BYTES = BM * TF_BK, B_BYTES = BN * TF_BK, STAGE_BYTES = A_BYTES + B_BYTES;
    constexpr u32 EPI_BYTES = 2 * 64 * EPI_ON * 2;
    extern __shared__ __align__(1024) unsigned char smem_raw[];
    const TgSmem<STAGES> sm(smem_raw, STAGE_BYTES, EPI_BYTES, E);
    const u32 sbase = sm.base;
    int *start = sm.start, *off = sm.off;

    const int tid = threadIdx.x, lane = tid & 31, warp = tg_warp<LEAN>(), wg = warp >> 2;
    const int nblocks = (N + ON - 1) / ON;
    const int KB = (K + TF_BK - 1) / TF_BK;
    const int NW = SW ? 2 * N : N, NBW = (NW + 127) / 128;
    if (warp == 0) {
        tg_list(offsets, E, MC ? 1 : nblocks, start, off, lane, BM);  // units: tiles, or row blocks of pairs
    } else if (warp == 1 && lane == 0) {
        sm.init_bars(MC ? 16 : 8);  // lane 0 of each consumer warp (of both CTAs with MC)
    }
    // MC (clusters of two, as DeepGEMM's cluster_m = 2): the CTAs of a pair run neighbouring row blocks
    // on one weight tile (tg_pair_tile, tma.cuh); when both belong to one expert each loads half of the
    // weight tile and multicasts it to both (half the weight bytes from L2 per CTA), and the consumers
    // release a stage to both producers.
    if constexpr (MC) {
        cluster_sync();  // the peer's barriers are initialised before anything lands on them
    } else {
        __syncthreads();
    }
    const int total = MC ? (start[E] + 1) / 2 * nblocks : start[E];
    const int rank = MC ? cluster_reg(0) : 0;
    // The first tile and the stride of the persistent loops: per block, or per cluster with MC.
    auto first_tile = [&]() -> int { return MC ? cluster_reg(1) : blockIdx.x; };
    auto tile_step = [&]() -> int { return MC ? cluster_reg(2) : gridDim.x; };
    auto tile_of = [&](int t) {
        if constexpr (MC) {
            return tg_pair_tile<ON, true>(t, rank, start, off, E, N);
        } else {
            return tg_tile<ON, true, BM>(t, start, off, E, N);
        }
    };
    // A consumer warp releases a stage to the producers of every CTA that may write it.
    auto release = [&](int s) { mbar_release<MC>(sm.empty(s)); };

    if (wg == 0) {
        asm volatile("setmaxnreg.dec.sync.aligned.u32 40;\n");
        if (tid == 0) {
            asm volatile("prefetch.tensormap [%0];\n" ::"l"((u64)tma_x) : "memory");
            asm volatile("prefetch.tensormap [%0];\n" ::"l"((u64)tma_w) : "memory");
            int stage = 0;
            u32 phase = 0;
            for (int t = first_tile(), dt = tile_step(); t < total; t += dt) {
                TgTile tile = tile_of(t);
                const int wrow = tile.e * NW + tile.n0;
                for (int kt = 0; kt < KB; kt++) {
                    mbar_wait(sm.empty(stage), phase ^ 1);
                    const u32 sa = sbase + stage * STAGE_BYTES;
                    if constexpr (MC) {
                        if (!tile.valid) {
                            mbar_arrive(sm.full(stage));  // nothing to load: the consumers only pass the stage on
                        } else {
                            // The W map's box is BN / 2 rows: each CTA of a pair loads one half of the weight
                            // tile for both, or both halves for itself when its pair spans two experts.
                            mbar_expect_tx(sm.full(stage), STAGE_BYTES);
                            tma_load_2d(sa, tma_x, kt * TF_BK, tile.row0, sm.full(stage));
                            const u32 sb = sa + A_BYTES, half = B_BYTES / 2;
                            if (tile.mc) {
                                tma_load_2d_mc(sb + rank * half, tma_w, kt * TF_BK, wrow + rank * (BN / 2),
                                               sm.full(stage), 3);
                            } else {
                                tma_load_2d(sb, tma_w, kt * TF_BK, wrow, sm.full(stage));
                                tma_load_2d(sb + half, tma_w, kt * TF_BK, wrow + BN / 2, sm.full(stage));
                            }
                        }
                    } else {
                        mbar_expect_tx(sm.full(stage), STAGE_BYTES);
                        tma_load_2d(sa, tma_x, kt * TF_BK, tile.row0, sm.full(stage));  // the X map's box is BM rows
                        if (SW) {  // the W map's box is 64 rows: gate rows, then the same outputs' up rows
                            tma_load_2d(sa + A_BYTES, tma_w, kt * TF_BK, wrow, sm.full(stage));
                            tma_load_2d(sa + A_BYTES + B_BYTES / 2, tma_w, kt * TF_BK, wrow + N, sm.full(stage));
                        } else {
                            tma_load_2d(sa + A_BYTES, tma_w, kt * TF_BK, wrow, sm.full(stage));
                        }
                    }
                    if (++stage == STAGES) {
                        stage = 0;
                        phase ^= 1;
                    }
                }
            }
        }
        if constexpr (MC) cluster_sync();  // no CTA leaves while its peer may still signal its barriers
        return;
    }

    asm volatile("setmaxnreg.inc.sync.aligned.u32 232;\n");
    const int c = wg - 1;  // consumer: rows 64c .. 64c + 63 of each 128-row wave of the tile
    const int g = lane >> 2, q = lane & 3;
    float acc[NA], fin[WAVES * NA];
    int stage = 0;
    u32 phase = 0;
    for (int t = first_tile(), dt = tile_step(); t < total; t += dt) {
        TgTile tile = tile_of(t);  // with MC, a pair's missing second row block has no rows (live() is false)
        const int r0 = tile.row0 + c * 64 + (warp & 3) * 16 + g, r1 = r0 + 8;
        // Scale rows of the tile's weight blocks (BN = 128): one 128-row block (gate and up blocks with SW).
        const float* sb_lo = sw + (u64)(tile.e * NBW + tile.n0 / 128) * KB;
        const float* sb_hi = SW ? sw + (u64)(tile.e * NBW + (N + tile.n0) / 128) * KB : sb_lo;
        // BN = 192: the tile's weight rows form one group of 192 (two of 96 with SW: gate rows from n0,
        // up rows from N + n0). A group starting at weight row o spans block o / 128 (lo) and the next
        // (hi, clamped where the tile runs past NW: those columns are not stored). Each 32-column piece
        // p of the accumulator (chunks 4p .. 4p + 3) lies in one block, since n0 is a multiple of 32:
        // piece_hi(p) says which. Without SW pieces 0-1 are in lo, 4-5 in hi, 2-3 in hi when n0 % 128 is
        // 64; with SW the first piece of each group is in lo and the others by their offset.
        auto blk = [&](int row) { return sw + (u64)(tile.e * NBW + min(row / 128, NBW - 1)) * KB; };
        const int o0 = tile.n0 & 127, o1 = (N + tile.n0) & 127;
        auto piece_hi = [&](int p) -> bool {
            if constexpr (SW) {
                return p % 3 != 0 && (p < 3 ? o0 : o1) + 32 * (p % 3) >= 128;
            } else {
                return p >= 4 || (p >= 2 && o0 >= 64);
            }
        };
#pragma unroll
        for (int i = 0; i < WAVES * NA; i++) fin[i] = 0.f;
        // Wave w has rows of the tile's expert (uniform over the warpgroup, as wgmma needs).
        auto live = [&](int w) { return tile.rows > w * 128 + c * 64; };
        // The four scale products of k-tile kt and wave w: rows r0 / r1 times the gate (or only) / up block.
        struct Sc {
            float s00, s10, s01, s11;
        };
        auto scales = [&](int kt, int w) {
            const int a = r0 + w * 128, b = r1 + w * 128;
            const float a0 = a < R ? __ldg(sx + (u64)kt * R + a) : 0.f;
            const float a1 = b < R ? __ldg(sx + (u64)kt * R + b) : 0.f;
            const float b0 = __ldg(sb_lo + kt), b1 = SW ? __ldg(sb_hi + kt) : b0;
            return Sc{a0 * b0, a1 * b0, a0 * b1, a1 * b1};
        };
        // Issues the four wgmmas of wave w of the (full) stage into d (one commit group).
        auto mma = [&](float(&d)[64], int w) {
            const u32 sa = sbase + stage * STAGE_BYTES;
            const u64 da = wg_desc(sa + (w * 128 + c * 64) * TF_BK), db = wg_desc(sa + A_BYTES);
            wg_fence();
#pragma unroll
            for (int kk = 0; kk < TF_BK / 32; kk++) wgmma_m64n128k32_e4m3(d, da + 2 * kk, db + 2 * kk, kk != 0);
            wg_commit();
        };
        auto next_stage = [&]() {
            if (++stage == STAGES) {
                stage = 0;
                phase ^= 1;
            }
        };
        // fin[NA w ..] += d scaled (with SW, chunks 0..7 are gate columns, 8..15 up columns).
        auto promote = [&](const float(&d)[NA], Sc sc, int w) {
#pragma unroll
            for (int j = 0; j < NA / 4; j++) {
                const bool lo = !SW || j < 8;
                fin[w * NA + j * 4 + 0] += (lo ? sc.s00 : sc.s01) * d[j * 4 + 0];
                fin[w * NA + j * 4 + 1] += (lo ? sc.s00 : sc.s01) * d[j * 4 + 1];
                fin[w * NA + j * 4 + 2] += (lo ? sc.s10 : sc.s11) * d[j * 4 + 2];
                fin[w * NA + j * 4 + 3] += (lo ? sc.s10 : sc.s11) * d[j * 4 + 3];
            }
        };
        // The same for BN = 192 (one wave): s0[p] / s1[p] scale rows r0 / r1 of piece p.
        auto promote192 = [&](const float(&d)[NA], const float(&s0)[6], const float(&s1)[6]) {
#pragma unroll
            for (int j = 0; j < NA / 4; j++) {
                fin[j * 4 + 0] += s0[j / 4] * d[j * 4 + 0];
                fin[j * 4 + 1] += s0[j / 4] * d[j * 4 + 1];
                fin[j * 4 + 2] += s1[j / 4] * d[j * 4 + 2];
                fin[j * 4 + 3] += s1[j / 4] * d[j * 4 + 3];
            }
        };
        if constexpr (LEAN) {
            // DeepGEMM's per-k-tile instruction budget (bench/results/2026-12-02-cpu/fp8sass): with
            // 64 x 128 per warpgroup, the other warpgroup's four wgmmas (256 tensor cycles) must cover
            // this warpgroup's whole wait-promote-issue stretch, which the loop below this one spends 161
            // instructions per warp on (97 besides the 64 promotion FFMAs; DeepGEMM: about 144, 48 besides
            // 96 FFMAs, for 384 cycles). Here the liveness test is hoisted out of the k loop (one loop per
            // case, no divergence bookkeeping per k-tile); the scales of k-tile kt + 1 are loaded while
            // k-tile kt runs (pointer bumps, row checks hoisted), so that no L2 latency sits between the
            // wgmma wait and the promotion (DeepGEMM reads its scales from shared memory); and the
            // descriptors are warp-uniform (shuffled bases plus the stage offset).
            const u32 du_hi = wg_desc_hi(), da_lo = wg_desc_lo_uniform(sbase + c * 64 * TF_BK);
            const u32 db_lo = wg_desc_lo_uniform(sbase + A_BYTES);
            const bool ok0 = r0 < R, ok1 = r1 < R;
            const float* pa0 = sx + (ok0 ? r0 : 0);
            const float* pa1 = sx + (ok1 ? r1 : 0);
            // Weight scales per k-tile: b0 (and b1: up with SW) for BN = 128; lo / hi of each group for
            // BN = 192 (b0, b1, and b2, b3 of the up group with SW).
            constexpr bool B2 = SW || BN == 192, B4 = SW && BN == 192;
            const float* pb0 = BN == 192 ? blk(tile.n0) : sb_lo;
            const float* pb1 = BN == 192 ? blk(tile.n0 + 128) : sb_hi;
            const float *pb2 = blk(N + tile.n0), *pb3 = blk(N + tile.n0 + 128);
            float a0 = ok0 ? __ldg(pa0) : 0.f, a1 = ok1 ? __ldg(pa1) : 0.f;
            float b0 = __ldg(pb0), b1 = B2 ? __ldg(pb1) : b0;
            float b2 = B4 ? __ldg(pb2) : 0.f, b3 = B4 ? __ldg(pb3) : 0.f;
            if (live(0)) {
                for (int kt = 0; kt < KB; kt++) {
                    float na0, na1, nb0, nb1, nb2, nb3;  // the scales of k-tile kt + 1
                    auto load_ahead = [&]() {
                        const bool more = kt + 1 < KB;
                        pa0 += R;
                        pa1 += R;
                        pb0++;
                        pb1++;
                        na0 = more && ok0 ? __ldg(pa0) : 0.f;
                        na1 = more && ok1 ? __ldg(pa1) : 0.f;
                        nb0 = more ? __ldg(pb0) : 0.f;
                        nb1 = B2 && more ? __ldg(pb1) : nb0;
                        if constexpr (B4) {
                            pb2++;
                            pb3++;
                            nb2 = more ? __ldg(pb2) : 0.f;
                            nb3 = more ? __ldg(pb3) : 0.f;
                        }
                    };
                    if constexpr (BN != 192) load_ahead();
                    mbar_wait(sm.full(stage), phase);
                    const u32 so = stage * (STAGE_BYTES >> 4);
                    wg_fence();
#pragma unroll
                    for (int kk = 0; kk < TF_BK / 32; kk++) {
                        const u64 da = wg_desc_at(du_hi, da_lo + so, 2 * kk);
                        const u64 db = wg_desc_at(du_hi, db_lo + so, 2 * kk);
                        if constexpr (BN == 192) {
                            wgmma_m64n192k32_e4m3(acc, da, db, kk != 0);
                        } else {
                            wgmma_m64n128k32_e4m3(acc, da, db, kk != 0);
                        }
                    }
                    wg_commit();
                    // With 192 columns ptxas may keep the weight scales in uniform registers (it does with
                    // SW), and the R2UR that moves them there waits for the load: issued here, that wait
                    // overlaps this warpgroup's own wgmmas instead of delaying their issue.
                    if constexpr (BN == 192) load_ahead();
                    wg_wait<0>();
                    wg_pin(acc);
                    if (lane == 0) release(stage);
                    if constexpr (BN == 192) {
                        float s0[6], s1[6];
#pragma unroll
                        for (int p = 0; p < 6; p++) {
                            const bool up = SW && p >= 3;
                            const float b = piece_hi(p) ? (up ? b3 : b1) : (up ? b2 : b0);
                            s0[p] = a0 * b;
                            s1[p] = a1 * b;
                        }
                        promote192(acc, s0, s1);
                    } else {
                        promote(acc, Sc{a0 * b0, a1 * b0, a0 * b1, a1 * b1}, 0);
                    }
                    a0 = na0;
                    a1 = na1;
                    b0 = nb0;
                    b1 = nb1;
                    if constexpr (B4) {
                        b2 = nb2;
                        b3 = nb3;
                    }
                    next_stage();
                }
            } else {
                for (int kt = 0; kt < KB; kt++) {
                    mbar_wait(sm.full(stage), phase);
                    if (lane == 0) release(stage);
                    next_stage();
                }
            }
        } else {
            // One k-tile at a time, wave by wave: a wave's wgmmas retire, then its promotion; the stage is
            // released once the last wave's wgmmas retired.
            // A wave's scales are read before its wgmmas (the first wave's before the stage is full):
            // holding both waves' from the start costs registers that the 256-row SwiGLU tile lacks.
            for (int kt = 0; kt < KB; kt++) {
                Sc sc = scales(kt, 0);
                mbar_wait(sm.full(stage), phase);
#pragma unroll
                for (int w = 0; w < WAVES; w++) {
                    const bool on = live(w);
                    if (w > 0) sc = scales(kt, w);
                    if (on) {
                        mma(acc, w);
                        wg_wait<0>();
                        wg_pin(acc);
                    }
                    if (w == WAVES - 1 && lane == 0) mbar_arrive(sm.empty(stage));
                    if (on) promote(acc, sc, w);
                }
                next_stage();
            }
        }

        // Per wave: output element i (0..3) of 8-column chunk j, the accumulator or silu(gate) * up,
        // through the warpgroup's staging buffer (tg_store_rows, tma.cuh).
        unsigned char* epi = smem_raw + STAGES * STAGE_BYTES + c * (64 * EPI_ON * 2);
        const u32 epi_s = sbase + STAGES * STAGE_BYTES + c * (64 * EPI_ON * 2);
#pragma unroll
        for (int w = 0; w < WAVES; w++) {
            if (!live(w)) continue;
            auto outv = [&](int j, int i) {
                if constexpr (SW) {
                    float gt = fin[w * NA + j * 4 + i], up = fin[w * NA + (j + ON / 8) * 4 + i];
                    return gt / (1.f + __expf(-gt)) * up;
                } else {
                    return fin[w * NA + j * 4 + i];
                }
            };
            const int first = w * 128 + c * 64;  // the wave's first row in the tile
            const bool by_tma = y_tma && tile.rows >= first + 64;
            tg_store_rows<ON / 8>(outv, epi, epi_s, c, tma_y, by_tma, Y, N, tile.row0 + first, tile.rows - first,
                                  tile.n0);
        }
    }
    // The last TMA stores must have read shared memory before the block exits.
    if ((tid & 127) == 0) asm volatile("cp.async.bulk.wait_group.read 0;\n" ::: "memory");
    if constexpr (MC) cluster_sync();
}

// Name, stages, fused SwiGLU, rows per tile (and the lean main loop, weight rows per tile, multicast).
// The host table (and its shared-memory sizes) is src/backend/cuda/grouped_fp8.rs.
#define TFX(NAME, ST, SW, BM, LEAN, BN, MC)                                                                  \
    extern "C" __global__ void __launch_bounds__(TG_THREADS, 1)                                                \
        NAME(const __grid_constant__ TmaMap tma_x, const __grid_constant__ TmaMap tma_w,                      \
             const __grid_constant__ TmaMap tma_y, const float* sx, const float* sw, const int* off, bf16* Y, \
             int R, int E, int N, int K, int y_tma) {                                                          \
        grouped_gemm_fp8<ST, SW, BM, LEAN, BN, MC>(&tma_x, &tma_w, &tma_y, sx, sw, off, Y, R, E, N, K, y_tma); \
    }
#define TF(NAME, ST, SW, BM) TFX(NAME, ST, SW, BM, false, 128, false)
// The lean main loop (LEAN above); on 128 weight rows no faster than TF on the H200, so by name only.
#define TFL(NAME, ST, SW, BM) TFX(NAME, ST, SW, BM, true, 128, false)
// The lean main loop on BN weight rows per tile (192: DeepGEMM's tile), without or with clusters of two
// multicasting the weight tile (MC; the host runs it where experts average at most 1024 rows).
#define TFLN(NAME, ST, SW, BM, BN, MC) TFX(NAME, ST, SW, BM, true, BN, MC)
TF(grouped_gemm_fp8_s4, 4, false, 128)
TF(grouped_gemm_fp8_s5, 5, false, 128)
TF(grouped_gemm_fp8_s6, 6, false, 128)
TF(grouped_gemm_fp8_swiglu_s5, 5, true, 128)
TF(grouped_gemm_fp8_swiglu_s6, 6, true, 128)
TF(grouped_gemm_fp8_m256_s4, 4, false, 256)
TF(grouped_gemm_fp8_swiglu_m256_s4, 4, true, 256)
TFL(grouped_gemm_fp8_lean_s6, 6, false, 128)
TFL(grouped_gemm_fp8_swiglu_lean_s6, 6, true, 128)
TFLN(grouped_gemm_fp8_n192_lean_s4, 4, false, 128, 192, false)
TFLN(grouped_gemm_fp8_n192_lean_s4_mc, 4, false, 128, 192, true)
TFLN(grouped_gemm_fp8_swiglu_n192_lean_s4, 4, true, 128, 192, false)
