//! Step time before the rack: each target's forward as a list of ops and collectives per rank
//! (`work`), priced by rates measured on one GPU (`rates`, written by `rwm-dist calibrate`,
//! `calibrate`) and by the topology's links (`links`): compute, communication (the CP ring
//! overlapped with attention as src/parallel/context.rs runs it), the critical path, tokens/s
//! and MFU. `estimate --time` prints it and ranks every layout that fits (`sweep`).

pub mod calibrate;
pub mod links;
pub mod rates;
pub mod sweep;
pub mod work;

pub use links::{Link, Links};
pub use rates::Rates;
pub use work::Work;

use crate::layout::Dim;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
    #[error("rates file {0}")]
    Rates(String),
    #[error("loopback fit: {0}")]
    Fit(String),
    #[error(transparent)]
    Backend(#[from] crate::backend::Error),
    #[error(transparent)]
    Topology(#[from] crate::topology::Error),
}

pub type Result<T> = std::result::Result<T, Error>;

/// One kernel (or one cuBLASLt call) of a rank's forward.
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    /// x [m, k] times w [n, k]^T; `out_bytes` per output element.
    Gemm { m: usize, n: usize, k: usize, fp8: bool, out_bytes: usize },
    /// Attention with `pairs` visible (query, key) pairs per head.
    Attn { pairs: f64, heads: usize, head_dim: usize },
    /// `experts` GEMMs over `rows` rows grouped by expert, each times its own w [n, k]^T.
    Grouped { rows: usize, experts: usize, n: usize, k: usize },
    /// An element-wise, gather or reduction kernel moving this many bytes (read + written),
    /// at the bandwidth calibrated for its kind.
    Mem { kind: MemKind, bytes: f64 },
    /// The host waits for the device (a download of routing offsets).
    Sync,
}

impl Op {
    pub fn flops(&self) -> f64 {
        match *self {
            Op::Gemm { m, n, k, .. } | Op::Grouped { rows: m, n, k, .. } => 2.0 * m as f64 * n as f64 * k as f64,
            Op::Attn { pairs, heads, head_dim } => 4.0 * heads as f64 * head_dim as f64 * pairs,
            Op::Mem { .. } | Op::Sync => 0.0,
        }
    }

    /// Device seconds at `r`'s rates (none for a sync: it is host time).
    pub fn device_s(&self, r: &Rates) -> f64 {
        let bw = r.memory_gb_per_s * 1e9;
        let t = match *self {
            Op::Gemm { m, n, k, fp8, out_bytes } => {
                let elt = if fp8 { 1.0 } else { 2.0 };
                let bytes = (m * k + n * k) as f64 * elt + (m * n * out_bytes) as f64;
                (self.flops() / (r.gemm(m, n, k, fp8) * 1e12)).max(bytes / bw)
            }
            Op::Attn { pairs, head_dim, .. } => self.flops() / (r.attention((2.0 * pairs).sqrt(), head_dim) * 1e12),
            Op::Grouped { rows, experts, n, k } => self.flops() / (r.grouped(rows, experts, n, k) * 1e12),
            Op::Mem { kind, bytes } => bytes / (r.memory(kind) * 1e9),
            Op::Sync => return 0.0,
        };
        t.max(r.kernel_us * 1e-6)
    }
}

/// Seconds of `ops` run back to back: device time kernel by kernel, or the host's launches when
/// they are slower (eager launches of small kernels), plus a drain per sync. A CUDA graph
/// (`graph`) launches from the device: no host cost per kernel.
pub fn compute_s(ops: &[Op], r: &Rates, graph: bool) -> f64 {
    let device: f64 = ops.iter().map(|o| o.device_s(r)).sum();
    let kernels = ops.iter().filter(|o| !matches!(o, Op::Sync)).count() as f64;
    let host = if graph { 0.0 } else { kernels * r.launch_us * 1e-6 };
    let syncs = ops.iter().filter(|o| matches!(o, Op::Sync)).count() as f64 * r.sync_us * 1e-6;
    device.max(host) + syncs
}

