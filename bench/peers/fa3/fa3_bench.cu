// fa3_bench: times FlashAttention-3's own Hopper forward kernel (Dao-AILab/flash-attention, hopper/) on the causal
// GQA attention shapes of examples/ops_bench.rs, in our JSON-lines format, and checks its output against a naive
// reference on sampled rows. No torch: Flash_fwd_params is filled by hand the way hopper/flash_api.cpp's mha_fwd does
// for (q, k, v) of [batch=1, seqlen, heads, d] contiguous, causal=True, no paging / split / softcap / varlen.
//
//   fa3_bench [--iters N] [--attn-seq S,S,...] [--check-rows N] [--json FILE] [--dry-run]
//   (ops_bench's --only, --kernels, --variants and --offsets are taken too, for bench/run_ops.sh)
//
// JSON lines go to stdout (and to --json FILE), a readable table to stderr. Exit 0: all shapes ran and matched the
// reference; 1: a CUDA/CUTLASS error (file:line and the error string on stderr); 2: a bad argument (named); 3: the
// reference check failed or FA3's heuristics ask for a kernel this build does not have.
#include <cuda_runtime.h>
#include <cuda_bf16.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <cerrno>
#include <ctime>
#include <string>
#include <vector>

#include "flash.h"       // Flash_fwd_params (FA3)
#include "tile_size.h"   // tile_size_fwd_sm90 (FA3): the kBlockM/kBlockN the launch template picks
#include "heuristics.h"  // should_pack_gqa, num_splits_heuristic (FA3)

#ifndef FA3_COMMIT
#define FA3_COMMIT "unknown"
#endif
#ifndef FA3_IMPL_NOTE
#define FA3_IMPL_NOTE ""  // build.sh sets ", ptxas 12.8.93" for a build assembled with another ptxas (PTXAS=...)
#endif

// The FA3 instantiations (fa3_fwd_hdim*_causal_sm90.cu).
#ifdef FA3_HAVE_HDIM128
void fa3_run_fwd_hdim128_causal_bf16(Flash_fwd_params &params, cudaStream_t stream);
#endif
#ifdef FA3_HAVE_HDIM64
void fa3_run_fwd_hdim64_causal_bf16(Flash_fwd_params &params, cudaStream_t stream);
#endif

// flash_fwd_launch_template.h calls this only when Varlen (compiled out here: FLASHATTENTION_DISABLE_VARLEN and the
// instantiations use Varlen=false); it lives in FA3's flash_prepare_scheduler.cu, which we do not build.
void prepare_varlen_num_blocks(Flash_fwd_params &, cudaStream_t, bool, int, int, bool) {
    fprintf(stderr, "fa3_bench: prepare_varlen_num_blocks called, but this build has no varlen support\n");
    exit(1);
}

#include "../peer_timing.cuh"  // CK, peer_median_ms

static void bad_arg(const char *arg, const char *why) {
    fprintf(stderr, "fa3_bench: bad argument %s: %s\n"
                    "usage: fa3_bench [--iters N] [--attn-seq S,S,...] [--check-rows N] [--json FILE] [--dry-run]\n"
                    "  (ops_bench's --only, --kernels, --variants and --offsets are taken too, for bench/run_ops.sh)\n",
            arg, why);
    exit(2);
}

// ---------------------------------------------------------------------------------------------------------------
// Inputs and the reference.

__device__ __forceinline__ uint64_t mix64(uint64_t x) {
    x ^= x >> 33; x *= 0xff51afd7ed558ccdULL; x ^= x >> 33; x *= 0xc4ceb9fe1a85ec53ULL; x ^= x >> 33;
    return x;
}

// Uniform on [-sqrt(3), sqrt(3)] (unit variance), as bench/peers/torch_ops.py's rand().
__global__ void fill_kernel(__nv_bfloat16 *p, size_t n, uint64_t seed) {
    for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x) {
        uint64_t h = mix64(seed * 0x9e3779b97f4a7c15ULL + i);
        float u = float(h >> 40) * (1.0f / 16777216.0f);  // [0, 1)
        p[i] = __float2bfloat16((u * 2.f - 1.f) * 1.7320508f);
    }
}

