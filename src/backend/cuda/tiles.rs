//! The tile configurations compiled for the flash attention and grouped GEMM
//! kernels (the tables mirror the instantiation macros at the end of
//! kernels/flash_attention.cu, flash_attention_sm90.cu, grouped_gemm.cu, grouped_gemm_sm90.cu and
//! grouped_gemm_tma.cu), the defaults, and the shapes the TMA kernels take.

/// A flash attention instantiation: `warps` warps each owning `mt` x 16 query rows (flash_attention.cu,
/// mma.sync), or with `tma_stages` > 0 the warp-specialised Hopper kernel (flash_attention_sm90.cu:
/// TMA + wgmma, sm_90a only, 64 query rows a consumer warpgroup: 128 rows and 12 warps a block, or 192
/// and 16 (`_w3`); that many K/V stages, `ping_pong`, `l2_sections`, `schedule`, `lean`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlashKernel {
    pub name: &'static str,
    /// The same tiles writing an f32 output (partials merged by lse).
    pub name_f32o: &'static str,
    pub d: usize,
    pub warps: usize,
    pub mt: usize,
    pub tma_stages: usize,
    /// sm90: the two consumer warpgroups take turns issuing their GEMMs (FA3's ping-pong).
    pub ping_pong: bool,
    /// sm90: a 1-D grid in FA3's L2 sections (heads whose K and V fit 32 MB run together), not (hq, tiles).
    pub l2_sections: bool,
    /// sm90: one block a query tile, or persistent (FA3's scheduler).
    pub schedule: Schedule,
    /// sm90: the lean main loop (`F3_LEAN`: the softmax under the warpgroup's own P V, warp-uniform
    /// descriptors, unmasked tiles in a loop of their own); the d = 128 defaults.
    pub lean: bool,
    /// sm90: FA4's rescale rule (TH in the kernel, `_th`): a row's max moves only when it grows by more
    /// than 8 (log2), and O is rescaled only when a row of the warp moved it.
    pub lazy_rescale: bool,
    /// sm90: clusters of two blocks on two query heads of one KV head, K and V multicast to both (MC in
    /// the kernel, `_mc`); where a KV head has an odd number of query heads the twin without `_mc` runs.
    pub kv_multicast: bool,
}

/// How the sm90 flash kernel's blocks take query tiles (kernels/flash_attention_sm90.cu, PERS).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Schedule {
    /// One block a (head, query tile), heaviest first; the hardware hands out the blocks.
    Grid,
    /// At most one block an SM, each walking tiles heaviest first in a fixed boustrophedon, the next
    /// tile's loads under this one's last GEMM and O stores (`_pers`).
    Static,
    /// The same, each block taking the next heaviest tile when it is free (an atomic counter, `_dyn`).
    Dynamic,
}

