//! Which implementation runs an op whose fast path depends on the GPU architecture: a pure
//! function of (op, shape, architecture, the kernel chosen by name if any), so that what
//! runs on Ampere, Hopper and Blackwell is decided and tested without a GPU.
//!
//! - grouped GEMM: sm_90a runs the warp-specialised TMA kernel (grouped_gemm_tma.cu) where it
//!   takes the shape, else the wgmma kernel; every other architecture the portable mma.sync
//!   kernel (grouped_gemm.cu).
//! - grouped GEMM + SwiGLU: fused into the TMA kernel's epilogue on sm_90a; elsewhere the
//!   grouped GEMM then the SwiGLU kernel.
//! - flash attention: on sm_90a, head dims 128 and 64, the warp-specialised TMA + wgmma kernel
//!   (flash_attention_sm90.cu) at every length, for every contract (offsets, odd lengths, f32
//!   output); every other architecture the mma.sync kernel (flash_attention.cu);
//!   a tile whose shared memory the architecture lacks gives way to the smallest one.
//! - FP8 (quantisation in fp8.cu, cuBLASLt e4m3 GEMMs): sm_89 and newer; refused on sm_80.
//!
//! A fallback forced by the architecture carries one line naming the op, which the backend
//! logs once.

use super::arch::{Arch, Needs};
use super::tiles::{
    DEFAULT_FLASH, DEFAULT_FLASH_SM90A, DEFAULT_GROUPED, DEFAULT_GROUPED_SM90A, FLASH_KERNELS, FlashKernel,
    GROUPED_KERNELS, GROUPED_SWIGLU, GroupedKernel, LONG_FLASH, LONG_FLASH_SM90A, LONG_SEQUENCE, LONG_SEQUENCE_SM90A,
    tma_fits,
};

/// An op and the shape that decides its kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// x [r, k] by e experts' [n, k] weights.
    GroupedMatmul { r: usize, e: usize, n: usize, k: usize },
    /// silu(gate) * up of x [r, k] by e experts' [2f, k] weights.
    GroupedMatmulSwiglu { r: usize, e: usize, f: usize, k: usize },
    /// Head dim d, sq query rows.
    FlashAttention { d: usize, sq: usize },
    /// FP8 e4m3 quantisation and GEMMs.
    Fp8,
}

impl Op {
    pub fn name(self) -> &'static str {
        match self {
            Op::GroupedMatmul { .. } => "grouped_matmul",
            Op::GroupedMatmulSwiglu { .. } => "grouped_matmul_swiglu",
            Op::FlashAttention { .. } => "flash attention",
            Op::Fp8 => "fp8",
        }
    }
}

/// What runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Path {
    Grouped(GroupedKernel),
    /// The grouped GEMM kernel, then the SwiGLU kernel.
    GroupedThenSwiglu(GroupedKernel),
    /// SwiGLU fused into the grouped GEMM's epilogue.
    GroupedSwiglu(GroupedKernel),
    Flash(FlashKernel),
    /// No flash kernel for this head dim: the naive attention (cuBLASLt and a softmax kernel).
    NaiveAttention,
    /// fp8.cu and cuBLASLt's e4m3 GEMMs.
    Fp8,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Selected {
    pub path: Path,
    /// Set when the architecture lacks the op's fast path: the line the backend logs once.
    pub fallback: Option<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Refused {
    #[error("{op} needs {needs}; this GPU is {arch}")]
    Arch { op: &'static str, needs: &'static str, arch: Arch },
}

/// Kernels picked by name (`choose_*_kernel`); None: the defaults.
#[derive(Clone, Copy, Debug, Default)]
pub struct Chosen<'a> {
    pub flash: Option<&'a str>,
    pub grouped: Option<&'a str>,
}