__global__ void count_nonfinite(const __nv_bfloat16 *o, size_t n_o, const float *lse, size_t n_lse,
                                unsigned long long *count) {
    unsigned long long c = 0;
    for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n_o; i += size_t(gridDim.x) * blockDim.x)
        c += !isfinite(__bfloat162float(o[i]));
    for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n_lse; i += size_t(gridDim.x) * blockDim.x)
        c += !isfinite(lse[i]);
    if (c) atomicAdd(count, c);
}

// Naive causal attention for sampled rows, f32: one warp per (head, query row); lanes split d (d % 32 == 0, d <= 256).
// Pass 1 the row max, pass 2 the exp-sum and P @ V. Writes O [rows, d] and the natural-log LSE, as FA3's softmax_lse.
__global__ void reference_rows(const __nv_bfloat16 *q, const __nv_bfloat16 *k, const __nv_bfloat16 *v,
                               const int *row_head, const int *row_pos, int rows, int s, int hq, int hkv, int d,
                               float scale, float *o_ref, float *lse_ref) {
    int r = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (r >= rows) return;
    int h = row_head[r], i = row_pos[r], hk = h / (hq / hkv), per = d / 32;
    float qv[8], acc[8];
    for (int t = 0; t < per; ++t) {
        qv[t] = __bfloat162float(q[(size_t(i) * hq + h) * d + lane * per + t]);
        acc[t] = 0.f;
    }
    auto score = [&](int j) {
        const __nv_bfloat16 *kr = k + (size_t(j) * hkv + hk) * d + lane * per;
        float x = 0.f;
        for (int t = 0; t < per; ++t) x += qv[t] * __bfloat162float(kr[t]);
        for (int m = 16; m; m >>= 1) x += __shfl_xor_sync(0xffffffffu, x, m);
        return x * scale;
    };
    float mx = -INFINITY;
    for (int j = 0; j <= i; ++j) mx = fmaxf(mx, score(j));  // causal, seqlen_q == seqlen_k: keys 0..i
    float sum = 0.f;
    for (int j = 0; j <= i; ++j) {
        float p = expf(score(j) - mx);
        sum += p;
        const __nv_bfloat16 *vr = v + (size_t(j) * hkv + hk) * d + lane * per;
        for (int t = 0; t < per; ++t) acc[t] += p * __bfloat162float(vr[t]);
    }
    for (int t = 0; t < per; ++t) o_ref[size_t(r) * d + lane * per + t] = acc[t] / sum;
    if (lane == 0) lse_ref[r] = mx + logf(sum);
}

// ---------------------------------------------------------------------------------------------------------------
// FA3's host-side choices, as hopper/flash_api.cpp makes them (get_pack_gqa / get_num_splits of a build with pack-GQA
// and split enabled, i.e. what the released flash_attn_3 would pick), for batch 1, no varlen, no paging.

struct Choice {
    int block_m, block_n;
    bool mma_pv_rs, intra_wg_overlap;
    bool pack_gqa;
    int num_splits;
    bool needs_semaphore;
};

