// Grouped GEMM for MoE experts: rows offsets[e]..offsets[e+1] of X [R, K] times
// W[e]^T (W [E, N, K]) -> Y [R, N], bf16 in/out, f32 accumulation on the tensor
// cores (mma.sync m16n8k16, ldmatrix, cp.async multi-stage pipeline).
//
// The offsets stay on the device: the grid is sized from an upper bound of the
// number of row tiles (ceil(R / BM) + E), and each block finds its (expert,
// row tile) from the offsets itself; blocks past the last tile exit at once.
// blockIdx.x walks the N tiles so that neighbouring blocks share the X tile and
// one expert's weights stay hot in L2.
#include "mma.cuh"
#include "grouped_tiles.cuh"

#define GG_BK 64
#define GG_CH (GG_BK / 8)  // 16-byte chunks per tile row


// A block of WARPS_M x WARPS_N warps computes a BM x BN tile; each warp a
// (BM / WARPS_M) x (BN / WARPS_N) piece; STAGES-deep cp.async pipeline over K.
template <int BM, int BN, int WARPS_M, int WARPS_N, int STAGES>
__device__ void grouped_gemm(const bf16* __restrict__ X, const bf16* __restrict__ W, const int* __restrict__ offsets,
                             bf16* __restrict__ Y, int E, int N, int K) {
    constexpr int THREADS = WARPS_M * WARPS_N * 32;
    constexpr int WM = BM / WARPS_M, WN = BN / WARPS_N;
    constexpr int MT = WM / 16, NT = WN / 8;
    extern __shared__ __align__(128) unsigned char smem[];
    Tile tile = find_tile<BM>(offsets, E, blockIdx.y);
    if (tile.e < 0) return;
    const int n0 = blockIdx.x * BN;
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int wm = warp / WARPS_N, wn = warp % WARPS_N;
    const bf16* A = X + (u64)tile.row0 * K;
    const bf16* B = W + ((u64)tile.e * N + n0) * K;
    const int nrows_b = min(BN, N - n0);
    const u32 sbase = smem_addr(smem);
    constexpr u32 stage_bytes = (BM + BN) * GG_BK * 2;
    const int ktiles = (K + GG_BK - 1) / GG_BK;

    auto load = [&](int stage, int kt) {
        u32 sa = sbase + stage * stage_bytes, sb = sa + BM * GG_BK * 2;
        int k0 = kt * GG_BK;
#pragma unroll
        for (int i = 0; i < BM * GG_CH / THREADS; i++) {
            int c = tid + i * THREADS, r = c / GG_CH, ch = c % GG_CH;
            int gk = k0 + ch * 8;
            bool ok = r < tile.rows && gk < K;
            cp_async16(sa + swz<GG_CH>(r, ch), ok ? (const void*)(A + (u64)r * K + gk) : (const void*)A, ok ? 16 : 0);
        }
#pragma unroll
        for (int i = 0; i < BN * GG_CH / THREADS; i++) {
            int c = tid + i * THREADS, r = c / GG_CH, ch = c % GG_CH;
            int gk = k0 + ch * 8;
            bool ok = r < nrows_b && gk < K;
            cp_async16(sb + swz<GG_CH>(r, ch), ok ? (const void*)(B + (u64)r * K + gk) : (const void*)B, ok ? 16 : 0);
        }
    };

    float acc[MT][NT][4];
#pragma unroll
    for (int i = 0; i < MT; i++)
#pragma unroll
        for (int j = 0; j < NT; j++)
#pragma unroll
            for (int x = 0; x < 4; x++) acc[i][j][x] = 0.f;

#pragma unroll
    for (int s = 0; s < STAGES - 1; s++) {
        if (s < ktiles) load(s, s);
        cp_async_commit();
    }

    for (int kt = 0; kt < ktiles; kt++) {
        cp_async_wait<STAGES - 2>();
        __syncthreads();
        // The stage refilled here was read in iteration kt - 1, which every warp has left.
        int pf = kt + STAGES - 1;
        if (pf < ktiles) load(pf % STAGES, pf);
        cp_async_commit();

        u32 sa = sbase + (kt % STAGES) * stage_bytes, sb = sa + BM * GG_BK * 2;
#pragma unroll
        for (int kk = 0; kk < GG_BK / 16; kk++) {
            u32 af[MT][4], bfr[NT / 2][4];
            int mat = lane >> 3, r8 = lane & 7;
#pragma unroll
            for (int i = 0; i < MT; i++) {
                int r = wm * WM + i * 16 + (mat & 1) * 8 + r8;
                ldmatrix_x4(af[i], sa + swz<GG_CH>(r, kk * 2 + (mat >> 1)));
            }
#pragma unroll
            for (int j = 0; j < NT / 2; j++) {
                int r = wn * WN + j * 16 + (mat >> 1) * 8 + r8;
                ldmatrix_x4(bfr[j], sb + swz<GG_CH>(r, kk * 2 + (mat & 1)));
            }
#pragma unroll
            for (int i = 0; i < MT; i++)
#pragma unroll
                for (int j = 0; j < NT; j++) mma_bf16(acc[i][j], af[i], bfr[j / 2][(j & 1) * 2], bfr[j / 2][(j & 1) * 2 + 1]);
        }
    }
    cp_async_wait<0>();

    const int g = lane >> 2, q = lane & 3;
#pragma unroll
    for (int i = 0; i < MT; i++) {
#pragma unroll
        for (int half = 0; half < 2; half++) {
            int r = wm * WM + i * 16 + g + half * 8;
            if (r >= tile.rows) continue;
            bf16* yrow = Y + (u64)(tile.row0 + r) * N;
#pragma unroll
            for (int j = 0; j < NT; j++) {
                int c = n0 + wn * WN + j * 8 + q * 2;
                float v0 = acc[i][j][half * 2], v1 = acc[i][j][half * 2 + 1];
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

// Name: tile BMxBN, warps WMxWN, stages. The host (src/backend/cuda/moe.rs) keeps the same table.
#define GG(NAME, BM, BN, WM, WN, ST, MINB)                                                                        \
    extern "C" __global__ void __launch_bounds__(WM * WN * 32, MINB)                                             \
        NAME(const bf16* X, const bf16* W, const int* off, bf16* Y, int E, int N, int K) {                        \
        grouped_gemm<BM, BN, WM, WN, ST>(X, W, off, Y, E, N, K);                                                  \
    }
GG(grouped_gemm_128x128, 128, 128, 2, 4, 3, 2)
GG(grouped_gemm_128x256, 128, 256, 2, 4, 3, 1)
GG(grouped_gemm_256x128, 256, 128, 4, 2, 3, 1)
GG(grouped_gemm_128x256_s4, 128, 256, 2, 4, 4, 1)
