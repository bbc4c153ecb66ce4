// MoE router, one warp per token (src/ops/routing.rs is the reference): softmax or
// sigmoid scores, optional selection bias, optional group limit, top-k with the
// lower expert index winning ties, optional renormalisation and scaling.
// Limits (checked on the host): experts <= 1024, top_k <= 32, groups <= 64.
#include "common.cuh"

#define ROUTE_WARPS 4

// (v, j) beats (bv, bj) when larger, or equal with a lower index; bj < 0 means empty.
__device__ __forceinline__ bool better(float v, int j, float bv, int bj) {
    return bj < 0 || v > bv || (v == bv && j < bj);
}

__device__ __forceinline__ void warp_argmax(float& v, int& j) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        float ov = __shfl_xor_sync(0xffffffffu, v, o);
        int oj = __shfl_xor_sync(0xffffffffu, j, o);
        if (oj >= 0 && better(ov, oj, v, j)) {
            v = ov;
            j = oj;
        }
    }
}

extern "C" __global__ void route_topk(const float* logits, const float* bias, int t, int E, int sigmoid, int k,
                                      int n_group, int topk_group, int norm_topk, float scaling, int* ids,
                                      float* weights, float* probs) {
    extern __shared__ float sm[];
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    int tok = blockIdx.x * ROUTE_WARPS + warp;
    if (tok >= t) return;  // whole warps leave together
    float* pr = sm + warp * (2 * E + n_group + 32);
    float* sel = pr + E;
    float* gs = sel + E;
    int* chosen_id = (int*)(gs + n_group);
    const float* row = logits + (u64)tok * E;

    if (sigmoid) {
        for (int j = lane; j < E; j += 32) pr[j] = 1.0f / (1.0f + expf(-row[j]));
    } else {
        float m = neg_inf();
        for (int j = lane; j < E; j += 32) m = fmaxf(m, row[j]);
        m = warp_max(m);
        float s = 0.f;
        for (int j = lane; j < E; j += 32) {
            float e = expf(row[j] - m);
            pr[j] = e;
            s += e;
        }
        s = warp_sum(s);
        for (int j = lane; j < E; j += 32) pr[j] = pr[j] / s;
    }
    for (int j = lane; j < E; j += 32) sel[j] = bias ? pr[j] + bias[j] : pr[j];
    __syncwarp();

    if (n_group > 1) {
        int gsize = E / n_group;
        for (int g = lane; g < n_group; g += 32) {
            float best = neg_inf(), second = neg_inf();
            for (int j = g * gsize; j < (g + 1) * gsize; j++) {
                float v = sel[j];
                if (v > best) {
                    second = best;
                    best = v;
                } else if (v > second) {
                    second = v;
                }
            }
            gs[g] = (sigmoid && gsize > 1) ? best + second : best;
        }
        __syncwarp();
        u64 keep = 0;
        for (int s = 0; s < topk_group; s++) {
            float bv = 0.f;
            int bj = -1;
            for (int g = lane; g < n_group; g += 32)
                if (!((keep >> g) & 1) && better(gs[g], g, bv, bj)) {
                    bv = gs[g];
                    bj = g;
                }
            warp_argmax(bv, bj);
            keep |= 1ull << bj;
        }
        for (int j = lane; j < E; j += 32)
            if (!((keep >> (j / gsize)) & 1)) sel[j] = neg_inf();
        __syncwarp();
    }

    u32 taken = 0;  // bit i: expert lane + 32 i already chosen
    for (int s = 0; s < k; s++) {
        float bv = 0.f;
        int bj = -1;
        for (int j = lane, i = 0; j < E; j += 32, i++)
            if (!((taken >> i) & 1) && better(sel[j], j, bv, bj)) {
                bv = sel[j];
                bj = j;
            }
        warp_argmax(bv, bj);
        if ((bj & 31) == lane) taken |= 1u << (bj >> 5);
        if (lane == 0) chosen_id[s] = bj;
    }
    __syncwarp();
    float total = 0.f;
    for (int s = 0; s < k; s++) total += pr[chosen_id[s]];  // in slot order, as the host sums
    if (lane < k) {
        int e = chosen_id[lane];
        float w = pr[e];
        if (norm_topk) w = w / (total + 1e-20f);
        ids[(u64)tok * k + lane] = e;
        weights[(u64)tok * k + lane] = w * scaling;
    }
    float* prow = probs + (u64)tok * E;
    for (int j = lane; j < E; j += 32) prow[j] = pr[j];
}
