// Group (token, slot) pairs by expert with a stable device-side counting sort
// (src/ops/permute.rs is the reference), and scatter expert outputs back.
//
// Slots are cut into chunks of PERM_CHUNK (one block each). perm_count writes the
// per-chunk expert counts expert-major, counts[e * chunks + c]; perm_scan turns
// that array into its exclusive prefix sum, which is exactly the first row of
// chunk c inside expert e's group; perm_rank adds each slot's rank inside its chunk.
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

extern "C" __global__ void perm_count(const int* ids, u64 n, int E, int chunks, int* counts) {
    extern __shared__ int wc[];  // [PERM_WARPS][E] then [E] totals
    int e, rank;
    chunk_ranks(ids, n, E, wc, &e, &rank, wc + PERM_WARPS * E);
    for (int x = threadIdx.x; x < E; x += blockDim.x) counts[(u64)x * chunks + blockIdx.x] = wc[PERM_WARPS * E + x];
}

// One block of 1024 threads: in-place exclusive scan of counts[len]; offsets[e] = start of expert e.
extern "C" __global__ void perm_scan(int* counts, u64 len, int chunks, int E, int* offsets) {
    __shared__ int part[1024];
    u64 per = (len + blockDim.x - 1) / blockDim.x;
    u64 lo = threadIdx.x * per, hi = min(lo + per, len);
    int s = 0;
    for (u64 i = lo; i < hi; i++) s += counts[i];
    part[threadIdx.x] = s;
    __syncthreads();
    // Hillis-Steele inclusive scan of the per-thread sums.
    for (int o = 1; o < 1024; o <<= 1) {
        int v = threadIdx.x >= o ? part[threadIdx.x - o] : 0;
        __syncthreads();
        part[threadIdx.x] += v;
        __syncthreads();
    }
    int run = threadIdx.x ? part[threadIdx.x - 1] : 0;
    for (u64 i = lo; i < hi; i++) {
        int c = counts[i];
        counts[i] = run;
        run += c;
    }
    __syncthreads();
    __threadfence_block();
    for (int e = threadIdx.x; e < E; e += blockDim.x) offsets[e] = counts[(u64)e * chunks];
    if (threadIdx.x == blockDim.x - 1) offsets[E] = part[1023];
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

// out[t] = sum over slots s of weights[t, s] * y[row_of[t, s]]; one block per token.
template <class T>
__device__ void unpermute(T* out, const T* y, const int* row_of, const float* weights, int k, u64 n) {
    u64 t = blockIdx.x;
    for (u64 c = threadIdx.x; c < n; c += blockDim.x) {
        float acc = 0.f;
        for (int s = 0; s < k; s++) acc += weights[t * k + s] * to_f(y[(u64)row_of[t * k + s] * n + c]);
        out[t * n + c] = from_f<T>(acc);
    }
}
extern "C" __global__ void unpermute_bf16(bf16* o, const bf16* y, const int* r, const float* w, int k, u64 n) {
    unpermute(o, y, r, w, k, n);
}
extern "C" __global__ void unpermute_f32(float* o, const float* y, const int* r, const float* w, int k, u64 n) {
    unpermute(o, y, r, w, k, n);
}