impl FlashKernel {
    /// Key tile of the mma.sync kernel (FA_BKV); the sm90 kernel's is 128 (F3_BKV).
    const BKV: usize = 64;
    const fn mma(name: &'static str, name_f32o: &'static str, d: usize, warps: usize, mt: usize) -> Self {
        FlashKernel {
            name,
            name_f32o,
            d,
            warps,
            mt,
            tma_stages: 0,
            ping_pong: false,
            l2_sections: false,
            schedule: Schedule::Grid,
            lean: false,
            lazy_rescale: false,
            kv_multicast: false,
        }
    }
    const fn sm90(name: &'static str, name_f32o: &'static str, d: usize, stages: usize, pp: bool, l2: bool) -> Self {
        FlashKernel {
            name,
            name_f32o,
            d,
            warps: 12,
            mt: 0,
            tma_stages: stages,
            ping_pong: pp,
            l2_sections: l2,
            schedule: Schedule::Grid,
            lean: false,
            lazy_rescale: false,
            kv_multicast: false,
        }
    }
    const fn sm90_pers(name: &'static str, name_f32o: &'static str, d: usize, stages: usize, s: Schedule) -> Self {
        FlashKernel { schedule: s, ..Self::sm90(name, name_f32o, d, stages, true, false) }
    }
    const fn sm90_lean(name: &'static str, name_f32o: &'static str, d: usize, stages: usize) -> Self {
        Self::sm90_lean_order(name, name_f32o, d, stages, false, Schedule::Grid)
    }
    /// Three consumer warpgroups (192 query rows, 16 warps: `F3_W3`), ping-pong, the grid order.
    const fn sm90_w3(name: &'static str, name_f32o: &'static str, d: usize, stages: usize, lean: bool) -> Self {
        FlashKernel { warps: 16, lean, ..Self::sm90(name, name_f32o, d, stages, true, false) }
    }
    /// The same with FA4's rescale rule (`_th`).
    const fn lazy(self) -> Self {
        FlashKernel { lazy_rescale: true, ..self }
    }
    /// The same in clusters of two with K and V multicast (`_mc`).
    const fn multicast(self) -> Self {
        FlashKernel { kv_multicast: true, ..self }
    }
    /// The twin of a `_mc` kernel without the multicast, for shapes it does not take.
    pub fn without_multicast(&self) -> Option<&'static FlashKernel> {
        let twin = self.name.strip_suffix("_mc")?;
        FLASH_KERNELS.iter().find(|k| k.name == twin && !k.kv_multicast)
    }
    /// The lean loop in L2 sections or persistent.
    const fn sm90_lean_order(
        name: &'static str,
        name_f32o: &'static str,
        d: usize,
        stages: usize,
        l2: bool,
        schedule: Schedule,
    ) -> Self {
        FlashKernel { lean: true, schedule, ..Self::sm90(name, name_f32o, d, stages, true, l2) }
    }
    /// One block an SM walking query tiles (`Schedule::Static` or `Dynamic`).
    pub fn persistent(&self) -> bool {
        self.schedule != Schedule::Grid
    }
    /// wgmma and TMA: sm_90a only.
    pub fn sm90a(&self) -> bool {
        self.tma_stages > 0
    }
    pub fn file(&self) -> &'static str {
        if self.sm90a() { "flash_attention_sm90.cu" } else { "flash_attention.cu" }
    }
    pub fn block_q(&self) -> usize {
        if self.sm90a() { (self.warps / 4 - 1) * 64 } else { self.warps * self.mt * 16 }
    }
    pub fn threads(&self) -> u32 {
        (self.warps * 32) as u32
    }
    /// Q tile plus double-buffered K and V tiles; sm90: Q (`block_q` rows) and `tma_stages` K and V tiles of 128 rows,
    /// the mbarriers (Q full and empty, K and V full and empty a stage, two tile slots' full and empty),
    /// the two tile slots, and 1024 bytes to align the swizzle atoms.
    pub fn smem(&self) -> u32 {
        if self.sm90a() {
            ((self.block_q() + 2 * self.tma_stages * 128) * self.d * 2 + 8 * (7 + 4 * self.tma_stages) + 1024) as u32
        } else {
            ((self.block_q() + 4 * Self::BKV) * self.d * 2) as u32
        }
    }
}

