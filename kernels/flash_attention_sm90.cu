// Flash attention forward for Hopper (sm_90a only), FlashAttention-3 style: grouped-query attention,
// head dim 128 or 64, bf16 in, bf16 or f32 out (`_f32o`, the context-parallel partials), the same contract
// as flash_attention.cu (delta = q_offset - k_offset, any sq and sk, natural-log lse [hq, sq], -inf
// and a zero row where a query sees no key).
//
// Block: 128 query rows of one head, 384 threads = 3 warpgroups (`_w3`: 192 rows, 512 threads, a third
// consumer warpgroup; NC below).
//   warpgroup 0, the producer (setmaxnreg F3_DEC): one thread issues TMA loads of the Q tile once and of
//     K and V tiles of 128 keys into STAGES stages (3-D tensor maps over [s, h, d]; boxes of 128 rows x
//     64 columns, d / 64 boxes a tile, 128-byte swizzle; rows past sq / sk are zero-filled), each with a full mbarrier
//     (expect-tx bytes) and an empty one (one arrival per consumer warp), K and V apart.
//   warpgroups 1 and 2 (and 3), the consumers (setmaxnreg F3_INC): 64 query rows each. S = Q K^T by SS-wgmma
//     (m64n128k16, both K-major); the online softmax in registers (exp2, scale folded in, masking only
//     on tiles that cross the causal diagonal or sk); P as bf16 in registers is the A operand of the
//     RS-wgmma O += P V (m64n<d>k16), with V N-major in shared memory (imm-trans-b).
//   Intra-warpgroup overlap (FA3): the S wgmma of tile j is issued together with the P V wgmma of
//     tile j - 1, and the softmax of tile j is meant to run while P V is still in flight. In the default
//     loop ptxas hoists the P V wait to the top of the softmax, so only ping-pong hides the softmax; the
//     lean loop (LEAN, `_lean` kernels, the d = 128 defaults; bench/results/2026-12-02-cpu/attnsass/) keeps the
//     wait after it (K's release depends on the row sums), takes the warp index through a shuffle so
//     the Q descriptor is warp-uniform, and runs the tiles no row of the warpgroup masks in a loop of
//     their own (FA3's split), with the same arithmetic.
//   FA4's rescale rule (TH, `_th` kernels, the d = 128 defaults since session 9): a row's running max moves
//     only when it grows by more than 8 (log2), so O is rescaled only on the rare tiles where a row of the
//     warp moved it (fewer instructions a tile under the power cap; 1.00-1.02x the lean loop on the H200).
//   K/V multicast (MC, `_mc`, the long d = 128 default since session 9): clusters of two blocks on two query heads
//     of one KV head and one query tile; each producer loads one 64-column box of every K and V tile for both,
//     so a block reads half its K and V bytes from L2 (1.01-1.02x from 12288 rows, where K and V outgrow L2;
//     0.99x below, where they fit).
// Key tiles run from the last (the diagonal, masked) to the first.
// Tile order, one of four (templates L2, PERS):
//   - grid (hq, ceil(sq / 128)): blockIdx.x = head, so the query heads of one KV head are neighbours,
//     and causal blocks take the heaviest query tiles first (blockIdx.y reversed);
//   - L2 (FA3's sections, hopper/tile_scheduler.hpp; `_l2` kernels): a 1-D grid of hq x ceil(sq / 128)
//     blocks, which the hardware hands out in order. The heads are cut into sections of whole KV groups
//     whose K and V fit in F3_L2_KV bytes; a section runs to its end before the next starts, its query
//     tiles heaviest first (causal) with its heads fastest, so a wave reads the K and V of few KV heads
//     (at 32K, 2 of 8: 32 MB instead of 128 MB). Where all heads fit (8K), the two orders are the same.
//   - PERS = 1 (`_pers` kernels): one block an SM walks the tiles of the first order (see f3_tile), the
//     next tile's loads under the current tile's last P V and O stores;
//   - PERS = 2 (`_dyn` kernels): the same, but the next tile of the first order goes to the first block
//     that asks (an atomic counter in global memory, FA3's DynamicPersistentTileScheduler).
#include "common.cuh"
#include "tma.cuh"
#include "wgmma.cuh"

#define F3_BQ 128  // query rows a block with two consumer warpgroups (the L2 and persistent orders)
#define F3_BKV 128
#define F3_L2_KV (32 << 20)  // FA3's budget for the K and V of one section (L2: 50 MB on the H100, more on the H200)
// Registers a thread keeps after setmaxnreg: the producer's, and a consumer's with 2 or 3 consumer warpgroups.
// Together they must fit the block's registers at launch (ptxas's count x 128 (NC + 1): 168 x 384, 128 x 512), or
// the consumers' setmaxnreg.inc waits forever (session 5: a producer of 32 hung); tests/kernel_arch.rs checks it.
constexpr u32 F3_DEC = 24, F3_INC[2] = {240, 160};

