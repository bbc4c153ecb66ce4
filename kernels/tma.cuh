// TMA and mbarrier helpers shared by the warp-specialised Hopper kernels (sm_90a only:
// flash_attention_sm90.cu, grouped_gemm_tma.cu in bf16, grouped_gemm_fp8.cu in FP8 with block
// scales), the grouped GEMMs' tile list, and the cluster helpers of their multicast pairs.
// The tile list: per block, in shared memory, from the expert offsets on the device (prefix sums of
// units per expert, a unit being a tile or a row block); the offsets never go to the host.
#pragma once
#include "common.cuh"

#define TG_BM 128
#define TG_THREADS 384
#define TG_MAX_E 1024

// CUtensorMap: 128 opaque bytes built by cuTensorMapEncodeTiled on the host.
struct __align__(64) TmaMap {
    u64 v[16];
};

__device__ __forceinline__ u32 tg_smem(const void* p) { return (u32)__cvta_generic_to_shared(p); }

// The thread's warp index; with UNIFORM (the `_lean` kernels) lane 0's through a shuffle, so that ptxas
// knows it is warp-uniform: branches on it stay uniform and the wgmma descriptors built from it live in
// uniform registers (no R2UR before each wgmma; bench/results/2026-12-02-cpu/fp8sass, as DeepGEMM does).
template <bool UNIFORM>
__device__ __forceinline__ int tg_warp() {
    const int warp = (int)threadIdx.x >> 5;
    return UNIFORM ? __shfl_sync(0xffffffffu, warp, 0) : warp;
}

__device__ __forceinline__ void mbar_init(u32 bar, u32 count) {
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(bar), "r"(count));
}
__device__ __forceinline__ void mbar_expect_tx(u32 bar, u32 bytes) {
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(bar), "r"(bytes) : "memory");
}
__device__ __forceinline__ void mbar_arrive(u32 bar) {
    asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(bar) : "memory");
}
// try_wait with a suspend-time hint (CUTLASS's ClusterBarrier::wait, 10 ms): the warp sleeps until the phase
// completes. Without it try_wait gives up after a short, system-dependent time and a waiting warp spins: the
// flash producer ran about 200 try_wait / branch pairs a key tile (bench/results/2026-12-02-h200/call23, ncu
// source page), issue slots taken from the consumer warps of its scheduler.
__device__ __forceinline__ void mbar_wait(u32 bar, u32 parity) {
    u32 done;
    do {
        asm volatile(
            "{\n.reg .pred p;\nmbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2, %3;\nselp.u32 %0, 1, 0, p;\n}\n"
            : "=r"(done)
            : "r"(bar), "r"(parity), "r"(10000000u)
            : "memory");
    } while (!done);
}

// The grouped GEMMs' shared memory from its 1024-byte aligned start: STAGES stages of `stage_bytes`,
// `epi_bytes` of epilogue staging, full[STAGES] then empty[STAGES] mbarriers, then the tile list
// start[E + 1], off[E + 1] (the host sizes it alike: src/backend/cuda/tiles.rs, grouped_fp8.rs).
template <int STAGES>
struct TgSmem {
    u32 base, bars;
    int *start, *off;
    __device__ __forceinline__ TgSmem(unsigned char* p, u32 stage_bytes, u32 epi_bytes, int E)
        : base(tg_smem(p)),
          bars(base + STAGES * stage_bytes + epi_bytes),
          start((int*)(p + STAGES * stage_bytes + epi_bytes + 16 * STAGES)),
          off(start + E + 1) {
        if (base & 1023) __trap();  // the 128-byte swizzle atoms need 1024-byte alignment
    }
    __device__ __forceinline__ u32 full(int s) const { return bars + 8 * s; }
    __device__ __forceinline__ u32 empty(int s) const { return bars + 8 * (STAGES + s); }
    // One thread: a full barrier waits for one arrival (and its bytes), an empty one for `releases`.
    __device__ __forceinline__ void init_bars(u32 releases) const {
        for (int s = 0; s < STAGES; s++) {
            mbar_init(full(s), 1);
            mbar_init(empty(s), releases);
        }
        asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
    }
};

