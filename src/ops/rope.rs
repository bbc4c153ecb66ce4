use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct RopeParams {
    pub theta: f32,
    /// llama3 scaling; factor 1 disables it.
    pub factor: f32,
    pub low_freq_factor: f32,
    pub high_freq_factor: f32,
    pub original_max_position: usize,
}

/// Inverse frequencies for head dim `d` with llama3 scaling (as in HF `_compute_llama3_parameters`).
pub fn inv_freq(d: usize, p: &RopeParams) -> Vec<f32> {
    let half = d / 2;
    (0..half)
        .map(|i| {
            let f = 1.0 / (p.theta as f64).powf(2.0 * i as f64 / d as f64);
            if p.factor == 1.0 {
                return f as f32;
            }
            let old = p.original_max_position as f64;
            let low_wavelen = old / p.low_freq_factor as f64;
            let high_wavelen = old / p.high_freq_factor as f64;
            let wavelen = 2.0 * std::f64::consts::PI / f;
            let factor = p.factor as f64;
            let g = if wavelen < high_wavelen {
                f
            } else if wavelen > low_wavelen {
                f / factor
            } else {
                let s =
                    (old / wavelen - p.low_freq_factor as f64) / (p.high_freq_factor as f64 - p.low_freq_factor as f64);
                (1.0 - s) * f / factor + s * f
            };
            g as f32
        })
        .collect()
}

/// x [s, heads, d]; position of row i is start + i. Pairs (j, j + d/2) rotate together.
pub fn rope(x: &[f32], heads: usize, d: usize, start: usize, p: &RopeParams) -> Vec<f32> {
    let freq = inv_freq(d, p);
    let half = d / 2;
    let mut out = x.to_vec();
    for (i, row) in out.chunks_mut(heads * d).enumerate() {
        let pos = (start + i) as f64;
        let cs: Vec<(f32, f32)> = freq
            .iter()
            .map(|f| {
                let a = pos * *f as f64;
                (a.cos() as f32, a.sin() as f32)
            })
            .collect();
        for h in row.chunks_mut(d) {
            for j in 0..half {
                let (c, s) = cs[j];
                let (a, b) = (h[j], h[j + half]);
                h[j] = a * c - b * s;
                h[j + half] = b * c + a * s;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain(theta: f32) -> RopeParams {
        RopeParams { theta, factor: 1.0, low_freq_factor: 1.0, high_freq_factor: 4.0, original_max_position: 8192 }
    }

    #[test]
    fn rotates_pairs_by_position_times_frequency() {
        // d = 4: freqs 1 and 1/sqrt(theta)=0.01 for theta 1e4; position 2.
        let x = [1., 0., 0., 0.];
        let y = rope(&x, 1, 4, 2, &plain(10_000.0));
        assert!((y[0] - 2f32.cos()).abs() < 1e-6);
        assert!((y[2] - 2f32.sin()).abs() < 1e-6);
        let x = [0., 1., 0., 0.];
        let y = rope(&x, 1, 4, 2, &plain(10_000.0));
        assert!((y[1] - 0.02f32.cos()).abs() < 1e-6 && (y[3] - 0.02f32.sin()).abs() < 1e-6);
    }

    #[test]
    fn position_zero_is_identity() {
        let x: Vec<f32> = (0..16).map(|i| i as f32).collect();
        assert_eq!(rope(&x, 2, 8, 0, &plain(500_000.0)), x);
    }

    #[test]
    fn llama3_scaling_bands() {
        // Llama 3.1: theta 5e5, factor 8, low 1, high 4, original 8192, d 128.
        let p = RopeParams {
            theta: 500_000.0,
            factor: 8.0,
            low_freq_factor: 1.0,
            high_freq_factor: 4.0,
            original_max_position: 8192,
        };
        let f = inv_freq(128, &p);
        let raw = inv_freq(128, &plain(500_000.0));
        // Highest frequency (wavelength 2*pi < 2048) untouched; lowest divided by 8.
        assert_eq!(f[0], raw[0]);
        assert!((f[63] - raw[63] / 8.0).abs() < 1e-12);
        // A band in between is interpolated: strictly between raw/8 and raw.
        let mid = (0..64).find(|&i| {
            let w = 2.0 * std::f32::consts::PI / raw[i];
            w > 2048.0 && w < 8192.0
        });
        let i = mid.expect("a smoothed band exists");
        assert!(f[i] < raw[i] && f[i] > raw[i] / 8.0);
    }
}
