// Same-run peer for the MoE grouped GEMMs of examples/ops_bench.rs: DeepGEMM's own SM90 kernels
// (sm90_fp8_gemm_1d2d_impl and sm90_bf16_gemm_impl, GemmType::MGroupedContiguous, i.e. what
// deep_gemm.m_grouped_fp8_gemm_nt_contiguous / m_grouped_bf16_gemm_nt_contiguous run on an H200),
// compiled ahead of time instead of through DeepGEMM's JIT, with the config DeepGEMM's heuristic
// (csrc/jit_kernels/heuristics/sm90.hpp + common.hpp) picks, ported below. See README.md.
//
// Output: one JSON line per measurement (stdout or --json FILE), in the format of ops_bench's --json.
// Diagnostics (chosen configs, correctness errors) go to stderr.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <numeric>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <cuda.h>
#include <cudaTypedefs.h>
#include <cuda_runtime.h>
#include <cuda_bf16.h>
#include <cuda_fp8.h>

#ifndef DG_NO_KERNELS
#include <deep_gemm/impls/sm90_fp8_gemm_1d2d.cuh>
#include <deep_gemm/impls/sm90_bf16_gemm.cuh>
#endif

// ------------------------------------------------------------------------------------------------
// Errors
// ------------------------------------------------------------------------------------------------
#include "../peer_timing.cuh"  // CK, peer_median_ms

static void bad_input(const std::string& msg) {
    fprintf(stderr, "deepgemm_bench: bad input: %s\n", msg.c_str());
    exit(2);
}

// ------------------------------------------------------------------------------------------------
// DeepGEMM's SM90 heuristic, ported (DeepGEMM csrc/jit_kernels/heuristics/sm90.hpp, common.hpp,
// utils.hpp, runtime.hpp), for the two m-grouped contiguous kernels only:
//   gemm_type = MGroupedContiguous, major A/B = K, cd = bf16, no accumulation,
//   expected_m = m (padded rows), expected_n = n, expected_k = k, expected_num_groups = 1,
//   block_m candidates = {get_mk_alignment_for_contiguous_layout()} = {128} on SM90,
//   block_n from 16 step lcm(16, block_n_multiple_of = 1) = 16 up to 192 (1D2D) or 256 (no SF),
//   block_k = 128 / element size, clusters (1,1), (1,2), (2,1).
// ------------------------------------------------------------------------------------------------
enum class Kind { FP8_1D2D, BF16 };

struct Desc {
    Kind kind;
    int m, n, k, num_groups, num_sms;
    int ab_size() const { return kind == Kind::FP8_1D2D ? 1 : 2; }
};

struct Cfg {
    int block_m = 0, block_n = 0, block_k = 0, cluster_m = 1, cluster_n = 1;
    int swizzle_a = 0, swizzle_b = 0, swizzle_cd = 0;
    int stages = 0, smem_size = 0, num_tma_threads = 128, num_math_threads = 256;
    int num_waves = 0, last_wave_util = 0;
    int64_t num_cycles = 0;
    int cluster() const { return cluster_m * cluster_n; }
    bool multicast_on_a() const { return cluster_n > 1; }
    std::string str() const {
        char b[256];
        snprintf(b, sizeof b,
                 "block_m=%d block_n=%d block_k=%d stages=%d cluster=%d%s swizzle_cd=%d smem=%d threads=%d",
                 block_m, block_n, block_k, stages, cluster(),
                 cluster() > 1 ? (multicast_on_a() ? " (multicast A)" : " (multicast B)") : "", swizzle_cd,
                 smem_size, num_tma_threads + num_math_threads);
        return b;
    }
};

static constexpr int kSM90SmemCapacity = 232448;
static constexpr int kMKAlignment = 128;  // HeuristicsRuntime::kLegacyMKAlignmentForContiguousLayout (SM90)

static int ceil_div_i(int a, int b) { return (a + b - 1) / b; }
static int align_i(int a, int b) { return ceil_div_i(a, b) * b; }

static int get_swizzle_mode(int block_size, int elem_size) {
    for (int mode : {128, 64, 32, 16})
        if ((block_size * elem_size) % mode == 0) return mode;
    return -1;
}

static void fill_storage(const Desc& d, Cfg& c) {
    // get_storage_config: major A/B are K, so swizzle on block_k; cd bf16 swizzles on block_n
    c.swizzle_a = get_swizzle_mode(c.block_k, d.ab_size());
    c.swizzle_b = get_swizzle_mode(c.block_k, d.ab_size());
    c.swizzle_cd = get_swizzle_mode(c.block_n, 2);
}

static void fill_pipeline(const Desc& d, Cfg& c) {
    constexpr int kNumMaxStages = 16;
    const int smem_cd = align_i(c.block_m * c.block_n * 2, 1024);
    const int smem_barriers = kNumMaxStages * 8 * 2;
    const int smem_a_per_stage = c.block_m * c.block_k * d.ab_size();
    const int smem_b_per_stage = c.block_n * c.block_k * d.ab_size();
    const int smem_sfa_per_stage = d.kind == Kind::BF16 ? 0 : align_i(c.block_m * 4, 128);
    const int use_uniform_sfb = c.block_k % c.block_n == 0 ? 1 : 2;
    const int smem_extra_sfb = d.kind != Kind::FP8_1D2D ? 0 : align_i(ceil_div_i(d.k, c.block_k) * 4 * use_uniform_sfb, 8);
    const int smem_extra = smem_cd + smem_barriers + smem_extra_sfb;
    const int smem_per_stage = smem_a_per_stage + smem_b_per_stage + smem_sfa_per_stage;
    c.stages = std::min((kSM90SmemCapacity - smem_extra) / smem_per_stage, kNumMaxStages);
    c.smem_size = smem_extra + c.stages * smem_per_stage;
}

static void fill_launch(const Desc&, Cfg& c) {
    c.num_tma_threads = 128;
    c.num_math_threads = c.block_m <= 64 ? 128 : 256;
}

