use rayon::prelude::*;

/// Each row of x [m, h]: x / sqrt(mean(x^2) + eps) * w.
pub fn rms_norm(x: &[f32], w: &[f32], eps: f32) -> Vec<f32> {
    let h = w.len();
    let mut out = vec![0f32; x.len()];
    out.par_chunks_mut(h).zip(x.par_chunks(h)).for_each(|(o, r)| {
        let ms = r.iter().map(|v| v * v).sum::<f32>() / h as f32;
        let inv = 1.0 / (ms + eps).sqrt();
        for i in 0..h {
            o[i] = r[i] * inv * w[i];
        }
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rms_norm_hand_worked() {
        // row [3, 4]: mean square 12.5, rms 3.5355; w [1, 2]
        let y = rms_norm(&[3., 4.], &[1., 2.], 0.0);
        let r = 12.5f32.sqrt();
        assert!((y[0] - 3. / r).abs() < 1e-6 && (y[1] - 8. / r).abs() < 1e-6, "{y:?}");
    }
}