__device__ __forceinline__ float f3_ex2(float x) {
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
    return y;
}

// Named barriers 1 .. NC (0 is __syncthreads): consumer warpgroup c waits on barrier 1 + c before it
// issues its GEMMs and then lets the next one go (PP, FA3's ping-pong; a ring of three with NC = 3):
// one warpgroup's GEMMs run while the others' softmax does. Two keep immediate barrier ids (their SASS as
// timed); a register id makes ptxas reserve all 16 barriers, which one block an SM can spare.
template <int NC>
__device__ __forceinline__ void f3_turn_wait(int c) {
    if constexpr (NC == 2) {
        if (c == 0) {
            asm volatile("bar.sync 1, 256;\n" ::: "memory");
        } else {
            asm volatile("bar.sync 2, 256;\n" ::: "memory");
        }
    } else {
        asm volatile("bar.sync %0, 256;\n" ::"r"(1 + c) : "memory");
    }
}
template <int NC>
__device__ __forceinline__ void f3_turn_pass(int c) {
    if constexpr (NC == 2) {
        if (c == 0) {
            asm volatile("bar.arrive 2, 256;\n" ::: "memory");
        } else {
            asm volatile("bar.arrive 1, 256;\n" ::: "memory");
        }
    } else {
        asm volatile("bar.arrive %0, 256;\n" ::"r"(1 + (c + 1) % NC) : "memory");
    }
}

// Block t of the 1-D grid -> (head h, query tile qt) in L2 sections.
__device__ __forceinline__ void f3_tile_l2(int t, int D, int sq, int sk, int hq, int hkv, int causal, int& h, int& qt) {
    const int group = hq / hkv, nqt = (sq + F3_BQ - 1) / F3_BQ;
    const i64 kv_bytes = (i64)sk * D * 4;  // K and V of one KV head, bf16
    int kvs = 1;                           // KV heads a section: a power of two, at most hkv
    while (kvs * 2 <= hkv && (i64)kvs * 2 * kv_bytes <= F3_L2_KV) kvs *= 2;
    const int hsec = kvs * group;
    const int h0 = t / (hsec * nqt) * hsec, hs = min(hsec, hq - h0);  // the last section may be short
    const int within = t - h0 * nqt;
    h = h0 + within % hs;
    const int blk = within / hs;
    qt = causal ? nqt - 1 - blk : blk;
}

// Persistent (PERS = 1; `_pers` kernels, FA3's persistent scheduler without the atomic): a grid of at most one
// block an SM walks the tiles of the (hq, query tile) order above, heaviest first: tile rd * G + b in even
// rounds rd and rd * G + G - 1 - b in odd ones (G blocks, block b), a boustrophedon that balances the causal
// work as well as handing the next heaviest tile to the first free SM (FA3's semaphore) and needs no
// counter in global memory. The K/V stages and the ping-pong turns run on across tiles, so the producer
// loads the next tile's K, then its Q (once both consumer warpgroups have issued their last S = Q K^T of
// the current tile: the qempty mbarrier), then V, while the consumers finish P V and store O.
// Tile idx of the persistent kernels' order -> (head h, query tile qt): heads fastest, heaviest first.
template <bool L2>
__device__ __forceinline__ void f3_map(int idx, int D, int sq, int sk, int hq, int hkv, int causal, int& h, int& qt) {
    const int nqt = (sq + F3_BQ - 1) / F3_BQ;
    if constexpr (L2) {
        f3_tile_l2(idx, D, sq, sk, hq, hkv, causal, h, qt);
    } else {
        const int blk = idx / hq;
        h = idx - blk * hq;
        qt = causal ? nqt - 1 - blk : blk;
    }
}

template <bool PERS, bool L2>
__device__ __forceinline__ bool f3_tile(int rd, int D, int sq, int sk, int hq, int hkv, int causal, int& h, int& qt) {
    const int nqt = (sq + F3_BQ - 1) / F3_BQ;
    if constexpr (!PERS) {
        if (rd > 0) return false;
        h = blockIdx.x;
        qt = causal ? gridDim.y - 1 - blockIdx.y : blockIdx.y;
        if constexpr (L2) f3_tile_l2(blockIdx.x, D, sq, sk, hq, hkv, causal, h, qt);
        return true;
    } else {
        const int G = gridDim.x, T = hq * nqt, b = blockIdx.x;
        const i64 idx = (i64)rd * G + ((rd & 1) ? G - 1 - b : b);
        if (idx >= T) return false;  // rounds are filled from one end: nothing for this block after it
        f3_map<L2>((int)idx, D, sq, sk, hq, hkv, causal, h, qt);
        return true;
    }
}

