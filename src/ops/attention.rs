//! Grouped-query attention. `naive` materialises every score row in f32 (the
//! baseline's memory profile); `flash` walks keys in tiles with an online softmax.

use super::gemm::dot;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AttnAlgo {
    /// Materialises the full score matrix in f32 (the baseline).
    Naive,
    /// Tiled online softmax; never holds more than a tile of scores.
    Flash,
}

/// Which keys a query may see. Positions are absolute so that context
/// parallelism can attend a chunk of queries to a chunk of keys elsewhere.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AttnParams {
    pub causal: bool,
    pub q_offset: usize,
    pub k_offset: usize,
    pub algo: AttnAlgo,
    /// Write the output in f32 instead of q's dtype: partial results that are merged
    /// by log-sum-exp (context parallelism) round once, at the end, not per block.
    pub f32_out: bool,
}

impl AttnParams {
    /// Causal attention of queries at `q_offset` to keys at `k_offset`, output in q's dtype.
    pub fn causal(q_offset: usize, k_offset: usize, algo: AttnAlgo) -> Self {
        AttnParams { causal: true, q_offset, k_offset, algo, f32_out: false }
    }
}

#[derive(Clone, Copy, Debug)]
pub struct Dims {
    pub sq: usize,
    pub sk: usize,
    pub hq: usize,
    pub hkv: usize,
    pub d: usize,
}

/// Number of keys query row `i` may see: keys at absolute positions <= its own.
#[inline]
pub fn visible_keys(i: usize, sk: usize, causal: bool, q_offset: usize, k_offset: usize) -> usize {
    if !causal {
        return sk;
    }
    (q_offset + i + 1).saturating_sub(k_offset).min(sk)
}

/// Returns (out [sq, hq, d], lse [hq, sq]).
pub fn naive(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    n: Dims,
    causal: bool,
    q_off: usize,
    k_off: usize,
) -> (Vec<f32>, Vec<f32>) {
    let scale = 1.0 / (n.d as f32).sqrt();
    let group = n.hq / n.hkv;
    let mut out = vec![0f32; n.sq * n.hq * n.d];
    let mut lse = vec![f32::NEG_INFINITY; n.hq * n.sq];
    // One head at a time: the full [sq, sk] score matrix of that head.
    for h in 0..n.hq {
        let kh = h / group;
        let mut scores = vec![f32::NEG_INFINITY; n.sq * n.sk];
        scores.par_chunks_mut(n.sk).enumerate().for_each(|(i, row)| {
            let qi = &q[(i * n.hq + h) * n.d..][..n.d];
            for (j, s) in row.iter_mut().enumerate().take(visible_keys(i, n.sk, causal, q_off, k_off)) {
                *s = dot(qi, &k[(j * n.hkv + kh) * n.d..][..n.d]) * scale;
            }
        });
        for i in 0..n.sq {
            let row = &scores[i * n.sk..(i + 1) * n.sk];
            let m = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
            if m == f32::NEG_INFINITY {
                continue;
            }
            let p: Vec<f32> = row.iter().map(|s| (s - m).exp()).collect();
            let l: f32 = p.iter().sum();
            lse[h * n.sq + i] = m + l.ln();
            let o = &mut out[(i * n.hq + h) * n.d..][..n.d];
            for (j, pj) in p.iter().enumerate() {
                if *pj != 0.0 {
                    let vj = &v[(j * n.hkv + kh) * n.d..][..n.d];
                    o.iter_mut().zip(vj).for_each(|(a, b)| *a += pj * b);
                }
            }
            o.iter_mut().for_each(|a| *a /= l);
        }
    }
    (out, lse)
}

pub const FLASH_TILE: usize = 64;

/// Same function as `naive`, holding at most one tile of scores per query row.
pub fn flash(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    n: Dims,
    causal: bool,
    q_off: usize,
    k_off: usize,
) -> (Vec<f32>, Vec<f32>) {
    let scale = 1.0 / (n.d as f32).sqrt();
    let group = n.hq / n.hkv;
    let mut out = vec![0f32; n.sq * n.hq * n.d];
    let mut lse = vec![f32::NEG_INFINITY; n.hq * n.sq];
    let lse_rows: Vec<(usize, usize, f32)> = out
        .par_chunks_mut(n.d)
        .enumerate()
        .map(|(row, o)| {
            let (i, h) = (row / n.hq, row % n.hq);
            let kh = h / group;
            let qi = &q[row * n.d..][..n.d];
            let nk = visible_keys(i, n.sk, causal, q_off, k_off);
            let (mut m, mut l) = (f32::NEG_INFINITY, 0f32);
            let mut s = [0f32; FLASH_TILE];
            for t0 in (0..nk).step_by(FLASH_TILE) {
                let t1 = (t0 + FLASH_TILE).min(nk);
                let mut tile_max = f32::NEG_INFINITY;
                for j in t0..t1 {
                    s[j - t0] = dot(qi, &k[(j * n.hkv + kh) * n.d..][..n.d]) * scale;
                    tile_max = tile_max.max(s[j - t0]);
                }
                let m_new = m.max(tile_max);
                let correction = (m - m_new).exp();
                l *= correction;
                o.iter_mut().for_each(|a| *a *= correction);
                for j in t0..t1 {
                    let p = (s[j - t0] - m_new).exp();
                    l += p;
                    let vj = &v[(j * n.hkv + kh) * n.d..][..n.d];
                    o.iter_mut().zip(vj).for_each(|(a, b)| *a += p * b);
                }
                m = m_new;
            }
            if l > 0.0 {
                o.iter_mut().for_each(|a| *a /= l);
                (h, i, m + l.ln())
            } else {
                (h, i, f32::NEG_INFINITY)
            }
        })
        .collect();
    for (h, i, x) in lse_rows {
        lse[h * n.sq + i] = x;
    }
    (out, lse)
}