static void fill_layout_info(const Desc& d, Cfg& c) {
    const int expected_m = d.m, expected_n = d.n, expected_k = d.k, expected_num_groups = 1;
    const auto num_blocks = ceil_div_i(expected_m, c.block_m) * ceil_div_i(expected_n, c.block_n) * expected_num_groups;
    const auto num_waves = ceil_div_i(num_blocks, d.num_sms);
    const auto num_last_blocks = num_blocks % d.num_sms;
    const auto last_wave_util = num_last_blocks == 0 ? d.num_sms : num_last_blocks;

    const int l2_bandwidth_per_cycle = std::min(64. * d.num_sms, 8e6 / (1.3e3));
    const int l1_bandwidth_per_cycle = 128 * d.num_sms;
    const int wgmma_m = 64;
    const int elem_size_ab = d.ab_size();
    const int elem_size_cd = 2;
    int64_t ek = expected_k;
    int64_t num_bytes_l2_ab = ek * (c.block_m / c.cluster_n + c.block_n / c.cluster_m) * elem_size_ab;
    int64_t num_bytes_l1_ab = ek * (c.block_m + c.block_n) * elem_size_ab;
    int64_t num_bytes_l1_tc = ek * (std::max(wgmma_m, c.block_m) + c.block_n) * elem_size_ab + c.block_m * c.block_n * elem_size_cd;
    int64_t num_bytes_l1_l2_cd = c.block_m * c.block_n * elem_size_cd * 1;
    int64_t num_l2_cycles = (num_bytes_l2_ab + num_bytes_l1_l2_cd) * num_blocks / l2_bandwidth_per_cycle;
    int64_t num_l1_cycles = (num_bytes_l1_ab + num_bytes_l1_tc + num_bytes_l1_l2_cd) * num_blocks / l1_bandwidth_per_cycle;
    float wave_efficiency = static_cast<float>(num_blocks) / (num_waves * d.num_sms);
    int64_t num_cycles = std::max(num_l1_cycles, num_l2_cycles) / wave_efficiency;
    if (c.cluster_n * c.cluster_m > 1 and num_waves <= 1) num_cycles = INT64_MAX;
    c.num_waves = num_waves;
    c.last_wave_util = last_wave_util;
    c.num_cycles = num_cycles;
}

// All layouts `SM90ArchSpec::get_layout_candidates` keeps, in its enumeration order, fully filled.
static std::vector<Cfg> candidates(const Desc& d) {
    std::vector<Cfg> out;
    const int block_k = 128 / d.ab_size();
    const int end = d.kind == Kind::FP8_1D2D ? 192 : 256;
    for (int cm = 1; cm <= 2; ++cm)
        for (int cn = 1; cn <= 2; ++cn) {
            if (cm * cn > 2) continue;
            if (d.num_sms % (cm * cn) != 0) continue;
            for (int block_m : {kMKAlignment})
                for (int block_n = 16; block_n <= end; block_n += 16) {
                    if (d.kind == Kind::FP8_1D2D and block_n > block_k and
                        (block_n % (block_n - block_k) != 0 and block_k % (block_n - block_k) != 0))
                        continue;
                    if (block_m > 128 and block_n > 128) continue;
                    Cfg c;
                    c.block_m = block_m, c.block_n = block_n, c.block_k = block_k, c.cluster_m = cm, c.cluster_n = cn;
                    fill_storage(d, c);
                    if (c.swizzle_a % 64 != 0 or c.swizzle_b % 64 != 0) continue;
                    fill_pipeline(d, c);
                    if (c.stages < 3 or (block_m * block_n < 128 * 192 and c.stages < 4)) continue;
                    fill_launch(d, c);
                    fill_layout_info(d, c);
                    out.push_back(c);
                }
        }
    return out;
}

// `get_best_config<SM90ArchSpec>`: the first candidate with the strictly smallest num_cycles.
static Cfg best_config(const Desc& d) {
    auto cs = candidates(d);
    if (cs.empty()) bad_input("no DeepGEMM config candidate for this shape");
    Cfg best = cs[0];
    for (size_t i = 1; i < cs.size(); ++i)
        if (cs[i].num_cycles < best.num_cycles) best = cs[i];
    return best;
}

// ------------------------------------------------------------------------------------------------
// The compiled-in kernel instantiations. SHAPE_N and SHAPE_K are template constants (DeepGEMM's
// default compiled_dims "nk" for the m-grouped contiguous APIs); M is dynamic. The config list is
// every config the heuristic above picks for the real-row counts R of our shapes (98304 and 131072)
// over every possible padded M (R .. R + E * 127, step 128): `--dry-run --list-instances` prints it.
// ------------------------------------------------------------------------------------------------
#define DG_NUM_SMS 132

struct Instance {
    Kind kind;
    int n, k, e, block_n, stages, cluster_m, cluster_n;
    const void* fn;
};

#ifndef DG_NO_KERNELS
static constexpr uint32_t swz_cd(uint32_t block_n) {
    return (block_n * 2) % 128 == 0 ? 128 : (block_n * 2) % 64 == 0 ? 64 : (block_n * 2) % 32 == 0 ? 32 : 16;
}

template <uint32_t N, uint32_t K, uint32_t E, uint32_t BN, uint32_t ST, uint32_t CM, uint32_t CN>
static Instance fp8_instance() {
    auto f = &deep_gemm::sm90_fp8_gemm_1d2d_impl<
        cute::UMMA::Major::K,          // SFB major: [E, ceil(N/128), ceil(K/128)] row-major
        0, N, K,                       // SHAPE_M (dynamic), SHAPE_N, SHAPE_K
        E,                             // kNumGroups
        128, BN, 128,                  // BLOCK_M, BLOCK_N, BLOCK_K
        128, 128, swz_cd(BN),          // swizzle A, B, D
        ST,                            // stages
        128, 256,                      // TMA threads, math threads
        CM * CN, (CN > 1),             // multicast, multicast on A
        DG_NUM_SMS, deep_gemm::GemmType::MGroupedContiguous,
        cutlass::bfloat16_t, deep_gemm::epilogue::transform::EpilogueIdentity>;
    return {Kind::FP8_1D2D, (int)N, (int)K, (int)E, (int)BN, (int)ST, (int)CM, (int)CN, (const void*)f};
}