// PERS = 2: block b starts with tile b; the producer thread then takes tile G + atomicAdd(ctr, 1) (FA3's
// prefetch: after issuing the current tile's loads) and hands each tile to the consumers through two
// slots in shared memory (tfull / tempty mbarriers); a tile index >= T ends the walk. Each block makes
// one fetch past the end, so the T fetches return 0 .. T - 1 and the one that gets T - 1 is the last:
// it sets the counter back to 0 for the next launch (one stream: launches never overlap).
// Compile-time flags for the lean main loop's two steps (masked or not).
template <bool B> struct f3_flag {
    static constexpr bool value = B;
};

template <int D, int STAGES, bool PP, bool L2, int PERS, class OT, bool LEAN = false, int NC = 2, bool TH = false,
          bool MC = false>
__device__ void flash_fwd_sm90(const TmaMap* mq, const TmaMap* mk, const TmaMap* mv, OT* __restrict__ O,
                               float* __restrict__ lse, int sq, int sk, int hq, int hkv, i64 delta, int causal,
                               float scale_log2, int* __restrict__ tile_ctr) {
    static_assert(D == 64 || D == 128, "head dim 64 or 128");
    // Three consumer warpgroups (192 query rows, FA3's d = 64 tile): one Q box (d = 64), the grid order.
    static_assert(NC == 2 || (NC == 3 && D == 64 && PP && !L2 && PERS == 0), "three consumers: d = 64, grid order");
    // MC (`_mc`): clusters of two blocks on two query heads of one KV head and the same query tile; each loads
    // one of the two 64-column boxes of every K and V tile and multicasts it to both (half the K and V bytes
    // from L2 a block), and the consumers release a stage to both producers.
    static_assert(!MC || (D == 128 && NC == 2 && PERS == 0), "K/V multicast: d = 128, two consumers, a block a tile");
    constexpr int BQ = 64 * NC;        // query rows a block
    constexpr int NB = D / 64;         // TMA boxes a tile
    constexpr u32 BOX = 128 * 64 * 2;  // one TMA box of K or V: 128 rows x 64 columns (128 bytes a row)
    constexpr u32 TILE = NB * BOX;     // 128 rows x D columns
    constexpr u32 QTILE = NB * BQ * 128;  // Q: BQ rows x D columns (boxes of BQ rows)
    // The swizzle atoms need 1024-byte alignment; the host adds 1024 bytes of slack.
    extern __shared__ __align__(1024) unsigned char smem_raw[];
    const u32 base = ((u32)__cvta_generic_to_shared(smem_raw) + 1023) & ~1023u;
    const u32 sQ = base, sK = sQ + QTILE, sV = sK + STAGES * TILE, bars = sV + STAGES * TILE;
    const u32 qfull = bars, qempty = bars + 8 * (1 + 4 * STAGES);
    auto tfull = [&](int j) { return bars + 8 * (2 + 4 * STAGES + j); };   // PERS = 2: tile slot j (0, 1)
    auto tempty = [&](int j) { return bars + 8 * (4 + 4 * STAGES + j); };
    const u32 tslot = bars + 8 * (6 + 4 * STAGES);  // two u32
    const int T = hq * ((sq + BQ - 1) / BQ);
    auto kfull = [&](int s) { return bars + 8 * (1 + s); };
    auto vfull = [&](int s) { return bars + 8 * (1 + STAGES + s); };
    auto kempty = [&](int s) { return bars + 8 * (1 + 2 * STAGES + s); };
    auto vempty = [&](int s) { return bars + 8 * (1 + 3 * STAGES + s); };

    // Key tiles of query tile qt: all of them, or causal up to the last key its last row may see.
    auto kv_tiles = [&](int qt) {
        int n = (sk + F3_BKV - 1) / F3_BKV;
        if (causal) {
            i64 last = delta + (i64)qt * BQ + BQ - 1;
            n = last < 0 ? 0 : (int)min((i64)n, last / F3_BKV + 1);
        }
        return n;
    };
    const int group = hq / hkv;
    const int tid = threadIdx.x, warp = tg_warp<LEAN>(), lane = tid & 31, wg = warp >> 2;
    const int rank = MC ? cluster_reg(0) : 0;

    if (tid == 0) {
        mbar_init(qfull, 1);
        mbar_init(qempty, 4 * NC);  // lane 0 of each consumer warp (PERS)
        for (int j = 0; j < 2; j++) {
            mbar_init(tfull(j), 1);
            mbar_init(tempty(j), 4 * NC);
        }
        for (int s = 0; s < STAGES; s++) {
            mbar_init(kfull(s), 1);
            mbar_init(vfull(s), 1);
            mbar_init(kempty(s), 4 * NC * (MC ? 2 : 1));  // lane 0 of each consumer warp (of both blocks)
            mbar_init(vempty(s), 4 * NC * (MC ? 2 : 1));
        }
        asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
    }
    if constexpr (MC) {
        cluster_sync();  // the peer's barriers are initialised before anything lands on them
    } else {
        __syncthreads();
    }

    if (wg == 0) {
        asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(F3_DEC));
        if (tid == 0) {
            asm volatile("prefetch.tensormap [%0];\n" ::"l"((u64)mq) : "memory");
            asm volatile("prefetch.tensormap [%0];\n" ::"l"((u64)mk) : "memory");
            asm volatile("prefetch.tensormap [%0];\n" ::"l"((u64)mv) : "memory");
            int stage = 0, h, qt;
            u32 phase = 0, qphase = 0;
            // Key tile t of KV head kh into dst: its D / 64 boxes, or with MC box `rank` to both blocks (the
            // peer sends the other).
            auto load_tile = [&](u32 dst, const TmaMap* map, int kh, int t, u32 bar) {
                if constexpr (MC) {
                    tma_load_3d_mc(dst + rank * BOX, map, 64 * rank, kh, t * F3_BKV, bar, 3);
                } else {
#pragma unroll
                    for (int b = 0; b < NB; b++) tma_load_3d(dst + b * BOX, map, 64 * b, kh, t * F3_BKV, bar);
                }
            };
            auto load_k = [&](int kh, int t) {
                mbar_wait(kempty(stage), phase ^ 1);
                mbar_expect_tx(kfull(stage), TILE);
                load_tile(sK + stage * TILE, mk, kh, t, kfull(stage));
            };
            auto load_v = [&](int kh, int t) {
                mbar_wait(vempty(stage), phase ^ 1);
                mbar_expect_tx(vfull(stage), TILE);
                load_tile(sV + stage * TILE, mv, kh, t, vfull(stage));
                if (++stage == STAGES) {
                    stage = 0;
                    phase ^= 1;
                }
            };
            auto load_q = [&](int h, int q0) {
                if (PERS) mbar_wait(qempty, qphase ^ 1);  // both consumer warpgroups are done with the last Q
                qphase ^= 1;
                mbar_expect_tx(qfull, QTILE);
#pragma unroll
                for (int b = 0; b < NB; b++) tma_load_3d(sQ + b * (QTILE / NB), mq, 64 * b, h, q0, qfull);
            };
            int idx = blockIdx.x;  // PERS = 2
            for (int rd = 0;; rd++) {
                if constexpr (PERS == 2) {
                    mbar_wait(tempty(rd & 1), ((rd >> 1) & 1) ^ 1);
                    asm volatile("st.shared.u32 [%0], %1;\n" ::"r"(tslot + 4 * (rd & 1)), "r"(idx) : "memory");
                    mbar_arrive(tfull(rd & 1));
                    if (idx >= T) break;
                    f3_map<L2>(idx, D, sq, sk, hq, hkv, causal, h, qt);
                } else if (!f3_tile<PERS != 0, L2>(rd, D, sq, sk, hq, hkv, causal, h, qt)) {
                    break;
                }
                const int n_kv = kv_tiles(qt), kh = h / group;
                if (n_kv > 0) {
                    if (!PERS) load_q(h, qt * BQ);
                    load_k(kh, n_kv - 1);
                    if (PERS) load_q(h, qt * BQ);  // the first K goes first: Q waits for the last tile's S
                    load_v(kh, n_kv - 1);
                    for (int t = n_kv - 2; t >= 0; t--) {
                        load_k(kh, t);
                        load_v(kh, t);
                    }
                }
                if constexpr (PERS == 2) {
                    const int v = atomicAdd(tile_ctr, 1);
                    if (v == T - 1) atomicExch(tile_ctr, 0);  // the last fetch of this launch
                    idx = gridDim.x + v;
                }
            }
        }
        if constexpr (MC) cluster_sync();  // no block leaves while its peer may still write to it
        return;
    }

    asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(F3_INC[NC - 2]));
    const int c = wg - 1, w = warp & 3, g = lane >> 2, q = lane & 3;
    // Turns of the consumer warpgroups (PP): the first is warpgroup 0's; they take turns, n_kv each a tile.
    if (PP && c == 0) asm volatile("bar.arrive 1, 256;\n" ::: "memory");
    int stage = 0, h, qt;
    u32 phase = 0, qphase = 0;
    for (int rd = 0;; rd++) {
        if constexpr (PERS == 2) {
            mbar_wait(tfull(rd & 1), (rd >> 1) & 1);
            int idx;
            asm volatile("ld.shared.u32 %0, [%1];\n" : "=r"(idx) : "r"(tslot + 4 * (rd & 1)) : "memory");
            __syncwarp();
            if (lane == 0) mbar_arrive(tempty(rd & 1));
            if (idx >= T) break;
            f3_map<L2>(idx, D, sq, sk, hq, hkv, causal, h, qt);
        } else if (!f3_tile<PERS != 0, L2>(rd, D, sq, sk, hq, hkv, causal, h, qt)) {
            break;
        }
        const int n_kv = kv_tiles(qt), q0 = qt * BQ;
        // This warp's first row sees keys <= row_lo (its row g + 8x sees keys <= row_lo + g + 8x).
        const i64 row_lo = delta + q0 + c * 64 + w * 16;

        float o[D / 2];
#pragma unroll
        for (int i = 0; i < D / 2; i++) o[i] = 0.f;
        float m[2] = {neg_inf(), neg_inf()}, l[2] = {0.f, 0.f};

        if (n_kv > 0) {
            float s[64];
            u32 p[32];
            // Q rows 64c .. 64c + 63 of each box; a k16 step is 32 bytes into the swizzled row, the next box
            // BOX bytes on (descriptor addresses count 16-byte units).
            // Descriptors as a constant high word and a 32-bit low word plus the step (wg_desc_at): the address
            // field never carries over, and 32-bit sums of warp-uniform values stay in uniform registers (a
            // 64-bit add took an IADD3, an IMAD.X and two R2UR a wgmma: call23's source page).
            const u32 dhi = wg_desc_hi(), dq = (u32)wg_desc(sQ + c * 64 * 128);
            auto issue_qk = [&](int st) {
                const u32 dk = (u32)wg_desc(sK + st * TILE);
#pragma unroll
                for (int kk = 0; kk < D / 16; kk++) {
                    const u32 step = (kk >> 2) * (BOX >> 4) + 2 * (kk & 3);
                    wgmma_m64n128k16(s, wg_desc_at(dhi, dq, step), wg_desc_at(dhi, dk, step), kk != 0);
                }
            };
            auto issue_pv = [&](int st) {
                // V [128 keys x D dims]: 64-column boxes BOX bytes apart; a k16 step is 16 rows (2048 bytes).
                const u32 dv = (u32)wg_desc_mn(sV + st * TILE, BOX);
#pragma unroll
                for (int kk = 0; kk < 8; kk++) {
                    if constexpr (D == 128)
                        wgmma_m64n128k16_rs(o, &p[4 * kk], wg_desc_at(dhi, dv, (kk * 2048) >> 4));
                    else
                        wgmma_m64n64k16_rs(o, &p[4 * kk], wg_desc_at(dhi, dv, (kk * 2048) >> 4));
                }
            };
            // Masks tile t where it crosses sk or the causal diagonal (for this warp's rows).
            auto mask = [&](int t) {
                const int k0 = t * F3_BKV;
                if (k0 + F3_BKV > sk || (causal && (i64)(k0 + F3_BKV - 1) > row_lo)) {
                    const int kmax = sk - k0;
                    const int lim = causal ? (int)max((i64)-512, min((i64)512, row_lo - k0)) : 512;
#pragma unroll
                    for (int j = 0; j < 16; j++)
#pragma unroll
                        for (int x = 0; x < 4; x++) {
                            int key = j * 8 + q * 2 + (x & 1);
                            if (key >= kmax || key > lim + g + (x >> 1) * 8) s[j * 4 + x] = neg_inf();
                        }
                }
            };
            // The online softmax: s becomes exp2(s * scale - m) (unnormalised P), m and l advance, and alpha
            // rescales O. kept: neither of this thread's rows moved its max (alpha 1, or O still 0).
            bool kept = true;
            auto softmax_rows = [&](float (&alpha)[2]) {
                kept = true;
#pragma unroll
                for (int r = 0; r < 2; r++) {
                    float mx = neg_inf();
#pragma unroll
                    for (int j = 0; j < 16; j++) mx = fmaxf(mx, fmaxf(s[j * 4 + 2 * r], s[j * 4 + 2 * r + 1]));
                    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
                    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
                    // TH (FA4's rule, `_th`): the running max moves only when it grows by more than 8 (log2
                    // units), so p stays below 2^8 and O is rarely rescaled; exact, since O, l and the lse
                    // share the max.
                    const float m_new = TH ? (mx * scale_log2 > m[r] + 8.f ? mx * scale_log2 : m[r])
                                           : fmaxf(m[r], mx * scale_log2);
                    const float m_use = m_new == neg_inf() ? 0.f : m_new;
                    kept = kept && m_new == m[r];
                    alpha[r] = f3_ex2(m[r] - m_use);
                    float sum = 0.f;
#pragma unroll
                    for (int j = 0; j < 16; j++) {
                        float p0 = f3_ex2(fmaf(s[j * 4 + 2 * r], scale_log2, -m_use));
                        float p1 = f3_ex2(fmaf(s[j * 4 + 2 * r + 1], scale_log2, -m_use));
                        s[j * 4 + 2 * r] = p0;
                        s[j * 4 + 2 * r + 1] = p1;
                        sum += p0 + p1;
                    }
                    l[r] = l[r] * alpha[r] + sum;  // this thread's share; the quad is summed at the end
                    m[r] = m_new;
                }
            };
            auto softmax = [&](int t, float (&alpha)[2]) {
                mask(t);
                softmax_rows(alpha);
            };
            // S accumulator (n8 tile j, rows g / g + 8) to the A fragments of k16 step kk = j / 2.
            auto to_p = [&]() {
#pragma unroll
                for (int kk = 0; kk < 8; kk++) {
                    p[4 * kk + 0] = pack_bf16x2(s[8 * kk + 0], s[8 * kk + 1]);
                    p[4 * kk + 1] = pack_bf16x2(s[8 * kk + 2], s[8 * kk + 3]);
                    p[4 * kk + 2] = pack_bf16x2(s[8 * kk + 4], s[8 * kk + 5]);
                    p[4 * kk + 3] = pack_bf16x2(s[8 * kk + 6], s[8 * kk + 7]);
                }
            };

            mbar_wait(qfull, qphase);
            qphase ^= 1;
            float alpha[2];
            mbar_wait(kfull(stage), phase);
            if (PP) f3_turn_wait<NC>(c);
            wg_fence();
            issue_qk(stage);
            wg_commit();
            if (PP) f3_turn_pass<NC>(c);
            wg_wait<0>();
            wg_pin(s);
            if (lane == 0) mbar_release<MC>(kempty(stage));
            softmax(n_kv - 1, alpha);
            to_p();
            int vstage = stage;
            u32 vphase = phase;
            if (++stage == STAGES) {
                stage = 0;
                phase ^= 1;
            }
            // Key tile t: its S = Q K^T issued with P V of tile t + 1, its softmax, then O rescaled and P
            // packed for the next P V. MASKED (the lean loop's split): tile t may cross sk or the causal
            // diagonal; the default loop tests every tile.
            auto step = [&](int t, auto masked) {
                mbar_wait(kfull(stage), phase);
                mbar_wait(vfull(vstage), vphase);
                if (PP) f3_turn_wait<NC>(c);
                wg_fence();
                issue_qk(stage);
                wg_commit();
                issue_pv(vstage);
                wg_commit();
                if (PP) f3_turn_pass<NC>(c);
                wg_wait<1>();  // S of tile t is ready; P V of tile t + 1 may still run
                wg_pin(s);
                if constexpr (LEAN) {
                    if constexpr (decltype(masked)::value) mask(t);
                    softmax_rows(alpha);
                    // ptxas hoists the wgmma wait below to the top of its block, which puts the whole softmax
                    // after P V (no overlap inside the warpgroup; the default loop), but it does not move the
                    // wait above an mbarrier arrive. So K's release comes after the softmax and depends on both
                    // row sums (l < 0 never holds, NaN included): every exp2 and sum is issued while P V runs,
                    // only the O rescale and the bf16 packing of P (P V still reads p) after the wait.
                    if (lane == 0 && !(fminf(l[0], l[1]) < 0.f)) mbar_release<MC>(kempty(stage));
                } else {
                    if (lane == 0) mbar_release<MC>(kempty(stage));
                    softmax(t, alpha);
                }
                // TH: O is rescaled only when a row of the warp moved its max (a warp-uniform branch; the
                // same test without the threshold, rescaling at every move, was 2-4% slower: a rare skip
                // does not pay for the vote).
                const bool rescale = !TH || __any_sync(0xffffffffu, !kept);
                wg_wait<0>();
                wg_pin(o);
                if (lane == 0) mbar_release<MC>(vempty(vstage));
                if (rescale) {
#pragma unroll
                    for (int j = 0; j < D / 8; j++) {
                        o[j * 4 + 0] *= alpha[0];
                        o[j * 4 + 1] *= alpha[0];
                        o[j * 4 + 2] *= alpha[1];
                        o[j * 4 + 3] *= alpha[1];
                    }
                }
                to_p();
                vstage = stage;
                vphase = phase;
                if (++stage == STAGES) {
                    stage = 0;
                    phase ^= 1;
                }
            };
            if constexpr (LEAN) {
                // FA3's split: tiles below n_un need no mask for any row of this warpgroup (k0 + 128 <= sk, and
                // causal k0 + 127 <= its first row's last key), so they run without the per-tile test; the
                // tiles above run it (for each warp, as the default loop does). Masks are exact, so the
                // result is the default loop's.
                const i64 row_wg = delta + q0 + c * 64;
                i64 n_un = min((i64)(sk / F3_BKV), (i64)n_kv - 1);
                if (causal) n_un = min(n_un, row_wg < 0 ? (i64)0 : (row_wg + 1) / F3_BKV);
                int t = n_kv - 2;
                for (; t >= (int)n_un; t--) step(t, f3_flag<true>{});
                for (; t >= 0; t--) step(t, f3_flag<false>{});
            } else {
                for (int t = n_kv - 2; t >= 0; t--) step(t, f3_flag<true>{});
            }
            // Every S wgmma of this tile has completed: the producer may load the next tile's Q.
            if (PERS && lane == 0) mbar_arrive(qempty);
            mbar_wait(vfull(vstage), vphase);
            wg_fence();
            issue_pv(vstage);
            wg_commit();
            wg_wait<0>();
            wg_pin(o);
            if (lane == 0) mbar_release<MC>(vempty(vstage));
        }

        const u64 rs = (u64)hq * D;
#pragma unroll
        for (int r = 0; r < 2; r++) {
            float lt = l[r];
            lt += __shfl_xor_sync(0xffffffffu, lt, 1);
            lt += __shfl_xor_sync(0xffffffffu, lt, 2);
            const int i = q0 + c * 64 + w * 16 + g + r * 8;
            if (i >= sq) continue;
            const float inv = lt > 0.f ? 1.0f / lt : 0.f;
            OT* orow = O + (u64)i * rs + (u64)h * D;
#pragma unroll
            for (int j = 0; j < D / 8; j++) {
                if constexpr (sizeof(OT) == 4)
                    *(float2*)(orow + j * 8 + q * 2) = make_float2(o[j * 4 + 2 * r] * inv, o[j * 4 + 2 * r + 1] * inv);
                else
                    *(u32*)(orow + j * 8 + q * 2) = pack_bf16x2(o[j * 4 + 2 * r] * inv, o[j * 4 + 2 * r + 1] * inv);
            }
            if (q == 0) lse[(u64)h * sq + i] = lt > 0.f ? (m[r] + log2f(lt)) * 0.6931471805599453f : neg_inf();
        }
    }
    // The last warpgroup's last pass (or, with no key tile at all, warpgroup 0's first turn) is left on barrier 1:
    // taken here, so no arrival outlives the block.
    if (PP && c == 0) f3_turn_wait<NC>(0);
    if constexpr (MC) cluster_sync();
}