pub const FLASH_KERNELS: &[FlashKernel] = &[
    FlashKernel::mma("flash_fwd_d128_w8m1", "flash_fwd_d128_w8m1_f32o", 128, 8, 1),
    FlashKernel::mma("flash_fwd_d128_w4m2", "flash_fwd_d128_w4m2_f32o", 128, 4, 2),
    FlashKernel::mma("flash_fwd_d128_w8m2", "flash_fwd_d128_w8m2_f32o", 128, 8, 2),
    FlashKernel::mma("flash_fwd_d64_w8m1", "flash_fwd_d64_w8m1_f32o", 64, 8, 1),
    FlashKernel::mma("flash_fwd_d64_w4m2", "flash_fwd_d64_w4m2_f32o", 64, 4, 2),
    FlashKernel::sm90("flash_fwd_sm90_d128_s2", "flash_fwd_sm90_d128_s2_f32o", 128, 2, false, false),
    FlashKernel::sm90("flash_fwd_sm90_d128_s3", "flash_fwd_sm90_d128_s3_f32o", 128, 3, false, false),
    FlashKernel::sm90("flash_fwd_sm90_d128_s2p", "flash_fwd_sm90_d128_s2p_f32o", 128, 2, true, false),
    FlashKernel::sm90("flash_fwd_sm90_d128_s3p", "flash_fwd_sm90_d128_s3p_f32o", 128, 3, true, false),
    FlashKernel::sm90("flash_fwd_sm90_d128_s2p_l2", "flash_fwd_sm90_d128_s2p_l2_f32o", 128, 2, true, true),
    FlashKernel::sm90("flash_fwd_sm90_d64_s2p", "flash_fwd_sm90_d64_s2p_f32o", 64, 2, true, false),
    FlashKernel::sm90("flash_fwd_sm90_d64_s3p", "flash_fwd_sm90_d64_s3p_f32o", 64, 3, true, false),
    FlashKernel::sm90("flash_fwd_sm90_d64_s2p_l2", "flash_fwd_sm90_d64_s2p_l2_f32o", 64, 2, true, true),
    FlashKernel::sm90_pers(
        "flash_fwd_sm90_d128_s2p_pers",
        "flash_fwd_sm90_d128_s2p_pers_f32o",
        128,
        2,
        Schedule::Static,
    ),
    FlashKernel::sm90_pers(
        "flash_fwd_sm90_d128_s3p_pers",
        "flash_fwd_sm90_d128_s3p_pers_f32o",
        128,
        3,
        Schedule::Static,
    ),
    FlashKernel::sm90_pers("flash_fwd_sm90_d64_s2p_pers", "flash_fwd_sm90_d64_s2p_pers_f32o", 64, 2, Schedule::Static),
    FlashKernel::sm90_pers(
        "flash_fwd_sm90_d128_s2p_dyn",
        "flash_fwd_sm90_d128_s2p_dyn_f32o",
        128,
        2,
        Schedule::Dynamic,
    ),
    FlashKernel::sm90_pers(
        "flash_fwd_sm90_d128_s3p_dyn",
        "flash_fwd_sm90_d128_s3p_dyn_f32o",
        128,
        3,
        Schedule::Dynamic,
    ),
    FlashKernel::sm90_pers("flash_fwd_sm90_d64_s2p_dyn", "flash_fwd_sm90_d64_s2p_dyn_f32o", 64, 2, Schedule::Dynamic),
    FlashKernel::sm90_lean("flash_fwd_sm90_d128_s2p_lean", "flash_fwd_sm90_d128_s2p_lean_f32o", 128, 2),
    FlashKernel::sm90_lean("flash_fwd_sm90_d128_s3p_lean", "flash_fwd_sm90_d128_s3p_lean_f32o", 128, 3),
    FlashKernel::sm90_lean("flash_fwd_sm90_d64_s2p_lean", "flash_fwd_sm90_d64_s2p_lean_f32o", 64, 2),
    // Session 7's ncu at 32K: the grid order reads K and V at 88% L2 hits, cuDNN's persistent kernel at
    // 99%. L2 sections won (LONG_FLASH_SM90A); the dynamic persistent order did not (0.98x cuDNN).
    FlashKernel::sm90_lean_order(
        "flash_fwd_sm90_d128_s3p_lean_l2",
        "flash_fwd_sm90_d128_s3p_lean_l2_f32o",
        128,
        3,
        true,
        Schedule::Grid,
    ),
    // Two stages in L2 sections, d = 128 and d = 64 (session 8, call 7, two runs): d = 128 within 1% of
    // `s3p_lean_l2` from 12345 rows on, 0.97x `s2p_lean` at 5000; d = 64 0.97-0.99x `s2p`. By name.
    FlashKernel::sm90_lean_order(
        "flash_fwd_sm90_d128_s2p_lean_l2",
        "flash_fwd_sm90_d128_s2p_lean_l2_f32o",
        128,
        2,
        true,
        Schedule::Grid,
    ),
    FlashKernel::sm90_lean_order(
        "flash_fwd_sm90_d64_s2p_lean_l2",
        "flash_fwd_sm90_d64_s2p_lean_l2_f32o",
        64,
        2,
        true,
        Schedule::Grid,
    ),
    // FA3's causal order in full: persistent (the next tile's loads under this one's last GEMMs and O stores,
    // no block prologue), heaviest first, in L2 sections. 0.96-0.98x the defaults (session 8, call 7); on the
    // defaults' loop (TH) and with the producer no longer spinning, 0.95-0.97x again (session 10, call 25).
    FlashKernel::sm90_lean_order(
        "flash_fwd_sm90_d128_s2p_lean_l2_dyn",
        "flash_fwd_sm90_d128_s2p_lean_l2_dyn_f32o",
        128,
        2,
        true,
        Schedule::Dynamic,
    ),
    FlashKernel::sm90_lean_order(
        "flash_fwd_sm90_d128_s3p_lean_l2_dyn",
        "flash_fwd_sm90_d128_s3p_lean_l2_dyn_f32o",
        128,
        3,
        true,
        Schedule::Dynamic,
    ),
    FlashKernel::sm90_lean_order(
        "flash_fwd_sm90_d128_s3p_lean_dyn",
        "flash_fwd_sm90_d128_s3p_lean_dyn_f32o",
        128,
        3,
        false,
        Schedule::Dynamic,
    ),
    // Three consumer warpgroups a block (FA3's 192 x 128 tile at d = 64): `s2p_w3` is the d = 64 default
    // (session 8, call 10: 457-461 / 498 TFLOP/s at 8K / 32K; `s3p_w3` 1-2% and `s2p_lean_w3` 3% behind).
    FlashKernel::sm90_w3("flash_fwd_sm90_d64_s2p_w3", "flash_fwd_sm90_d64_s2p_w3_f32o", 64, 2, false),
    FlashKernel::sm90_w3("flash_fwd_sm90_d64_s2p_lean_w3", "flash_fwd_sm90_d64_s2p_lean_w3_f32o", 64, 2, true),
    FlashKernel::sm90_w3("flash_fwd_sm90_d64_s3p_w3", "flash_fwd_sm90_d64_s3p_w3_f32o", 64, 3, false),
    // The lean loop with FA4's rescale rule: the d = 128 defaults (session 9, calls 16 and 17: 1.00-1.02x the
    // lean loop at 5000-32768 in both orders; rescaling at any move of the max, without the threshold, lost 2-4%).
    FlashKernel::sm90_lean("flash_fwd_sm90_d128_s2p_lean_th", "flash_fwd_sm90_d128_s2p_lean_th_f32o", 128, 2).lazy(),
    FlashKernel::sm90_lean_order(
        "flash_fwd_sm90_d128_s3p_lean_l2_th",
        "flash_fwd_sm90_d128_s3p_lean_l2_th_f32o",
        128,
        3,
        true,
        Schedule::Grid,
    )
    .lazy(),
    // The same with K and V multicast to clusters of two query heads: the long default (session 9, call 19: 1.01x
    // / 1.015x `s3p_lean_l2_th` at 12345 / 32768, the medians of four runs in both orders; 0.99x at 5000 and 8192,
    // where `s2p_lean_th` with it lost 1% too).
    FlashKernel::sm90_lean_order(
        "flash_fwd_sm90_d128_s3p_lean_l2_th_mc",
        "flash_fwd_sm90_d128_s3p_lean_l2_th_mc_f32o",
        128,
        3,
        true,
        Schedule::Grid,
    )
    .lazy()
    .multicast(),
];

