//! Order statistics of timing samples, and the error metrics every correctness check uses.

/// Linear-interpolated quantile (q in [0, 1]) of unsorted samples.
pub fn quantile(samples: &[f64], q: f64) -> f64 {
    assert!(!samples.is_empty(), "quantile of no samples");
    let mut s = samples.to_vec();
    s.sort_by(f64::total_cmp);
    let pos = q.clamp(0.0, 1.0) * (s.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    s[lo] + (s[hi] - s[lo]) * (pos - lo as f64)
}

pub fn median(samples: &[f64]) -> f64 {
    quantile(samples, 0.5)
}

/// Errors of `out` against `reference`: (max |diff| / max |ref|, ||diff|| / ||ref||).
/// NaN anywhere makes both infinite so that no tolerance accepts it.
pub fn errors(out: &[f32], reference: &[f32]) -> (f64, f64) {
    if out.len() != reference.len() || out.iter().any(|x| !x.is_finite()) {
        return (f64::INFINITY, f64::INFINITY);
    }
    let (mut max_d, mut max_r, mut sd, mut sr) = (0f64, 0f64, 0f64, 0f64);
    for (a, b) in out.iter().zip(reference) {
        let (a, b) = (*a as f64, *b as f64);
        max_d = max_d.max((a - b).abs());
        max_r = max_r.max(b.abs());
        sd += (a - b) * (a - b);
        sr += b * b;
    }
    let tiny = f64::MIN_POSITIVE;
    (max_d / max_r.max(tiny), (sd / sr.max(tiny)).sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate() {
        let s = [5.0, 1.0, 3.0, 2.0, 4.0];
        assert_eq!(median(&s), 3.0);
        assert_eq!(quantile(&s, 0.1), 1.4);
        assert_eq!(quantile(&s, 0.9), 4.6);
        assert_eq!(median(&[1.0, 2.0]), 1.5);
    }

    #[test]
    fn errors_are_relative_and_reject_nan() {
        let (m, l) = errors(&[1.0, 2.5], &[1.0, 2.0]);
        assert!((m - 0.25).abs() < 1e-12);
        assert!((l - 0.5 / 5f64.sqrt()).abs() < 1e-12);
        assert_eq!(errors(&[f32::NAN, 1.0], &[1.0, 1.0]).0, f64::INFINITY);
        assert_eq!(errors(&[1.0], &[1.0, 1.0]).1, f64::INFINITY);
    }
}
