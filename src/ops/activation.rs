#[inline]
pub fn silu(x: f32) -> f32 {
    x / (1.0 + (-x).exp())
}

/// silu(gate) * up, elementwise.
pub fn swiglu(gate: &[f32], up: &[f32]) -> Vec<f32> {
    gate.iter().zip(up).map(|(g, u)| silu(*g) * u).collect()
}

/// Rows of width 2f holding gate then up -> rows of width f.
pub fn swiglu_fused(gu: &[f32], f: usize) -> Vec<f32> {
    gu.chunks(2 * f).flat_map(|r| swiglu(&r[..f], &r[f..])).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swiglu_hand_worked() {
        // silu(0) = 0, silu(1) = 1/(1+e^-1) = 0.7310586
        let y = swiglu(&[0., 1.], &[5., 2.]);
        assert_eq!(y[0], 0.0);
        assert!((y[1] - 2.0 * 0.731_058_6).abs() < 1e-6);
        assert_eq!(swiglu_fused(&[0., 1., 5., 2.], 2), y);
    }
}