pub fn select(op: Op, arch: Arch, chosen: Chosen) -> Result<Selected, Refused> {
    let plain = |path| Selected { path, fallback: None };
    Ok(match op {
        Op::GroupedMatmul { r, e, n, k } => {
            let g = grouped(chosen.grouped, arch, r, e, n, k);
            let fallback = (!arch.has_wgmma()).then(|| {
                format!(
                    "grouped_matmul on {arch}: the wgmma/TMA kernels are Hopper-only (sm_90a); \
                     running the portable mma.sync kernel {}",
                    g.name
                )
            });
            Selected { path: Path::Grouped(g), fallback }
        }
        Op::GroupedMatmulSwiglu { r, e, f, k } => {
            // A SwiGLU kernel chosen by name where it takes the shape, else the default one.
            let fused = chosen
                .grouped
                .and_then(|c| GROUPED_KERNELS.iter().find(|g| g.name == c && g.tma.is_some_and(|o| o.swiglu)))
                .filter(|g| tma_fits(g, r, e, 2 * f, k))
                .copied()
                .unwrap_or(GROUPED_SWIGLU);
            if arch.has_wgmma() && tma_fits(&fused, r, e, 2 * f, k) {
                plain(Path::GroupedSwiglu(fused))
            } else {
                let g = grouped(chosen.grouped, arch, r, e, 2 * f, k);
                let fallback = (!arch.has_wgmma()).then(|| {
                    format!(
                        "grouped_matmul_swiglu on {arch}: the fused TMA kernel is Hopper-only (sm_90a); \
                         running the mma.sync kernel {} then the SwiGLU kernel",
                        g.name
                    )
                });
                Selected { path: Path::GroupedThenSwiglu(g), fallback }
            }
        }
        Op::FlashAttention { d, sq } => {
            // The sm90 kernels run on sm_90a only (a chosen one elsewhere gives way to the defaults).
            let runs = |k: &FlashKernel| k.d == d && (!k.sm90a() || arch.has_wgmma());
            let by_name = |n: &str| FLASH_KERNELS.iter().find(|k| k.name == n && runs(k)).copied();
            let sm90_long = (d == 128 && sq >= LONG_SEQUENCE_SM90A).then_some(LONG_FLASH_SM90A);
            let sm90 = arch.has_wgmma().then(|| sm90_long.into_iter().chain(DEFAULT_FLASH_SM90A)).into_iter().flatten();
            let long = (d == 128 && sq >= LONG_SEQUENCE).then_some(LONG_FLASH);
            let wanted = chosen.flash.into_iter().chain(sm90).chain(long).chain(DEFAULT_FLASH).find_map(by_name);
            let fits = |fk: &FlashKernel| fk.smem() <= arch.max_smem_per_block();
            match wanted {
                None => plain(Path::NaiveAttention),
                Some(fk) if fits(&fk) => plain(Path::Flash(fk)),
                // The tile needs more shared memory than this architecture has: the default of its head
                // dim where that fits, else the smallest.
                Some(fk) => {
                    match DEFAULT_FLASH.into_iter().find_map(by_name).filter(fits).or_else(|| {
                        FLASH_KERNELS.iter().filter(|k| runs(k) && fits(k)).min_by_key(|k| k.smem()).copied()
                    }) {
                        Some(small) => Selected {
                            path: Path::Flash(small),
                            fallback: Some(format!(
                                "flash attention on {arch}: {} needs {} KiB of shared memory, {} KiB at most; running {}",
                                fk.name,
                                fk.smem() / 1024,
                                arch.max_smem_per_block() / 1024,
                                small.name
                            )),
                        },
                        None => plain(Path::NaiveAttention),
                    }
                }
            }
        }
        Op::Fp8 => {
            if !Needs::Fp8.allows(arch) {
                return Err(Refused::Arch { op: "fp8", needs: Needs::Fp8.describe(), arch });
            }
            plain(Path::Fp8)
        }
    })
}

