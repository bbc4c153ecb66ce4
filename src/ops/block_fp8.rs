//! DeepSeek-V3 block-scaled FP8, the reference for kernels/fp8.cu's block quantisers and
//! kernels/grouped_gemm_fp8.cu: one f32 scale per block (amax / 448, 1 for an all-zero block),
//! values rounded to e4m3 after multiplying by 448 / amax (DeepGEMM's cast; the kernels do the same
//! two IEEE f32 operations, so the bits match); the grouped GEMM multiplies the e4m3 values,
//! sums each 128-deep slice of K on its own, and adds the slice sums into the f32 result times
//! the two blocks' scales (the two-level accumulation that keeps the tensor cores' short FP8
//! accumulator from losing bits over a long K).

use crate::tensor::{FP8_E4M3_MAX, fp8_e4m3_round};
use rayon::prelude::*;

/// Width of a scale block along K, and its height for weights.
pub const BLOCK: usize = 128;

fn scale_of(amax: f32) -> f32 {
    if amax > 0.0 { amax / FP8_E4M3_MAX } else { 1.0 }
}

/// What values are multiplied by before rounding: 448 / amax, at most f32::MAX (a subnormal amax).
fn inv_of(amax: f32) -> f32 {
    if amax > 0.0 { (FP8_E4M3_MAX / amax).min(f32::MAX) } else { 1.0 }
}

/// 1 x 128 blocks of x [r, k] -> (e4m3 values [r, k], scales [ceil(k / 128), r], k-block major).
pub fn quantize_rows(x: &[f32], r: usize, k: usize) -> (Vec<f32>, Vec<f32>) {
    assert_eq!(x.len(), r * k);
    let kb = k.div_ceil(BLOCK);
    let mut q = vec![0f32; r * k];
    let mut s = vec![0f32; kb * r];
    for row in 0..r {
        for b in 0..kb {
            let cols = b * BLOCK..((b + 1) * BLOCK).min(k);
            let xs = &x[row * k..][cols.clone()];
            let amax = xs.iter().fold(0f32, |m, v| m.max(v.abs()));
            s[b * r + row] = scale_of(amax);
            let inv = inv_of(amax);
            for (o, v) in q[row * k..][cols].iter_mut().zip(xs) {
                *o = fp8_e4m3_round(v * inv);
            }
        }
    }
    (q, s)
}

/// 128 x 128 blocks of x [g, m, k] -> (e4m3 values, scales [g, ceil(m / 128), ceil(k / 128)]).
pub fn quantize_tiles(x: &[f32], g: usize, m: usize, k: usize) -> (Vec<f32>, Vec<f32>) {
    assert_eq!(x.len(), g * m * k);
    let (mb, kb) = (m.div_ceil(BLOCK), k.div_ceil(BLOCK));
    let mut q = vec![0f32; g * m * k];
    let mut s = vec![0f32; g * mb * kb];
    for gi in 0..g {
        for bm in 0..mb {
            let rows = bm * BLOCK..((bm + 1) * BLOCK).min(m);
            for bk in 0..kb {
                let cols = bk * BLOCK..((bk + 1) * BLOCK).min(k);
                let at = |row: usize| (gi * m + row) * k;
                let amax = rows.clone().flat_map(|row| &x[at(row)..][cols.clone()]).fold(0f32, |a, v| a.max(v.abs()));
                s[(gi * mb + bm) * kb + bk] = scale_of(amax);
                let inv = inv_of(amax);
                for row in rows.clone() {
                    for c in cols.clone() {
                        q[at(row) + c] = fp8_e4m3_round(x[at(row) + c] * inv);
                    }
                }
            }
        }
    }
    (q, s)
}

/// The grouped GEMM's operands: e4m3 values and scales of x [r, k] (`quantize_rows`) and of the
/// experts' weights w [e, nw, k] (`quantize_tiles`).
pub struct Operands<'a> {
    pub xq: &'a [f32],
    pub xs: &'a [f32],
    pub wq: &'a [f32],
    pub ws: &'a [f32],
}