// Name, head dim, K/V stages, ping-pong, L2 sections, schedule (0: one block a tile; 1: persistent, static;
// 2: persistent, dynamic); each with a bf16 output (NAME) and an f32 one (NAME_f32o). Grid (hq, ceil(sq / BQ)),
// with L2 hq * ceil(sq / 128), persistent min(SMs, hq * ceil(sq / 128)) (tile_ctr: an int the host keeps at 0
// between launches; read by schedule 2 only). The host table (and its shared-memory size) is
// src/backend/cuda/tiles.rs.
#define F3_OUT(NAME, OT, D, ST, PP, L2, PERS, LEAN, NC, TH, MC)                                                 \
    extern "C" __global__ void __launch_bounds__(128 * (NC + 1), 1)                                             \
        NAME(const __grid_constant__ TmaMap mq, const __grid_constant__ TmaMap mk,                              \
             const __grid_constant__ TmaMap mv, OT* o, float* lse, int sq, int sk, int hq, int hkv, i64 delta,  \
             int causal, float scale_log2, int* tile_ctr) {                                                     \
        flash_fwd_sm90<D, ST, PP, L2, PERS, OT, LEAN, NC, TH, MC>(&mq, &mk, &mv, o, lse, sq, sk, hq, hkv, delta,    \
                                                              causal, scale_log2, tile_ctr);                    \
    }
