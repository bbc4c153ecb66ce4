//! Launch of the warp-specialised Hopper flash attention (kernels/flash_attention_sm90.cu): three
//! tensor maps over q [sq, hq, d], k and v [sk, hkv, d] (boxes of 64 columns x 1 head x 128 rows, Q's
//! of the block's 128 or 192, 128-byte swizzle, zero fill past sq / sk), then the same scalars as the
//! mma.sync kernel.

use super::tiles::FlashKernel;
use super::*;
use crate::ops::attention::Dims;

/// What the launch needs besides the tensors.
pub(crate) struct FlashArgs {
    pub delta: i64,
    pub causal: bool,
    pub scale_log2: f32,
    pub f32_out: bool,
}

/// The grid of `fk` fits: query tiles on y (at most 65535), or with L2 sections or a persistent grid
/// hq x tiles tile indices in an int.
pub(crate) fn sm90_grid_fits(fk: &FlashKernel, hq: usize, sq: usize) -> bool {
    let tiles = sq.div_ceil(fk.block_q());
    if fk.l2_sections || fk.persistent() { hq * tiles <= i32::MAX as usize } else { tiles <= 65535 }
}

impl CudaBackend {
    /// Runs `fk` (an sm90 kernel) on device pointers q, k, v, out, lse.
    pub(crate) fn flash_sm90(&self, fk: &FlashKernel, ptrs: [u64; 5], n: Dims, a: FlashArgs) -> Result<()> {
        // A cluster pairs two query heads of one KV head: with an odd group the twin without multicast runs
        // (looked up only then, not at every launch).
        let fk = if fk.kv_multicast && !(n.hq / n.hkv).is_multiple_of(2) {
            fk.without_multicast().expect("every `_mc` kernel has its twin (tiles.rs checks the table)")
        } else {
            fk
        };
        let [qp, kp, vp, op, lp] = ptrs;
        let map = |p, s, h, rows: usize| {
            driver::tensor_map_3d(driver::TmaElem::Bf16, p, [s, h, n.d], rows as u32, 64)
                .map_err(|e| cuda_err(format!("tensor map [{s}, {h}, {}]", n.d), e))
        };
        // Q's box is the block's query tile (128 or 192 rows), K's and V's a 128-key tile.
        let mut maps = [map(qp, n.sq, n.hq, fk.block_q())?, map(kp, n.sk, n.hkv, 128)?, map(vp, n.sk, n.hkv, 128)?];
        // One block a (head, query tile): (hq, tiles), or 1-D in the kernel's L2 sections (f3_tile_l2);
        // persistent: one block an SM (at most one fits: its shared memory), each walking tiles (f3_tile).
        let tiles = n.sq.div_ceil(fk.block_q());
        check("attention", sm90_grid_fits(fk, n.hq, n.sq), || {
            format!("hq = {} x sq = {}: too many blocks", n.hq, n.sq)
        })?;
        let grid = if fk.persistent() {
            (self.persistent_flash_grid(n.hq * tiles), 1, 1)
        } else if fk.l2_sections {
            ((n.hq * tiles) as u32, 1, 1)
        } else {
            (n.hq as u32, tiles as u32, 1)
        };
        let mut slots = [
            op,
            lp,
            n.sq as u64,
            n.sk as u64,
            n.hq as u64,
            n.hkv as u64,
            a.delta as u64,
            a.causal as u64,
            a.scale_log2.to_bits() as u64,
            self.flash_tiles.device_ptr(&self.stream).0,
        ];
        let name = if a.f32_out { fk.name_f32o } else { fk.name };
        let cluster = if fk.kv_multicast { 2 } else { 1 };
        let l = driver::Launch { grid, block: fk.threads(), smem: fk.smem(), cluster };
        // SAFETY: the parameters of the F3 kernels in kernels/flash_attention_sm90.cu: three 128-byte
        // tensor maps, two pointers, four ints, an i64, an int, a float (4-byte ones read from the
        // low half of their slots) and the tile counter's pointer (kept alive by the backend).
        unsafe { self.launch_maps((fk.file(), name), l, &mut maps, &mut slots) }
    }
}
