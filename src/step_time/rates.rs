//! The rates file `rwm-dist calibrate` writes, and how the step-time model looks a rate up in it:
//! GEMM TFLOP/s by shape, attention by length, grouped GEMM by rows per expert, memory bandwidth,
//! launch costs, and (optionally) the link NCCL used between ranks on one GPU. For another GPU the
//! measured rates are scaled by the two datasheets' peak ratios (`Rates::for_gpu`).

use super::{Error, MemKind, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// One GEMM shape measured: x [m, k] times w [n, k]^T.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GemmRate {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub fp8: bool,
    pub tflops: f64,
}

/// Causal flash attention over `seq` positions (self-attention, one sequence).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AttnRate {
    pub seq: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub tflops: f64,
}

/// A grouped GEMM: `experts` groups of `rows_per_expert` rows, each times its own w [n, k]^T.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GroupedRate {
    pub experts: usize,
    pub rows_per_expert: usize,
    pub n: usize,
    pub k: usize,
    pub tflops: f64,
}

/// The link of ranks that share one GPU (bench/nccl_one_gpu.sh: no MPS, NCCL over loopback
/// sockets). The GPU's time slices, not the sockets, set what a call costs: a rank waiting in
/// an NCCL kernel for a peer keeps the GPU to the end of its slice. Per call, each group loses
/// a slice for every member that must wait (one in a ring exchange, n - 1 in an all-gather or
/// all-to-all) and every rank's context is visited once more (`Link::latency_s`); the bytes
/// cross sockets that all the ranks share. Fitted by `calibrate --link-from` to multi-rank runs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LinkRate {
    /// Milliseconds lost per waiting rank, by kind of collective.
    pub slice_ms: SliceMs,
    /// Milliseconds per rank on the GPU, per call.
    pub visit_ms: f64,
    /// The sockets' bandwidth, shared by every rank on the GPU.
    pub gb_per_s: f64,
    /// Where it came from (the records it was fitted to).
    pub from: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct SliceMs {
    pub send_recv: f64,
    pub all_gather: f64,
    pub all_to_all: f64,
}