static Choice fa3_choice(int s, int hq, int hkv, int d, int num_sm) {
    Choice c{};
    auto t = tile_size_fwd_sm90(d, d, /*is_causal=*/true, /*is_local=*/false, /*element_size=*/2, false, false, false);
    c.block_m = std::get<0>(t); c.block_n = std::get<1>(t);
    c.mma_pv_rs = std::get<2>(t); c.intra_wg_overlap = std::get<3>(t);
    // get_num_splits (before pack_gqa is known; it uses the packed seqlen on purpose).
    int num_n_blocks = (s + c.block_n - 1) / c.block_n;
    int num_m_blocks = (s * (hq / hkv) + c.block_m - 1) / c.block_m;
    int size_one_kv_head = s * (d + d) * 2;
    int total_mblocks = 1 * hkv * num_m_blocks;
    c.num_splits = num_splits_heuristic(total_mblocks, num_sm, num_n_blocks, num_m_blocks, size_one_kv_head,
                                        /*is_causal_or_local=*/true, 128);
    // get_pack_gqa (arch 90, no page table): true if split, else the efficiency heuristic.
    c.pack_gqa = c.num_splits > 1 || (hq != hkv && should_pack_gqa(false, s, hq / hkv, c.block_m));
    // mha_fwd: arch >= 90 ? ((causal || local) && num_splits == 1) || varlen.
    c.needs_semaphore = c.num_splits == 1;
    return c;
}

static void fill_params(Flash_fwd_params &p, int s, int hq, int hkv, int d, int num_sm, void *q, void *k, void *v,
                        void *o, float *lse, int *semaphore) {
    p = {};  // set_params_fprop starts from params = {}
    auto round_up = [](int x, int m) { return (x + m - 1) / m * m; };
    p.is_bf16 = true;
    p.q_ptr = q; p.k_ptr = k; p.v_ptr = v; p.o_ptr = o;
    // [batch=1, seqlen, heads, d] contiguous; strides in elements.
    p.q_row_stride = int64_t(hq) * d;  p.q_head_stride = d;  p.q_batch_stride = int64_t(s) * hq * d;
    p.k_row_stride = int64_t(hkv) * d; p.k_head_stride = d;  p.k_batch_stride = int64_t(s) * hkv * d;
    p.v_row_stride = int64_t(hkv) * d; p.v_head_stride = d;  p.v_batch_stride = int64_t(s) * hkv * d;
    p.v_dim_stride = 1;
    p.o_row_stride = int64_t(hq) * d;  p.o_head_stride = d;  p.o_batch_stride = int64_t(s) * hq * d;
    p.softmax_lse_ptr = lse;  // f32 [batch, hq, seqlen]
    p.b = 1; p.h = hq; p.h_k = hkv;
    p.seqlen_q = s; p.seqlen_k = s;
    p.seqlen_q_rounded = round_up(s, 128); p.seqlen_k_rounded = round_up(s, 128);
    p.d = d; p.d_rounded = d;  // 64 and 128 are their own round_up_headdim
    p.dv = d; p.dv_rounded = d;
    p.total_q = s; p.total_k = s; p.b_k = 1;
    p.scale_softmax = float(1.0 / std::sqrt(double(d)));  // mha_fwd's default; the mainloop takes * M_LOG2E itself
    p.softcap = 0.f;
    p.p_dropout = 1.f;  // keep probability (p_dropout = 0)
    p.p_dropout_in_uint8_t = uint8_t(std::floor(1.0 * 255.0));
    p.rp_dropout = 1.f;
    // mha_fwd(is_causal=True, window_size=(-1, -1)): window_size_right = 0 -> is_causal; set_params_fprop then turns
    // window_size_left < 0 into seqlen_k - 1.
    p.is_causal = true; p.is_local = false;
    p.window_size_left = s - 1; p.window_size_right = 0; p.attention_chunk = 0;
    p.page_size = 1; p.num_pages = 0; p.pagedkv_tma = false;
    p.arch = 90; p.num_sm = num_sm;
    p.num_splits = 1; p.pack_gqa = false;
    // Scheduler metadata as mha_fwd lays it out without varlen: int[b_rounded * 2 + 1], the semaphore at offset
    // b_rounded * 2 (varlen_sort_batches, head_swizzle), zeroed before every call.
    p.varlen_sort_batches = true; p.head_swizzle = true;
    p.tile_count_semaphore_offset = 8;
    p.tile_count_semaphore = semaphore;
    p.skip_scheduler_metadata_computation = false; p.prepare_varlen_pdl = false;
}

// ---------------------------------------------------------------------------------------------------------------

struct Shape { int d, s; };

