//! Block-scaled FP8 on the device: the quantisers of kernels/fp8.cu (1 x 128 and 128 x 128
//! blocks) and the FP8 grouped GEMM of kernels/grouped_gemm_fp8.cu (sm_90a only), with its table
//! of instantiations and the choice among them.

use super::*;
use crate::backend::block_fp8::{self, BlockFp8, Blocks};
use arch::Arch;

/// An instantiation of the TF macro in kernels/grouped_gemm_fp8.cu.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fp8Kernel {
    pub name: &'static str,
    pub stages: usize,
    pub swiglu: bool,
    /// Rows per tile: 128, or 256 (two 128-row waves per k-tile on one weight tile).
    pub rows: usize,
    /// Weight rows per tile (BN in the kernel): 128, or 192 (DeepGEMM's BLOCK_N: m64n192k32 wgmmas,
    /// a tile spanning two 128-row scale blocks).
    pub bn: usize,
    /// The lean main loop (LEAN in the kernel, TFL there): fewer instructions per k-tile, scales
    /// loaded a k-tile ahead, warp-uniform descriptors (bench/results/2026-12-02-cpu/fp8sass).
    pub lean: bool,
    /// Clusters of two blocks on neighbouring row blocks, the weight tile multicast to both when they
    /// belong to one expert (MC in the kernel; DeepGEMM's cluster_m = 2).
    pub multicast: bool,
    /// Runs only when chosen by name: `_m256` passes the GPU tests but was slower than the defaults
    /// on the H200 (BENCHMARKS.md, session 4); so was `_lean_s6` (session 7).
    pub by_name: bool,
}

impl Fp8Kernel {
    /// Output columns per tile: the weight rows, half of them with the SwiGLU epilogue (gate and up).
    pub fn outputs(&self) -> usize {
        if self.swiglu { self.bn / 2 } else { self.bn }
    }

    /// `rows` by 128 (K) e4m3 of X and `bn` x 128 of W per stage, the epilogue's bf16 staging
    /// (64 rows x outputs per consumer warpgroup, in whole 64-column slabs), the mbarriers and the
    /// tile list (8 bytes per expert, plus 8).
    pub fn smem_for(&self, e: usize) -> u32 {
        let stages = self.stages * (self.rows + self.bn) * 128;
        let staging = 2 * 64 * self.outputs().next_multiple_of(64) * 2;
        (stages + staging + 16 * self.stages + 8 * e + 8) as u32
    }
}

const fn tf(name: &'static str, stages: usize, swiglu: bool, rows: usize) -> Fp8Kernel {
    // 256-row tiles were slower on the H200 (session 4).
    Fp8Kernel { name, stages, swiglu, rows, bn: 128, lean: false, multicast: false, by_name: rows != 128 }
}

/// The lean main loop on 128 weight rows (by name: no faster than `s6` on the H200, session 7).
const fn tfl(name: &'static str, stages: usize, swiglu: bool, rows: usize) -> Fp8Kernel {
    Fp8Kernel { name, stages, swiglu, rows, bn: 128, lean: true, multicast: false, by_name: true }
}

/// The lean main loop on `bn` weight rows per tile, with or without multicast (TFLN in the kernel).
const fn tfln(name: &'static str, stages: usize, swiglu: bool, bn: usize, multicast: bool) -> Fp8Kernel {
    Fp8Kernel { name, stages, swiglu, rows: 128, bn, lean: true, multicast, by_name: false }
}

/// The multicast kernel runs by default where the experts average at most this many rows (8 row
/// blocks): each weight tile then serves few row blocks, and loading half of it per CTA pays. On the
/// H200 (three runs, sessions 7 and 8) 1.01-1.08x `n192` at V3's gate/up and 1.02-1.03x at its down
/// (512 rows an expert), 0.89-0.93x and 0.95-0.98x at V2-Lite's (1536).
pub const MULTICAST_MAX_ROWS: usize = 1024;