template <uint32_t N, uint32_t K, uint32_t E, uint32_t BN, uint32_t ST, uint32_t CM, uint32_t CN>
static Instance bf16_instance() {
    auto f = &deep_gemm::sm90_bf16_gemm_impl<
        cute::UMMA::Major::K, cute::UMMA::Major::K,
        0, N, K, E,
        128, BN, 64,
        128, 128, swz_cd(BN),
        ST,
        128, 256,
        CM * CN, (CN > 1),
        DG_NUM_SMS, deep_gemm::GemmType::MGroupedContiguous, false,
        cutlass::bfloat16_t>;
    return {Kind::BF16, (int)N, (int)K, (int)E, (int)BN, (int)ST, (int)CM, (int)CN, (const void*)f};
}

#include "instances.inc"
#ifdef DG_SWEEP
#include "instances_sweep.inc"
#else
static std::vector<Instance> sweep_instances() { return {}; }
#endif
static std::vector<Instance> all_instances() {
    auto v = heuristic_instances();
    for (auto& i : sweep_instances()) v.push_back(i);
    return v;
}
#else
static std::vector<Instance> all_instances() { return {}; }
#endif

// The configs a sweep build (build.sh with DG_SWEEP=1) compiles in for --all-configs: every candidate
// the heuristic considers whose block_n is at least 112 (fp8) or 128 (bf16), with every cluster shape.
static bool in_sweep(Kind kind, const Cfg& c) { return c.block_n >= (kind == Kind::FP8_1D2D ? 112 : 128); }

static const Instance* find_instance(Kind kind, int n, int k, int e, const Cfg& c) {
    static std::vector<Instance> insts = all_instances();
    for (auto& i : insts)
        if (i.kind == kind and i.n == n and i.k == k and i.e == e and i.block_n == c.block_n and
            i.stages == c.stages and i.cluster_m == c.cluster_m and i.cluster_n == c.cluster_n)
            return &i;
    return nullptr;
}

// ------------------------------------------------------------------------------------------------
// Shapes and offsets
// ------------------------------------------------------------------------------------------------
struct MoeShape {
    const char* name;
    int e, h, f;
};
static const MoeShape kShapes[] = {{"v2lite", 64, 2048, 1408}, {"v3", 256, 7168, 2048}};

struct Layout {
    std::vector<int64_t> offsets;  // E + 1 cumulative real-row offsets
    std::vector<int> padded;       // E + 1 cumulative padded offsets
    int rows = 0, m = 0;           // real rows R, padded rows M
};

// Minimal JSON reader for {"key": [ints...], ...}.
static std::map<std::string, std::vector<int64_t>> read_offsets(const std::string& path) {
    std::ifstream f(path);
    if (!f) bad_input("cannot read --offsets file " + path);
    std::stringstream ss;
    ss << f.rdbuf();
    const std::string s = ss.str();
    std::map<std::string, std::vector<int64_t>> out;
    size_t i = 0;
    auto ws = [&] { while (i < s.size() and isspace((unsigned char)s[i])) ++i; };
    auto fail = [&](const std::string& what) {
        bad_input(path + ": " + what + " at byte " + std::to_string(i));
    };
    ws();
    if (i >= s.size() or s[i] != '{') fail("expected '{'");
    ++i;
    ws();
    if (i < s.size() and s[i] == '}') return out;
    while (true) {
        ws();
        if (i >= s.size() or s[i] != '"') fail("expected a key");
        size_t j = s.find('"', i + 1);
        if (j == std::string::npos) fail("unterminated key");
        std::string key = s.substr(i + 1, j - i - 1);
        i = j + 1;
        ws();
        if (i >= s.size() or s[i] != ':') fail("expected ':' after key \"" + key + "\"");
        ++i;
        ws();
        if (i >= s.size() or s[i] != '[') fail("key \"" + key + "\": expected an array of integers");
        ++i;
        std::vector<int64_t> v;
        ws();
        if (i < s.size() and s[i] == ']') {
            ++i;
        } else {
            while (true) {
                ws();
                char* endp = nullptr;
                errno = 0;
                long long x = strtoll(s.c_str() + i, &endp, 10);
                if (endp == s.c_str() + i or errno) fail("key \"" + key + "\": expected an integer");
                i = endp - s.c_str();
                if (i < s.size() and (s[i] == '.' or s[i] == 'e' or s[i] == 'E'))
                    fail("key \"" + key + "\": not an integer");
                v.push_back(x);
                ws();
                if (i < s.size() and s[i] == ',') { ++i; continue; }
                if (i < s.size() and s[i] == ']') { ++i; break; }
                fail("key \"" + key + "\": expected ',' or ']'");
            }
        }
        out[key] = v;
        ws();
        if (i < s.size() and s[i] == ',') { ++i; continue; }
        if (i < s.size() and s[i] == '}') break;
        fail("expected ',' or '}'");
    }
    return out;
}

static Layout make_layout(const MoeShape& sh, const std::vector<int64_t>& off) {
    const std::string key = sh.name;
    if ((int)off.size() != sh.e + 1)
        bad_input("offsets key \"" + key + "\": expected " + std::to_string(sh.e + 1) + " cumulative offsets (E + 1), got " +
                  std::to_string(off.size()));
    if (off[0] != 0) bad_input("offsets key \"" + key + "\": the first offset must be 0");
    for (int e = 0; e < sh.e; ++e)
        if (off[e + 1] < off[e])
            bad_input("offsets key \"" + key + "\": offsets decrease at expert " + std::to_string(e));
    if (off[sh.e] <= 0) bad_input("offsets key \"" + key + "\": no rows");
    if (off[sh.e] > (1 << 28)) bad_input("offsets key \"" + key + "\": too many rows");
    Layout l;
    l.offsets = off;
    l.padded.assign(sh.e + 1, 0);
    for (int e = 0; e < sh.e; ++e)
        l.padded[e + 1] = l.padded[e] + align_i((int)(off[e + 1] - off[e]), kMKAlignment);
    l.rows = (int)off[sh.e];
    l.m = l.padded[sh.e];
    return l;
}

