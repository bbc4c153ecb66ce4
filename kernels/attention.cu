// The naive attention's softmax over a materialised f32 score matrix (the two
// GEMMs around it run in cuBLASLt), and the log-sum-exp merge of two partial
// attentions (context parallelism).
#include "common.cuh"

// Keys a query row may see (src/ops/attention.rs: visible_keys).
__device__ __forceinline__ u64 visible_keys(u64 i, u64 sk, int causal, u64 q_off, u64 k_off) {
    if (!causal) return sk;
    u64 last = q_off + i + 1;
    return last <= k_off ? 0 : min(last - k_off, sk);
}

// Row i of scores [sq, sk] (already scaled) -> probabilities p [sq, sk] bf16 (0 past
// the visible keys) and lse[i] (-inf when no key is visible). One block per row.
extern "C" __global__ void softmax_rows(const float* scores, bf16* p, float* lse, u64 sk, int causal, u64 q_off,
                                        u64 k_off) {
    u64 i = blockIdx.x;
    const float* s = scores + i * sk;
    bf16* pr = p + i * sk;
    u64 vis = visible_keys(i, sk, causal, q_off, k_off);
    float m = neg_inf();
    for (u64 j = threadIdx.x; j < vis; j += blockDim.x) m = fmaxf(m, s[j]);
    m = block_max(m);
    float l = 0.f;
    if (vis > 0)
        for (u64 j = threadIdx.x; j < vis; j += blockDim.x) l += expf(s[j] - m);
    l = block_sum(l);
    float inv = vis > 0 ? 1.0f / l : 0.f;
    for (u64 j = threadIdx.x; j < sk; j += blockDim.x) pr[j] = f2bf(j < vis ? expf(s[j] - m) * inv : 0.f);
    if (threadIdx.x == 0) lse[i] = vis > 0 ? m + logf(l) : neg_inf();
}

// Merge partial attentions over disjoint keys: out [sq, hq, d], lse [hq, sq]. One block per (i, h).
template <class T>
__device__ void attn_merge(T* out, float* lse, const T* oa, const float* la, const T* ob, const float* lb, u64 sq,
                           int hq, int d) {
    u64 row = blockIdx.x;  // i * hq + h
    u64 i = row / hq;
    int h = row % hq;
    float a = la[h * sq + i], b = lb[h * sq + i];
    float m = fmaxf(a, b);
    bool none = m == neg_inf();
    float wa = none ? 0.f : expf(a - m), wb = none ? 0.f : expf(b - m);
    float sum = wa + wb;
    float ca = none ? 0.f : wa / sum, cb = none ? 0.f : wb / sum;
    for (int x = threadIdx.x; x < d; x += blockDim.x)
        out[row * d + x] = from_f<T>(ca * to_f(oa[row * d + x]) + cb * to_f(ob[row * d + x]));
    if (threadIdx.x == 0) lse[h * sq + i] = none ? neg_inf() : m + logf(sum);
}

extern "C" __global__ void attn_merge_bf16(bf16* o, float* l, const bf16* oa, const float* la, const bf16* ob,
                                           const float* lb, u64 sq, int hq, int d) {
    attn_merge(o, l, oa, la, ob, lb, sq, hq, d);
}
extern "C" __global__ void attn_merge_f32(float* o, float* l, const float* oa, const float* la, const float* ob,
                                          const float* lb, u64 sq, int hq, int d) {
    attn_merge(o, l, oa, la, ob, lb, sq, hq, d);
}