/// A grouped GEMM instantiation: BM x BN block tile, `threads` threads, `smem` bytes of
/// dynamic shared memory, in kernels/`file`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GroupedKernel {
    pub name: &'static str,
    pub file: &'static str,
    pub bm: usize,
    pub bn: usize,
    pub threads: u32,
    pub stages: usize,
    pub smem: u32,
    /// wgmma kernels run on sm_90a only.
    pub sm90a: bool,
    /// Warp-specialised TMA kernel (grouped_gemm_tma.cu): persistent grid, tensor-map
    /// arguments, and 8 bytes per expert (plus 8) of shared memory on top of `smem`.
    pub tma: Option<TmaOptions>,
}

/// Template options of a TMA kernel (the TG macro's last four arguments; `lean`: the TGL macro).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TmaOptions {
    /// Epilogue through shared memory and TMA stores, in this many column parts (0: registers
    /// straight to global memory).
    pub epilogue_parts: usize,
    /// Tiles of an expert column block by column block, row blocks inner (with `multicast`: in
    /// bands of 8 row-block pairs).
    pub m_inner: bool,
    /// Clusters of two blocks on neighbouring row blocks; the weight tile is multicast to both
    /// when the two row blocks belong to one expert.
    pub multicast: bool,
    /// SwiGLU fused into the epilogue: a tile's bn weight rows are bn / 2 gate rows and the
    /// matching up rows, and it writes bn / 2 columns of silu(gate) * up.
    pub swiglu: bool,
    /// The lean consumer k loop (warp-uniform wgmma descriptors) and, with `swiglu`, silu by
    /// __fdividef (`TGL`, bench/results/2026-12-02-cpu/bf16sass; the defaults since session 7).
    pub lean: bool,
    /// With `m_inner`: an expert of more row blocks than this runs in bands of this many (`TGLB`,
    /// kernels/tma.cuh tg_tile), so a wave keeps a band of X in L2; 0: no bands.
    pub band: usize,
}

