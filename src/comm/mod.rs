//! `Comm`: the collectives the parallel wrappers need, over one group of ranks.
//! `local` runs ranks as threads of one process (tests, CPU runs); `mpi` and
//! `nccl` are the only modules that touch rsmpi and cudarc's NCCL.

#[cfg(feature = "mpi")]
pub mod mpi;
pub mod single;

use crate::tensor::Tensor;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("rank {rank}: {op} failed: {msg}")]
    Failed { rank: usize, op: &'static str, msg: String },
    #[error("rank {rank}: {op}: peer rank {peer} is gone (it failed or timed out)")]
    PeerLost { rank: usize, op: &'static str, peer: usize },
    #[error("rank {rank}: {op} timed out after {secs} s")]
    Timeout { rank: usize, op: &'static str, secs: u64 },
    #[error(transparent)]
    Backend(#[from] crate::backend::Error),
}

pub type Result<T> = std::result::Result<T, Error>;

/// A receive posted by `sendrecv_start`; `wait` returns the received tensor.
pub trait Pending: Send {
    fn wait(self: Box<Self>) -> Result<Tensor>;
}

pub trait Comm: Send + Sync {
    fn rank(&self) -> usize;
    fn size(&self) -> usize;
    fn name(&self) -> &'static str;

    /// Row block i of `send` (send_rows[i] rows) goes to rank i; the result holds
    /// recv_rows[j] rows from each rank j, in rank order.
    fn all_to_all_v(&self, send: &Tensor, send_rows: &[usize], recv_rows: &[usize]) -> Result<Tensor>;
    /// Every rank's `x`, concatenated along rows in rank order.
    fn all_gather(&self, x: &Tensor) -> Result<Tensor>;
    fn all_reduce_sum(&self, x: &Tensor) -> Result<Tensor>;
    /// Send `x` to rank `to` and receive a tensor shaped like `x` from rank `from`
    /// without blocking the caller: it can compute while the transfer runs.
    fn sendrecv_start(&self, x: &Tensor, to: usize, from: usize) -> Result<Box<dyn Pending>>;

    /// Host-side exchange of small integer vectors (token counts): element i goes to rank i.
    fn all_to_all_counts(&self, counts: &[usize]) -> Result<Vec<usize>>;
    /// Rank 0 receives every rank's bytes in rank order; others receive None.
    fn gather_bytes(&self, bytes: &[u8]) -> Result<Option<Vec<Vec<u8>>>>;
    fn broadcast_bytes(&self, bytes: &[u8]) -> Result<Vec<u8>>;
    fn barrier(&self) -> Result<()>;
}
