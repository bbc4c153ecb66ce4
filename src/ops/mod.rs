//! The ops, one file each: their parameters (`AttnParams`, `RopeParams`, `RouterParams`, which
//! the `Backend` trait re-exports) and their CPU reference implementations, on plain slices, in
//! f32 with f32 accumulation. The CPU backend runs these; the CUDA kernels in kernels/ compute
//! the same functions and tests compare the two.

pub mod activation;
pub mod attention;
pub mod gemm;
pub mod norm;
pub mod permute;
pub mod rope;
pub mod routing;