impl GroupedKernel {
    /// Dynamic shared memory for `e` experts.
    pub fn smem_for(&self, e: usize) -> u32 {
        if self.tma.is_some() { self.smem + (8 * e + 8) as u32 } else { self.smem }
    }
}

const fn mma_sync(name: &'static str, bm: usize, bn: usize, stages: usize) -> GroupedKernel {
    // stages x (A tile + B tile) of 64-wide bf16 rows.
    let smem = (stages * (bm + bn) * 64 * 2) as u32;
    GroupedKernel { name, file: "grouped_gemm.cu", bm, bn, threads: 256, stages, smem, sm90a: false, tma: None }
}

const fn wgmma(name: &'static str, bn: usize, stages: usize) -> GroupedKernel {
    // Plus 1 KiB to align the 1024-byte swizzle atoms.
    let smem = (stages * (128 + bn) * 64 * 2 + 1024) as u32;
    GroupedKernel {
        name,
        file: "grouped_gemm_sm90.cu",
        bm: 128,
        bn,
        threads: 256,
        stages,
        smem,
        sm90a: true,
        tma: None,
    }
}

const fn tma(name: &'static str, bn: usize, stages: usize, o: TmaOptions) -> GroupedKernel {
    // The stages, the epilogue's 128 x bn / parts bf16 staging when it has one, and a full and an
    // empty mbarrier per stage.
    let out_cols = if o.swiglu { bn / 2 } else { bn };
    let epi = match (128 * out_cols * 2).checked_div(o.epilogue_parts) {
        Some(bytes) => bytes,
        None => 0,
    };
    let smem = (stages * (128 + bn) * 64 * 2 + epi + 16 * stages) as u32;
    GroupedKernel {
        name,
        file: "grouped_gemm_tma.cu",
        bm: 128,
        bn,
        threads: 384,
        stages,
        smem,
        sm90a: true,
        tma: Some(o),
    }
}

const fn opts(epilogue_parts: usize, m_inner: bool, multicast: bool) -> TmaOptions {
    TmaOptions { epilogue_parts, m_inner, multicast, swiglu: false, lean: false, band: 0 }
}

/// The same with the lean consumer k loop.
const fn lean(o: TmaOptions) -> TmaOptions {
    TmaOptions { lean: true, ..o }
}

/// The lean loop in bands of `band` row blocks: an expert of more row blocks (Llama's dense gate/up, one
/// expert of 64 row blocks at 8K) keeps a band of X in L2 while the wave sweeps the weight tiles.
const fn banded(o: TmaOptions, band: usize) -> TmaOptions {
    TmaOptions { band, ..lean(o) }
}

/// The grouped GEMM with SwiGLU fused into its epilogue (`grouped_matmul_swiglu` and
/// `matmul_swiglu` on sm_90a); a SwiGLU kernel of GROUPED_KERNELS chosen by name runs instead.
/// The lean one (1.13x the plain one at V2-Lite's gate/up on the H200, session 7) in bands of 16 row
/// blocks: the same tiles for experts of at most 16 (the MoE shapes here), 1.03x / 1.17x unbanded on
/// Llama's gate/up at 8K / 32K (676.6 / 688.5 TFLOP/s; cuBLASLt + the SwiGLU pass 605.5 / 653.6; session 8).
pub const GROUPED_SWIGLU: GroupedKernel =
    tma("grouped_gemm_swiglu_tma_256_s4_lean_b16", 256, 4, banded(GROUPED_SWIGLU_OPTS, 16));