/// In order of preference for each epilogue: the first whose shared memory fits runs (those
/// marked `by_name` only by name). First DeepGEMM's configuration for our shapes
/// (bench/results/2026-12-02-cpu/fp8n192): 128 x 192 tiles, 4 stages, the lean main loop; with
/// SwiGLU, 96 gate and 96 up rows a tile. On the H200 (session 7, BENCHMARKS.md) 1.11-1.21x `s6`
/// at the V2-Lite and V3 shapes, and 1.11x `swiglu_s6`.
pub const FP8_KERNELS: &[Fp8Kernel] = &[
    // The weight tile multicast to a cluster of two (up to MULTICAST_MAX_ROWS an expert).
    tfln("grouped_gemm_fp8_n192_lean_s4_mc", 4, false, 192, true),
    tfln("grouped_gemm_fp8_n192_lean_s4", 4, false, 192, false),
    tfln("grouped_gemm_fp8_swiglu_n192_lean_s4", 4, true, 192, false),
    tf("grouped_gemm_fp8_s6", 6, false, 128),
    tf("grouped_gemm_fp8_s5", 5, false, 128),
    tf("grouped_gemm_fp8_s4", 4, false, 128),
    tf("grouped_gemm_fp8_swiglu_s6", 6, true, 128),
    tf("grouped_gemm_fp8_swiglu_s5", 5, true, 128),
    tf("grouped_gemm_fp8_m256_s4", 4, false, 256),
    tf("grouped_gemm_fp8_swiglu_m256_s4", 4, true, 256),
    tfl("grouped_gemm_fp8_lean_s6", 6, false, 128),
    tfl("grouped_gemm_fp8_swiglu_lean_s6", 6, true, 128),
];

/// Experts the FP8 kernel's tile list holds at most (as the bf16 TMA kernel).
pub const FP8_MAX_EXPERTS: usize = 1024;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Fp8Refused {
    #[error("grouped_matmul_fp8 needs sm_90a only (wgmma); this GPU is {0}")]
    Arch(Arch),
    #[error("grouped_matmul_fp8: {0} experts, at most {FP8_MAX_EXPERTS}")]
    Experts(usize),
}

/// The kernel for `r` rows over `e` experts (with or without the SwiGLU epilogue) on `arch`: the one
/// chosen by name when it has that epilogue and fits, else the first of the table that fits (the
/// multicast one up to MULTICAST_MAX_ROWS an expert).
pub fn choose_fp8(
    arch: Arch,
    r: usize,
    e: usize,
    swiglu: bool,
    chosen: Option<&str>,
) -> std::result::Result<Fp8Kernel, Fp8Refused> {
    if !arch.has_wgmma() {
        return Err(Fp8Refused::Arch(arch));
    }
    let fits = |k: &&Fp8Kernel| k.swiglu == swiglu && k.smem_for(e) <= arch.max_smem_per_block();
    let named = FP8_KERNELS.iter().filter(|k| Some(k.name) == chosen).find(fits);
    let default =
        || FP8_KERNELS.iter().filter(|k| !k.by_name && (!k.multicast || r <= MULTICAST_MAX_ROWS * e)).find(fits);
    named.or_else(default).copied().filter(|_| e <= FP8_MAX_EXPERTS).ok_or(Fp8Refused::Experts(e))
}

impl CudaBackend {
    pub(crate) fn quantize_blocks_op(&self, x: &Tensor, blocks: Blocks) -> Result<BlockFp8> {
        self.select(select::Op::Fp8)?;
        let dims @ (g, m, k) = block_fp8::quantize_dims(x, blocks)?;
        let q = self.alloc(&x.shape, DType::F8)?;
        let scales = self.alloc(&block_fp8::scale_shape(blocks, dims), DType::F32)?;
        let (xp, qp, sp, one) = (self.ptr(x)?, self.ptr(&q)?, self.ptr(&scales)?, self.scale_ptr(&q)?);
        let kb = k.div_ceil(block_fp8::BLOCK);
        match blocks {
            Blocks::Rows => {
                let what = || format!("x {x:?}: {m} rows x {kb} scale blocks, under 2^31");
                check("quantize_blocks", m * kb < i32::MAX as usize, what)?;
                // Half a warp per (row, k block), 4 each (QR_ITEMS), 16 half-warps a block.
                let grid = ((m * kb).div_ceil(64).max(1) as u32, 1, 1);
                self.launch("fp8.cu", "quantize_rows_bf16", grid, 256, 0, args![xp, qp, sp, one, m, k])?;
            }
            Blocks::Tiles => {
                let grid = (kb as u32, m.div_ceil(128) as u32, g as u32);
                self.launch("fp8.cu", "quantize_tiles_bf16", grid, 256, 0, args![xp, qp, sp, one, m, k])?;
            }
        }
        Ok(BlockFp8 { q, scales, blocks })
    }

