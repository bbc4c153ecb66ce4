// Group (token, slot) pairs by expert with a stable device-side counting sort
// (src/ops/permute.rs is the reference), and scatter expert outputs back.
//
// Slots are cut into chunks of PERM_CHUNK (one block each). perm_count writes the
// per-chunk expert counts expert-major, counts[e * chunks + c], and adds them to
// each expert's total; perm_scan turns that array into its exclusive prefix sum,
// which is exactly the first row of chunk c inside expert e's group; perm_rank adds
// each slot's rank inside its chunk.
#include "common.cuh"

#define PERM_CHUNK 256
#define PERM_WARPS (PERM_CHUNK / 32)

// Per-warp counts of each expert in this chunk, turned into per-warp exclusive
// offsets; returns (via *rank) the slot's rank among its warp's equal ids.
__device__ void chunk_ranks(const int* ids, u64 n, int E, int* wc, int* e_out, int* rank, int* total) {
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    for (int i = threadIdx.x; i < PERM_WARPS * E; i += blockDim.x) wc[i] = 0;
    __syncthreads();
    u64 slot = (u64)blockIdx.x * PERM_CHUNK + threadIdx.x;
    int e = -1;
    if (slot < n) e = min(max(ids[slot], 0), E - 1);  // out-of-range ids are clamped (memory safety only)
    unsigned peers = __match_any_sync(0xffffffffu, e);
    *rank = __popc(peers & ((1u << lane) - 1));
    if (e >= 0 && *rank == 0) wc[warp * E + e] = __popc(peers);
    __syncthreads();
    for (int x = threadIdx.x; x < E; x += blockDim.x) {
        int run = 0;
        for (int w = 0; w < PERM_WARPS; w++) {
            int c = wc[w * E + x];
            wc[w * E + x] = run;
            run += c;
        }
        total[x] = run;
    }
    __syncthreads();
    *e_out = e;
}

extern "C" __global__ void perm_count(const int* ids, u64 n, int E, int chunks, int* counts, int* totals) {
    extern __shared__ int wc[];  // [PERM_WARPS][E] then [E] totals
    int e, rank;
    chunk_ranks(ids, n, E, wc, &e, &rank, wc + PERM_WARPS * E);
    for (int x = threadIdx.x; x < E; x += blockDim.x) {
        const int c = wc[PERM_WARPS * E + x];
        counts[(u64)x * chunks + blockIdx.x] = c;
        if (c) atomicAdd(totals + x, c);
    }
}

// Exclusive scan of the block's values (one a thread, blockDim.x a multiple of 32); *sum gets the total.
__device__ int block_exclusive_scan(int v, int* sum) {
    __shared__ int warp_sums[32];
    const int lane = threadIdx.x & 31, w = threadIdx.x >> 5, warps = blockDim.x >> 5;
    const int x = warp_inclusive_scan(v, lane);
    __syncthreads();  // warp_sums free from the previous call
    if (lane == 31) warp_sums[w] = x;
    __syncthreads();
    if (w == 0) {
        warp_sums[lane] = warp_inclusive_scan(lane < warps ? warp_sums[lane] : 0, lane);  // inclusive over warps
    }
    __syncthreads();
    *sum = warp_sums[warps - 1];
    return x - v + (w ? warp_sums[w - 1] : 0);
}

// One block per expert e (a multiple of 32 threads): its row of chunk counts becomes their
// exclusive prefix sum plus the rows of experts before e (from perm_count's totals); offsets[e]
// = start of expert e. (One block over all E x chunks counts took 0.04 ms at V2-Lite.)
extern "C" __global__ void perm_scan(int* counts, int chunks, int E, const int* totals, int* offsets) {
    const int e = blockIdx.x;
    int part = 0, run;
    for (int x = threadIdx.x; x < e; x += blockDim.x) part += totals[x];
    block_exclusive_scan(part, &run);  // run = rows of experts 0..e-1
    if (threadIdx.x == 0) offsets[e] = run;
    int* row = counts + (u64)e * chunks;
    for (int c0 = 0; c0 < chunks; c0 += blockDim.x) {
        const int c = c0 + threadIdx.x, v = c < chunks ? row[c] : 0;
        int tile;
        const int before = block_exclusive_scan(v, &tile);
        if (c < chunks) row[c] = run + before;
        run += tile;
    }
    if (e == E - 1 && threadIdx.x == 0) offsets[E] = run;
}

