//! Block-scaled FP8 operands (DeepSeek-V3): e4m3 values with one f32 scale per 1 x 128 block
//! (activations, per token) or 128 x 128 block (expert weights). Made by
//! `Backend::quantize_blocks`, multiplied by `Backend::grouped_matmul_fp8`; the reference
//! arithmetic is src/ops/block_fp8.rs.

use super::{Result, shape_err};
pub use crate::ops::block_fp8::BLOCK;
use crate::tensor::{DType, Tensor};

/// How the scales tile the values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Blocks {
    /// 1 x 128 (per token): x [r, k], scales [ceil(k / 128), r], k-block major (the grouped
    /// GEMM's consumer warps read consecutive rows' scales of one k block).
    Rows,
    /// 128 x 128: x [g, m, k] (or [m, k]), scales [g, ceil(m / 128), ceil(k / 128)].
    Tiles,
}

pub struct BlockFp8 {
    /// e4m3 values, the shape of the quantised tensor (dtype F8, per-tensor scale 1).
    pub q: Tensor,
    /// f32 block scales, laid out as `blocks` says.
    pub scales: Tensor,
    pub blocks: Blocks,
}

impl BlockFp8 {
    pub fn shape(&self) -> &[usize] {
        self.q.shape()
    }
    /// Device or host bytes of values and scales.
    pub fn bytes(&self) -> usize {
        self.q.bytes() + self.scales.bytes()
    }
}

/// (groups, rows per group, k) of a tensor to quantise in `blocks`, checked: bf16 (what the MoE
/// experts hold), k a multiple of 16 (16-byte rows of e4m3 for the TMA loads), [r, k] for
/// per-token blocks.
pub(crate) fn quantize_dims(x: &Tensor, blocks: Blocks) -> Result<(usize, usize, usize)> {
    let bad = |why: &str| Err(shape_err("quantize_blocks", format!("{x:?}: {why}")));
    if x.dtype() != DType::Bf16 {
        return bad("bf16 input");
    }
    let s = x.shape();
    let dims = match (blocks, s.len()) {
        (Blocks::Rows, 2) => (1, s[0], s[1]),
        (Blocks::Tiles, 2) => (1, s[0], s[1]),
        (Blocks::Tiles, 3) => (s[0], s[1], s[2]),
        _ => return bad("[r, k] for per-token blocks, [g, m, k] or [m, k] for 128 x 128 blocks"),
    };
    if !dims.2.is_multiple_of(16) || dims.2 == 0 {
        return bad("k must be a positive multiple of 16");
    }
    Ok(dims)
}

/// The scales' shape for values of `dims` (from `quantize_dims`).
pub(crate) fn scale_shape(blocks: Blocks, (g, m, k): (usize, usize, usize)) -> Vec<usize> {
    match blocks {
        Blocks::Rows => vec![k.div_ceil(BLOCK), m],
        Blocks::Tiles => vec![g, m.div_ceil(BLOCK), k.div_ceil(BLOCK)],
    }
}

/// (r, e, nw, k) of a block-scaled grouped GEMM of x [r, k] (per-token blocks) by w [e, nw, k]
/// (128 x 128 blocks), checked; with `swiglu` nw = 2f holds gate rows then up rows, f a multiple
/// of 64 (so that a tile's 64 gate or up rows lie in one scale block).
pub(crate) fn grouped_dims(
    x: &BlockFp8,
    w: &BlockFp8,
    offsets: &Tensor,
    swiglu: bool,
) -> Result<(usize, usize, usize, usize)> {
    let op = "grouped_matmul_fp8";
    let (xs, ws) = (x.shape(), w.shape());
    let ok = x.blocks == Blocks::Rows && w.blocks == Blocks::Tiles && xs.len() == 2 && ws.len() == 3;
    if !ok || xs[1] != ws[2] || offsets.numel() != ws[0] + 1 || offsets.dtype() != DType::I32 {
        return Err(shape_err(op, format!("x {xs:?} ({:?}) w {ws:?} ({:?}) offsets {offsets:?}", x.blocks, w.blocks)));
    }
    if swiglu && !ws[1].is_multiple_of(128) {
        return Err(shape_err(op, format!("w {ws:?}: fused SwiGLU needs 2f gate and up rows, f a multiple of 64")));
    }
    if ws[0] * ws[1] >= i32::MAX as usize || xs[0] >= i32::MAX as usize {
        return Err(shape_err(op, format!("x {xs:?} w {ws:?}: tensor-map coordinates past 2^31")));
    }
    Ok((xs[0], ws[0], ws[1], xs[1]))
}
