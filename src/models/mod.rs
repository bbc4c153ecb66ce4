//! Model maths for one device. Parallelism (src/parallel) wraps these layers.

pub mod balance;
pub mod checkpoint;
pub mod gpt4;
pub mod hf_config;
pub mod llama;
pub mod moe;
pub mod next_token;
pub mod skew;
pub mod tokenizer;
pub mod weights;

use crate::backend::{Backend, Result};
use crate::tensor::{DType, Tensor};

/// A linear layer's weight ([out, in]) and, once an FP8 variant asks, its FP8 copy.
pub struct Linear {
    pub w: Tensor,
    pub fp8: Option<Tensor>,
}

impl Linear {
    pub fn new(w: Tensor) -> Self {
        Linear { w, fp8: None }
    }

    /// x [.., in] -> [.., out]. FP8 quantises x per tensor on the device and uses the FP8 weight.
    pub fn forward(&self, b: &dyn Backend, x: &Tensor, dtype: DType) -> Result<Tensor> {
        match (dtype, &self.fp8) {
            (DType::F8, Some(w8)) => b.matmul(&b.quantize_fp8(x)?, w8, DType::Bf16),
            (DType::F8, None) => Err(crate::backend::Error::Unsupported {
                op: "Linear::forward",
                what: "fp8 before prepare_fp8 quantised the weight".into(),
            }),
            _ => b.matmul(x, &self.w, x.dtype()),
        }
    }

    pub fn prepare_fp8(&mut self, b: &dyn Backend) -> Result<()> {
        if self.fp8.is_none() {
            self.fp8 = Some(b.quantize_fp8(&self.w)?);
        }
        Ok(())
    }

    pub fn drop_fp8(&mut self) {
        self.fp8 = None;
    }
}

/// SwiGLU MLP with the gate and up projections in one [2f, h] weight.
pub struct Mlp {
    pub gate_up: Linear,
    pub down: Linear,
}

impl Mlp {
    pub fn forward(&self, b: &dyn Backend, x: &Tensor, dtype: DType) -> Result<Tensor> {
        let a = b.swiglu(&self.gate_up.forward(b, x, dtype)?, None)?;
        self.down.forward(b, &a, dtype)
    }

    /// The same in x's dtype with SwiGLU in the gate/up GEMM where the backend fuses it.
    pub fn forward_fused_swiglu(&self, b: &dyn Backend, x: &Tensor) -> Result<Tensor> {
        self.down.forward(b, &b.matmul_swiglu(x, &self.gate_up.w)?, x.dtype())
    }

    pub fn linears(&mut self) -> [&mut Linear; 2] {
        [&mut self.gate_up, &mut self.down]
    }
}

/// FLOPs of x [m, k] times w [n, k]^T.
pub fn gemm_flops(m: usize, n: usize, k: usize) -> f64 {
    2.0 * m as f64 * n as f64 * k as f64
}

/// FLOPs of causal attention for `sq` queries against keys up to each query's position
/// (QK^T and PV, counting only the unmasked half): 4 * heads * d * sum of visible keys.
pub fn causal_attn_flops(sq: usize, heads: usize, d: usize) -> f64 {
    let visible = sq as f64 * (sq as f64 + 1.0) / 2.0;
    4.0 * heads as f64 * d as f64 * visible
}
