//! GPU architectures, in one place: what each kernel file needs to compile, which
//! architectures the project claims, and what each architecture has (FP8, wgmma/TMA,
//! shared memory per block). The kernel selection (`select`), the NVRTC check
//! (tests/kernel_arch.rs) and the README's table all read these declarations.

use std::fmt;
use std::str::FromStr;

/// An NVRTC target such as `sm_80`, `sm_90a` or `sm_100a`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Arch {
    pub major: u32,
    pub minor: u32,
    /// The architecture-specific `a` target (wgmma and setmaxnreg on sm_90a).
    pub specific: bool,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ArchError {
    #[error("{0:?} is not an NVRTC target like sm_80, sm_90a or sm_100a")]
    Parse(String),
}

/// The architectures every kernel is compiled for in CI: Ampere (A100), Hopper (H100/H200),
/// Blackwell (B200/GB200).
pub const CLAIMED: [Arch; 3] = [Arch::new(8, 0, false), Arch::new(9, 0, true), Arch::new(10, 0, true)];

impl Arch {
    pub const fn new(major: u32, minor: u32, specific: bool) -> Arch {
        Arch { major, minor, specific }
    }

    /// The NVRTC target for a compute capability: the `a` variant from Hopper on.
    pub fn for_capability(major: u32, minor: u32) -> Arch {
        Arch::new(major, minor, major >= 9)
    }

    /// Compute capability as one number: 80, 90, 100.
    pub fn cc(self) -> u32 {
        self.major * 10 + self.minor
    }

    /// FP8 e4m3 conversions (cvt.e4m3x2) and cuBLASLt FP8 GEMMs: sm_89 (Ada) and newer.
    pub fn has_fp8(self) -> bool {
        self.cc() >= 89
    }

    /// Warpgroup MMA (wgmma) and setmaxnreg, which the Hopper grouped GEMMs use: sm_90a only
    /// (Blackwell's tensor cores are driven by tcgen05 instead).
    pub fn has_wgmma(self) -> bool {
        self.major == 9 && self.minor == 0 && self.specific
    }

    /// Largest dynamic shared memory a block may opt in to, in bytes (CUDA programming guide,
    /// "Technical Specifications per Compute Capability").
    pub fn max_smem_per_block(self) -> u32 {
        match self.cc() {
            80 | 87 => 163 * 1024,
            90 | 100 | 103 | 110 => 227 * 1024,
            // sm_86, sm_89, sm_120 and anything unknown: the smallest of the family.
            _ => 99 * 1024,
        }
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sm_{}{}{}", self.major, self.minor, if self.specific { "a" } else { "" })
    }
}

impl FromStr for Arch {
    type Err = ArchError;
    fn from_str(s: &str) -> Result<Arch, ArchError> {
        let err = || ArchError::Parse(s.to_string());
        let digits = s.strip_prefix("sm_").ok_or_else(err)?;
        let (digits, specific) = match digits.strip_suffix('a') {
            Some(d) => (d, true),
            None => (digits, false),
        };
        if digits.len() < 2 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(err());
        }
        let (major, minor) = digits.split_at(digits.len() - 1);
        Ok(Arch::new(major.parse().map_err(|_| err())?, minor.parse().map_err(|_| err())?, specific))
    }
}

/// What a kernel file needs of the architecture to compile.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Needs {
    /// bf16 mma.sync, ldmatrix, cp.async: sm_80 and newer.
    Sm80,
    /// FP8 e4m3 conversions: sm_89 and newer.
    Fp8,
    /// wgmma (and TMA, mbarriers, clusters, setmaxnreg): sm_90a only.
    Wgmma,
}

impl Needs {
    pub fn allows(self, arch: Arch) -> bool {
        match self {
            Needs::Sm80 => arch.cc() >= 80,
            Needs::Fp8 => arch.has_fp8(),
            Needs::Wgmma => arch.has_wgmma(),
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Needs::Sm80 => "sm_80 and newer",
            Needs::Fp8 => "sm_89 and newer (FP8 e4m3)",
            Needs::Wgmma => "sm_90a only (wgmma)",
        }
    }
}

