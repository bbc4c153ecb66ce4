// Flash attention forward (FA2 style) for grouped-query attention, bf16 in/out:
// one block of 8 warps per 128 query rows of one head, each warp owning 16 rows;
// K/V tiles of 64 keys double-buffered with cp.async; S = QK^T and O += PV on
// mma.sync m16n8k16 with ldmatrix (.trans for V); online softmax in the log2
// domain (exp2 with log2(e) folded into the scale); causal tiles past the
// diagonal are never loaded. Writes out [sq, hq, d] (bf16, or f32 for partial results
// that context parallelism merges by lse: the `_f32o` kernels) and the natural-log lse
// [hq, sq] (-inf, and a zero row, where a query sees no key).
#include "mma.cuh"

#define FA_BKV 64

__device__ __forceinline__ float ex2(float x) {
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
    return y;
}

// WARPS warps, each owning MT x 16 query rows (BQ = WARPS * MT * 16 rows per block).
// Q_REGS keeps the warp's Q fragments in registers for the whole block; otherwise
// they are reloaded from shared memory each key tile (fewer registers, which MT = 2 needs).
template <int D, int WARPS, int MT, bool Q_REGS, class OT>
__device__ void flash_fwd(const bf16* __restrict__ Q, const bf16* __restrict__ Kp, const bf16* __restrict__ Vp,
                          OT* __restrict__ O, float* __restrict__ lse, int sq, int sk, int hq, int hkv, i64 delta,
                          int causal, float scale_log2) {
    constexpr int THREADS = WARPS * 32;
    constexpr int BQ = WARPS * MT * 16;
    constexpr int CH = D / 8;        // 16-byte chunks per row
    constexpr int KSTEPS = D / 16;   // k16 steps of QK^T
    constexpr int NT_S = FA_BKV / 8; // n8 tiles of S per m16 tile
    constexpr int NT_O = D / 8;      // n8 tiles of O per m16 tile
    constexpr u32 Q_BYTES = BQ * D * 2, KV_BYTES = FA_BKV * D * 2;
    extern __shared__ __align__(128) unsigned char smem[];
    const u32 sQ = smem_addr(smem), sK0 = sQ + Q_BYTES, sV0 = sK0 + 2 * KV_BYTES;

    const int qt = causal ? gridDim.x - 1 - blockIdx.x : blockIdx.x;  // heavy causal tiles first
    const int q0 = qt * BQ, h = blockIdx.y, kh = h / (hq / hkv);
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int g = lane >> 2, q = lane & 3, mat = lane >> 3, r8 = lane & 7;
    const int wrow = warp * MT * 16;  // the warp's first row in the block
    const u64 q_rs = (u64)hq * D, kv_rs = (u64)hkv * D;
    const bf16* Qh = Q + (u64)q0 * q_rs + (u64)h * D;
    const bf16* Kh = Kp + (u64)kh * D;
    const bf16* Vh = Vp + (u64)kh * D;

    int n_kv = (sk + FA_BKV - 1) / FA_BKV;
    if (causal) {
        i64 last = delta + q0 + BQ - 1;  // last key any row of this block may see
        n_kv = last < 0 ? 0 : (int)min((i64)n_kv, last / FA_BKV + 1);
    }

    auto load_kv = [&](int t, int buf) {
        int k0 = t * FA_BKV;
#pragma unroll
        for (int i = 0; i < FA_BKV * CH / THREADS; i++) {
            int c = tid + i * THREADS, r = c / CH, ch = c % CH;
            bool ok = k0 + r < sk;
            u64 off = ok ? (u64)(k0 + r) * kv_rs + ch * 8 : 0;
            cp_async16(sK0 + buf * KV_BYTES + swz<CH>(r, ch), Kh + off, ok ? 16 : 0);
            cp_async16(sV0 + buf * KV_BYTES + swz<CH>(r, ch), Vh + off, ok ? 16 : 0);
        }
    };

    float o[MT][NT_O][4];
    float m[MT][2], l[MT][2];
#pragma unroll
    for (int mt = 0; mt < MT; mt++) {
#pragma unroll
        for (int j = 0; j < NT_O; j++) o[mt][j][0] = o[mt][j][1] = o[mt][j][2] = o[mt][j][3] = 0.f;
        m[mt][0] = m[mt][1] = neg_inf();
        l[mt][0] = l[mt][1] = 0.f;
    }
    u32 qf[Q_REGS ? KSTEPS : 1][MT][4];

    if (n_kv > 0) {
#pragma unroll
        for (int i = 0; i < BQ * CH / THREADS; i++) {
            int c = tid + i * THREADS, r = c / CH, ch = c % CH;
            bool ok = q0 + r < sq;
            cp_async16(sQ + swz<CH>(r, ch), Qh + (ok ? (u64)r * q_rs + ch * 8 : 0), ok ? 16 : 0);
        }
        load_kv(0, 0);
        cp_async_commit();
    }
    const i64 row_lo = delta + q0 + wrow;  // the warp's first row sees keys <= row_lo

    for (int t = 0; t < n_kv; t++) {
        const int buf = t & 1;
        if (t + 1 < n_kv) {
            load_kv(t + 1, buf ^ 1);  // that buffer was released by the barrier ending iteration t - 1
            cp_async_commit();
            cp_async_wait<1>();
        } else {
            cp_async_wait<0>();
        }
        __syncthreads();
        if (Q_REGS && t == 0) {
#pragma unroll
            for (int ks = 0; ks < KSTEPS; ks++)
#pragma unroll
                for (int mt = 0; mt < MT; mt++)
                    ldmatrix_x4(qf[Q_REGS ? ks : 0][mt], sQ + swz<CH>(wrow + mt * 16 + (mat & 1) * 8 + r8, ks * 2 + (mat >> 1)));
        }
        const u32 sK = sK0 + buf * KV_BYTES, sV = sV0 + buf * KV_BYTES;

        float s[MT][NT_S][4];
#pragma unroll
        for (int mt = 0; mt < MT; mt++)
#pragma unroll
            for (int j = 0; j < NT_S; j++) s[mt][j][0] = s[mt][j][1] = s[mt][j][2] = s[mt][j][3] = 0.f;
#pragma unroll
        for (int ks = 0; ks < KSTEPS; ks++) {
            u32 qa[MT][4];
#pragma unroll
            for (int mt = 0; mt < MT; mt++) {
                if (Q_REGS) {
#pragma unroll
                    for (int x = 0; x < 4; x++) qa[mt][x] = qf[Q_REGS ? ks : 0][mt][x];
                } else {
                    ldmatrix_x4(qa[mt], sQ + swz<CH>(wrow + mt * 16 + (mat & 1) * 8 + r8, ks * 2 + (mat >> 1)));
                }
            }
#pragma unroll
            for (int j = 0; j < NT_S / 2; j++) {
                u32 kf[4];
                ldmatrix_x4(kf, sK + swz<CH>(j * 16 + (mat >> 1) * 8 + r8, ks * 2 + (mat & 1)));
#pragma unroll
                for (int mt = 0; mt < MT; mt++) {
                    mma_bf16(s[mt][2 * j], qa[mt], kf[0], kf[1]);
                    mma_bf16(s[mt][2 * j + 1], qa[mt], kf[2], kf[3]);
                }
            }
        }

        const int k0 = t * FA_BKV;
        if (k0 + FA_BKV > sk || (causal && (i64)(k0 + FA_BKV - 1) > row_lo)) {
            // In tile-local 32-bit terms: key j is visible to the warp's row r when
            // j < kmax and j <= lim + r (lim clamped: the tile spans only 64 keys).
            const int kmax = sk - k0;
            const int lim = causal ? (int)max((i64)-256, min((i64)256, row_lo - k0)) : 256;
#pragma unroll
            for (int mt = 0; mt < MT; mt++)
#pragma unroll
                for (int j = 0; j < NT_S; j++)
#pragma unroll
                    for (int x = 0; x < 4; x++) {
                        int key = j * 8 + q * 2 + (x & 1);
                        if (key >= kmax || key > lim + mt * 16 + g + (x >> 1) * 8) s[mt][j][x] = neg_inf();
                    }
        }

#pragma unroll
        for (int mt = 0; mt < MT; mt++)
#pragma unroll
            for (int r = 0; r < 2; r++) {
                float mx = neg_inf();
#pragma unroll
                for (int j = 0; j < NT_S; j++) mx = fmaxf(mx, fmaxf(s[mt][j][2 * r], s[mt][j][2 * r + 1]));
                mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
                mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
                float m_new = fmaxf(m[mt][r], mx * scale_log2);
                float m_use = m_new == neg_inf() ? 0.f : m_new;
                float alpha = ex2(m[mt][r] - m_use);
                float sum = 0.f;
#pragma unroll
                for (int j = 0; j < NT_S; j++) {
                    float p0 = ex2(fmaf(s[mt][j][2 * r], scale_log2, -m_use));
                    float p1 = ex2(fmaf(s[mt][j][2 * r + 1], scale_log2, -m_use));
                    s[mt][j][2 * r] = p0;
                    s[mt][j][2 * r + 1] = p1;
                    sum += p0 + p1;
                }
                l[mt][r] = l[mt][r] * alpha + sum;  // this thread's share; the quad is summed at the end
                m[mt][r] = m_new;
#pragma unroll
                for (int j = 0; j < NT_O; j++) {
                    o[mt][j][2 * r] *= alpha;
                    o[mt][j][2 * r + 1] *= alpha;
                }
            }

#pragma unroll
        for (int j2 = 0; j2 < FA_BKV / 16; j2++) {
            u32 pa[MT][4];
#pragma unroll
            for (int mt = 0; mt < MT; mt++) {
                pa[mt][0] = pack_bf16x2(s[mt][2 * j2][0], s[mt][2 * j2][1]);
                pa[mt][1] = pack_bf16x2(s[mt][2 * j2][2], s[mt][2 * j2][3]);
                pa[mt][2] = pack_bf16x2(s[mt][2 * j2 + 1][0], s[mt][2 * j2 + 1][1]);
                pa[mt][3] = pack_bf16x2(s[mt][2 * j2 + 1][2], s[mt][2 * j2 + 1][3]);
            }
#pragma unroll
            for (int d2 = 0; d2 < NT_O / 2; d2++) {
                u32 vf[4];
                ldmatrix_x4_trans(vf, sV + swz<CH>(j2 * 16 + (mat & 1) * 8 + r8, d2 * 2 + (mat >> 1)));
#pragma unroll
                for (int mt = 0; mt < MT; mt++) {
                    mma_bf16(o[mt][2 * d2], pa[mt], vf[0], vf[1]);
                    mma_bf16(o[mt][2 * d2 + 1], pa[mt], vf[2], vf[3]);
                }
            }
        }
        __syncthreads();
    }

#pragma unroll
    for (int mt = 0; mt < MT; mt++)
#pragma unroll
        for (int r = 0; r < 2; r++) {
            float lt = l[mt][r];
            lt += __shfl_xor_sync(0xffffffffu, lt, 1);
            lt += __shfl_xor_sync(0xffffffffu, lt, 2);
            int i = q0 + wrow + mt * 16 + g + r * 8;
            if (i >= sq) continue;
            float inv = lt > 0.f ? 1.0f / lt : 0.f;
            OT* orow = O + (u64)i * q_rs + (u64)h * D;
#pragma unroll
            for (int j = 0; j < NT_O; j++) {
                if constexpr (sizeof(OT) == 4)
                    *(float2*)(orow + j * 8 + q * 2) = make_float2(o[mt][j][2 * r] * inv, o[mt][j][2 * r + 1] * inv);
                else
                    *(u32*)(orow + j * 8 + q * 2) = pack_bf16x2(o[mt][j][2 * r] * inv, o[mt][j][2 * r + 1] * inv);
            }
            if (q == 0) lse[(u64)h * sq + i] = lt > 0.f ? (m[mt][r] + log2f(lt)) * 0.6931471805599453f : neg_inf();
        }
}