// 2-D TMA load of the box at (c0 = inner/K, c1 = row) into shared memory, completing on `bar`.
__device__ __forceinline__ void tma_load_2d(u32 dst, const TmaMap* map, int c0, int c1, u32 bar) {
    asm volatile(
        "cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3}], [%4];\n" ::"r"(
            dst),
        "l"((u64)map), "r"(c0), "r"(c1), "r"(bar)
        : "memory");
}

// 2-D TMA load, multicast to the CTAs of the cluster in `mask` (same shared-memory offset and mbarrier in each).
__device__ __forceinline__ void tma_load_2d_mc(u32 dst, const TmaMap* map, int c0, int c1, u32 bar, u16 mask) {
    asm volatile(
        "cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes.multicast::cluster [%0], [%1, {%2, "
        "%3}], [%4], %5;\n" ::"r"(dst),
        "l"((u64)map), "r"(c0), "r"(c1), "r"(bar), "h"(mask)
        : "memory");
}

// The same 3-D box multicast to the CTAs of the cluster in `mask`, at the same offset `dst` of each, completing
// on the mbarrier at offset `bar` of each.
__device__ __forceinline__ void tma_load_3d_mc(u32 dst, const TmaMap* map, int c0, int c1, int c2, u32 bar, u16 mask) {
    asm volatile(
        "cp.async.bulk.tensor.3d.shared::cluster.global.mbarrier::complete_tx::bytes.multicast::cluster [%0], [%1, {%2, "
        "%3, %4}], [%5], %6;\n" ::"r"(dst),
        "l"((u64)map), "r"(c0), "r"(c1), "r"(c2), "r"(bar), "h"(mask)
        : "memory");
}