/// The grouped GEMM kernel: the chosen one where the architecture has it, its shared memory fits
/// and (TMA) it takes the shape and is no SwiGLU kernel; else on sm_90a the first of
/// `DEFAULT_GROUPED_SM90A` that takes the shape, elsewhere the mma.sync default.
fn grouped(chosen: Option<&str>, arch: Arch, r: usize, e: usize, n: usize, k: usize) -> GroupedKernel {
    let by_name = |n: &str| *GROUPED_KERNELS.iter().find(|k| k.name == n).expect("grouped kernel table");
    let takes = |g: &GroupedKernel| {
        (!g.sm90a || arch.has_wgmma())
            && g.smem_for(e) <= arch.max_smem_per_block()
            && g.tma.is_none_or(|o| !o.swiglu && tma_fits(g, r, e, n, k))
    };
    let named = chosen.and_then(|c| GROUPED_KERNELS.iter().find(|k| k.name == c)).copied();
    if let Some(g) = named.filter(takes) {
        return g;
    }
    if !arch.has_wgmma() {
        return by_name(DEFAULT_GROUPED);
    }
    DEFAULT_GROUPED_SM90A.iter().map(|n| by_name(n)).find(takes).expect("the last default takes every shape")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::cuda::arch::CLAIMED;

    const A100: Arch = CLAIMED[0];
    const H100: Arch = CLAIMED[1];
    const B200: Arch = CLAIMED[2];

    fn pick(op: Op, arch: Arch) -> Selected {
        select(op, arch, Chosen::default()).unwrap()
    }

    fn grouped_name(s: &Selected) -> &'static str {
        match s.path {
            Path::Grouped(g) | Path::GroupedThenSwiglu(g) | Path::GroupedSwiglu(g) => g.name,
            p => panic!("{p:?}"),
        }
    }

    // DeepSeek-V2-Lite's expert GEMM: 16384 tokens x top-6, 64 experts, 2816 x 2048 (gate and up).
    const V2_LITE: Op = Op::GroupedMatmul { r: 98304, e: 64, n: 2816, k: 2048 };

    #[test]
    fn grouped_gemm_by_architecture() {
        let h = pick(V2_LITE, H100);
        assert_eq!((grouped_name(&h), h.fallback), ("grouped_gemm_tma_256_s3e_lean", None));
        for arch in [A100, B200] {
            let s = pick(V2_LITE, arch);
            assert_eq!(grouped_name(&s), "grouped_gemm_128x128", "{arch}");
            let line = s.fallback.unwrap();
            assert!(line.starts_with(&format!("grouped_matmul on {arch}:")), "{line}");
            assert!(line.contains("mma.sync") && line.contains("Hopper-only"), "{line}");
        }
        // V3 and 1024 experts take the TMA kernel; no rows or K % 8 != 0 the wgmma one.
        assert_eq!(
            grouped_name(&pick(Op::GroupedMatmul { r: 131072, e: 256, n: 7168, k: 2048 }, H100)),
            "grouped_gemm_tma_256_s3e_lean"
        );
        assert_eq!(
            grouped_name(&pick(Op::GroupedMatmul { r: 4096, e: 1024, n: 256, k: 256 }, H100)),
            "grouped_gemm_tma_256_s3e_lean"
        );
        assert_eq!(
            grouped_name(&pick(Op::GroupedMatmul { r: 0, e: 8, n: 256, k: 256 }, H100)),
            "grouped_gemm_wgmma_s4"
        );
    }

    #[test]
    fn chosen_grouped_kernels_fall_back_where_they_cannot_run() {
        let with =
            |name, op, arch| grouped_name(&select(op, arch, Chosen { grouped: Some(name), flash: None }).unwrap());
        let small = Op::GroupedMatmul { r: 64, e: 4, n: 64, k: 64 };
        // Hopper kernels chosen by name do not run elsewhere.
        assert_eq!(with("grouped_gemm_wgmma_s4", small, B200), "grouped_gemm_128x128");
        assert_eq!(with("grouped_gemm_tma_256_s4", small, A100), "grouped_gemm_128x128");
        assert_eq!(with("grouped_gemm_wgmma_s4", small, H100), "grouped_gemm_wgmma_s4");
        // 192 KiB of stages: on sm_90a and sm_100a, not in the A100's 163 KiB.
        assert_eq!(with("grouped_gemm_128x256_s4", small, B200), "grouped_gemm_128x256_s4");
        assert_eq!(with("grouped_gemm_128x256_s4", small, A100), "grouped_gemm_128x128");
        // A TMA kernel that does not take the shape falls back through the sm_90a defaults.
        let many = Op::GroupedMatmul { r: 64, e: 1024, n: 64, k: 64 };
        assert_eq!(with("grouped_gemm_tma_256_s4h", many, H100), DEFAULT_GROUPED_SM90A[0]);
        let odd_k = Op::GroupedMatmul { r: 64, e: 4, n: 64, k: 4 };
        assert_eq!(with("grouped_gemm_tma_128_s4e", odd_k, H100), DEFAULT_GROUPED_SM90A[1]);
    }

    #[test]
    fn grouped_swiglu_by_architecture() {
        let op = Op::GroupedMatmulSwiglu { r: 98304, e: 64, f: 1408, k: 2048 };
        assert_eq!(pick(op, H100), Selected { path: Path::GroupedSwiglu(GROUPED_SWIGLU), fallback: None });
        for arch in [A100, B200] {
            let s = pick(op, arch);
            assert!(matches!(s.path, Path::GroupedThenSwiglu(g) if g.name == "grouped_gemm_128x128"), "{s:?}");
            assert!(s.fallback.unwrap().starts_with(&format!("grouped_matmul_swiglu on {arch}:")));
        }
        // On sm_90a a shape the fused kernel does not take composes the two, with no arch note.
        let s = pick(Op::GroupedMatmulSwiglu { r: 64, e: 4, f: 64, k: 4 }, H100);
        assert_eq!(s, Selected { path: Path::GroupedThenSwiglu(GROUPED_KERNELS[4]), fallback: None });
        assert_eq!(GROUPED_KERNELS[4].name, DEFAULT_GROUPED_SM90A[1]);
    }

    #[test]
    fn swiglu_kernels_by_name() {
        let (lean, plain) = ("grouped_gemm_swiglu_tma_256_s4_lean", "grouped_gemm_tma_256_s3e_lean");
        let with = |name, op| select(op, H100, Chosen { grouped: Some(name), flash: None }).unwrap().path;
        let fused = |p: Path| match p {
            Path::GroupedSwiglu(g) => g.name,
            p => panic!("{p:?}"),
        };
        let grouped = |p: Path| match p {
            Path::Grouped(g) => g.name,
            p => panic!("{p:?}"),
        };
        let v2 = Op::GroupedMatmulSwiglu { r: 98304, e: 64, f: 1408, k: 2048 };
        let llama = Op::GroupedMatmulSwiglu { r: 8192, e: 1, f: 14336, k: 4096 };
        for op in [v2, llama] {
            assert_eq!(fused(with(lean, op)), lean);
            // A plain kernel chosen: the default SwiGLU kernel.
            assert_eq!(fused(with(plain, op)), GROUPED_SWIGLU.name);
        }
        // grouped_matmul passes a chosen SwiGLU kernel over; the lean plain kernel runs by name.
        let gemm = Op::GroupedMatmul { r: 98304, e: 64, n: 2816, k: 2048 };
        assert_eq!(grouped(with(lean, gemm)), DEFAULT_GROUPED_SM90A[0]);
        assert_eq!(grouped(with(GROUPED_SWIGLU.name, gemm)), DEFAULT_GROUPED_SM90A[0]);
        assert_eq!(grouped(with(plain, gemm)), plain);
        // Not on other architectures.
        assert!(matches!(select(v2, A100, Chosen { grouped: Some(lean), flash: None }).unwrap().path,
            Path::GroupedThenSwiglu(g) if g.name == "grouped_gemm_128x128"));
    }

    #[test]
    fn flash_attention_runs_everywhere() {
        let flash = |s: Selected| match s.path {
            Path::Flash(k) => (k.name, s.fallback.is_some()),
            p => panic!("{p:?}"),
        };
        for arch in CLAIMED {
            // On sm_90a two KV stages up to 12287 rows, three in L2 sections from 12288; elsewhere 8 warps from
            // 16384.
            let (short, mid, long, d64) = if arch.has_wgmma() {
                let lean3 = "flash_fwd_sm90_d128_s3p_lean_l2_th_mc";
                ("flash_fwd_sm90_d128_s2p_lean_th", lean3, lean3, "flash_fwd_sm90_d64_s2p_w3")
            } else {
                ("flash_fwd_d128_w4m2", "flash_fwd_d128_w4m2", "flash_fwd_d128_w8m2", "flash_fwd_d64_w8m1")
            };
            for sq in [1, 5000, 8192, 12287] {
                assert_eq!(flash(pick(Op::FlashAttention { d: 128, sq }, arch)), (short, false), "{arch} {sq}");
            }
            for sq in [12288, 12345, 16383] {
                assert_eq!(flash(pick(Op::FlashAttention { d: 128, sq }, arch)), (mid, false), "{arch} {sq}");
            }
            assert_eq!(flash(pick(Op::FlashAttention { d: 128, sq: 32768 }, arch)), (long, false));
            assert_eq!(flash(pick(Op::FlashAttention { d: 64, sq: 32768 }, arch)), (d64, false));
            assert_eq!(pick(Op::FlashAttention { d: 96, sq: 128 }, arch).path, Path::NaiveAttention);
        }
        // sm_86/sm_89 have 99 KiB per block: the 128 KiB long-sequence tile gives way, with a note.
        let ada: Arch = "sm_89".parse().unwrap();
        assert_eq!(flash(pick(Op::FlashAttention { d: 128, sq: 32768 }, ada)), ("flash_fwd_d128_w4m2", true));
        let chosen = Chosen { flash: Some("flash_fwd_d128_w8m1"), grouped: None };
        let s = select(Op::FlashAttention { d: 128, sq: 32768 }, H100, chosen).unwrap();
        assert_eq!(flash(s), ("flash_fwd_d128_w8m1", false));
        // The Hopper kernel chosen by name runs on sm_90a only; elsewhere the defaults.
        let chosen = Chosen { flash: Some("flash_fwd_sm90_d128_s3"), grouped: None };
        let on = |arch| flash(select(Op::FlashAttention { d: 128, sq: 8192 }, arch, chosen).unwrap());
        assert_eq!(on(H100), ("flash_fwd_sm90_d128_s3", false));
        assert_eq!(on(A100), ("flash_fwd_d128_w4m2", false));
        assert_eq!(on(B200), ("flash_fwd_d128_w4m2", false));
        assert_eq!(flash(pick(Op::FlashAttention { d: 64, sq: 8192 }, H100)), ("flash_fwd_sm90_d64_s2p_w3", false));
        // A d = 128 kernel chosen by name leaves d = 64 on its default; another d = 64 kernel by name.
        let s = select(Op::FlashAttention { d: 64, sq: 8192 }, H100, chosen).unwrap();
        assert_eq!(flash(s), ("flash_fwd_sm90_d64_s2p_w3", false));
        let chosen = Chosen { flash: Some("flash_fwd_sm90_d64_s2p_l2"), grouped: None };
        let on = |arch| flash(select(Op::FlashAttention { d: 64, sq: 8192 }, arch, chosen).unwrap());
        assert_eq!(on(H100), ("flash_fwd_sm90_d64_s2p_l2", false));
        assert_eq!(on(A100), ("flash_fwd_d64_w8m1", false));
    }

    #[test]
    fn fp8_is_refused_on_ampere_naming_the_architecture() {
        let err = select(Op::Fp8, A100, Chosen::default()).unwrap_err();
        assert_eq!(err.to_string(), "fp8 needs sm_89 and newer (FP8 e4m3); this GPU is sm_80");
        assert_eq!(pick(Op::Fp8, H100).path, Path::Fp8);
        assert_eq!(pick(Op::Fp8, B200).path, Path::Fp8);
        assert_eq!(pick(Op::Fp8, "sm_89".parse().unwrap()).path, Path::Fp8);
    }
}
