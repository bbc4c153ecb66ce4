// Row tiles of a grouped GEMM, found on the device from the expert offsets:
// shared by the mma.sync (grouped_gemm.cu) and wgmma (grouped_gemm_sm90.cu) kernels.
#pragma once
#include "common.cuh"

struct Tile {
    int e, row0, rows;
};

// Which expert and rows row-tile g covers; e = -1 past the last tile.
template <int BM> __device__ Tile find_tile(const int* offsets, int E, int g) {
    __shared__ Tile t;
    if (threadIdx.x < 32) {
        int lane = threadIdx.x;
        if (lane == 0) t.e = -1;
        __syncwarp();
        int base = 0;
        for (int e0 = 0; e0 < E; e0 += 32) {
            int e = e0 + lane;
            int lo = e < E ? offsets[e] : 0;
            int cnt = e < E ? offsets[e + 1] - lo : 0;
            int tiles = (cnt + BM - 1) / BM;
            const int inc = warp_inclusive_scan(tiles, lane);
            int first = base + inc - tiles;
            if (tiles > 0 && g >= first && g < first + tiles) {
                t.e = e;
                t.row0 = lo + (g - first) * BM;
                t.rows = min(BM, cnt - (g - first) * BM);
            }
            base += __shfl_sync(0xffffffffu, inc, 31);
        }
    }
    __syncthreads();
    return t;
}
