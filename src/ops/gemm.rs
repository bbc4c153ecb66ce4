use rayon::prelude::*;

#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    // Eight partial sums let the compiler vectorise without reassociating one chain.
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    let tail: f32 = ra.iter().zip(rb).map(|(x, y)| x * y).sum();
    acc.iter().sum::<f32>() + tail
}

/// x [m, k] times w [n, k] transposed -> [m, n] (the nn.Linear layout).
pub fn matmul(x: &[f32], w: &[f32], m: usize, n: usize, k: usize) -> Vec<f32> {
    assert_eq!(x.len(), m * k);
    assert_eq!(w.len(), n * k);
    let mut out = vec![0f32; m * n];
    out.par_chunks_mut(n).enumerate().for_each(|(i, row)| {
        let xi = &x[i * k..(i + 1) * k];
        for (j, o) in row.iter_mut().enumerate() {
            *o = dot(xi, &w[j * k..(j + 1) * k]);
        }
    });
    out
}

/// Rows offsets[e]..offsets[e+1] of x use weight w[e] ([e, n, k]).
pub fn grouped_matmul(x: &[f32], w: &[f32], offsets: &[i32], n: usize, k: usize) -> Vec<f32> {
    let rows = x.len() / k;
    let mut out = vec![0f32; rows * n];
    for e in 0..offsets.len() - 1 {
        let (a, b) = (offsets[e] as usize, offsets[e + 1] as usize);
        if a == b {
            continue;
        }
        let part = matmul(&x[a * k..b * k], &w[e * n * k..(e + 1) * n * k], b - a, n, k);
        out[a * n..b * n].copy_from_slice(&part);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matmul_hand_worked() {
        // [[1,2],[3,4]] x [[5,6],[7,8]]^T = [[17,23],[39,53]]
        let y = matmul(&[1., 2., 3., 4.], &[5., 6., 7., 8.], 2, 2, 2);
        assert_eq!(y, vec![17., 23., 39., 53.]);
    }

    #[test]
    fn dot_handles_tails() {
        let a: Vec<f32> = (0..19).map(|i| i as f32).collect();
        let b = vec![1f32; 19];
        assert_eq!(dot(&a, &b), 171.0);
    }

    #[test]
    fn grouped_uses_each_experts_weight() {
        // two experts, k=1, n=1: rows 0..2 times 2, row 2 times 10; expert-empty groups skipped
        let y = grouped_matmul(&[1., 2., 3.], &[2., 0., 10.], &[0, 2, 2, 3], 1, 1);
        assert_eq!(y, vec![2., 4., 30.]);
    }
}
