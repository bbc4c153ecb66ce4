//! A tensor is a shape, an element type and storage on one backend.
//! Host storage always holds f32 (or i32): the CPU reference computes in f32
//! and rounds to the tensor's dtype where a device would store it narrower.

pub mod ledger;

use serde::{Deserialize, Serialize};

/// A tensor's memory on a GPU, typed (the CUDA backend allocates it; defined here so that
/// the tensor does not depend on the backend that fills it).
pub enum DeviceData {
    Bf16(cudarc::driver::CudaSlice<half::bf16>),
    F32(cudarc::driver::CudaSlice<f32>),
    I32(cudarc::driver::CudaSlice<i32>),
    /// e4m3 bytes and the per-tensor scale (device f32) that dequantises them.
    F8 {
        data: cudarc::driver::CudaSlice<u8>,
        scale: cudarc::driver::CudaSlice<f32>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Hash)]
#[serde(rename_all = "lowercase")]
pub enum DType {
    F32,
    Bf16,
    /// FP8 e4m3; only GEMM operands use it, with a per-tensor scale.
    F8,
    I32,
}

impl DType {
    pub fn size(self) -> usize {
        match self {
            DType::F32 | DType::I32 => 4,
            DType::Bf16 => 2,
            DType::F8 => 1,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::Bf16 => "bf16",
            DType::F8 => "fp8",
            DType::I32 => "i32",
        }
    }
}

pub(crate) enum Data {
    Host(Vec<f32>),
    HostI32(Vec<i32>),
    Device(DeviceData),
}

pub struct Tensor {
    pub(crate) shape: Vec<usize>,
    pub(crate) dtype: DType,
    pub(crate) data: Data,
    /// The thread ledger host bytes were charged to, if any (`ledger`).
    pub(crate) ledger: Option<std::sync::Arc<ledger::Ledger>>,
}

impl Tensor {
    pub(crate) fn host(shape: &[usize], dtype: DType, v: Vec<f32>) -> Tensor {
        debug_assert_eq!(v.len(), shape.iter().product::<usize>(), "shape {shape:?}");
        let ledger = ledger::host_alloc(v.len() * dtype.size());
        Tensor { shape: shape.to_vec(), dtype, data: Data::Host(v), ledger }
    }
    pub(crate) fn host_i32(shape: &[usize], v: Vec<i32>) -> Tensor {
        debug_assert_eq!(v.len(), shape.iter().product::<usize>(), "shape {shape:?}");
        let ledger = ledger::host_alloc(v.len() * 4);
        Tensor { shape: shape.to_vec(), dtype: DType::I32, data: Data::HostI32(v), ledger }
    }
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }
    pub fn dtype(&self) -> DType {
        self.dtype
    }
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
    /// Size of dimension `i`, counting from the end when negative.
    pub fn dim(&self, i: isize) -> usize {
        let n = self.shape.len() as isize;
        self.shape[if i < 0 { n + i } else { i } as usize]
    }
    pub fn bytes(&self) -> usize {
        self.numel() * self.dtype.size()
    }
    /// Same storage seen with another shape of equal element count.
    pub fn reshape(mut self, shape: &[usize]) -> Tensor {
        assert_eq!(shape.iter().product::<usize>(), self.numel(), "reshape {:?} -> {shape:?}", self.shape);
        self.shape = shape.to_vec();
        self
    }
}

impl Drop for Tensor {
    fn drop(&mut self) {
        match &self.data {
            Data::Host(v) => ledger::host_free(v.len() * self.dtype.size(), self.ledger.as_deref()),
            Data::HostI32(v) => ledger::host_free(v.len() * 4, self.ledger.as_deref()),
            Data::Device(_) => {}
        }
    }
}

impl std::fmt::Debug for Tensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tensor({:?}, {})", self.shape, self.dtype.name())
    }
}

/// Round f32 values to what `dtype` can hold, as the device would store them.
pub fn round_to(dtype: DType, v: &mut [f32]) {
    match dtype {
        DType::Bf16 => v.iter_mut().for_each(|x| *x = half::bf16::from_f32(*x).to_f32()),
        DType::F8 => v.iter_mut().for_each(|x| *x = fp8_e4m3_round(*x)),
        DType::F32 | DType::I32 => {}
    }
}

/// Largest finite e4m3 value.
pub const FP8_E4M3_MAX: f32 = 448.0;

/// Round to the nearest e4m3 (OCP "fn" variant: no infinities, saturate at 448), ties to even.
pub fn fp8_e4m3_round(x: f32) -> f32 {
    if x.is_nan() {
        return x;
    }
    let a = x.abs().min(FP8_E4M3_MAX);
    if a == 0.0 {
        return 0.0f32.copysign(x);
    }
    // Exponent range [-6, 8]; below 2^-6 values are subnormal with step 2^-9.
    let e = a.log2().floor().max(-6.0);
    let step = (e - 3.0).exp2();
    let q = a / step;
    let r = q.round_ties_even();
    (r * step).min(FP8_E4M3_MAX).copysign(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fp8_rounding_matches_hand_values() {
        assert_eq!(fp8_e4m3_round(1.0), 1.0);
        // 1 + 1/8 is representable, 1 + 1/16 ties to even (1.0).
        assert_eq!(fp8_e4m3_round(1.125), 1.125);
        assert_eq!(fp8_e4m3_round(1.0625), 1.0);
        assert_eq!(fp8_e4m3_round(1.1875), 1.25);
        assert_eq!(fp8_e4m3_round(1000.0), 448.0);
        assert_eq!(fp8_e4m3_round(-3.3), -3.25);
        // smallest subnormal 2^-9
        assert_eq!(fp8_e4m3_round(2f32.powi(-9)), 2f32.powi(-9));
        assert_eq!(fp8_e4m3_round(2f32.powi(-11)), 0.0);
    }

    #[test]
    fn bf16_rounding_keeps_8_bits() {
        let mut v = vec![1.0 + 1.0 / 256.0, 3.0];
        round_to(DType::Bf16, &mut v);
        assert_eq!(v, vec![1.0, 3.0]);
    }
}