// ------------------------------------------------------------------------------------------------
// Device helpers
// ------------------------------------------------------------------------------------------------
__device__ __forceinline__ float hash_uniform(uint64_t i, uint32_t seed) {
    uint64_t x = i * 0x9E3779B97F4A7C15ull + (uint64_t)seed * 0xD1B54A32D192ED03ull + 0x632BE59BD9B4E019ull;
    x ^= x >> 30; x *= 0xBF58476D1CE4E5B9ull;
    x ^= x >> 27; x *= 0x94D049BB133111EBull;
    x ^= x >> 31;
    return (float)(x >> 40) * (1.0f / 16777216.0f);  // [0, 1)
}

__global__ void fill_fp8(__nv_fp8_e4m3* p, size_t n, uint32_t seed, float lo, float hi) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        p[i] = __nv_fp8_e4m3(lo + (hi - lo) * hash_uniform(i, seed));
}
__global__ void fill_bf16(__nv_bfloat16* p, size_t n, uint32_t seed, float lo, float hi) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        p[i] = __float2bfloat16(lo + (hi - lo) * hash_uniform(i, seed));
}
__global__ void fill_f32(float* p, size_t n, uint32_t seed, float lo, float hi) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        p[i] = lo + (hi - lo) * hash_uniform(i, seed);
}

// Naive reference: one thread per sampled output, f32 accumulation of dequantised values.
// FP8: A [M, K] e4m3, SFA MN-major [ceil(K/128), M] (M is a multiple of 4 so TMA-aligned as is),
// B [E, N, K] e4m3, SFB [E, ceil(N/128), ceil(K/128)].  BF16: A [M, K], B [E, N, K].
// Writes ref and scale = sqrt(sum_k (a_k b_k)^2) per sample, and the kernel's D value.
__global__ void reference(bool fp8, const void* a, const float* sfa, const void* b, const float* sfb,
                          const __nv_bfloat16* d, const int* rows, const int* cols, const int* groups, int ns,
                          int m, int n, int k, float* ref, float* scale, float* got) {
    int s = blockIdx.x * blockDim.x + threadIdx.x;
    if (s >= ns) return;
    const int r = rows[s], c = cols[s], g = groups[s];
    const int ks = (k + 127) / 128, ns_b = (n + 127) / 128;
    float acc = 0.f, sq = 0.f;
    for (int kk = 0; kk < k; ++kk) {
        float x, w;
        const size_t ai = (size_t)r * k + kk, bi = ((size_t)g * n + c) * k + kk;
        if (fp8) {
            x = float(reinterpret_cast<const __nv_fp8_e4m3*>(a)[ai]) * sfa[(size_t)(kk / 128) * m + r];
            w = float(reinterpret_cast<const __nv_fp8_e4m3*>(b)[bi]) * sfb[((size_t)g * ns_b + c / 128) * ks + kk / 128];
        } else {
            x = __bfloat162float(reinterpret_cast<const __nv_bfloat16*>(a)[ai]);
            w = __bfloat162float(reinterpret_cast<const __nv_bfloat16*>(b)[bi]);
        }
        acc += x * w;
        sq += (x * w) * (x * w);
    }
    ref[s] = acc;
    scale[s] = sqrtf(sq);
    got[s] = __bfloat162float(d[(size_t)r * n + c]);
}

static PFN_cuTensorMapEncodeTiled_v12000 encode_tiled() {
    static PFN_cuTensorMapEncodeTiled_v12000 fn = nullptr;
    if (!fn) {
        void* p = nullptr;
        cudaDriverEntryPointQueryResult q;
        CK(cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &p, 12000, cudaEnableDefault, &q));
        if (q != cudaDriverEntryPointSuccess || !p) {
            fprintf(stderr, "cuTensorMapEncodeTiled not found in the driver (query result %d)\n", (int)q);
            exit(1);
        }
        fn = reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(p);
    }
    return fn;
}