/// The memory-bound kernels by kind: each runs at its own fraction of the HBM bandwidth
/// (a permutation's scattered rows are slower than an add), calibrated one by one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MemKind {
    /// Element-wise add; also copies, pads, concatenations and gathers of whole rows.
    Add,
    Norm,
    NormAdd,
    Rope,
    Swiglu,
    /// FP8 quantisation of an activation: absolute maximum, then scale and cast.
    Quantize,
    /// Rows grouped by expert: count, scan, rank and scatter.
    Permute,
    /// Expert outputs gathered back and weighted.
    Unpermute,
    /// Top-k over the router's logits.
    Route,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CollKind {
    /// One ring step: each rank sends `bytes` to the next and receives as many.
    SendRecv,
    /// Every rank contributes `bytes`; each receives the other n-1 blocks.
    AllGather,
    /// Every rank scatters `bytes` over the group (a 1/n share stays local).
    AllToAll,
}

/// One collective call (or `calls` calls issued together) over the group of `dim`.
#[derive(Clone, Debug, PartialEq)]
pub struct Collective {
    pub kind: CollKind,
    pub dim: Dim,
    pub bytes: f64,
    pub calls: usize,
}

impl Collective {
    /// Seconds over `link` in a group of `n`: the bytes that leave the rank over the link's
    /// bandwidth ((n-1)/n of an all-to-all, n-1 blocks of an all-gather), plus the link's
    /// latency per call.
    pub fn seconds(&self, n: usize, link: &Link) -> f64 {
        if n <= 1 {
            return 0.0;
        }
        let nf = n as f64;
        let wire = match self.kind {
            CollKind::SendRecv => self.bytes,
            CollKind::AllGather => self.bytes * (nf - 1.0),
            CollKind::AllToAll => self.bytes * (nf - 1.0) / nf,
        };
        self.calls as f64 * link.latency_s(self.kind, n) + wire / (link.gb_per_s * 1e9)
    }
}

/// A stretch of a rank's forward.
#[derive(Clone, Debug, PartialEq)]
pub enum Phase {
    Compute(Vec<Op>),
    /// A blocking collective.
    Comm(Collective),
    /// A CP ring step: the next block's transfer in flight while this block's attention
    /// runs; the step ends when both have.
    Overlapped {
        compute: Vec<Op>,
        comm: Collective,
    },
}

/// What one step costs one rank (seconds), and what it is worth.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Prediction {
    pub step_s: f64,
    pub compute_s: f64,
    /// Transfer time of every collective, hidden or not.
    pub comm_s: f64,
    /// The part of `comm_s` on the critical path (not hidden under compute).
    pub exposed_comm_s: f64,
    /// Tokens a rank processes per step, and the whole job per second.
    pub tokens_per_rank: usize,
    pub job_tokens_per_s: f64,
    /// FLOPs per rank as the records count them, over the step, over the datasheet bf16 peak.
    pub tflops: f64,
    pub mfu: Option<f64>,
}

impl Prediction {
    /// Exposed communication as a share of the step.
    pub fn comm_fraction(&self) -> f64 {
        if self.step_s > 0.0 { self.exposed_comm_s / self.step_s } else { 0.0 }
    }
}

