//! The `Backend` trait: every op the models need, on one device.
//! `cpu` is the f32 reference; `cuda` runs the same ops on a GPU. Model code
//! sees only this trait, so one test body checks every backend.

pub mod block_fp8;
pub mod cpu;
pub mod cuda;

pub use crate::ops::attention::{AttnAlgo, AttnParams};
pub use crate::ops::rope::RopeParams;
pub use crate::ops::routing::{Gate, RouterParams};
pub use crate::tensor::ledger::MemStats;
use crate::tensor::{DType, Tensor};
pub use block_fp8::{BlockFp8, Blocks};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{op}: shape mismatch: {detail}")]
    Shape { op: &'static str, detail: String },
    #[error("{op} does not support {what}")]
    Unsupported { op: &'static str, what: String },
    #[error("CUDA {op} failed: {msg}")]
    Cuda { op: String, msg: String },
    #[error("backend unavailable: {0}")]
    Unavailable(String),
    /// Model files that failed to load (weights, tokenizer); the source says which and why.
    #[error(transparent)]
    Load(Box<dyn std::error::Error + Send + Sync>),
}

pub type Result<T> = std::result::Result<T, Error>;

pub(crate) fn shape_err(op: &'static str, detail: impl Into<String>) -> Error {
    Error::Shape { op, detail: detail.into() }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    Cpu,
    Cuda,
}

pub struct AttnOut {
    /// [sq, hq, d], dtype of q (f32 with `f32_out`).
    pub out: Tensor,
    /// [hq, sq] f32 natural-log sum of exp of the scaled scores; -inf where a row saw no key.
    pub lse: Tensor,
}

pub struct Routing {
    /// [t, k] expert of each slot.
    pub ids: Tensor,
    /// [t, k] f32 combine weight of each slot.
    pub weights: Tensor,
    /// [t, e] f32 router probabilities (softmax) or scores (sigmoid), before bias.
    pub probs: Tensor,
}

pub struct Permuted<X = Tensor> {
    /// [t*k, h]: rows grouped by expert; inside an expert, in (token, slot) order.
    pub x: X,
    /// [e+1] i32 row offsets of each expert's group.
    pub offsets: Tensor,
    /// [t*k] i32: permuted row of slot (token, slot).
    pub row_of: Tensor,
}

/// Device work recorded once (a CUDA graph) and launched again as a whole.
pub trait Replay {
    /// Launch the recorded work; it rewrites `output` in place.
    fn replay(&self) -> Result<()>;
    /// The tensor the recorded work produces, as of the last replay.
    fn output(&self) -> &Tensor;
}

/// A point on the backend's timeline.
pub enum Mark {
    Host(std::time::Instant),
    Device(cuda::Event),
}

pub trait Backend: Send + Sync {
    fn kind(&self) -> BackendKind;
    fn device_name(&self) -> String;
    /// The device's ordinal as CUDA numbers it and its UUID (`GPU-xxxxxxxx-...`, as NVML and
    /// nvidia-smi print it); None on the CPU.
    fn device_identity(&self) -> Option<(usize, String)> {
        None
    }
    /// Start (true) or stop (false) the CUDA profiler's capture (cuProfilerStart/Stop);
    /// nothing on the CPU.
    fn profiler_capture(&self, _on: bool) -> Result<()> {
        Ok(())
    }

    fn upload(&self, v: &[f32], shape: &[usize], dtype: DType) -> Result<Tensor>;
    fn upload_i32(&self, v: &[i32], shape: &[usize]) -> Result<Tensor>;
    fn download(&self, t: &Tensor) -> Result<Vec<f32>>;
    fn download_i32(&self, t: &Tensor) -> Result<Vec<i32>>;
    /// Element i is `std*sqrt(3)*rng::uniform(seed, i)`, generated where the tensor lives.
    fn random(&self, shape: &[usize], dtype: DType, seed: u64, std: f32) -> Result<Tensor>;
    fn zeros(&self, shape: &[usize], dtype: DType) -> Result<Tensor>;
    /// Per-tensor scaled FP8 e4m3 copy: scale = amax / 448, kept with the tensor.
    fn quantize_fp8(&self, x: &Tensor) -> Result<Tensor>;

    /// Rows `start..start+len` of the first dimension.
    fn rows(&self, x: &Tensor, start: usize, len: usize) -> Result<Tensor>;
    /// Concatenate along the first dimension.
    fn concat_rows(&self, parts: &[&Tensor]) -> Result<Tensor>;
    /// a + b; b may also be one row [n] added to every row of a [.., n].
    fn add(&self, a: &Tensor, b: &Tensor) -> Result<Tensor>;
    /// table [v, h], ids [s] -> [s, h].
    fn embedding(&self, table: &Tensor, ids: &Tensor) -> Result<Tensor>;
    /// x [m, k] times w [n, k] transposed -> [m, n]; f32 accumulation; `out` dtype.
    fn matmul(&self, x: &Tensor, w: &Tensor, out: DType) -> Result<Tensor>;
    /// Rows offsets[e]..offsets[e+1] of x [r, k] times w[e] ([e, n, k], transposed) -> [r, n].
    fn grouped_matmul(&self, x: &Tensor, w: &Tensor, offsets: &Tensor) -> Result<Tensor>;
    /// swiglu(grouped_matmul(x, w, offsets)) for w [e, 2f, k] holding each expert's gate rows then
    /// up rows -> [r, f]. A backend may fuse the two (the CUDA one does on sm_90a); this composes them.
    fn grouped_matmul_swiglu(&self, x: &Tensor, w: &Tensor, offsets: &Tensor) -> Result<Tensor> {
        self.swiglu(&self.grouped_matmul(x, w, offsets)?, None)
    }
    /// swiglu(matmul(x, w)) for x [.., k] and w [2f, k] holding the gate rows then the up rows
    /// -> [.., f] in x's dtype. A backend may fuse the two (the CUDA one on sm_90a: the grouped
    /// kernel's SwiGLU epilogue as one expert over every row); this composes them.
    fn matmul_swiglu(&self, x: &Tensor, w: &Tensor) -> Result<Tensor> {
        self.swiglu(&self.matmul(x, w, x.dtype())?, None)
    }
    /// Whether `grouped_matmul_swiglu` is one kernel here (no [r, 2f] buffer): memory estimates ask.
    fn fuses_grouped_swiglu(&self) -> bool {
        false
    }
    /// Block-scaled FP8 e4m3 copy of `x` (DeepSeek-V3): one f32 scale (amax / 448) per 1 x 128
    /// block of x [r, k] (`Blocks::Rows`, activations) or 128 x 128 block of x [g, m, k]
    /// (`Blocks::Tiles`, expert weights).
    fn quantize_blocks(&self, x: &Tensor, blocks: Blocks) -> Result<BlockFp8>;
    /// `grouped_matmul` of block-scaled operands, x [r, k] (`Blocks::Rows`) and w [e, n, k]
    /// (`Blocks::Tiles`), accumulated in f32 with the scales applied per 128-deep slice of K -> bf16
    /// [r, n]; with `swiglu`, w [e, 2f, k] holds gate rows then up rows and the result is [r, f] of
    /// silu(gate) * up, rounded once.
    fn grouped_matmul_fp8(&self, x: &BlockFp8, w: &BlockFp8, offsets: &Tensor, swiglu: bool) -> Result<Tensor>;
    /// x [m, h] -> x / rms(x) * w.
    fn rms_norm(&self, x: &Tensor, w: &Tensor, eps: f32) -> Result<Tensor>;
    /// (x + residual, rms_norm(x + residual)) in one pass.
    fn add_rms_norm(&self, x: &Tensor, residual: &Tensor, w: &Tensor, eps: f32) -> Result<(Tensor, Tensor)>;
    /// x [s, heads, d] rotated by positions start..start+s (rotate-half convention).
    fn rope(&self, x: &Tensor, start: usize, p: &RopeParams) -> Result<Tensor>;
    /// silu(gate) * up. With `up` None, `gate` is [m, 2f] holding gate then up in each row.
    fn swiglu(&self, gate: &Tensor, up: Option<&Tensor>) -> Result<Tensor>;
    /// Grouped-query attention: q [sq, hq, d], k and v [sk, hkv, d].
    fn attention(&self, q: &Tensor, k: &Tensor, v: &Tensor, p: &AttnParams) -> Result<AttnOut>;
    /// Combine two partial attentions over disjoint key sets by their log-sum-exp.
    fn attn_merge(&self, a: &AttnOut, b: &AttnOut) -> Result<AttnOut>;
    /// A copy of `x` in `dtype` (bf16 <-> f32).
    fn cast(&self, x: &Tensor, dtype: DType) -> Result<Tensor>;
    /// logits [t, e] f32; bias [e] steers selection only (auxiliary-loss-free balancing).
    fn route(&self, logits: &Tensor, p: &RouterParams, bias: Option<&Tensor>) -> Result<Routing>;
    fn permute(&self, x: &Tensor, ids: &Tensor, num_experts: usize) -> Result<Permuted>;
    /// `permute` of rows quantised per token (`Blocks::Rows`): the same grouping, the e4m3 rows and
    /// their scales gathered (the rows' quantisation does not depend on their order, so quantising
    /// the t tokens before the gather gives the t*k permuted rows' bits).
    fn permute_fp8(&self, x: &BlockFp8, ids: &Tensor, num_experts: usize) -> Result<Permuted<BlockFp8>>;
    /// y [t*k, n] in permuted order -> [t, n] = sum over slots of weight * row.
    fn unpermute(&self, y: &Tensor, row_of: &Tensor, weights: &Tensor) -> Result<Tensor>;
    /// add(unpermute(y, row_of, weights), add) with `add` [t, n] (the shared experts), rounded as the
    /// two ops round; a backend may do both in one pass.
    fn unpermute_add(&self, y: &Tensor, row_of: &Tensor, weights: &Tensor, add: &Tensor) -> Result<Tensor> {
        self.add(&self.unpermute(y, row_of, weights)?, add)
    }

    /// Record the device work `f` enqueues (it must not read results on the host) for
    /// replay with one launch, and run it once. None where the backend has no graphs.
    fn capture(&self, _f: &mut dyn FnMut() -> Result<Tensor>) -> Result<Option<Box<dyn Replay>>> {
        Ok(None)
    }

    fn synchronize(&self) -> Result<()>;
    fn mark(&self) -> Result<Mark>;
    fn elapsed_ms(&self, start: &Mark, end: &Mark) -> Result<f64>;
    fn memory(&self) -> MemStats;
    fn reset_peak(&self);
    /// The device's total memory in bytes; None for the host (see `tensor::ledger::host_available`).
    fn total_memory(&self) -> Option<u64> {
        None
    }
}