/// Merge two partial results over disjoint keys: weights exp(lse_a - lse) and exp(lse_b - lse).
pub fn merge(oa: &[f32], la: &[f32], ob: &[f32], lb: &[f32], sq: usize, hq: usize, d: usize) -> (Vec<f32>, Vec<f32>) {
    let mut out = vec![0f32; oa.len()];
    let mut lse = vec![f32::NEG_INFINITY; la.len()];
    for h in 0..hq {
        for i in 0..sq {
            let (a, b) = (la[h * sq + i], lb[h * sq + i]);
            let m = a.max(b);
            if m == f32::NEG_INFINITY {
                continue;
            }
            let (wa, wb) = ((a - m).exp(), (b - m).exp());
            let l = m + (wa + wb).ln();
            lse[h * sq + i] = l;
            let (wa, wb) = (wa / (wa + wb), wb / (wa + wb));
            let r = (i * hq + h) * d;
            for x in 0..d {
                out[r + x] = wa * oa[r + x] + wb * ob[r + x];
            }
        }
    }
    (out, lse)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::fill_uniform;

    #[test]
    fn one_key_returns_its_value() {
        let n = Dims { sq: 1, sk: 1, hq: 2, hkv: 1, d: 2 };
        let (o, lse) = naive(&[1., 2., 3., 4.], &[0.5, 0.5], &[7., 9.], n, true, 0, 0);
        assert_eq!(o, vec![7., 9., 7., 9.]);
        // lse of a single score s is s itself: (1*0.5+2*0.5)/sqrt(2)
        assert!((lse[0] - 1.5 / 2f32.sqrt()).abs() < 1e-6);
    }

    #[test]
    fn causal_two_keys_hand_worked() {
        // d=1, q=[1,1], k=[0, ln 3], v=[1, 5]: row 0 sees key 0 -> 1;
        // row 1: softmax(0, ln3) = (1/4, 3/4) -> 1/4 + 15/4 = 4.
        let n = Dims { sq: 2, sk: 2, hq: 1, hkv: 1, d: 1 };
        let (o, _) = naive(&[1., 1.], &[0., 3f32.ln()], &[1., 5.], n, true, 0, 0);
        assert!((o[0] - 1.0).abs() < 1e-6 && (o[1] - 4.0).abs() < 1e-5, "{o:?}");
    }

    #[test]
    fn flash_equals_naive_and_merge_splits_keys() {
        let n = Dims { sq: 150, sk: 150, hq: 4, hkv: 2, d: 16 };
        let q = fill_uniform(1, n.sq * n.hq * n.d, 1.0);
        let k = fill_uniform(2, n.sk * n.hkv * n.d, 1.0);
        let v = fill_uniform(3, n.sk * n.hkv * n.d, 1.0);
        let (a, la) = naive(&q, &k, &v, n, true, 0, 0);
        let (b, lb) = flash(&q, &k, &v, n, true, 0, 0);
        assert!(a.iter().zip(&b).all(|(x, y)| (x - y).abs() < 1e-5));
        assert!(la.iter().zip(&lb).all(|(x, y)| (x - y).abs() < 1e-5));
        // keys [0, 70) and [70, 150) attended separately, then merged
        let cut = 70 * n.hkv * n.d;
        let n1 = Dims { sk: 70, ..n };
        let n2 = Dims { sk: 80, ..n };
        let (o1, l1) = flash(&q, &k[..cut], &v[..cut], n1, true, 0, 0);
        let (o2, l2) = flash(&q, &k[cut..], &v[cut..], n2, true, 0, 70);
        let (m, lm) = merge(&o1, &l1, &o2, &l2, n.sq, n.hq, n.d);
        assert!(m.iter().zip(&a).all(|(x, y)| (x - y).abs() < 1e-5));
        assert!(lm.iter().zip(&la).all(|(x, y)| (x - y).abs() < 1e-5));
    }
}