/// Every kernels/*.cu file and what it needs (a test checks that the list is complete).
pub const KERNEL_FILES: &[(&str, Needs)] = &[
    ("activation.cu", Needs::Sm80),
    ("attention.cu", Needs::Sm80),
    ("elementwise.cu", Needs::Sm80),
    ("flash_attention.cu", Needs::Sm80),
    ("flash_attention_sm90.cu", Needs::Wgmma),
    ("fp8.cu", Needs::Fp8),
    ("grouped_gemm.cu", Needs::Sm80),
    ("grouped_gemm_fp8.cu", Needs::Wgmma),
    ("grouped_gemm_sm90.cu", Needs::Wgmma),
    ("grouped_gemm_tma.cu", Needs::Wgmma),
    ("norm.cu", Needs::Sm80),
    ("permute.cu", Needs::Sm80),
    ("rope.cu", Needs::Sm80),
    ("routing.cu", Needs::Sm80),
];

/// The hot kernels: their ptxas register and spill counts are printed and their spills checked.
pub const HOT_FILES: [&str; 6] = [
    "flash_attention.cu",
    "flash_attention_sm90.cu",
    "grouped_gemm.cu",
    "grouped_gemm_fp8.cu",
    "grouped_gemm_sm90.cu",
    "grouped_gemm_tma.cu",
];

/// What kernels/`file` needs; None for a file that is not declared.
pub fn needs(file: &str) -> Option<Needs> {
    KERNEL_FILES.iter().find(|(f, _)| *f == file).map(|(_, n)| *n)
}

/// True when kernels/`file` is declared to compile for `arch`.
pub fn compiles_for(file: &str, arch: Arch) -> bool {
    needs(file).is_some_and(|n| n.allows(arch))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_print() {
        for s in ["sm_80", "sm_86", "sm_89", "sm_90a", "sm_100a", "sm_120a", "sm_90"] {
            assert_eq!(s.parse::<Arch>().unwrap().to_string(), s);
        }
        assert_eq!("sm_100a".parse::<Arch>().unwrap(), Arch::new(10, 0, true));
        for bad in ["", "sm_", "sm_8", "90a", "sm_9x", "sm_a"] {
            assert_eq!(bad.parse::<Arch>(), Err(ArchError::Parse(bad.into())), "{bad}");
        }
        assert_eq!(Arch::for_capability(9, 0).to_string(), "sm_90a");
        assert_eq!(Arch::for_capability(8, 6).to_string(), "sm_86");
        assert_eq!(Arch::for_capability(10, 0).to_string(), "sm_100a");
    }

    #[test]
    fn features_by_architecture() {
        let [a100, h100, b200] = CLAIMED;
        assert!(!a100.has_fp8() && h100.has_fp8() && b200.has_fp8());
        assert!("sm_89".parse::<Arch>().unwrap().has_fp8());
        assert!(!a100.has_wgmma() && h100.has_wgmma() && !b200.has_wgmma());
        assert!(!"sm_90".parse::<Arch>().unwrap().has_wgmma(), "wgmma needs the sm_90a target");
        assert_eq!(a100.max_smem_per_block(), 163 * 1024);
        assert_eq!(h100.max_smem_per_block(), b200.max_smem_per_block());
        assert_eq!("sm_86".parse::<Arch>().unwrap().max_smem_per_block(), 99 * 1024);
    }

    #[test]
    fn declared_files_by_architecture() {
        let names =
            |a: Arch| KERNEL_FILES.iter().filter(|(f, _)| !compiles_for(f, a)).map(|(f, _)| *f).collect::<Vec<_>>();
        let [a100, h100, b200] = CLAIMED;
        assert_eq!(names(h100), Vec::<&str>::new());
        assert_eq!(
            names(b200),
            ["flash_attention_sm90.cu", "grouped_gemm_fp8.cu", "grouped_gemm_sm90.cu", "grouped_gemm_tma.cu"]
        );
        assert_eq!(
            names(a100),
            ["flash_attention_sm90.cu", "fp8.cu", "grouped_gemm_fp8.cu", "grouped_gemm_sm90.cu", "grouped_gemm_tma.cu"]
        );
        assert!(HOT_FILES.iter().all(|f| needs(f).is_some()));
        assert_eq!(needs("nope.cu"), None);
    }

    #[test]
    fn every_kernel_file_is_declared() {
        let mut files = super::super::compile::kernel_files();
        files.sort();
        let mut declared: Vec<&str> = KERNEL_FILES.iter().map(|(f, _)| *f).collect();
        declared.sort();
        assert_eq!(files, declared, "kernels/*.cu and arch::KERNEL_FILES differ");
    }
}
