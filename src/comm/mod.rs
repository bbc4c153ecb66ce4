//! `Comm`: the collectives the parallel wrappers need, over one group of ranks.
//! `local` runs ranks as threads of one process (tests, CPU runs); `mpi` and
//! `nccl` are the only modules that touch rsmpi and cudarc's NCCL. Each collective runs under
//! the `watchdog`.

pub mod local;
#[cfg(feature = "mpi")]
pub mod mpi;
#[cfg(feature = "mpi")]
pub mod mpi_progress;
pub mod nccl;
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
    /// Keep `x` alive until the `Pending` is waited: a device transfer reads it meanwhile.
    fn sendrecv_start(&self, x: &Tensor, to: usize, from: usize) -> Result<Box<dyn Pending>>;
    /// `sendrecv_start` of each of `xs` with the same peers, issued together; the `Pending`s come
    /// back in `xs`' order. NCCL makes it one group: one kernel and one latency for all of them
    /// (the CP ring's K and V), where separate calls cost one each.
    fn sendrecv_all_start(&self, xs: &[&Tensor], to: usize, from: usize) -> Result<Vec<Box<dyn Pending>>> {
        xs.iter().map(|x| self.sendrecv_start(x, to, from)).collect()
    }

    /// Host-side exchange of small integer vectors (token counts): element i goes to rank i.
    fn all_to_all_counts(&self, counts: &[usize]) -> Result<Vec<usize>>;
    /// As `all_to_all_counts` with `block` elements per rank: elements i*block..(i+1)*block
    /// go to rank i; the result holds each rank's block in rank order.
    fn all_to_all_count_blocks(&self, counts: &[usize], block: usize) -> Result<Vec<usize>> {
        let n = self.size();
        if counts.len() != n * block {
            let msg = format!("{} counts for {n} ranks of {block}", counts.len());
            return Err(Error::Failed { rank: self.rank(), op: "all_to_all_count_blocks", msg });
        }
        let mut out = vec![0; n * block];
        for b in 0..block {
            let column: Vec<usize> = (0..n).map(|i| counts[i * block + b]).collect();
            for (j, c) in self.all_to_all_counts(&column)?.into_iter().enumerate() {
                out[j * block + b] = c;
            }
        }
        Ok(out)
    }
    /// Rank 0 receives every rank's bytes in rank order; others receive None.
    fn gather_bytes(&self, bytes: &[u8]) -> Result<Option<Vec<Vec<u8>>>>;
    fn broadcast_bytes(&self, bytes: &[u8]) -> Result<Vec<u8>>;
    fn barrier(&self) -> Result<()>;

    /// Collective over this group: ranks passing the same `color` form a new group,
    /// ranked by (`key`, rank in this group) — MPI_Comm_split's rule.
    fn split(&self, color: usize, key: usize) -> Result<Box<dyn Comm>>;
}