impl SliceMs {
    pub fn of(&self, kind: super::CollKind) -> f64 {
        match kind {
            super::CollKind::SendRecv => self.send_recv,
            super::CollKind::AllGather => self.all_gather,
            super::CollKind::AllToAll => self.all_to_all,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Rates {
    /// The device's name as the backend reports it ("NVIDIA H200", or the CPU's).
    pub gpu: String,
    pub backend: String,
    /// The build that measured (git revision), and when (UTC).
    pub git_rev: String,
    pub measured_at: String,
    /// "measured" by `calibrate`, or "datasheet" (built in, no file).
    pub source: String,
    pub gemm: Vec<GemmRate>,
    pub attention: Vec<AttnRate>,
    pub grouped: Vec<GroupedRate>,
    /// Element-wise ops (add of large tensors): bytes read + written per second.
    pub memory_gb_per_s: f64,
    /// GB/s of each kind of memory-bound kernel measured (the bytes `work` counts for it over
    /// its time); kinds not here run at `memory_gb_per_s`.
    #[serde(default)]
    pub memory: std::collections::BTreeMap<MemKind, f64>,
    /// Host time to launch one kernel eagerly (microseconds).
    pub launch_us: f64,
    /// Device time of the smallest kernel, back to back (microseconds).
    pub kernel_us: f64,
    /// A download that waits for the device to drain (microseconds).
    pub sync_us: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loopback: Option<LinkRate>,
}

/// Dense peaks from NVIDIA's datasheets (TFLOP/s without sparsity; TB/s of HBM).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Datasheet {
    pub name: &'static str,
    pub bf16_tflops: f64,
    pub fp8_tflops: f64,
    pub hbm_tb_per_s: f64,
}

/// Matched by substring of the upper-cased model name, in this order (GB200 before B200).
pub const DATASHEETS: [Datasheet; 5] = [
    Datasheet { name: "GB200", bf16_tflops: 2500.0, fp8_tflops: 5000.0, hbm_tb_per_s: 8.0 },
    Datasheet { name: "B200", bf16_tflops: 2250.0, fp8_tflops: 4500.0, hbm_tb_per_s: 8.0 },
    Datasheet { name: "H200", bf16_tflops: 989.0, fp8_tflops: 1979.0, hbm_tb_per_s: 4.8 },
    Datasheet { name: "H100", bf16_tflops: 989.0, fp8_tflops: 1979.0, hbm_tb_per_s: 3.35 },
    Datasheet { name: "A100", bf16_tflops: 312.0, fp8_tflops: 312.0, hbm_tb_per_s: 2.0 },
];

pub fn datasheet(model: &str) -> Option<Datasheet> {
    let m = model.to_uppercase();
    DATASHEETS.iter().copied().find(|d| m.contains(d.name))
}

/// Fractions of the datasheet peak assumed where nothing was measured (H100/H200 as seen in
/// BENCHMARKS.md: cuBLASLt ~0.7, our flash attention ~0.3, grouped wgmma ~0.45, HBM ~0.85).
const GEMM_EFF: f64 = 0.70;
const ATTN_EFF: f64 = 0.32;
const GROUPED_EFF: f64 = 0.45;
const MEM_EFF: f64 = 0.85;

/// ln-distance between two sizes, for nearest-shape lookups.
fn dist(a: usize, b: usize) -> f64 {
    ((a.max(1) as f64) / (b.max(1) as f64)).ln().abs()
}

/// Linear interpolation in ln(x) over points sorted by x, clamped at the ends.
fn interp(points: &[(f64, f64)], x: f64) -> f64 {
    let (first, last) = (points[0], points[points.len() - 1]);
    if x <= first.0 {
        return first.1;
    }
    if x >= last.0 {
        return last.1;
    }
    let i = points.iter().position(|p| p.0 >= x).expect("x is inside the range");
    let (a, b) = (points[i - 1], points[i]);
    let t = (x.ln() - a.0.ln()) / (b.0.ln() - a.0.ln());
    a.1 + t * (b.1 - a.1)
}

impl Rates {
    pub fn load(path: &Path) -> Result<Rates> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::Io(path.display().to_string(), e))?;
        let r: Rates = serde_json::from_str(&text).map_err(|e| Error::Rates(format!("{}: {e}", path.display())))?;
        r.validate().map_err(|e| Error::Rates(format!("{}: {e}", path.display())))?;
        Ok(r)
    }