// DeepGEMM's make_tma_2d_desc (runtime_utils.hpp).
static CUtensorMap tma_2d(const void* ptr, CUtensorMapDataType dt, int elem_size, uint64_t inner, uint64_t outer,
                          uint32_t smem_inner, uint32_t smem_outer, uint64_t outer_stride_elems, int swizzle, int line) {
    if (swizzle != 0) smem_inner = swizzle / elem_size;
    CUtensorMap m;
    const cuuint64_t gdims[2] = {inner, outer};
    const cuuint32_t sdims[2] = {smem_inner, smem_outer};
    const cuuint64_t gstrides[1] = {outer_stride_elems * elem_size};
    const cuuint32_t estrides[2] = {1, 1};
    CUtensorMapSwizzle sw = swizzle == 128 ? CU_TENSOR_MAP_SWIZZLE_128B : swizzle == 64 ? CU_TENSOR_MAP_SWIZZLE_64B
                          : swizzle == 32 ? CU_TENSOR_MAP_SWIZZLE_32B : CU_TENSOR_MAP_SWIZZLE_NONE;
    CUresult r = encode_tiled()(&m, dt, 2, const_cast<void*>(ptr), gdims, gstrides, sdims, estrides,
                                CU_TENSOR_MAP_INTERLEAVE_NONE, sw, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
                                CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
    if (r != CUDA_SUCCESS) {
        fprintf(stderr, "%s:%d: cuTensorMapEncodeTiled failed (%d): dims %llu x %llu, box %u x %u, swizzle %d\n",
                __FILE__, line, (int)r, (unsigned long long)inner, (unsigned long long)outer, smem_inner, smem_outer, swizzle);
        exit(1);
    }
    return m;
}

// ------------------------------------------------------------------------------------------------
// Options
// ------------------------------------------------------------------------------------------------
struct Opts {
    std::string offsets, json;
    int iters = 20;
    bool dry_run = false, list_instances = false, pdl = true, all_configs = false;
    std::vector<std::string> shapes = {"v2lite", "v3"};
    std::vector<std::string> only;  // ops_bench's --only keys
    std::vector<std::string> dtypes = {"fp8", "bf16"};
    double max_err = 2e-2;
    uint32_t seed = 1;
};

static std::vector<std::string> split(const std::string& s) {
    std::vector<std::string> out;
    std::stringstream ss(s);
    std::string x;
    while (std::getline(ss, x, ','))
        if (!x.empty()) out.push_back(x);
    return out;
}

static void usage(FILE* f) {
    fprintf(f,
            "usage: deepgemm_bench --offsets FILE [--iters N] [--json FILE] [--shapes v2lite,v3] [--dtypes fp8,bf16]\n"
            "                      [--all-configs] [--no-pdl] [--max-err X] [--seed S] [--dry-run [--list-instances]]\n"
            "  --offsets FILE   {\"v2lite\": [E+1 cumulative row offsets], \"v3\": [...]} (ops_bench's offsets.json)\n"
            "  --iters N        timed calls (at least; also at least 300 ms of them, as ops_bench), default 20\n"
            "  --all-configs    also time every compiled-in candidate config and report the best (labelled)\n"
            "  --dry-run        no CUDA: print the padded layouts and the heuristic's configs\n"
            "  --list-instances print instances.inc (with --all-configs: instances_sweep.inc)\n"
            "  --variants, --kernels X, --attn-seq X, --only X: accepted and ignored (run_ops.sh passes them to every peer)\n");
}

static Opts parse(int argc, char** argv) {
    Opts o;
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        auto val = [&]() -> std::string {
            if (i + 1 >= argc) bad_input("option " + a + " needs a value");
            return argv[++i];
        };
        auto num = [&](const std::string& v) -> long {
            char* e;
            long x = strtol(v.c_str(), &e, 10);
            if (*e || v.empty()) bad_input("option " + a + ": not an integer: " + v);
            return x;
        };
        if (a == "--offsets") o.offsets = val();
        else if (a == "--json") o.json = val();
        else if (a == "--iters") { o.iters = (int)num(val()); if (o.iters < 1 || o.iters > 100000) bad_input("--iters out of range"); }
        else if (a == "--shapes") o.shapes = split(val());
        else if (a == "--dtypes") o.dtypes = split(val());
        else if (a == "--seed") o.seed = (uint32_t)num(val());
        else if (a == "--max-err") { std::string v = val(); char* e; o.max_err = strtod(v.c_str(), &e); if (*e || !(o.max_err > 0)) bad_input("--max-err: bad value " + v); }
        else if (a == "--dry-run") o.dry_run = true;
        else if (a == "--list-instances") o.list_instances = true;
        else if (a == "--all-configs") o.all_configs = true;
        else if (a == "--no-pdl") o.pdl = false;
        // ops_bench's / torch_ops.py's other options (bench/run_ops.sh passes "$@" to every peer): ignored
        else if (a == "--variants") {}
        else if (a == "--kernels" || a == "--attn-seq") val();
        else if (a == "--only") o.only = split(val());  // ops_bench's keys: moe, moe_v2lite, moe_v3 select shapes
        else if (a == "-h" || a == "--help") { usage(stdout); exit(0); }
        else { usage(stderr); bad_input("unknown option " + a); }
    }
    for (auto& s : o.shapes)
        if (s != "v2lite" && s != "v3") bad_input("--shapes: unknown shape " + s);
    if (!o.only.empty()) {  // as ops_bench's --only: "moe" takes both shapes, "moe_<key>" one, others none
        auto has = [&](const std::string& k) { return std::find(o.only.begin(), o.only.end(), k) != o.only.end(); };
        std::vector<std::string> keep;
        for (auto& s : o.shapes)
            if (has("moe") || has("moe_" + s)) keep.push_back(s);
        o.shapes = keep;
    }
    for (auto& s : o.dtypes)
        if (s != "fp8" && s != "bf16") bad_input("--dtypes: unknown dtype " + s);
    if (o.offsets.empty() && !o.list_instances) { usage(stderr); bad_input("--offsets FILE is required"); }
    return o;
}

// ------------------------------------------------------------------------------------------------
// One GEMM
// ------------------------------------------------------------------------------------------------
struct Gemm {
    const char* op;  // without the fp8 prefix
    int n, k;
};

static std::vector<Gemm> gemms_of(const MoeShape& sh) {
    return {{"gate_up", 2 * sh.f, sh.h}, {"down", sh.h, sh.f}};
}


struct Runner {
    Opts o;
    FILE* out = stdout;
    int failures = 0;
};

static Opts* g_opts = nullptr;


static void launch(const Instance& inst, const Cfg& c, bool pdl, void** args) {
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = dim3(DG_NUM_SMS, 1, 1);
    cfg.blockDim = dim3(c.num_tma_threads + c.num_math_threads, 1, 1);
    cfg.dynamicSmemBytes = c.smem_size;
    cfg.stream = 0;
    cudaLaunchAttribute attrs[2];
    cfg.attrs = attrs;
    cfg.numAttrs = 0;
    if (c.cluster() > 1) {
        auto& a = attrs[cfg.numAttrs++];
        a.id = cudaLaunchAttributeClusterDimension;
        a.val.clusterDim.x = c.cluster();
        a.val.clusterDim.y = 1;
        a.val.clusterDim.z = 1;
    }
    if (pdl) {
        auto& a = attrs[cfg.numAttrs++];
        a.id = cudaLaunchAttributeProgrammaticStreamSerialization;
        a.val.programmaticStreamSerializationAllowed = 1;
    }
    CK(cudaLaunchKernelExC(&cfg, inst.fn, args));
}

