//! Counter-based random numbers: value i of stream `seed` is a pure function of
//! (seed, i), so the CPU and every GPU thread (kernels/common.cuh mirrors this)
//! generate the same weights and inputs without moving them.

#[inline]
pub fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Uniform in [-1, 1) from (seed, index).
#[inline]
pub fn uniform(seed: u64, i: u64) -> f32 {
    let h = splitmix64(seed ^ splitmix64(i));
    // 24 random bits -> [0, 1) exactly representable in f32.
    let u = (h >> 40) as f32 * (1.0 / 16_777_216.0);
    2.0 * u - 1.0
}

/// Values uniform in [-scale*sqrt(3), scale*sqrt(3)): standard deviation `scale`.
pub fn fill_uniform(seed: u64, n: usize, std: f32) -> Vec<f32> {
    let a = std * 3f32.sqrt();
    (0..n as u64).map(|i| a * uniform(seed, i)).collect()
}

/// Derive a child seed for a named tensor so that adding a tensor does not shift others.
pub fn child_seed(seed: u64, name: &str) -> u64 {
    name.bytes().fold(splitmix64(seed), |h, b| splitmix64(h ^ b as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniform_is_in_range_and_centered() {
        let v = fill_uniform(7, 100_000, 1.0);
        let mean = v.iter().sum::<f32>() / v.len() as f32;
        let var = v.iter().map(|x| (x - mean) * (x - mean)).sum::<f32>() / v.len() as f32;
        assert!(mean.abs() < 0.02, "mean {mean}");
        assert!((var - 1.0).abs() < 0.02, "var {var}");
        assert!(v.iter().all(|x| x.abs() <= 3f32.sqrt()));
    }

    #[test]
    fn streams_differ_by_seed_and_name() {
        assert_ne!(uniform(1, 0), uniform(2, 0));
        assert_ne!(child_seed(1, "wq"), child_seed(1, "wk"));
    }
}