static std::vector<Shape> attention_shapes(const std::vector<int> &seqs) {
    // examples/ops_bench.rs attention_shapes (and bench/peers/torch_ops.py).
    const Shape DEFAULT[6] = {{128, 8192}, {128, 32768}, {128, 5000}, {128, 12345}, {64, 8192}, {64, 32768}};
    std::vector<Shape> out;
    if (seqs.empty()) return std::vector<Shape>(DEFAULT, DEFAULT + 6);
    for (int s : seqs) out.push_back({128, s});
    for (auto &sh : DEFAULT)
        if (sh.d == 64 && std::find(seqs.begin(), seqs.end(), sh.s) != seqs.end()) out.push_back(sh);
    return out;
}

static bool have_hdim(int d) {
#ifdef FA3_HAVE_HDIM128
    if (d == 128) return true;
#endif
#ifdef FA3_HAVE_HDIM64
    if (d == 64) return true;
#endif
    return false;
}

static void run_fa3(int d, Flash_fwd_params &p, cudaStream_t st) {
#ifdef FA3_HAVE_HDIM128
    if (d == 128) { fa3_run_fwd_hdim128_causal_bf16(p, st); return; }
#endif
#ifdef FA3_HAVE_HDIM64
    if (d == 64) { fa3_run_fwd_hdim64_causal_bf16(p, st); return; }
#endif
    fprintf(stderr, "fa3_bench: no instantiation for d=%d\n", d);
    exit(3);
}

static long parse_int(const char *arg, const char *v, long lo, long hi) {
    char *end = nullptr;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (errno || end == v || *end || x < lo || x > hi) {
        char why[128];
        snprintf(why, sizeof why, "'%s' is not an integer in [%ld, %ld]", v, lo, hi);
        bad_arg(arg, why);
    }
    return x;
}