/// Rows offsets[e]..offsets[e+1] of x times w[e] transposed -> [r, nw] in f32: per 128-deep slice
/// of K an f32 sum of e4m3 products, added times scale_x(row, slice) * scale_w(row block, slice).
pub fn grouped_matmul(o: &Operands, offsets: &[i32], nw: usize, k: usize) -> Vec<f32> {
    let r = o.xq.len() / k;
    let (kb, nb) = (k.div_ceil(BLOCK), nw.div_ceil(BLOCK));
    let mut out = vec![0f32; r * nw];
    let expert_of = |row: usize| offsets.partition_point(|&x| x as usize <= row) - 1;
    out.par_chunks_mut(nw.max(1)).enumerate().for_each(|(row, y)| {
        let e = expert_of(row);
        let x = &o.xq[row * k..(row + 1) * k];
        for (n, out) in y.iter_mut().enumerate() {
            let w = &o.wq[(e * nw + n) * k..(e * nw + n + 1) * k];
            let mut acc = 0f32;
            for b in 0..kb {
                let cols = b * BLOCK..((b + 1) * BLOCK).min(k);
                let part = super::gemm::dot(&x[cols.clone()], &w[cols]);
                acc += part * (o.xs[b * r + row] * o.ws[(e * nb + n / BLOCK) * kb + b]);
            }
            *out = acc;
        }
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_blocks_scale_by_their_own_amax() {
        // Two rows, K = 130: blocks of 128 and 2 columns; an all-zero block keeps scale 1.
        let mut x = vec![0f32; 2 * 130];
        x[5] = -896.0; // row 0, block 0: amax 896 -> scale 2
        x[129] = 0.5; // row 0, block 1: scale 0.5 / 448
        x[130 + 7] = 448.0; // row 1, block 0: scale 1; row 1 block 1 all zero: scale 1
        let (q, s) = quantize_rows(&x, 2, 130);
        assert_eq!(s, vec![2.0, 1.0, 0.5 / 448.0, 1.0]);
        assert_eq!((q[5], q[129], q[137]), (-448.0, 448.0, 448.0));
        assert!(q.iter().all(|v| v.abs() <= 448.0));
    }

    #[test]
    fn a_subnormal_block_stays_finite() {
        // 448 / amax overflows f32 for a subnormal amax: clamped, so zeros stay zero (not 0 * inf = NaN).
        let mut x = vec![0f32; 128];
        x[3] = 1e-40;
        let (q, s) = quantize_rows(&x, 1, 128);
        assert!(q.iter().all(|v| v.is_finite()) && q[0] == 0.0 && q[3] > 0.0, "{:?}", &q[..4]);
        assert!(s[0] > 0.0 && inv_of(1e-40) == f32::MAX && inv_of(0.0) == 1.0);
    }

    #[test]
    fn tile_blocks_cover_partial_edges() {
        // g = 2, m = 130, k = 16: row blocks of 128 and 2, one k block.
        let (g, m, k) = (2, 130, 16);
        let x: Vec<f32> = (0..g * m * k).map(|i| (i % 97) as f32 - 48.0).collect();
        let (q, s) = quantize_tiles(&x, g, m, k);
        assert_eq!(s.len(), 4);
        for (i, &sc) in s.iter().enumerate() {
            let (gi, bm) = (i / 2, i % 2);
            let rows = bm * 128..((bm + 1) * 128).min(m);
            let amax = rows.flat_map(|r| &x[(gi * m + r) * k..][..k]).fold(0f32, |a, v| a.max(v.abs()));
            assert_eq!(sc, amax / 448.0);
        }
        // Dequantised values are within half an e4m3 step (2^-4 relative) of the input.
        for (i, v) in x.iter().enumerate() {
            let sc = s[(i / (m * k)) * 2 + (i % (m * k)) / k / 128];
            assert!((q[i] * sc - v).abs() <= v.abs() / 16.0 + 1e-6, "{i}: {v} vs {}", q[i] * sc);
        }
    }

    #[test]
    fn grouped_matmul_promotes_each_k_slice_with_its_scales() {
        // One expert, one row, K = 256 (two slices), nw = 1: slice sums 128 * 1 and 128 * 2,
        // scaled by x's (0.5, 4) and w's (3, 0.25) slice scales.
        let o = Operands { xq: &[1.0; 256], xs: &[0.5, 4.0], wq: &[[1.0; 128], [2.0; 128]].concat(), ws: &[3.0, 0.25] };
        let y = grouped_matmul(&o, &[0, 1], 1, 256);
        assert_eq!(y, vec![128.0 * 0.5 * 3.0 + 256.0 * 4.0 * 0.25]);
    }
}