    pub fn save(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self).expect("rates serialise");
        std::fs::write(path, text + "\n").map_err(|e| Error::Io(path.display().to_string(), e))
    }

    /// Every rate positive and finite; at least one GEMM and one attention entry.
    pub fn validate(&self) -> std::result::Result<(), String> {
        let ok = |v: f64| v.is_finite() && v > 0.0;
        if self.gemm.is_empty() || self.attention.is_empty() {
            return Err("`gemm` and `attention` need at least one entry each".into());
        }
        let all = self.gemm.iter().map(|g| ("gemm.tflops", g.tflops));
        let all = all.chain(self.attention.iter().map(|a| ("attention.tflops", a.tflops)));
        let all = all.chain(self.grouped.iter().map(|g| ("grouped.tflops", g.tflops)));
        let all = all.chain([("memory_gb_per_s", self.memory_gb_per_s)]);
        let all = all.chain(self.memory.values().map(|&v| ("memory.*", v)));
        for (key, v) in all {
            if !ok(v) {
                return Err(format!("`{key}` must be a positive number, got {v}"));
            }
        }
        for (key, v) in [("launch_us", self.launch_us), ("kernel_us", self.kernel_us), ("sync_us", self.sync_us)] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(format!("`{key}` must be a number >= 0, got {v}"));
            }
        }
        if let Some(l) = &self.loopback {
            let s = l.slice_ms;
            let all = [s.send_recv, s.all_gather, s.all_to_all, l.visit_ms];
            if !(ok(l.gb_per_s) && all.iter().all(|v| v.is_finite() && *v >= 0.0)) {
                return Err(format!("`loopback` needs slice_ms and visit_ms >= 0 and gb_per_s > 0, got {l:?}"));
            }
        }
        Ok(())
    }

    /// Rates of a GPU from its datasheet alone, at the fractions of peak seen on Hopper.
    pub fn from_datasheet(d: Datasheet, model: &str) -> Rates {
        let (m, n, k) = (8192, 8192, 8192);
        Rates {
            gpu: model.to_string(),
            backend: "cuda".into(),
            git_rev: crate::harness::record::git_rev().into(),
            measured_at: String::new(),
            source: "datasheet".into(),
            gemm: vec![
                GemmRate { m, n, k, fp8: false, tflops: GEMM_EFF * d.bf16_tflops },
                GemmRate { m, n, k, fp8: true, tflops: GEMM_EFF * d.fp8_tflops },
            ],
            attention: vec![AttnRate {
                seq: 8192,
                heads: 32,
                kv_heads: 8,
                head_dim: 128,
                tflops: ATTN_EFF * d.bf16_tflops,
            }],
            grouped: vec![GroupedRate {
                experts: 64,
                rows_per_expert: 1536,
                n: 2816,
                k: 2048,
                tflops: GROUPED_EFF * d.bf16_tflops,
            }],
            memory_gb_per_s: MEM_EFF * d.hbm_tb_per_s * 1e3,
            memory: Default::default(),
            launch_us: 5.0,
            kernel_us: 3.0,
            sync_us: 20.0,
            loopback: None,
        }
    }

    /// These rates carried to `model`: unchanged when it is the GPU that measured them; else
    /// every compute rate scaled by the datasheets' peak ratio and the bandwidth by the HBM
    /// ratio (the measured efficiency at each shape is kept); datasheet rates where the measured
    /// GPU has no datasheet entry. The note says which.
    pub fn for_gpu(&self, model: &str) -> (Rates, String) {
        let same = self.gpu.eq_ignore_ascii_case(model)
            || datasheet(&self.gpu).is_some_and(|a| datasheet(model).is_some_and(|b| a.name == b.name));
        if same {
            return (self.clone(), format!("{} rates of {} (git {})", self.source, self.gpu, self.git_rev));
        }
        let Some(to) = datasheet(model) else {
            return (
                self.clone(),
                format!("{} rates of {}: no datasheet for {model}, used as is", self.source, self.gpu),
            );
        };
        let Some(from) = datasheet(&self.gpu) else {
            let note = format!("{model} datasheet x Hopper efficiencies (no rates measured on a known GPU)");
            return (Rates::from_datasheet(to, model), note);
        };
        let (c16, c8, mem) =
            (to.bf16_tflops / from.bf16_tflops, to.fp8_tflops / from.fp8_tflops, to.hbm_tb_per_s / from.hbm_tb_per_s);
        let mut r = self.clone();
        r.gpu = model.to_string();
        r.source = format!("{} on {}, scaled by datasheet", self.source, self.gpu);
        r.gemm.iter_mut().for_each(|g| g.tflops *= if g.fp8 { c8 } else { c16 });
        r.attention.iter_mut().for_each(|a| a.tflops *= c16);
        r.grouped.iter_mut().for_each(|g| g.tflops *= c16);
        r.memory_gb_per_s *= mem;
        r.memory.values_mut().for_each(|v| *v *= mem);
        let note = format!(
            "{model}: rates measured on {} (git {}) scaled by datasheet peaks: bf16 x{c16:.2}, fp8 x{c8:.2}, HBM x{mem:.2}",
            self.gpu, self.git_rev
        );
        (r, note)
    }

    /// GB/s of a memory-bound kernel of `kind`.
    pub fn memory(&self, kind: MemKind) -> f64 {
        self.memory.get(&kind).copied().unwrap_or(self.memory_gb_per_s)
    }

    /// TFLOP/s of x [m, k] w [n, k]^T: the measured shape nearest in ln m, ln n, ln k
    /// (bf16 entries when no FP8 one was measured).
    pub fn gemm(&self, m: usize, n: usize, k: usize, fp8: bool) -> f64 {
        let pool: Vec<&GemmRate> = self.gemm.iter().filter(|g| g.fp8 == fp8).collect();
        let pool = if pool.is_empty() { self.gemm.iter().collect() } else { pool };
        let d = |g: &GemmRate| dist(g.m, m).powi(2) + dist(g.n, n).powi(2) + dist(g.k, k).powi(2);
        pool.into_iter().min_by(|a, b| d(a).total_cmp(&d(b))).expect("validated: not empty").tflops
    }

    /// TFLOP/s of causal attention whose visible (query, key) pairs equal a causal pass over
    /// `seq` positions, interpolated in ln(seq) among the head dimension's nearest entries.
    pub fn attention(&self, seq: f64, head_dim: usize) -> f64 {
        let nearest = self.attention.iter().map(|a| dist(a.head_dim, head_dim)).fold(f64::INFINITY, f64::min);
        let mut pts: Vec<(f64, f64)> = self
            .attention
            .iter()
            .filter(|a| dist(a.head_dim, head_dim) == nearest)
            .map(|a| (a.seq as f64, a.tflops))
            .collect();
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
        interp(&pts, seq.max(1.0))
    }

    /// TFLOP/s of a grouped GEMM: among the entries of the nearest (n, k), interpolated in
    /// ln(rows per expert); the bf16 GEMM at the same total shape when none was measured.
    pub fn grouped(&self, rows: usize, experts: usize, n: usize, k: usize) -> f64 {
        let rpe = rows as f64 / experts.max(1) as f64;
        if self.grouped.is_empty() {
            return self.gemm(rows, n, k, false);
        }
        let d = |g: &GroupedRate| dist(g.n, n).powi(2) + dist(g.k, k).powi(2);
        let best = self.grouped.iter().map(d).fold(f64::INFINITY, f64::min);
        let mut pts: Vec<(f64, f64)> =
            self.grouped.iter().filter(|g| d(g) == best).map(|g| (g.rows_per_expert as f64, g.tflops)).collect();
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
        interp(&pts, rpe.max(1.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rates() -> Rates {
        let mut r = Rates::from_datasheet(datasheet("NVIDIA H200").unwrap(), "NVIDIA H200");
        r.attention = vec![
            AttnRate { seq: 1024, heads: 32, kv_heads: 8, head_dim: 128, tflops: 100.0 },
            AttnRate { seq: 4096, heads: 32, kv_heads: 8, head_dim: 128, tflops: 300.0 },
        ];
        r
    }

    #[test]
    fn attention_interpolates_in_log_length_and_clamps() {
        let r = rates();
        assert_eq!(r.attention(512.0, 128), 100.0);
        assert_eq!(r.attention(8192.0, 128), 300.0);
        // 2048 is half way between 1024 and 4096 in ln.
        assert!((r.attention(2048.0, 128) - 200.0).abs() < 1e-9);
    }

    #[test]
    fn another_gpu_scales_by_the_datasheet_ratio() {
        let r = rates();
        let (b, note) = r.for_gpu("NVIDIA B200");
        assert!((b.gemm(8192, 8192, 8192, false) / r.gemm(8192, 8192, 8192, false) - 2250.0 / 989.0).abs() < 1e-12);
        assert!((b.memory_gb_per_s / r.memory_gb_per_s - 8.0 / 4.8).abs() < 1e-12);
        assert!(note.contains("scaled by datasheet"), "{note}");
        let (same, _) = r.for_gpu("NVIDIA H200 NVL");
        assert_eq!(same, r);
    }

    #[test]
    fn a_bad_rate_names_its_key() {
        let mut r = rates();
        r.memory_gb_per_s = 0.0;
        assert!(r.validate().unwrap_err().contains("memory_gb_per_s"));
    }
}