// Name, head dim, warps, m16 tiles per warp, Q in registers, min blocks per SM; each
// with a bf16 output (NAME) and an f32 one (NAME_f32o).
// The host (src/backend/cuda/tiles.rs) keeps the same table.
#define FA_OUT(NAME, OT, D, W, MT, QR, MINB)                                                                     \
    extern "C" __global__ void __launch_bounds__(W * 32, MINB)                                                  \
        NAME(const bf16* q, const bf16* k, const bf16* v, OT* o, float* lse, int sq, int sk, int hq, int hkv,     \
             i64 delta, int causal, float scale_log2) {                                                           \
        flash_fwd<D, W, MT, QR, OT>(q, k, v, o, lse, sq, sk, hq, hkv, delta, causal, scale_log2);                \
    }
#define FA(NAME, D, W, MT, QR, MINB)          \
    FA_OUT(NAME, bf16, D, W, MT, QR, MINB)    \
    FA_OUT(NAME##_f32o, float, D, W, MT, QR, MINB)
FA(flash_fwd_d128_w8m1, 128, 8, 1, true, 1)
FA(flash_fwd_d128_w4m2, 128, 4, 2, false, 2)
FA(flash_fwd_d128_w8m2, 128, 8, 2, false, 1)
FA(flash_fwd_d64_w8m1, 64, 8, 1, true, 2)
FA(flash_fwd_d64_w4m2, 64, 4, 2, true, 2)