#define F3XT(NAME, D, ST, PP, L2, PERS, LEAN, NC, TH, MC)       \
    F3_OUT(NAME, bf16, D, ST, PP, L2, PERS, LEAN, NC, TH, MC) \
    F3_OUT(NAME##_f32o, float, D, ST, PP, L2, PERS, LEAN, NC, TH, MC)
#define F3X(NAME, D, ST, PP, L2, PERS, LEAN, NC) F3XT(NAME, D, ST, PP, L2, PERS, LEAN, NC, false, false)
#define F3(NAME, D, ST, PP, L2, PERS) F3X(NAME, D, ST, PP, L2, PERS, false, 2)
// The lean main loop (LEAN: warp-uniform descriptors, unmasked tiles in their own loop, the softmax under
// the warpgroup's own P V).
#define F3_LEAN(NAME, D, ST, PP, L2, PERS) F3X(NAME, D, ST, PP, L2, PERS, true, 2)
// Three consumer warpgroups, 192 query rows a block (FA3's d = 64 tile; `_w3` kernels, 512 threads), in
// ping-pong turns of three, the grid order.
#define F3_W3(NAME, D, ST, LEAN) F3X(NAME, D, ST, true, false, 0, LEAN, 3)
F3(flash_fwd_sm90_d128_s2, 128, 2, false, false, 0)
F3(flash_fwd_sm90_d128_s3, 128, 3, false, false, 0)
F3(flash_fwd_sm90_d128_s2p, 128, 2, true, false, 0)
F3(flash_fwd_sm90_d128_s3p, 128, 3, true, false, 0)
F3(flash_fwd_sm90_d128_s2p_l2, 128, 2, true, true, 0)
F3(flash_fwd_sm90_d64_s2p, 64, 2, true, false, 0)
F3(flash_fwd_sm90_d64_s3p, 64, 3, true, false, 0)
F3(flash_fwd_sm90_d64_s2p_l2, 64, 2, true, true, 0)
F3(flash_fwd_sm90_d128_s2p_pers, 128, 2, true, false, 1)
F3(flash_fwd_sm90_d128_s3p_pers, 128, 3, true, false, 1)
F3(flash_fwd_sm90_d64_s2p_pers, 64, 2, true, false, 1)
F3(flash_fwd_sm90_d128_s2p_dyn, 128, 2, true, false, 2)
F3(flash_fwd_sm90_d128_s3p_dyn, 128, 3, true, false, 2)
F3(flash_fwd_sm90_d64_s2p_dyn, 64, 2, true, false, 2)
F3_LEAN(flash_fwd_sm90_d128_s2p_lean, 128, 2, true, false, 0)
F3_LEAN(flash_fwd_sm90_d128_s3p_lean, 128, 3, true, false, 0)
F3_LEAN(flash_fwd_sm90_d64_s2p_lean, 64, 2, true, false, 0)
F3_LEAN(flash_fwd_sm90_d128_s2p_lean_l2, 128, 2, true, true, 0)
F3_LEAN(flash_fwd_sm90_d64_s2p_lean_l2, 64, 2, true, true, 0)
F3_LEAN(flash_fwd_sm90_d128_s3p_lean_l2, 128, 3, true, true, 0)
F3_LEAN(flash_fwd_sm90_d128_s3p_lean_dyn, 128, 3, true, false, 2)
F3_LEAN(flash_fwd_sm90_d128_s2p_lean_l2_dyn, 128, 2, true, true, 2)
F3_LEAN(flash_fwd_sm90_d128_s3p_lean_l2_dyn, 128, 3, true, true, 2)
F3_W3(flash_fwd_sm90_d64_s2p_w3, 64, 2, false)
F3_W3(flash_fwd_sm90_d64_s2p_lean_w3, 64, 2, true)
F3_W3(flash_fwd_sm90_d64_s3p_w3, 64, 3, false)
// The lean loop with FA4's rescale rule (TH; `_th`): the d = 128 defaults.
#define F3_LEAN_TH(NAME, D, ST, L2) F3XT(NAME, D, ST, true, L2, 0, true, 2, true, false)
F3_LEAN_TH(flash_fwd_sm90_d128_s2p_lean_th, 128, 2, false)
F3_LEAN_TH(flash_fwd_sm90_d128_s3p_lean_l2_th, 128, 3, true)
// The same in clusters of two query heads with K and V multicast (MC, `_mc`): the long d = 128 default (the host
// runs the twin without `_mc` where a KV head has an odd number of query heads).
#define F3_LEAN_TH_MC(NAME, D, ST, L2) F3XT(NAME, D, ST, true, L2, 0, true, 2, true, true)
F3_LEAN_TH_MC(flash_fwd_sm90_d128_s3p_lean_l2_th_mc, 128, 3, true)