const GROUPED_SWIGLU_OPTS: TmaOptions = TmaOptions { swiglu: true, ..opts(1, true, false) };

/// Dynamic shared memory a block may have on sm_90 (227 KiB).
pub const MAX_SMEM_SM90: u32 = 227 * 1024;

/// The TMA kernel keeps its tile list (three ints per expert) in shared memory.
pub const TMA_MAX_EXPERTS: usize = 1024;

pub const GROUPED_KERNELS: &[GroupedKernel] = &[
    mma_sync("grouped_gemm_128x128", 128, 128, 3),
    mma_sync("grouped_gemm_128x256", 128, 256, 3),
    mma_sync("grouped_gemm_256x128", 256, 128, 3),
    mma_sync("grouped_gemm_128x256_s4", 128, 256, 4),
    wgmma("grouped_gemm_wgmma_s4", 256, 4),
    wgmma("grouped_gemm_wgmma_s4w", 256, 4),
    wgmma("grouped_gemm_wgmma_128_s3", 128, 3),
    wgmma("grouped_gemm_wgmma_128_s3w", 128, 3),
    tma("grouped_gemm_tma_256_s4", 256, 4, opts(0, true, false)),
    tma("grouped_gemm_tma_256_s3e", 256, 3, opts(1, true, false)),
    tma("grouped_gemm_tma_256_s3e_n", 256, 3, opts(1, false, false)),
    tma("grouped_gemm_tma_128_s6", 128, 6, opts(0, true, false)),
    tma("grouped_gemm_tma_128_s4e", 128, 4, opts(1, true, false)),
    tma("grouped_gemm_tma_128_s4e_n", 128, 4, opts(1, false, false)),
    tma("grouped_gemm_tma_256_s3e_mc", 256, 3, opts(1, true, true)),
    tma("grouped_gemm_tma_256_s3e_mcn", 256, 3, opts(1, false, true)),
    tma("grouped_gemm_tma_128_s4e_mc", 128, 4, opts(1, true, true)),
    tma("grouped_gemm_tma_256_s4h", 256, 4, opts(2, true, false)),
    tma("grouped_gemm_tma_256_s3e_lean", 256, 3, lean(opts(1, true, false))),
    // The SwiGLU kernels (chosen by name for grouped_matmul_swiglu and matmul_swiglu; grouped_matmul
    // passes them over).
    tma("grouped_gemm_swiglu_tma_256_s4", 256, 4, GROUPED_SWIGLU_OPTS),
    tma("grouped_gemm_swiglu_tma_256_s4_lean", 256, 4, lean(GROUPED_SWIGLU_OPTS)),
    tma("grouped_gemm_tma_256_s3e_lean_b16", 256, 3, banded(opts(1, true, false), 16)),
    GROUPED_SWIGLU,
];