    pub(crate) fn grouped_gemm_fp8(
        &self,
        x: &BlockFp8,
        w: &BlockFp8,
        offsets: &Tensor,
        swiglu: bool,
    ) -> Result<Tensor> {
        let (r, e, nw, k) = block_fp8::grouped_dims(x, w, offsets, swiglu)?;
        let chosen = *self.choice.grouped_fp8.read().unwrap();
        let fk = choose_fp8(self.target(), r, e, swiglu, chosen)
            .map_err(|err| Error::Unsupported { op: "grouped_matmul_fp8", what: err.to_string() })?;
        let n = if swiglu { nw / 2 } else { nw };
        let y = self.alloc(&[r, n], DType::Bf16)?;
        if r == 0 || n == 0 {
            return Ok(y);
        }
        let (xp, wp, yp) = (self.ptr(&x.q)?, self.ptr(&w.q)?, self.ptr(&y)?);
        let mx = self.tensor_map(driver::TmaElem::E4m3, xp, r, k, fk.rows as u32, 128)?;
        // The W box: the tile's weight rows (with SwiGLU its gate half, then its up half; with
        // multicast, the half that each CTA of a pair loads).
        let w_box = if fk.multicast { fk.bn / 2 } else { fk.outputs() };
        let mw = self.tensor_map(driver::TmaElem::E4m3, wp, e * nw, k, w_box as u32, 128)?;
        // The output by TMA where its rows are 16-byte strided; otherwise the kernel stores it itself.
        let y_tma = n.is_multiple_of(8);
        let my = if y_tma { self.tensor_map(driver::TmaElem::Bf16, yp, r, n, 64, 64)? } else { mx };
        let (row_blocks, col_blocks) = (r.div_ceil(fk.rows) + e, n.div_ceil(fk.outputs()));
        let smem = fk.smem_for(e);
        let kernel = ("grouped_gemm_fp8.cu", fk.name);
        // Persistent: at most one block per SM, or as many pairs as can be resident.
        let (grid, cluster) = if fk.multicast {
            let pairs = row_blocks.div_ceil(2) * col_blocks;
            let resident = self.resident_pairs_of(kernel.0, kernel.1, 384, smem)? as usize;
            check("grouped_matmul_fp8", resident > 0, || format!("{}: no cluster of two fits", fk.name))?;
            ((2 * pairs.min(resident)) as u32, 2)
        } else {
            ((row_blocks * col_blocks).min(self.sm_count() as usize) as u32, 1)
        };
        let (sx, sw, op) = (self.ptr(&x.scales)?, self.ptr(&w.scales)?, self.ptr(offsets)?);
        let mut slots = [sx, sw, op, yp, r as u64, e as u64, n as u64, k as u64, y_tma as u64];
        let l = driver::Launch { grid: (grid, 1, 1), block: 384, smem, cluster };
        // SAFETY: the parameters of the TF kernels in kernels/grouped_gemm_fp8.cu: three 128-byte
        // tensor maps, four pointers and five ints (read from the low half of their slots).
        unsafe { self.launch_maps(kernel, l, &mut [mx, mw, my], &mut slots)? };
        Ok(y)
    }