static void run_gemm(Runner& R, const MoeShape& sh, const Layout& L, const Gemm& gm, Kind kind, const Cfg& heur) {
    const bool fp8 = kind == Kind::FP8_1D2D;
    const int M = L.m, N = gm.n, K = gm.k, E = sh.e;
    const int ks = ceil_div_i(K, 128), nsb = ceil_div_i(N, 128);
    const size_t ab = fp8 ? 1 : 2;
    const std::string op = std::string("grouped_gemm_") + (fp8 ? "fp8_" : "") + gm.op;
    const std::string impl = fp8 ? "DeepGEMM fp8 1d2d (1x128, 128x128 blocks)" : "DeepGEMM bf16";
    char shape[96];
    snprintf(shape, sizeof shape, "%dx%dx%d, %d experts", L.rows, N, K, E);

    // Candidate configs to time: the heuristic's, then (--all-configs) every other compiled-in one.
    std::vector<Cfg> cfgs = {heur};
    if (R.o.all_configs) {
        Desc d{kind, M, N, K, E, DG_NUM_SMS};
        for (auto& c : candidates(d))
            if (!(c.block_n == heur.block_n && c.stages == heur.stages && c.cluster_m == heur.cluster_m &&
                  c.cluster_n == heur.cluster_n) &&
                find_instance(kind, N, K, E, c))
                cfgs.push_back(c);
    }
    if (!find_instance(kind, N, K, E, heur)) {
        fprintf(stderr,
                "%s %s: the heuristic's config (%s) is not compiled in; add\n  %s_instance<%d, %d, %d, %d, %d, %d, %d>(),\n"
                "to instances.inc (deepgemm_bench --dry-run --list-instances prints them) and rebuild\n",
                op.c_str(), shape, heur.str().c_str(), fp8 ? "fp8" : "bf16", N, K, E, heur.block_n, heur.stages,
                heur.cluster_m, heur.cluster_n);
        R.failures++;
        return;
    }

    // Operands: two activation buffers (ops_bench times fn(i) on xs[i % 2]), one weight, one output.
    void *a[2], *b, *d;
    float *sfa[2] = {nullptr, nullptr}, *sfb = nullptr;
    int* lay;
    const size_t a_elems = (size_t)M * K, b_elems = (size_t)E * N * K, d_elems = (size_t)M * N;
    for (int i = 0; i < 2; ++i) CK(cudaMalloc(&a[i], a_elems * ab));
    CK(cudaMalloc(&b, b_elems * ab));
    CK(cudaMalloc(&d, d_elems * 2));
    CK(cudaMalloc(&lay, (size_t)M * sizeof(int)));
    if (fp8) {
        for (int i = 0; i < 2; ++i) CK(cudaMalloc(&sfa[i], (size_t)ks * M * sizeof(float)));
        CK(cudaMalloc(&sfb, (size_t)E * nsb * ks * sizeof(float)));
    }
    const uint32_t seed = R.o.seed * 1000 + (uint32_t)(N * 7 + K);
    for (int i = 0; i < 2; ++i) {
        if (fp8) {
            fill_fp8<<<4096, 256>>>((__nv_fp8_e4m3*)a[i], a_elems, seed + 11 * i + 1, -2.f, 2.f);
            fill_f32<<<1024, 256>>>(sfa[i], (size_t)ks * M, seed + 11 * i + 2, 0.5f, 2.f);
        } else {
            fill_bf16<<<4096, 256>>>((__nv_bfloat16*)a[i], a_elems, seed + 11 * i + 1, -1.f, 1.f);
        }
        CK(cudaGetLastError());
    }
    if (fp8) {
        fill_fp8<<<4096, 256>>>((__nv_fp8_e4m3*)b, b_elems, seed + 5, -2.f, 2.f);
        fill_f32<<<1024, 256>>>(sfb, (size_t)E * nsb * ks, seed + 6, 0.5f, 2.f);
    } else {
        fill_bf16<<<4096, 256>>>((__nv_bfloat16*)b, b_elems, seed + 5, -1.f, 1.f);
    }
    CK(cudaGetLastError());
    CK(cudaMemset(d, 0xff, d_elems * 2));  // NaN pattern: unwritten outputs cannot pass the check
    std::vector<int> hl(M, -1);
    for (int e = 0; e < E; ++e)
        for (int64_t r = 0; r < L.offsets[e + 1] - L.offsets[e]; ++r) hl[L.padded[e] + r] = e;
    CK(cudaMemcpy(lay, hl.data(), (size_t)M * sizeof(int), cudaMemcpyHostToDevice));

    // Samples: per expert with rows, its first and last real rows plus random ones, random columns
    // (and the last column); about 2048 in all.
    std::vector<int> sr, sc, sg;
    std::mt19937 rng(seed);
    int active = 0;
    for (int e = 0; e < E; ++e) active += L.offsets[e + 1] > L.offsets[e];
    const int per = std::max(4, 2048 / std::max(1, active));
    for (int e = 0; e < E; ++e) {
        const int cnt = (int)(L.offsets[e + 1] - L.offsets[e]);
        if (cnt == 0) continue;
        for (int j = 0; j < per; ++j) {
            int r = j == 0 ? 0 : j == 1 || j == 2 ? cnt - 1 : (int)(rng() % cnt);
            int c = j == 2 ? N - 1 : (int)(rng() % N);
            sr.push_back(L.padded[e] + r), sc.push_back(c), sg.push_back(e);
        }
    }
    const int ns = (int)sr.size();
    int *dr, *dc, *dg;
    float *dref, *dscale, *dgot;
    CK(cudaMalloc(&dr, ns * sizeof(int)));
    CK(cudaMalloc(&dc, ns * sizeof(int)));
    CK(cudaMalloc(&dg, ns * sizeof(int)));
    CK(cudaMalloc(&dref, ns * sizeof(float)));
    CK(cudaMalloc(&dscale, ns * sizeof(float)));
    CK(cudaMalloc(&dgot, ns * sizeof(float)));
    CK(cudaMemcpy(dr, sr.data(), ns * sizeof(int), cudaMemcpyHostToDevice));
    CK(cudaMemcpy(dc, sc.data(), ns * sizeof(int), cudaMemcpyHostToDevice));
    CK(cudaMemcpy(dg, sg.data(), ns * sizeof(int), cudaMemcpyHostToDevice));
    CK(cudaDeviceSynchronize());

    for (size_t ci = 0; ci < cfgs.size(); ++ci) {
        const Cfg& c = cfgs[ci];
        const Instance* inst = find_instance(kind, N, K, E, c);
        CK(cudaFuncSetAttribute(inst->fn, cudaFuncAttributeMaxDynamicSharedMemorySize, c.smem_size));
        // TMA descriptors, as sm90_m_grouped_{fp8_gemm_contiguous_1d2d,bf16_gemm_contiguous} make them.
        const CUtensorMapDataType dt_ab = fp8 ? CU_TENSOR_MAP_DATA_TYPE_UINT8 : CU_TENSOR_MAP_DATA_TYPE_BFLOAT16;
        CUtensorMap ta[2], tsfa[2], tb, td;
        for (int i = 0; i < 2; ++i) {
            ta[i] = tma_2d(a[i], dt_ab, (int)ab, K, M, c.block_k, c.block_m, K, c.swizzle_a, __LINE__);
            if (fp8)  // make_tma_sf_desc(MN, sfa, m, k, block_m, 128, 1, 0): M is a multiple of 128, so TMA-aligned
                tsfa[i] = tma_2d(sfa[i], CU_TENSOR_MAP_DATA_TYPE_FLOAT32, 4, M, ks, c.block_m, 1, M, 0, __LINE__);
        }
        tb = tma_2d(b, dt_ab, (int)ab, K, (uint64_t)N * E, c.block_k, c.block_n, K, c.swizzle_b, __LINE__);
        td = tma_2d(d, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 2, N, M, c.block_n, c.block_m, N, c.swizzle_cd, __LINE__);
        uint32_t sm = M, sn = N, sk = K;
        auto call = [&](int i) {
            const int x = i % 2;
            if (fp8) {
                void* args[] = {&sfb, &lay, &sm, &sn, &sk, &ta[x], &tb, &td, &tsfa[x]};
                launch(*inst, c, R.o.pdl, args);
            } else {
                void* args[] = {&lay, &sm, &sn, &sk, &ta[x], &tb, &td};
                launch(*inst, c, R.o.pdl, args);
            }
        };

        // Correctness, on both input buffers (the output of the last call is checked).
        double worst = 0;
        for (int x = 0; x < 2; ++x) {
            CK(cudaMemset(d, 0xff, d_elems * 2));
            call(x);
            CK(cudaGetLastError());
            CK(cudaDeviceSynchronize());
            reference<<<(ns + 127) / 128, 128>>>(fp8, a[x], sfa[x], b, sfb, (const __nv_bfloat16*)d, dr, dc, dg, ns, M, N, K,
                                                 dref, dscale, dgot);
            CK(cudaGetLastError());
            CK(cudaDeviceSynchronize());
            std::vector<float> href(ns), hscale(ns), hgot(ns);
            CK(cudaMemcpy(href.data(), dref, ns * sizeof(float), cudaMemcpyDeviceToHost));
            CK(cudaMemcpy(hscale.data(), dscale, ns * sizeof(float), cudaMemcpyDeviceToHost));
            CK(cudaMemcpy(hgot.data(), dgot, ns * sizeof(float), cudaMemcpyDeviceToHost));
            int worst_i = 0;
            double w = 0;
            for (int s = 0; s < ns; ++s) {
                double err = std::fabs((double)hgot[s] - href[s]) / std::max(1e-6, (double)hscale[s]);
                if (!std::isfinite(hgot[s]) || std::isnan(err)) err = INFINITY;
                if (err > w || (s == 0 && err >= w)) w = err, worst_i = s;
            }
            fprintf(stderr, "  check %s %s [%s] input %d: %d samples, max error %.3g of the row's scale (row %d col %d expert %d: got %g want %g)\n",
                    op.c_str(), shape, ci == 0 ? "heuristic" : c.str().c_str(), x, ns, w, sr[worst_i] , sc[worst_i], sg[worst_i],
                    hgot[worst_i], href[worst_i]);
            worst = std::max(worst, w);
        }
        if (!(worst <= R.o.max_err)) {
            fprintf(stderr, "FAILED: %s %s [%s]: max error %.3g > %.3g\n", op.c_str(), shape, c.str().c_str(), worst, R.o.max_err);
            R.failures++;
            continue;
        }

        const double ms = peer_median_ms(g_opts->iters, 0, [](int) {}, call);
        const double tflops = 2.0 * L.rows * (double)N * K / ms / 1e9;
        fprintf(stderr, "%-26s %-34s %10.3f ms %9.1f TFLOP/s  [%s%s]\n", op.c_str(), shape, ms, tflops,
                ci == 0 ? "heuristic: " : "", c.str().c_str());
        std::string cfg_s = (ci == 0 ? "heuristic: " : "candidate: ") + c.str();
        std::string impl_s = ci == 0 ? impl : impl + " [config sweep]";
        fprintf(R.out, "{\"impl\":\"%s\",\"op\":\"%s\",\"shape\":\"%s\",\"ms\":%.6f,\"tflops\":%.3f,\"config\":\"%s\"}\n",
                impl_s.c_str(), op.c_str(), shape, ms, tflops, cfg_s.c_str());
        fflush(R.out);
    }

    for (int i = 0; i < 2; ++i) CK(cudaFree(a[i]));
    CK(cudaFree(b));
    CK(cudaFree(d));
    CK(cudaFree(lay));
    if (fp8) {
        for (int i = 0; i < 2; ++i) CK(cudaFree(sfa[i]));
        CK(cudaFree(sfb));
    }
    for (void* p : {(void*)dr, (void*)dc, (void*)dg, (void*)dref, (void*)dscale, (void*)dgot}) CK(cudaFree(p));
}