// 3-D TMA load of the box at (c0 innermost, c1, c2) into shared memory, completing on `bar`.
__device__ __forceinline__ void tma_load_3d(u32 dst, const TmaMap* map, int c0, int c1, int c2, u32 bar) {
    asm volatile(
        "cp.async.bulk.tensor.3d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3, %4}], [%5];\n" ::"r"(
            dst),
        "l"((u64)map), "r"(c0), "r"(c1), "r"(c2), "r"(bar)
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
    bool valid;  // false: a multicast pair's second row block past the last one (nothing to compute)
    bool mc;     // both row blocks of the pair belong to one expert: the weight tile is multicast
};

// The last expert whose first unit (tile or row block) is <= u.
__device__ __forceinline__ int tg_expert(int u, const int* start, int E) {
    int lo = 0, hi = E - 1;
    while (lo < hi) {
        int mid = (lo + hi + 1) >> 1;
        if (start[mid] <= u) {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    return lo;
}


// Unit `local` of `rows` row units x `nblocks` column blocks taken in bands of `band` row units, column
// blocks outer within a band (row units inner): row unit m, column block nb.
__device__ __forceinline__ void tg_banded(int local, int rows, int nblocks, int band, int& m, int& nb) {
    const int b = local / (band * nblocks), r = local - b * (band * nblocks), in_band = min(band, rows - b * band);
    nb = r / in_band;
    m = b * band + (r - nb * in_band);
}

// Tile t of the list in shared memory (start[e] = tiles before expert e, start[E] = total).
// BM: rows per tile (128, or 256 for the FP8 kernel's two-wave tiles). BAND (with M_INNER): an expert of
// more than BAND row blocks runs in bands of BAND row blocks, column blocks outer within a band, so a
// wave shares a band of X in L2 instead of streaming all of an expert's X once per column block (a dense
// GEMM, one expert of 64 row blocks: X read 4 times at BAND 16, not once per pair of column blocks).
template <int BN, bool M_INNER, int BM = TG_BM, int BAND = 0>
__device__ __forceinline__ TgTile tg_tile(int t, const int* start, const int* off, int E, int N) {
    int e = tg_expert(t, start, E), local = t - start[e];  // skips empty experts
    const int cnt = off[e + 1] - off[e], mb = (cnt + BM - 1) / BM;
    int nb, m;
    if (M_INNER && BAND > 0) {  // as below within each band (one band when mb <= BAND)
        tg_banded(local, mb, (N + BN - 1) / BN, BAND, m, nb);
    } else if (M_INNER) {  // column block outer: the blocks of a wave share weight rows
        nb = local / mb;
        m = local - nb * mb;
    } else {  // row block outer: the blocks of a wave share rows of X
        int nblocks = (N + BN - 1) / BN;
        m = local / nblocks;
        nb = local - m * nblocks;
    }
    TgTile r;
    r.e = e;
    r.row0 = off[e] + m * BM;
    r.rows = min(BM, cnt - m * BM);
    r.n0 = nb * BN;
    r.valid = true;
    r.mc = false;
    return r;
}

// Arrives on the mbarrier at shared offset `bar` of CTA `cta` of the cluster.
__device__ __forceinline__ void mbar_arrive_cta(u32 bar, int cta) {
    u32 remote;
    asm volatile("mapa.shared::cluster.u32 %0, %1, %2;\n" : "=r"(remote) : "r"(bar), "r"(cta));
    asm volatile("mbarrier.arrive.shared::cluster.b64 _, [%0];\n" ::"r"(remote) : "memory");
}

// A consumer warp's release of a stage (the empty mbarrier at `bar`) to the producers that write it: its own
// CTA's, or with MC (clusters of two, each CTA loading part of the stage for both) both CTAs'.
template <bool MC> __device__ __forceinline__ void mbar_release(u32 bar) {
    if constexpr (MC) {
        mbar_arrive_cta(bar, 0);
        mbar_arrive_cta(bar, 1);
    } else {
        mbar_arrive(bar);
    }
}

__device__ __forceinline__ int cluster_reg(int which) {
    int v;
    if (which == 0) {
        asm volatile("mov.u32 %0, %%cluster_ctarank;\n" : "=r"(v));
    } else if (which == 1) {
        asm volatile("mov.u32 %0, %%clusterid.x;\n" : "=r"(v));
    } else {
        asm volatile("mov.u32 %0, %%nclusterid.x;\n" : "=r"(v));
    }
    return v;
}

// Every thread of every CTA of the cluster (threads may be diverged).
__device__ __forceinline__ void cluster_sync() {
    asm volatile("barrier.cluster.arrive.release;\nbarrier.cluster.wait.acquire;\n" ::: "memory");
}

// Multicast pairs in bands of TG_BAND pairs (row-block pairs inner within a band).
#define TG_BAND 8

// Pair tile t of a cluster of two (start[e] = row blocks before expert e, start[E] = all of them):
// row-block pair P (blocks 2P and 2P + 1 over all experts, one per CTA) and column block nb.
template <int BN, bool M_INNER>
__device__ __forceinline__ TgTile tg_pair_tile(int t, int rank, const int* start, const int* off, int E, int N) {
    const int nblocks = (N + BN - 1) / BN, mblocks = start[E], pairs = (mblocks + 1) / 2;
    int P, nb;
    if (M_INNER) {
        tg_banded(t, pairs, nblocks, TG_BAND, P, nb);
    } else {
        P = t / nblocks;
        nb = t - P * nblocks;
    }
    int e0 = tg_expert(2 * P, start, E);
    int e1 = 2 * P + 1 < mblocks ? tg_expert(2 * P + 1, start, E) : -1;
    TgTile r;
    r.mc = e0 == e1;
    r.e = rank ? e1 : e0;
    r.valid = r.e >= 0;
    r.n0 = nb * BN;
    if (r.valid) {
        int m = 2 * P + rank - start[r.e];
        r.row0 = off[r.e] + m * TG_BM;
        r.rows = min(TG_BM, off[r.e + 1] - off[r.e] - m * TG_BM);
    } else {
        r.e = 0;
        r.row0 = 0;
        r.rows = 0;
    }
    return r;
}

// Warp 0 of the block writes start[e] = units before expert e (start[E] = all of them) and off[e] =
// offsets[e] for e <= E into shared memory, with `per_block` units per `bm`-row block of an expert.
__device__ __forceinline__ void tg_list(const int* offsets, int E, int per_block, int* start, int* off, int lane,
                                        int bm = TG_BM) {
    int base = 0;
    for (int e0 = 0; e0 < E; e0 += 32) {
        int e = e0 + lane;
        int lo = e < E ? offsets[e] : 0;
        int c = e < E ? offsets[e + 1] - lo : 0;
        int units = (c + bm - 1) / bm * per_block;
        const int inc = warp_inclusive_scan(units, lane);
        if (e < E) {
            start[e] = base + inc - units;
            off[e] = lo;
        }
        base += __shfl_sync(0xffffffffu, inc, 31);
    }
    if (lane == 0) {
        start[E] = base;
        off[E] = offsets[E];
    }
}

// Epilogue of the grouped GEMMs (bf16 and FP8): one consumer warpgroup's 64 output rows x 8 * PJ
// columns, value val(j, i) for element i (0..3) of 8-column chunk j in the wgmma accumulator layout
// (wgmma.cuh), through its staging buffer `epi` (shared address epi_s): ceil(PJ / 8) slabs of 64 rows x 128
// bytes, 16-byte chunks XOR-swizzled by row (TMA's SWIZZLE_128B layout; conflict-free writes from the
// accumulator layout). With by_tma (all 64 rows valid, N a multiple of 8) one thread stores the whole
// slabs with TMA at (col0, row0), asynchronously: the warpgroup goes on and the next call waits for the
// reads of this buffer before refilling it (a last partial slab, PJ % 8 chunks, is stored by the threads). Otherwise the threads store 16-byte chunks of the first
// `rows` rows, masked to N. Called by all 128 threads of warpgroup c (1 or 2 of the block).
template <int PJ, class Val>
__device__ __forceinline__ void tg_store_rows(Val val, unsigned char* epi, u32 epi_s, int c, const TmaMap* tma_y,
                                              bool by_tma, bf16* __restrict__ Y, int N, int row0, int rows,
                                              int col0) {
    const int tid_c = threadIdx.x & 127, lane = tid_c & 31, w = tid_c >> 5, g = lane >> 2, q = lane & 3;
    if (tid_c == 0) asm volatile("cp.async.bulk.wait_group.read 0;\n" ::: "memory");
    epi_sync(c);  // the previous stores have read this buffer
#pragma unroll
    for (int half = 0; half < 2; half++) {
        const int r = w * 16 + g + half * 8;
#pragma unroll
        for (int j = 0; j < PJ; j++) {
            const u32 v = pack_bf16x2(val(j, half * 2), val(j, half * 2 + 1));
            *(u32*)(epi + (j >> 3) * 8192 + r * 128 + (((j & 7) ^ (r & 7)) * 16) + q * 4) = v;
        }
    }
    // Generic-proxy writes, read by the TMA (async proxy).
    if (by_tma) asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
    epi_sync(c);
    if (by_tma) {
        if (tid_c == 0) {
#pragma unroll
            for (int sl = 0; sl < PJ / 8; sl++) {  // whole 64-column slabs
                if (col0 + sl * 64 >= N) break;
                asm volatile("cp.async.bulk.tensor.2d.global.shared::cta.bulk_group [%0, {%1, %2}], [%3];\n" ::"l"(
                                 (u64)tma_y),
                             "r"(col0 + sl * 64), "r"(row0), "r"(epi_s + sl * 8192)
                             : "memory");
            }
            asm volatile("cp.async.bulk.commit_group;\n" ::: "memory");
        }
        if constexpr (PJ % 8 != 0) {
            // A last slab of PJ % 8 chunks: a 64-column TMA box would write the next tile's columns,
            // so the threads store it (N is a multiple of 8 here, so each chunk is whole or past N).
            constexpr int REM = PJ % 8, J0 = PJ / 8 * 8;
            for (int i = tid_c; i < 64 * REM; i += 128) {
                const int r = i / REM, ch = J0 + i % REM, col = col0 + ch * 8;
                if (col >= N) continue;
                *(uint4*)(Y + (u64)(row0 + r) * N + col) =
                    *(const uint4*)(epi + (ch >> 3) * 8192 + r * 128 + (((ch & 7) ^ (r & 7)) * 16));
            }
        }
    } else {
#pragma unroll 4
        for (int i = tid_c; i < 64 * PJ; i += 128) {
            const int r = i / PJ, ch = i % PJ, col = col0 + ch * 8;
            if (r >= rows || col >= N) continue;
            const unsigned char* src = epi + (ch >> 3) * 8192 + r * 128 + (((ch & 7) ^ (r & 7)) * 16);
            bf16* dst = Y + (u64)(row0 + r) * N + col;
            if (col + 8 <= N && !(N & 7)) {
                *(uint4*)dst = *(const uint4*)src;
            } else {
                for (int x = 0; x < 8 && col + x < N; x++) dst[x] = ((const bf16*)src)[x];
            }
        }
    }
}