extern "C" __global__ void perm_rank(const int* ids, u64 n, int k, int E, int chunks, const int* starts, int* row_of,
                                     int* token_of) {
    extern __shared__ int wc[];
    int e, rank;
    chunk_ranks(ids, n, E, wc, &e, &rank, wc + PERM_WARPS * E);
    u64 slot = (u64)blockIdx.x * PERM_CHUNK + threadIdx.x;
    if (e < 0) return;
    int row = starts[(u64)e * chunks + blockIdx.x] + wc[(threadIdx.x >> 5) * E + e] + rank;
    row_of[slot] = row;
    token_of[row] = (int)(slot / k);
}

// out[t] = sum over slots s of weights[t, s] * y[row_of[t, s]] (+ add[t] when given, rounded after
// the sum as a separate add would be); one block per token.
template <class T>
__device__ void unpermute(T* out, const T* y, const int* row_of, const float* weights, int k, u64 n, const T* add) {
    u64 t = blockIdx.x;
    for (u64 c = threadIdx.x; c < n; c += blockDim.x) {
        float acc = 0.f;
        for (int s = 0; s < k; s++) acc += weights[t * k + s] * to_f(y[(u64)row_of[t * k + s] * n + c]);
        T o = from_f<T>(acc);
        out[t * n + c] = add ? from_f<T>(to_f(o) + to_f(add[t * n + c])) : o;
    }
}
extern "C" __global__ void unpermute_bf16(bf16* o, const bf16* y, const int* r, const float* w, int k, u64 n,
                                          const bf16* add) {
    unpermute(o, y, r, w, k, n, add);
}
extern "C" __global__ void unpermute_f32(float* o, const float* y, const int* r, const float* w, int k, u64 n,
                                         const float* add) {
    unpermute(o, y, r, w, k, n, add);
}

// The bf16 one with 16-byte loads, 8 columns a thread and up to 4 slots' rows loaded before they are
// summed (the scalar kernel's 2-byte loads ran at 1.3 TB/s): n % 8 == 0 and 16-byte aligned bases,
// which the host checks. Same sums in the same order as unpermute_bf16.
extern "C" __global__ void unpermute_bf16_x8(bf16* out, const bf16* y, const int* row_of, const float* weights, int k,
                                             u64 n, const bf16* add) {
    const u64 t = blockIdx.x;
    for (u64 c = threadIdx.x * 8ull; c < n; c += blockDim.x * 8ull) {
        float acc[8] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
        for (int s0 = 0; s0 < k; s0 += 4) {
            uint4 v[4];
            float w[4];
#pragma unroll
            for (int i = 0; i < 4; i++) {
                if (s0 + i < k) {
                    w[i] = weights[t * k + s0 + i];
                    v[i] = *(const uint4*)(y + (u64)row_of[t * k + s0 + i] * n + c);
                }
            }
#pragma unroll
            for (int i = 0; i < 4; i++) {
                if (s0 + i >= k) continue;
                const u32 u[4] = {v[i].x, v[i].y, v[i].z, v[i].w};
#pragma unroll
                for (int j = 0; j < 4; j++) {
                    acc[2 * j] += w[i] * bf_lo(u[j]);
                    acc[2 * j + 1] += w[i] * bf_hi(u[j]);
                }
            }
        }
        u32 o[4];
#pragma unroll
        for (int j = 0; j < 4; j++) o[j] = pack_bf16x2(acc[2 * j], acc[2 * j + 1]);
        if (add) {
            const uint4 a = *(const uint4*)(add + t * n + c);
            const u32 aw[4] = {a.x, a.y, a.z, a.w};
#pragma unroll
            for (int j = 0; j < 4; j++) o[j] = pack_bf16x2(bf_lo(o[j]) + bf_lo(aw[j]), bf_hi(o[j]) + bf_hi(aw[j]));
        }
        *(uint4*)(out + t * n + c) = make_uint4(o[0], o[1], o[2], o[3]);
    }
}