int main(int argc, char** argv) {
    Opts o = parse(argc, argv);
    g_opts = &o;

    if (o.list_instances && o.all_configs) {
        printf("// Generated by: deepgemm_bench --list-instances --all-configs (compiled in with DG_SWEEP=1)\n");
        printf("static std::vector<Instance> sweep_instances() {\n    return {\n");
        for (auto& sh : kShapes)
            for (auto& gm : gemms_of(sh))
                for (Kind kind : {Kind::FP8_1D2D, Kind::BF16})
                    // The candidates do not depend on M (only their modelled cycles do).
                    for (auto& c : candidates({kind, 128 * 1024, gm.n, gm.k, sh.e, DG_NUM_SMS}))
                        if (in_sweep(kind, c))
                            printf("    %s_instance<%d, %d, %d, %d, %d, %d, %d>(),  // %s %s\n", kind == Kind::FP8_1D2D ? "fp8" : "bf16",
                                   gm.n, gm.k, sh.e, c.block_n, c.stages, c.cluster_m, c.cluster_n, sh.name, gm.op);
        printf("    };\n}\n");
        return 0;
    }
    if (o.list_instances) {
        // Every config the heuristic picks for our R over all padded M possible (R .. R + E * 127).
        const int rows_of[] = {98304, 131072};
        int si = 0;
        for (auto& sh : kShapes) {
            const int r = rows_of[si++];
            for (auto& gm : gemms_of(sh))
                for (Kind kind : {Kind::FP8_1D2D, Kind::BF16}) {
                    std::map<std::string, int> seen;
                    for (int m = align_i(r, kMKAlignment); m <= align_i(r + sh.e * (kMKAlignment - 1), kMKAlignment); m += kMKAlignment) {
                        Cfg c = best_config({kind, m, gm.n, gm.k, sh.e, DG_NUM_SMS});
                        char line[160];
                        snprintf(line, sizeof line, "    %s_instance<%d, %d, %d, %d, %d, %d, %d>(),", kind == Kind::FP8_1D2D ? "fp8" : "bf16",
                                 gm.n, gm.k, sh.e, c.block_n, c.stages, c.cluster_m, c.cluster_n);
                        seen[line]++;
                    }
                    for (auto& [l, cnt] : seen) printf("%s  // %s %s: %d of the padded Ms\n", l.c_str(), sh.name, gm.op, cnt);
                }
        }
        return 0;
    }

    if (o.shapes.empty()) return 0;  // --only names no MoE shape
    auto offs = read_offsets(o.offsets);
    std::vector<std::pair<const MoeShape*, Layout>> todo;
    for (auto& name : o.shapes) {
        const MoeShape* sh = nullptr;
        for (auto& s : kShapes)
            if (name == s.name) sh = &s;
        auto it = offs.find(name);
        if (it == offs.end()) bad_input(o.offsets + ": no key \"" + name + "\"");
        todo.push_back({sh, make_layout(*sh, it->second)});
    }

    // The layouts and the heuristic's configs (no CUDA yet).
    for (auto& [sh, L] : todo) {
        int empty = 0, maxc = 0, minc = INT32_MAX;
        for (int e = 0; e < sh->e; ++e) {
            int c = (int)(L.offsets[e + 1] - L.offsets[e]);
            empty += c == 0, maxc = std::max(maxc, c), minc = std::min(minc, c);
        }
        fprintf(stderr, "%s: E=%d h=%d f=%d, real rows R=%d, padded rows M=%d (+%.2f%%, alignment %d), rows per expert %d..%d, %d empty\n",
                sh->name, sh->e, sh->h, sh->f, L.rows, L.m, 100.0 * (L.m - L.rows) / L.rows, kMKAlignment, minc, maxc, empty);
        for (auto& gm : gemms_of(*sh))
            for (auto& dt : o.dtypes) {
                Kind kind = dt == "fp8" ? Kind::FP8_1D2D : Kind::BF16;
                Desc d{kind, L.m, gm.n, gm.k, sh->e, DG_NUM_SMS};
                Cfg c = best_config(d);
                fprintf(stderr, "  %s %-7s %dx%dx%d: DeepGEMM heuristic (132 SMs) -> %s (waves %d, last wave %d SMs, cycles %lld)%s\n",
                        dt.c_str(), gm.op, L.m, gm.n, gm.k, c.str().c_str(), c.num_waves, c.last_wave_util, (long long)c.num_cycles,
                        find_instance(kind, gm.n, gm.k, sh->e, c) ? "" : (o.dry_run ? "" : "  [NOT COMPILED IN]"));
                if (o.dry_run && o.all_configs)
                    for (auto& x : candidates(d))
                        fprintf(stderr, "      candidate %s cycles %lld\n", x.str().c_str(), (long long)x.num_cycles);
            }
    }
    if (o.dry_run) return 0;

    Runner R;
    R.o = o;
    if (!o.json.empty()) {
        R.out = fopen(o.json.c_str(), "a");
        if (!R.out) bad_input("cannot open --json file " + o.json);
    }
    int dev;
    CK(cudaGetDevice(&dev));
    cudaDeviceProp prop;
    CK(cudaGetDeviceProperties(&prop, dev));
    fprintf(stderr, "device: %s, sm_%d%d, %d SMs\n", prop.name, prop.major, prop.minor, prop.multiProcessorCount);
    if (prop.major != 9 || prop.minor != 0) {
        fprintf(stderr, "deepgemm_bench: needs an sm_90 GPU (the kernels are sm_90a)\n");
        return 1;
    }
    if (prop.multiProcessorCount < DG_NUM_SMS) {
        fprintf(stderr, "deepgemm_bench: the kernels are built for %d SMs (persistent grid), this GPU has %d\n", DG_NUM_SMS,
                prop.multiProcessorCount);
        return 1;
    }
    if (prop.multiProcessorCount != DG_NUM_SMS)
        fprintf(stderr, "warning: %d SMs; the kernels use %d, as DeepGEMM would on an H200\n", prop.multiProcessorCount, DG_NUM_SMS);

    for (auto& [sh, L] : todo)
        for (auto& gm : gemms_of(*sh))
            for (auto& dt : o.dtypes) {
                Kind kind = dt == "fp8" ? Kind::FP8_1D2D : Kind::BF16;
                Cfg c = best_config({kind, L.m, gm.n, gm.k, sh->e, DG_NUM_SMS});
                run_gemm(R, *sh, L, gm, kind, c);
            }
    if (R.out != stdout) fclose(R.out);
    if (R.failures) {
        fprintf(stderr, "deepgemm_bench: %d failure(s)\n", R.failures);
        return 3;
    }
    return 0;
}