    /// Runs this FP8 grouped GEMM instantiation (for its epilogue) instead of the default; None
    /// restores it.
    pub fn choose_fp8_kernel(&self, name: Option<&str>) -> Result<()> {
        let k = match name {
            None => None,
            Some(n) => {
                Some(FP8_KERNELS.iter().find(|k| k.name == n).map(|k| k.name).ok_or_else(|| Error::Unsupported {
                    op: "fp8 kernel",
                    what: format!("{n} (known: {:?})", FP8_KERNELS.iter().map(|k| k.name).collect::<Vec<_>>()),
                })?)
            }
        };
        *self.choice.grouped_fp8.write().unwrap() = k;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::cuda::arch::CLAIMED;

    #[test]
    fn table_matches_the_kernel_source() {
        let src = compile::source_of("grouped_gemm_fp8.cu").unwrap();
        for k in FP8_KERNELS {
            let (name, st, sw, rows, bn, mc) = (k.name, k.stages, k.swiglu, k.rows, k.bn, k.multicast);
            let inst = match (k.lean, bn, mc) {
                (false, 128, false) => format!("TF({name}, {st}, {sw}, {rows})"),
                (true, 128, false) => format!("TFL({name}, {st}, {sw}, {rows})"),
                (true, _, _) => format!("TFLN({name}, {st}, {sw}, {rows}, {bn}, {mc})"),
                _ => panic!("{name}: {bn} weight rows and multicast only with the lean main loop"),
            };
            assert!(src.contains(&inst), "{inst} not instantiated");
        }
    }

    #[test]
    fn choice_by_architecture_rows_experts_and_name() {
        let [a100, h100, b200] = CLAIMED;
        for arch in [a100, b200] {
            let err = choose_fp8(arch, 65_536, 64, false, None).unwrap_err();
            assert_eq!(err.to_string(), format!("grouped_matmul_fp8 needs sm_90a only (wgmma); this GPU is {arch}"));
        }
        // The 128 x 192 lean kernels at every expert count (their smem is checked below), the plain one with
        // the weight tile multicast where the experts average at most MULTICAST_MAX_ROWS rows.
        let (n192, sw192, mc) = (
            "grouped_gemm_fp8_n192_lean_s4",
            "grouped_gemm_fp8_swiglu_n192_lean_s4",
            "grouped_gemm_fp8_n192_lean_s4_mc",
        );
        for e in [1, 64, 256, 1024] {
            let few = MULTICAST_MAX_ROWS * e;
            assert_eq!(choose_fp8(h100, few, e, false, None).unwrap().name, mc);
            assert_eq!(choose_fp8(h100, few + 1, e, false, None).unwrap().name, n192);
            assert_eq!(choose_fp8(h100, few, e, true, None).unwrap().name, sw192);
            assert_eq!(choose_fp8(h100, few + 1, e, true, None).unwrap().name, sw192);
        }
        // V3 (8192 tokens, top 8, 256 experts: 256 rows an expert) and V2-Lite (16384, top 6, 64: 1536).
        assert_eq!(choose_fp8(h100, 65_536, 256, false, None).unwrap().name, mc);
        assert_eq!(choose_fp8(h100, 98_304, 64, false, None).unwrap().name, n192);
        let at = |e, name| choose_fp8(h100, 1 << 21, e, false, name);
        // Six stages (192 KiB) and the staging leave room for 256 experts' tile list, not 1024.
        let s6 = Some("grouped_gemm_fp8_s6");
        assert_eq!(at(256, s6).unwrap().name, "grouped_gemm_fp8_s6");
        assert_eq!(at(1024, s6).unwrap().name, n192);
        assert_eq!(at(64, Some("grouped_gemm_fp8_s4")).unwrap().name, "grouped_gemm_fp8_s4");
        // A name with the other epilogue is not taken.
        assert_eq!(choose_fp8(h100, 1 << 21, 64, true, Some("grouped_gemm_fp8_s4")).unwrap().name, sw192);
        assert_eq!(at(1025, None), Err(Fp8Refused::Experts(1025)));
        // The kernels that lost on the H200 (256-row tiles, lean on 128 rows) run only when named.
        assert_eq!(FP8_KERNELS.iter().filter(|k| k.by_name).count(), 4);
        for r in [64, 1 << 21] {
            let by_name = FP8_KERNELS.iter().filter(|f| f.by_name);
            assert!(by_name.clone().all(|f| choose_fp8(h100, r, 64, f.swiglu, None).unwrap() != *f));
        }
        // Four 256-row stages (192 KiB) and the staging fit 256 experts' tile list, not 1024 (the
        // SwiGLU one, with half the staging, fits 1024).
        let m256 = Some("grouped_gemm_fp8_m256_s4");
        assert_eq!(at(256, m256).unwrap().rows, 256);
        assert_eq!(at(1024, m256).unwrap().name, n192);
        assert_eq!(choose_fp8(h100, 1 << 21, 1024, true, Some("grouped_gemm_fp8_swiglu_m256_s4")).unwrap().rows, 256);
        // Four 128 x 192 stages (160 KiB) and 48 KiB of staging leave room for 1024 experts' tile
        // list (8 KiB) in 227 KiB. The name is not taken for the SwiGLU epilogue, which it lacks.
        let k = at(1024, Some(n192)).unwrap();
        assert_eq!((k.name, k.bn, k.outputs(), k.smem_for(1024)), (n192, 192, 192, 212_992 + 64 + 8 * 1024 + 8));
        assert_eq!(choose_fp8(h100, 1 << 21, 1024, true, Some(n192)).unwrap().name, sw192);
        // With SwiGLU: 96 outputs a tile, staged in two 64-column slabs (32 KiB for both warpgroups).
        let k = choose_fp8(h100, 1 << 21, 1024, true, Some(sw192)).unwrap();
        assert_eq!((k.name, k.outputs(), k.smem_for(1024)), (sw192, 96, 163_840 + 32_768 + 64 + 8 * 1024 + 8));
        // The multicast one: the same shared memory as `n192` (each CTA holds the whole weight tile).
        let (m, p) = (at(1024, Some(mc)).unwrap(), at(1024, Some(n192)).unwrap());
        assert!(m.multicast && !p.multicast && m.smem_for(1024) == p.smem_for(1024));
    }
}
