//! CPU reference implementations, on plain slices, in f32 with f32 accumulation.
//! The CUDA kernels in kernels/ compute the same functions; tests compare them.

pub mod activation;
pub mod attention;
pub mod block_fp8;
pub mod gemm;
pub mod norm;
pub mod permute;
pub mod rope;
pub mod routing;
