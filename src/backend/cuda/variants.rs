//! The tile configurations compiled for the flash attention and grouped GEMM
//! kernels (the tables mirror the instantiation macros at the end of
//! kernels/flash_attention.cu and kernels/grouped_gemm.cu), and which one runs.

use super::*;

/// A flash attention instantiation: `warps` warps each owning `mt` x 16 query rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlashKernel {
    pub name: &'static str,
    /// The same tiles writing an f32 output (partials merged by lse).
    pub name_f32o: &'static str,
    pub d: usize,
    pub warps: usize,
    pub mt: usize,
}

impl FlashKernel {
    /// Key tile of the kernel (FA_BKV).
    const BKV: usize = 64;
    pub fn block_q(&self) -> usize {
        self.warps * self.mt * 16
    }
    pub fn threads(&self) -> u32 {
        (self.warps * 32) as u32
    }
    /// Q tile plus double-buffered K and V tiles.
    pub fn smem(&self) -> u32 {
        ((self.block_q() + 4 * Self::BKV) * self.d * 2) as u32
    }
}

pub const FLASH_KERNELS: &[FlashKernel] = &[
    FlashKernel { name: "flash_fwd_d128_w8m1", name_f32o: "flash_fwd_d128_w8m1_f32o", d: 128, warps: 8, mt: 1 },
    FlashKernel { name: "flash_fwd_d128_w4m2", name_f32o: "flash_fwd_d128_w4m2_f32o", d: 128, warps: 4, mt: 2 },
    FlashKernel { name: "flash_fwd_d128_w8m2", name_f32o: "flash_fwd_d128_w8m2_f32o", d: 128, warps: 8, mt: 2 },
    FlashKernel { name: "flash_fwd_d64_w8m1", name_f32o: "flash_fwd_d64_w8m1_f32o", d: 64, warps: 8, mt: 1 },
    FlashKernel { name: "flash_fwd_d64_w4m2", name_f32o: "flash_fwd_d64_w4m2_f32o", d: 64, warps: 4, mt: 2 },
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
}

const fn mma_sync(name: &'static str, bm: usize, bn: usize, stages: usize) -> GroupedKernel {
    // stages x (A tile + B tile) of 64-wide bf16 rows.
    let smem = (stages * (bm + bn) * 64 * 2) as u32;
    GroupedKernel { name, file: "grouped_gemm.cu", bm, bn, threads: 256, stages, smem, sm90a: false }
}

const fn wgmma(name: &'static str, bn: usize, stages: usize) -> GroupedKernel {
    // Plus 1 KiB to align the 1024-byte swizzle atoms.
    let smem = (stages * (128 + bn) * 64 * 2 + 1024) as u32;
    GroupedKernel { name, file: "grouped_gemm_sm90.cu", bm: 128, bn, threads: 256, stages, smem, sm90a: true }
}

pub const GROUPED_KERNELS: &[GroupedKernel] = &[
    mma_sync("grouped_gemm_128x128", 128, 128, 3),
    mma_sync("grouped_gemm_128x256", 128, 256, 3),
    mma_sync("grouped_gemm_256x128", 256, 128, 3),
    mma_sync("grouped_gemm_128x256_s4", 128, 256, 4),
    wgmma("grouped_gemm_wgmma_s4", 256, 4),
    wgmma("grouped_gemm_wgmma_s4w", 256, 4),
    wgmma("grouped_gemm_wgmma_128_s3", 128, 3),
    wgmma("grouped_gemm_wgmma_128_s3w", 128, 3),
];

/// Defaults, from bench/run_ops.sh on an H100 (BENCHMARKS.md).
const LONG_SEQUENCE: usize = 16384;
const DEFAULT_FLASH: [&str; 2] = ["flash_fwd_d128_w4m2", "flash_fwd_d64_w8m1"];
const DEFAULT_GROUPED: &str = "grouped_gemm_128x128";
const DEFAULT_GROUPED_SM90A: &str = "grouped_gemm_wgmma_s4";

#[derive(Default)]
pub(crate) struct Choice {
    flash: std::sync::RwLock<Option<&'static str>>,
    grouped: std::sync::RwLock<Option<&'static str>>,
}

impl CudaBackend {
    /// Runs this flash attention instantiation (for its head dim) instead of the default; None restores it.
    pub fn choose_flash_kernel(&self, name: Option<&str>) -> Result<()> {
        let k = match name {
            None => None,
            Some(n) => {
                Some(FLASH_KERNELS.iter().find(|k| k.name == n).map(|k| k.name).ok_or_else(|| Error::Unsupported {
                    op: "flash kernel",
                    what: format!("{n} (known: {:?})", FLASH_KERNELS.iter().map(|k| k.name).collect::<Vec<_>>()),
                })?)
            }
        };
        *self.choice.flash.write().unwrap() = k;
        Ok(())
    }

    /// Runs this grouped GEMM instantiation instead of the default; None restores it.
    pub fn choose_grouped_kernel(&self, name: Option<&str>) -> Result<()> {
        let k = match name {
            None => None,
            Some(n) => Some(GROUPED_KERNELS.iter().find(|k| k.name == n).map(|k| k.name).ok_or_else(|| {
                Error::Unsupported {
                    op: "grouped kernel",
                    what: format!("{n} (known: {:?})", GROUPED_KERNELS.iter().map(|k| k.name).collect::<Vec<_>>()),
                }
            })?),
        };
        if let Some(gk) = GROUPED_KERNELS.iter().find(|g| Some(g.name) == k)
            && gk.sm90a
            && self.arch() != "sm_90a"
        {
            return Err(Error::Unsupported { op: "grouped kernel", what: format!("{} on {}", gk.name, self.arch()) });
        }
        *self.choice.grouped.write().unwrap() = k;
        Ok(())
    }

    /// The flash kernel for head dim `d` and `sq` query rows: the chosen one, else the
    /// default (for d = 128, 32-row warps: 4 per block up to 16k rows, 8 beyond, as measured).
    pub(crate) fn flash_kernel(&self, d: usize, sq: usize) -> Option<FlashKernel> {
        let chosen = *self.choice.flash.read().unwrap();
        let by_name = |n: &str| FLASH_KERNELS.iter().find(|k| k.name == n && k.d == d).copied();
        if let Some(k) = chosen.and_then(by_name) {
            return Some(k);
        }
        if d == 128 && sq >= LONG_SEQUENCE {
            return by_name("flash_fwd_d128_w8m2");
        }
        DEFAULT_FLASH.iter().find_map(|n| by_name(n))
    }

    pub(crate) fn grouped_kernel(&self) -> GroupedKernel {
        let default = if self.arch() == "sm_90a" { DEFAULT_GROUPED_SM90A } else { DEFAULT_GROUPED };
        let name = self.choice.grouped.read().unwrap().unwrap_or(default);
        *GROUPED_KERNELS.iter().find(|k| k.name == name).expect("grouped kernel table")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_match_the_kernel_sources() {
        let fa = compile::source_of("flash_attention.cu").unwrap();
        for k in FLASH_KERNELS {
            let inst = format!("FA({}, {}, {}, {},", k.name, k.d, k.warps, k.mt);
            assert!(fa.contains(&inst), "{inst} not instantiated");
        }
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
        for k in GROUPED_KERNELS.iter().filter(|k| k.file != "grouped_gemm.cu") {
            let src = compile::source_of(k.file).unwrap();
            let inst = format!("WG({}, {}, {},", k.name, k.stages, k.bn / 128);
            assert!(src.contains(&inst), "{inst} not instantiated");
        }
    }
}