/// The step of `w` on `world` ranks: phases in order, compute at `r`'s rates (times the ranks
/// that share one GPU: their kernels take turns), collectives over `links`.
pub fn predict(w: &Work, r: &Rates, links: &Links, world: usize) -> Prediction {
    let share = links.ranks_per_gpu.max(1) as f64;
    let (mut step, mut compute, mut comm, mut exposed) = (0.0, 0.0, 0.0, 0.0);
    for p in &w.phases {
        match p {
            Phase::Compute(ops) => {
                let c = share * compute_s(ops, r, w.graph);
                compute += c;
                step += c;
            }
            Phase::Comm(c) => {
                let t = links.seconds(c);
                comm += t;
                exposed += t;
                step += t;
            }
            Phase::Overlapped { compute: ops, comm: c } => {
                let (a, t) = (share * compute_s(ops, r, w.graph), links.seconds(c));
                compute += a;
                comm += t;
                exposed += (t - a).max(0.0);
                step += a.max(t);
            }
        }
    }
    let peak = rates::datasheet(&r.gpu).map(|d| d.bf16_tflops);
    let tflops = if step > 0.0 { w.flops / step / 1e12 } else { 0.0 };
    Prediction {
        step_s: step,
        compute_s: compute,
        comm_s: comm,
        exposed_comm_s: exposed,
        tokens_per_rank: w.tokens,
        job_tokens_per_s: if step > 0.0 { (w.tokens * world) as f64 / step } else { 0.0 },
        tflops,
        mfu: peak.map(|p| tflops / p),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 1 TFLOP/s for every GEMM and attention, 1 GB/s of memory, no launch costs.
    fn unit_rates() -> Rates {
        let mut r = Rates::from_datasheet(rates::datasheet("H100").unwrap(), "test GPU");
        r.gemm.iter_mut().for_each(|g| g.tflops = 1.0);
        r.attention.iter_mut().for_each(|a| a.tflops = 1.0);
        r.grouped.iter_mut().for_each(|g| g.tflops = 1.0);
        (r.memory_gb_per_s, r.launch_us, r.kernel_us, r.sync_us) = (1.0, 0.0, 0.0, 0.0);
        r
    }

    #[test]
    fn ops_cost_flops_over_rate_or_bytes_over_bandwidth() {
        let r = unit_rates();
        // 2 x 1000 x 1000 x 500 = 1e9 FLOPs at 1 TFLOP/s = 1 ms; its (5e5 + 5e5) x 2 bytes in
        // and 1e6 x 2 out at 1 GB/s = 4 ms.
        let g = Op::Gemm { m: 1000, n: 1000, k: 500, fp8: false, out_bytes: 2 };
        assert!((g.device_s(&r) - 4e-3).abs() < 1e-12, "{}", g.device_s(&r));
        let mut fast = r.clone();
        fast.memory_gb_per_s = 1e6;
        assert!((g.device_s(&fast) - 1e-3).abs() < 1e-9);
        // Attention: 4 x 2 heads x 64 x 1e6 pairs = 5.12e8 FLOPs = 0.512 ms.
        let a = Op::Attn { pairs: 1e6, heads: 2, head_dim: 64 };
        assert!((a.device_s(&r) - 0.512e-3).abs() < 1e-12);
        assert!((Op::Mem { kind: MemKind::Rope, bytes: 2e6 }.device_s(&r) - 2e-3).abs() < 1e-12);
        // A kind with its own calibrated bandwidth runs at it.
        let mut slow = r.clone();
        slow.memory.insert(MemKind::Permute, 0.5);
        assert!((Op::Mem { kind: MemKind::Permute, bytes: 2e6 }.device_s(&slow) - 4e-3).abs() < 1e-12);
    }

    #[test]
    fn collectives_follow_the_bus_factors() {
        let link = Link::new("t", 1.0, 1e-3);
        let a2a = Collective { kind: CollKind::AllToAll, dim: Dim::Ep, bytes: 4e9, calls: 1 };
        // (4-1)/4 of 4 GB at 1 GB/s = 3 s, plus one latency.
        assert!((a2a.seconds(4, &link) - 3.001).abs() < 1e-9);
        let ag = Collective { kind: CollKind::AllGather, dim: Dim::Cp, bytes: 1e9, calls: 2 };
        // 3 blocks of 1 GB = 3 s; 2 calls x 3 ring steps of latency.
        assert!((ag.seconds(4, &link) - 3.006).abs() < 1e-9);
        assert_eq!(ag.seconds(1, &link), 0.0);
        // A ring exchange: its bytes once, one latency.
        let sr = Collective { kind: CollKind::SendRecv, dim: Dim::Cp, bytes: 1e9, calls: 1 };
        assert!((sr.seconds(4, &link) - 1.001).abs() < 1e-9);
    }

    #[test]
    fn a_ring_step_takes_the_longer_of_compute_and_transfer() {
        let r = unit_rates();
        let link = Link::new("t", 1.0, 0.0);
        let links = Links::uniform(link, 2);
        let sr = |bytes| Collective { kind: CollKind::SendRecv, dim: Dim::Cp, bytes, calls: 1 };
        let attn = vec![Op::Mem { kind: MemKind::Add, bytes: 2e6 }]; // 2 ms
        let w = Work {
            phases: vec![
                Phase::Overlapped { compute: attn.clone(), comm: sr(1e6) }, // hidden: 2 ms
                Phase::Overlapped { compute: attn.clone(), comm: sr(5e6) }, // 5 ms, 3 exposed
                Phase::Compute(attn),
            ],
            tokens: 10,
            flops: 0.0,
            graph: false,
        };
        let p = predict(&w, &r, &links, 2);
        assert!((p.step_s - 9e-3).abs() < 1e-12, "{p:?}");
        assert!((p.comm_s - 6e-3).abs() < 1e-12 && (p.exposed_comm_s - 3e-3).abs() < 1e-12, "{p:?}");
        assert!((p.job_tokens_per_s - 20.0 / 9e-3).abs() < 1e-6);
    }
}