int main(int argc, char **argv) {
    int iters = 20, check_rows = 64;
    bool dry_run = false;
    std::vector<int> seqs;
    const char *json_path = nullptr;
    for (int a = 1; a < argc; ++a) {
        std::string s = argv[a];
        auto value = [&]() -> const char * {
            if (a + 1 >= argc) bad_arg(argv[a], "needs a value");
            return argv[++a];
        };
        if (s == "--iters") iters = int(parse_int("--iters", value(), 1, 100000));
        else if (s == "--check-rows") check_rows = int(parse_int("--check-rows", value(), 2, 4096));
        else if (s == "--json") json_path = value();
        else if (s == "--dry-run") dry_run = true;
        else if (s == "--attn-seq") {
            std::string list = value();
            size_t pos = 0;
            while (pos <= list.size()) {
                size_t c = list.find(',', pos);
                std::string item = list.substr(pos, c == std::string::npos ? std::string::npos : c - pos);
                seqs.push_back(int(parse_int("--attn-seq", item.c_str(), 1, 1 << 20)));
                if (c == std::string::npos) break;
                pos = c + 1;
            }
        } else if (s == "--only") {  // ops_bench's --only: attention runs where it names attn
            std::string list = "," + std::string(value()) + ",";
            if (list.find(",attn,") == std::string::npos) return 0;
        } else if (s == "--variants") {
        } else if (s == "--kernels" || s == "--offsets") {  // ops_bench's and the MoE peers' (run_ops.sh): not ours
            value();
        } else if (s == "-h" || s == "--help") {
            bad_arg(argv[a], "help");
        } else bad_arg(argv[a], "unknown option");
    }
    const int hq = 32, hkv = 8;
    const std::string impl = std::string("FlashAttention-3 (hopper, ") + std::string(FA3_COMMIT).substr(0, 7) + FA3_IMPL_NOTE + ")";
    std::vector<Shape> shapes = attention_shapes(seqs);

    int num_sm = 132;
    if (!dry_run) {
        int dev = 0;
        cudaDeviceProp prop;
        CK(cudaGetDevice(&dev));
        CK(cudaGetDeviceProperties(&prop, dev));
        num_sm = prop.multiProcessorCount;
        fprintf(stderr, "device %d: %s, sm_%d%d, %d SMs; %s\n", dev, prop.name, prop.major, prop.minor, num_sm,
                impl.c_str());
        if (prop.major != 9 || prop.minor != 0) {
            fprintf(stderr, "fa3_bench: this build is sm_90a only (FA3 hopper kernels); found sm_%d%d\n", prop.major,
                    prop.minor);
            exit(3);
        }
    }

    FILE *json = nullptr;
    if (json_path && !dry_run) {
        json = fopen(json_path, "w");
        if (!json) bad_arg("--json", "cannot open the file for writing");
    }

    bool all_ok = true;
    for (const Shape &sh : shapes) {
        const int s = sh.s, d = sh.d;
        char shape[96];
        snprintf(shape, sizeof shape, "S=%d hq=%d hkv=%d d=%d causal", s, hq, hkv, d);
        const double flops = 4.0 * double(s) * double(s) * double(hq * d) / 2.0;  // ops_bench.rs, exactly
        Choice c = fa3_choice(s, hq, hkv, d, num_sm);
        const int qhead_per_khead = c.pack_gqa ? hq / hkv : 1;
        const int num_blocks_m = (s * qhead_per_khead + c.block_m - 1) / c.block_m;
        const long tiles = long(num_blocks_m) * (c.pack_gqa ? hkv : hq);
        char cfg[512];
        snprintf(cfg, sizeof cfg,
                 "run_flash_fwd<Arch=90, kHeadDim=%d, kHeadDimV=%d, ClusterM=1, bf16, bf16, Is_causal=1, Is_local=0, "
                 "Has_softcap=0, Varlen=0, PagedKVNonTMA=0, AppendKV=0, HasQv=0, PackGQA=%d, Split=%d, V_colmajor=0> "
                 "tile %dx%d (kBlockM x kBlockN), MmaPV_is_RS=%d, IntraWGOverlap=%d, kStages=2; "
                 "DynamicPersistentTileScheduler (causal LPT), grid=%d CTAs over %ld tiles (%d m-blocks x %d heads), "
                 "num_splits=%d, tile_count_semaphore zeroed per call",
                 d, d, int(c.pack_gqa), int(c.num_splits > 1), c.block_m, c.block_n, int(c.mma_pv_rs),
                 int(c.intra_wg_overlap), num_sm, tiles, num_blocks_m, c.pack_gqa ? hkv : hq, c.num_splits);
        bool supported = have_hdim(d) && !c.pack_gqa && c.num_splits == 1;
        if (dry_run) {
            printf("%s | %s | FA3 picks: %s | window=(%d,%d) scale=%.9g num_sm=%d | %s\n", shape, "attn_flash", cfg,
                   s - 1, 0, 1.0 / std::sqrt(double(d)), num_sm,
                   supported ? "built" : (have_hdim(d) ? "NOT BUILT (FA3 wants pack_gqa/split)" : "NOT BUILT (d)"));
            continue;
        }
        fprintf(stderr, "%s: %s\n", shape, cfg);
        if (!supported) {
            fprintf(stderr, "fa3_bench: %s: FA3 would pick a kernel this build lacks (d=%d built=%d, pack_gqa=%d, "
                            "num_splits=%d)\n", shape, d, int(have_hdim(d)), int(c.pack_gqa), c.num_splits);
            all_ok = false;
            continue;
        }

        // Inputs: as ops_bench, two (q, k, v) sets when S <= 8192 (alternated by i % 2), one otherwise.
        const int sets = s <= 8192 ? 2 : 1;
        const size_t nq = size_t(s) * hq * d, nkv = size_t(s) * hkv * d;
        __nv_bfloat16 *q[2] = {}, *k[2] = {}, *v[2] = {}, *o = nullptr;
        float *lse = nullptr;
        int *meta = nullptr;
        for (int i = 0; i < sets; ++i) {
            CK(cudaMalloc(&q[i], nq * 2)); CK(cudaMalloc(&k[i], nkv * 2)); CK(cudaMalloc(&v[i], nkv * 2));
            fill_kernel<<<1024, 256>>>(q[i], nq, 30 + 3 * i);
            CK(cudaGetLastError());
            fill_kernel<<<1024, 256>>>(k[i], nkv, 31 + 3 * i);
            CK(cudaGetLastError());
            fill_kernel<<<1024, 256>>>(v[i], nkv, 32 + 3 * i);
            CK(cudaGetLastError());
        }
        CK(cudaMalloc(&o, nq * 2));
        CK(cudaMalloc(&lse, size_t(hq) * s * 4));
        CK(cudaMalloc(&meta, 9 * sizeof(int)));
        CK(cudaMemset(meta, 0, 9 * sizeof(int)));
        int *semaphore = meta + 8;
        CK(cudaDeviceSynchronize());  // the fills and memset above ran on the legacy stream; st does not wait for it
        cudaStream_t st;
        CK(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));
        std::vector<Flash_fwd_params> params(sets);
        for (int i = 0; i < sets; ++i) fill_params(params[i], s, hq, hkv, d, num_sm, q[i], k[i], v[i], o, lse, semaphore);
        auto call = [&](int i) {
            // mha_fwd zeroes the semaphore before each launch (tile_count_semaphore.zero_()).
            CK(cudaMemsetAsync(semaphore, 0, sizeof(int), st));
            run_fa3(d, params[i % sets], st);
            CK(cudaGetLastError());
        };

        // Correctness, on set 0: O and LSE start as NaN so that unwritten rows fail.
        CK(cudaMemsetAsync(o, 0xff, nq * 2, st));
        CK(cudaMemsetAsync(lse, 0xff, size_t(hq) * s * 4, st));
        call(0);
        CK(cudaStreamSynchronize(st));
        bool check_ok = false;
        {
            const int rows = check_rows;
            std::vector<int> rh(rows), rp(rows);
            uint64_t x = 0x1234567ULL + s * 131 + d;
            for (int r = 0; r < rows; ++r) {
                x = x * 6364136223846793005ULL + 1442695040888963407ULL;
                rh[r] = r == 0 ? 0 : r == rows - 1 ? hq - 1 : int((x >> 33) % hq);
                // First and last rows, tile edges, and the rest spread over the sequence.
                long pos = r == 0 ? 0 : r == rows - 1 ? s - 1 : r == 1 ? std::min(s - 1, c.block_m - 1)
                         : r == 2 ? std::min(s - 1, c.block_m) : (long(r) * (s - 1)) / (rows - 1) + long((x >> 20) % 97) - 48;
                rp[r] = int(std::max(0L, std::min(long(s - 1), pos)));
            }
            int *drh, *drp;
            float *dor, *dlr;
            unsigned long long *dnf;
            CK(cudaMalloc(&drh, rows * 4)); CK(cudaMalloc(&drp, rows * 4));
            CK(cudaMalloc(&dor, size_t(rows) * d * 4)); CK(cudaMalloc(&dlr, rows * 4));
            CK(cudaMalloc(&dnf, 8)); CK(cudaMemset(dnf, 0, 8));
            CK(cudaMemcpy(drh, rh.data(), rows * 4, cudaMemcpyHostToDevice));
            CK(cudaMemcpy(drp, rp.data(), rows * 4, cudaMemcpyHostToDevice));
            reference_rows<<<(rows + 3) / 4, 128>>>(q[0], k[0], v[0], drh, drp, rows, s, hq, hkv, d,
                                                     float(1.0 / std::sqrt(double(d))), dor, dlr);
            CK(cudaGetLastError());
            count_nonfinite<<<1024, 256>>>(o, nq, lse, size_t(hq) * s, dnf);
            CK(cudaGetLastError());
            CK(cudaDeviceSynchronize());
            std::vector<float> oref(size_t(rows) * d), lref(rows);
            unsigned long long nonfinite = 0;
            CK(cudaMemcpy(oref.data(), dor, oref.size() * 4, cudaMemcpyDeviceToHost));
            CK(cudaMemcpy(lref.data(), dlr, rows * 4, cudaMemcpyDeviceToHost));
            CK(cudaMemcpy(&nonfinite, dnf, 8, cudaMemcpyDeviceToHost));
            double max_o = 0, max_l = 0, worst_excess = 0;
            int worst_r = 0;
            for (int r = 0; r < rows; ++r) {
                std::vector<__nv_bfloat16> orow(d);
                float l;
                CK(cudaMemcpy(orow.data(), o + (size_t(rp[r]) * hq + rh[r]) * d, d * 2, cudaMemcpyDeviceToHost));
                CK(cudaMemcpy(&l, lse + size_t(rh[r]) * s + rp[r], 4, cudaMemcpyDeviceToHost));
                for (int t = 0; t < d; ++t) {
                    double ref = oref[size_t(r) * d + t], got = __bfloat162float(orow[t]);
                    double err = std::fabs(got - ref);
                    if (!(err == err)) err = INFINITY;
                    max_o = std::max(max_o, err);
                    double excess = err - (2e-2 + 2e-2 * std::fabs(ref));
                    if (excess > worst_excess) { worst_excess = excess; worst_r = r; }
                }
                double el = std::fabs(double(l) - lref[r]);
                if (!(el == el)) el = INFINITY;
                max_l = std::max(max_l, el);
            }
            bool ok = nonfinite == 0 && worst_excess <= 0 && max_l <= 1e-2;
            check_ok = ok;
            fprintf(stderr, "%s: check %d rows (first/last included): max |dO| %.3g, max |dLSE| %.3g, non-finite %llu "
                            "-> %s\n", shape, rows, max_o, max_l, nonfinite, ok ? "ok" : "FAILED");
            if (!ok) {
                fprintf(stderr, "  worst O row: head %d pos %d (bound |dO| <= 2e-2 + 2e-2|ref|, |dLSE| <= 1e-2)\n",
                        rh[worst_r], rp[worst_r]);
                all_ok = false;
            }
            CK(cudaFree(drh)); CK(cudaFree(drp)); CK(cudaFree(dor)); CK(cudaFree(dlr)); CK(cudaFree(dnf));
        }

        // A shape that failed the check gets no timing line (exit 3 at the end).
        if (check_ok) {
        // Timing: ops_bench's rule (peer_timing.cuh); the semaphore memset, as mha_fwd does it, before the start event.
        const double med = peer_median_ms(
            iters, st, [&](int) { CK(cudaMemsetAsync(semaphore, 0, sizeof(int), st)); },
            [&](int i) {
                run_fa3(d, params[i % sets], st);
                CK(cudaGetLastError());
            });
        double tflops = flops / med / 1e9;
        char line[512];
        snprintf(line, sizeof line, "{\"impl\":\"%s\",\"op\":\"attn_flash\",\"shape\":\"%s\",\"ms\":%.6g,\"tflops\":%.6g}",
                 impl.c_str(), shape, med, tflops);
        printf("%s\n", line);
        fflush(stdout);
        if (json) { fprintf(json, "%s\n", line); fflush(json); }
        fprintf(stderr, "%-32s %-28s %-40s %10.3f ms %9.1f TFLOP/s\n", impl.c_str(), "attn_flash", shape, med, tflops);
        }
        CK(cudaStreamDestroy(st));
        for (int j = 0; j < sets; ++j) { CK(cudaFree(q[j])); CK(cudaFree(k[j])); CK(cudaFree(v[j])); }
        CK(cudaFree(o)); CK(cudaFree(lse)); CK(cudaFree(meta));
    }
    if (json) fclose(json);
    if (!all_ok) {
        fprintf(stderr, "fa3_bench: FAILED (see above)\n");
        return 3;
    }
    return 0;
}