/// Defaults, from bench/run_ops.sh on an H100 (BENCHMARKS.md): for d = 128, 32-row warps, 4 per
/// block up to 16k rows, 8 beyond.
pub(crate) const LONG_SEQUENCE: usize = 16384;
pub(crate) const LONG_FLASH: &str = "flash_fwd_d128_w8m2";
pub(crate) const DEFAULT_FLASH: [&str; 2] = ["flash_fwd_d128_w4m2", "flash_fwd_d64_w8m1"];
/// On sm_90a, d = 128 and d = 64 at every length: the warp-specialised TMA + wgmma kernel (H200, session 4,
/// bench/results/2026-12-01-h200/session4/: d = 64 at 1.6x the mma.sync kernel, 0.95-0.99x cuDNN). The
/// L2-section (`_l2`) instantiations run when chosen by name: 0.95x cuDNN at d = 128, 32K, against 1.01x.
/// So do the persistent ones (session 5, bench/results/2026-12-01-h200/s5-attn/ and session5/call2/): `_pers`
/// (static) 0.92x at d = 128, 32K, against 1.01x, ties at 5000 and 12345; `_dyn` (atomic counter) 0.93x
/// at 32K against 1.02x. Session 7 (bench/results/2026-12-02-h200/, BENCHMARKS.md): the lean loop at d = 128,
/// two KV stages below LONG_SEQUENCE_SM90A rows (1.08x cuDNN at 8192, 1.10-1.13x at 5000), from there three
/// stages in L2 sections (1.06x at 32K in two runs, where the grid order gave 0.98-1.05x: the K and V of
/// all 8 heads, 50 MB at 12288 rows, no longer fit the 50 MB L2). Session 8: d = 64 with three consumer
/// warpgroups (`_w3`, 192 query rows a block), 1.10-1.15x cuDNN at 8K and 32K (1.05-1.17x `s2p` in four runs, calls 10 and 12).
/// Session 9: the d = 128 kernels with FA4's rescale rule (`_th`), 1.00-1.02x the same without it (calls 16, 17);
/// the long one with K and V multicast to clusters of two query heads (`_mc`, call 19).
pub(crate) const DEFAULT_FLASH_SM90A: [&str; 2] = ["flash_fwd_sm90_d128_s2p_lean_th", "flash_fwd_sm90_d64_s2p_w3"];
pub(crate) const LONG_SEQUENCE_SM90A: usize = 12288;
pub(crate) const LONG_FLASH_SM90A: &str = "flash_fwd_sm90_d128_s3p_lean_l2_th_mc";
/// The portable grouped GEMM (mma.sync): every architecture but sm_90a.
pub(crate) const DEFAULT_GROUPED: &str = "grouped_gemm_128x128";
/// On sm_90a, in order of preference: the first that takes the shape (`tma_fits`) runs.
/// The lean loop: 1.01x and 1.04x the plain `s3e` at V2-Lite's gate/up and down on the H200 (session 7).
pub(crate) const DEFAULT_GROUPED_SM90A: [&str; 2] = ["grouped_gemm_tma_256_s3e_lean", "grouped_gemm_wgmma_s4"];

/// Shapes a TMA kernel takes: 16-byte row strides for the tensor maps (k a multiple of 8, and
/// non-zero), its tile list in shared memory, and tensor-map coordinates in i32.
pub(crate) fn tma_fits(gk: &GroupedKernel, r: usize, e: usize, n: usize, k: usize) -> bool {
    gk.tma.is_some()
        && k > 0
        && k.is_multiple_of(8)
        && r > 0
        && (1..=TMA_MAX_EXPERTS).contains(&e)
        && gk.smem_for(e) <= MAX_SMEM_SM90
        && e * n < i32::MAX as usize
        && r < i32::MAX as usize
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::cuda::compile;

    #[test]
    fn tables_match_the_kernel_sources() {
        let fa = compile::source_of("flash_attention.cu").unwrap();
        let f3 = compile::source_of("flash_attention_sm90.cu").unwrap();
        for k in FLASH_KERNELS {
            let (src, inst) = if k.sm90a() {
                let (st, pp, l2, pers) = (k.tma_stages, k.ping_pong, k.l2_sections, k.schedule as u8);
                let mac = if k.lean { "F3_LEAN" } else { "F3" };
                let th = if k.kv_multicast { "F3_LEAN_TH_MC" } else { "F3_LEAN_TH" };
                match (k.warps, k.lazy_rescale) {
                    (12, false) => (f3, format!("{mac}({}, {}, {st}, {pp}, {l2}, {pers})", k.name, k.d)),
                    (12, true) => (f3, format!("{th}({}, {}, {st}, {l2})", k.name, k.d)),
                    _ => (f3, format!("F3_W3({}, {}, {st}, {})", k.name, k.d, k.lean)),
                }
            } else {
                (fa, format!("FA({}, {}, {}, {},", k.name, k.d, k.warps, k.mt))
            };
            assert!(src.contains(&inst), "{inst} not instantiated");
            assert_eq!(k.name_f32o, format!("{}_f32o", k.name));
            assert_eq!(k.lazy_rescale, k.name.trim_end_matches("_mc").ends_with("_th"));
            assert_eq!(k.kv_multicast, k.name.ends_with("_mc"));
            assert!(!k.kv_multicast || k.without_multicast().is_some_and(|t| t.smem() == k.smem()), "{}", k.name);
            assert!(k.smem() <= MAX_SMEM_SM90, "{} shared memory", k.name);
        }
        assert!(FLASH_KERNELS.iter().any(|k| k.name == DEFAULT_FLASH_SM90A[0] && k.d == 128 && k.lean));
        assert!(FLASH_KERNELS.iter().any(|k| k.name == DEFAULT_FLASH_SM90A[1] && k.d == 64 && k.sm90a()));
        let long = |k: &&FlashKernel| k.d == 128 && k.lean && k.tma_stages == 3 && k.l2_sections;
        assert!(FLASH_KERNELS.iter().filter(long).any(|k| k.name == LONG_FLASH_SM90A));
        assert!(FLASH_KERNELS.iter().all(|k| !k.lean || (k.sm90a() && k.ping_pong)));
        let gg = compile::source_of("grouped_gemm.cu").unwrap();
        for k in GROUPED_KERNELS.iter().filter(|k| k.file == "grouped_gemm.cu") {
            assert_eq!(k.smem as usize, k.stages * (k.bm + k.bn) * 128);
            let inst = format!("GG({}, {}, {},", k.name, k.bm, k.bn);
            assert!(gg.contains(&inst), "{inst} not instantiated");
            let line = gg.lines().find(|l| l.starts_with(&inst)).unwrap();
            let nums: Vec<usize> = line.trim_end_matches(')').split(", ").skip(1).map(|x| x.parse().unwrap()).collect();
            assert_eq!(nums[2] * nums[3] * 32, k.threads as usize, "{line}");
            assert_eq!(nums[4], k.stages, "{line}");
        }
        for n in DEFAULT_FLASH {
            assert!(FLASH_KERNELS.iter().any(|k| k.name == n));
        }
        assert!(GROUPED_KERNELS.iter().any(|k| k.name == DEFAULT_GROUPED && !k.sm90a));
        assert!(GROUPED_KERNELS.iter().any(|k| k.name == DEFAULT_GROUPED_SM90A[1] && k.tma.is_none()));
        assert!(FLASH_KERNELS.iter().any(|k| k.name == LONG_FLASH));
        assert!(GROUPED_KERNELS.contains(&GROUPED_SWIGLU) && GROUPED_SWIGLU.tma.unwrap().lean);
        for k in GROUPED_KERNELS {
            let Some(o) = k.tma else { continue };
            let src = compile::source_of(k.file).unwrap();
            let (parts, mi, mc, sw) = (o.epilogue_parts, o.m_inner, o.multicast, o.swiglu);
            let args = format!("{}, {}, {}, {parts}, {mi}, {mc}, {sw}", k.name, k.bn, k.stages);
            let inst = match (o.lean, o.band) {
                (false, 0) => format!("TG({args})"),
                (true, 0) => format!("TGL({args})"),
                (true, band) => format!("TGLB({args}, {band})"),
                (false, _) => panic!("{}: bands only with the lean loop", k.name),
            };
            assert_eq!(sw, k.name.starts_with("grouped_gemm_swiglu_"));
            assert_eq!(o.lean, k.name.contains("_lean"));
            assert_eq!(o.band > 0, k.name.ends_with(&format!("_b{}", o.band)));
            assert!(src.contains(&inst), "{inst} not instantiated");
            assert!(k.smem_for(256) <= MAX_SMEM_SM90, "{} shared memory", k.name);
        }
        let fits = |e, k| GROUPED_KERNELS.iter().filter(|g| tma_fits(g, 1, e, 1, k)).count();
        assert_eq!(fits(1, 8), GROUPED_KERNELS.iter().filter(|g| g.tma.is_some()).count());
        assert_eq!((fits(1, 0), fits(1, 12), fits(1025, 8)), (0, 0, 0));
        let s3e = GROUPED_KERNELS.iter().find(|g| g.name == "grouped_gemm_tma_256_s3e").unwrap();
        let s4h = GROUPED_KERNELS.iter().find(|g| g.name == "grouped_gemm_tma_256_s4h").unwrap();
        assert!(tma_fits(s3e, 1, 1024, 1, 8) && tma_fits(s4h, 1, 256, 1, 8) && !tma_fits(s4h, 1, 1024, 1, 8));
        for k in GROUPED_KERNELS.iter().filter(|k| k.file == "grouped_gemm_sm90.cu") {
            let src = compile::source_of(k.file).unwrap();
            let inst = format!("WG({}, {}, {},", k.name, k.stages, k.bn / 128);
            assert!(src.contains(&inst), "{inst} not instantiated");
        }
    }
}
