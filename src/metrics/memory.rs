//! Per-rank memory budget for forward-only prefill (`rwm-dist estimate`), computed before anything
//! is allocated: parameters, KV cache, activations, logits, attention workspace, MoE dispatch and
//! communication buffers. Every formula is in docs/metrics.md; terms are summed, so the total is an
//! upper bound for an implementation that frees buffers between phases of a layer.

use super::ceil_count;
use crate::backend::AttnAlgo;
use crate::layout::CpKind;
use serde::Serialize;
use std::io::{self, Write};

pub const GIB: u64 = 1 << 30;

/// Device memory presets for `--device-memory`, in GiB.
pub const DEVICE_PRESETS: [(&str, u64); 3] = [("h100", 80), ("h200", 141), ("gb200", 186)];

#[derive(Debug, PartialEq, thiserror::Error)]
pub enum MemoryError {
    #[error("memory estimate: {field} = {value} is invalid; allowed: {allowed}")]
    Invalid { field: &'static str, value: String, allowed: String },
    #[error(
        "--device-memory: cannot use '{0}'; allowed: h100 (80 GiB), h200 (141 GiB), gb200 (186 GiB), or GiB as a number such as 80 or 79.6GiB"
    )]
    Device(String),
}

/// The estimate overflows the device: names the largest term, and the overflow in GiB.
#[derive(Debug, PartialEq, thiserror::Error)]
#[error(
    "estimated {:.2} GiB per rank exceeds the device's {:.2} GiB by {:.2} GiB; largest term: {term} ({:.2} GiB)",
    gib(*.total), gib(*.device), gib(*.by_bytes), gib(*.term_bytes)
)]
pub struct Overflow {
    /// The largest term.
    pub term: &'static str,
    pub term_bytes: u64,
    pub by_bytes: u64,
    pub total: u64,
    pub device: u64,
}

pub fn gib(bytes: u64) -> f64 {
    bytes as f64 / GIB as f64
}

/// `h100`, `h200`, `gb200`, or a number of GiB (`80`, `79.6GiB`), as bytes.
pub fn parse_device_memory(s: &str) -> Result<u64, MemoryError> {
    let t = s.trim().to_ascii_lowercase();
    if let Some((_, g)) = DEVICE_PRESETS.iter().find(|(n, _)| *n == t) {
        return Ok(g * GIB);
    }
    match t.strip_suffix("gib").unwrap_or(&t).trim().parse::<f64>() {
        Ok(g) if g.is_finite() && g > 0.0 => Ok((g * GIB as f64).round() as u64),
        _ => Err(MemoryError::Device(s.to_string())),
    }
}

/// Model shape and parallel layout. The lead maps each model config onto this.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MemoryInputs {
    pub layers: usize,
    pub hidden: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    /// Dense SwiGLU intermediate size; 0 if dense layers have no MLP.
    pub ffn: usize,
    pub vocab: usize,
    /// The LM head is the embedding table (counted once).
    pub tied_embeddings: bool,
    pub num_experts: usize,
    pub top_k: usize,
    /// SwiGLU intermediate size of one routed (and one shared) expert.
    pub expert_ffn: usize,
    pub shared_experts: usize,
    /// How many of `layers` are MoE layers; the rest are dense.
    pub moe_layer_count: usize,
    pub seq_len: usize,
    /// Global batch in sequences, split over `dp`.
    pub batch: usize,
    pub param_bytes: usize,
    /// Bytes of activations and of the KV cache.
    pub act_bytes: usize,
    pub tp: usize,
    pub cp: usize,
    pub ep: usize,
    pub dp: usize,
    pub attention: AttnAlgo,
    /// Naive attention materialises scores for this many (sequence, head) pairs at once.
    pub naive_heads_at_once: usize,
    pub cp_mode: CpKind,
    pub capacity_factor: f64,
    /// Logits for every token (true) or only each sequence's last token (false).
    pub full_logits: bool,
}

impl Default for MemoryInputs {
    /// Zero sizes (to be filled in), bf16, no parallelism, flash attention.
    fn default() -> Self {
        Self {
            layers: 0,
            hidden: 0,
            heads: 0,
            kv_heads: 0,
            head_dim: 0,
            ffn: 0,
            vocab: 0,
            tied_embeddings: false,
            num_experts: 0,
            top_k: 0,
            expert_ffn: 0,
            shared_experts: 0,
            moe_layer_count: 0,
            seq_len: 0,
            batch: 1,
            param_bytes: 2,
            act_bytes: 2,
            tp: 1,
            cp: 1,
            ep: 1,
            dp: 1,
            attention: AttnAlgo::Flash,
            naive_heads_at_once: 1,
            cp_mode: CpKind::Ring,
            capacity_factor: 1.0,
            full_logits: false,
        }
    }
}

pub mod term {
    pub const PARAMETERS: &str = "parameters";
    pub const KV_CACHE: &str = "kv cache";
    pub const ACTIVATIONS: &str = "activations (one layer)";
    pub const LOGITS: &str = "logits";
    pub const ATTENTION: &str = "attention workspace";
    pub const MOE_DISPATCH: &str = "moe dispatch";
    pub const COMM_CP_RING: &str = "comm: cp ring k/v blocks";
    pub const COMM_CP_ALLGATHER: &str = "comm: cp all-gathered k/v";
    pub const COMM_EP: &str = "comm: ep send+recv";
    pub const COMM_TP: &str = "comm: tp all-reduce";
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Term {
    pub name: &'static str,
    pub bytes: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Budget {
    pub terms: Vec<Term>,
    pub total: u64,
}

fn invalid(field: &'static str, value: impl ToString, allowed: impl Into<String>) -> MemoryError {
    MemoryError::Invalid { field, value: value.to_string(), allowed: allowed.into() }
}

fn at_least_1(field: &'static str, v: usize) -> Result<(), MemoryError> {
    if v == 0 { Err(invalid(field, v, "an integer >= 1")) } else { Ok(()) }
}

fn divides(field: &'static str, v: usize, by_name: &'static str, by: usize) -> Result<(), MemoryError> {
    if !v.is_multiple_of(by) { Err(invalid(field, v, format!("a multiple of {by_name} = {by}"))) } else { Ok(()) }
}

impl MemoryInputs {
    fn dense_layers(&self) -> usize {
        self.layers - self.moe_layer_count
    }

    /// KV heads held per TP rank: split when tp divides them, else one replicated head.
    fn kv_heads_at(&self, tp: usize) -> usize {
        (self.kv_heads / tp).max(1)
    }

    pub fn validate(&self) -> Result<(), MemoryError> {
        for (f, v) in [
            ("layers", self.layers),
            ("hidden", self.hidden),
            ("heads", self.heads),
            ("kv_heads", self.kv_heads),
            ("head_dim", self.head_dim),
            ("vocab", self.vocab),
            ("seq_len", self.seq_len),
            ("batch", self.batch),
            ("param_bytes", self.param_bytes),
            ("act_bytes", self.act_bytes),
            ("tp", self.tp),
            ("cp", self.cp),
            ("ep", self.ep),
            ("dp", self.dp),
            ("naive_heads_at_once", self.naive_heads_at_once),
        ] {
            at_least_1(f, v)?;
        }
        divides("heads", self.heads, "kv_heads", self.kv_heads)?;
        divides("heads", self.heads, "tp", self.tp)?;
        if !self.kv_heads.is_multiple_of(self.tp) && !self.tp.is_multiple_of(self.kv_heads) {
            return Err(invalid("kv_heads", self.kv_heads, format!("a multiple or divisor of tp = {}", self.tp)));
        }
        divides("ffn", self.ffn, "tp", self.tp)?;
        divides("batch", self.batch, "dp", self.dp)?;
        if self.moe_layer_count > self.layers {
            return Err(invalid("moe_layer_count", self.moe_layer_count, format!("0..={} (layers)", self.layers)));
        }
        if self.moe_layer_count > 0 {
            at_least_1("num_experts", self.num_experts)?;
            at_least_1("expert_ffn", self.expert_ffn)?;
            if self.top_k == 0 || self.top_k > self.num_experts {
                return Err(invalid("top_k", self.top_k, format!("1..={} (num_experts)", self.num_experts)));
            }
            divides("num_experts", self.num_experts, "ep", self.ep)?;
            divides("expert_ffn", self.expert_ffn, "tp", self.tp)?;
            if !(self.capacity_factor.is_finite() && self.capacity_factor > 0.0) {
                return Err(invalid("capacity_factor", self.capacity_factor, "a finite number > 0"));
            }
        } else if self.ep > 1 {
            return Err(invalid("ep", self.ep, "1 for a model without MoE layers"));
        }
        Ok(())
    }

    /// Parameters held by one rank at TP degree `tp` and EP degree `ep` (see docs/metrics.md).
    fn params_at(&self, tp: usize, ep: usize) -> u64 {
        let u = |x: usize| x as u64;
        let (h, d) = (u(self.hidden), u(self.head_dim));
        let kv = u(self.kv_heads_at(tp));
        let attn = 2 * h * u(self.heads / tp) * d + 2 * h * kv * d;
        let per_layer = attn + 2 * h;
        let embed = if self.tied_embeddings { 1 } else { 2 } * u(self.vocab.div_ceil(tp)) * h;
        let dense_mlp = 3 * h * u(self.ffn / tp);
        let expert = 3 * h * u(self.expert_ffn / tp);
        let moe = if self.moe_layer_count > 0 {
            h * u(self.num_experts) + u(self.num_experts / ep) * expert + u(self.shared_experts) * expert
        } else {
            0
        };
        embed + u(self.layers) * per_layer + h + u(self.dense_layers()) * dense_mlp + u(self.moe_layer_count) * moe
    }

    /// Total parameter count of the model, unsharded.
    pub fn param_count(&self) -> Result<u64, MemoryError> {
        self.validate()?;
        Ok(self.params_at(1, 1))
    }

    /// Parameter count held by one rank.
    pub fn local_param_count(&self) -> Result<u64, MemoryError> {
        self.validate()?;
        Ok(self.params_at(self.tp, self.ep))
    }

    /// The per-rank budget.
    pub fn estimate(&self) -> Result<Budget, MemoryError> {
        self.validate()?;
        let u = |x: usize| x as u64;
        let (h, d, ab) = (u(self.hidden), u(self.head_dim), u(self.act_bytes));
        let b = u(self.batch / self.dp);
        // Zigzag shards differ by at most a row per chunk: the largest one bounds every rank.
        let s_loc = u(self.seq_len.div_ceil(self.cp));
        let t = b * s_loc;
        let nh = u(self.heads / self.tp);
        let nkv = u(self.kv_heads_at(self.tp));
        let moe = self.moe_layer_count > 0;
        let ring = self.cp > 1 && self.cp_mode == CpKind::Ring;
        let gather = self.cp > 1 && self.cp_mode == CpKind::AllGather;
        const F32: u64 = 4;

        let params = self.params_at(self.tp, self.ep) * u(self.param_bytes);
        let kv_cache = 2 * u(self.layers) * t * nkv * d * ab;

        let dense_inter = if self.dense_layers() > 0 { 2 * t * u(self.ffn / self.tp) } else { 0 };
        let shared_inter = if moe { 2 * t * u(self.shared_experts) * u(self.expert_ffn / self.tp) } else { 0 };
        let router = if moe { 2 * t * u(self.num_experts) * F32 } else { 0 };
        let activations =
            (2 * t * h + t * (nh + 2 * nkv) * d + t * nh * d + dense_inter.max(shared_inter)) * ab + router;

        let logit_rows = if self.full_logits { t } else { b };
        let logits = logit_rows * u(self.vocab.div_ceil(self.tp)) * F32;

        let s_kv = if gather { u(self.seq_len) } else { s_loc };
        let mut attention = match self.attention {
            AttnAlgo::Naive => u(self.naive_heads_at_once).min(b * nh) * s_loc * s_kv * F32,
            AttnAlgo::Flash => t * nh * F32,
        };
        if ring {
            // Partial results of successive blocks merge into an f32 output and a running lse.
            attention += t * nh * (d + 1) * F32;
        }

        let rows = if moe { ceil_count(self.capacity_factor * (t * u(self.top_k)) as f64) } else { 0 };
        // Rows in, then the fused gate/up output (2F) with the activation (F) beside it, then the
        // activation with the expert output (h) once gate/up is freed: the larger pair is the peak.
        let fe = u(self.expert_ffn / self.tp);
        let dispatch = if moe { rows * (h + (3 * fe).max(fe + h)) * ab } else { 0 };

        let mut terms = vec![
            Term { name: term::PARAMETERS, bytes: params },
            Term { name: term::KV_CACHE, bytes: kv_cache },
            Term { name: term::ACTIVATIONS, bytes: activations },
            Term { name: term::LOGITS, bytes: logits },
            Term { name: term::ATTENTION, bytes: attention },
            Term { name: term::MOE_DISPATCH, bytes: dispatch },
        ];
        if ring {
            terms.push(Term { name: term::COMM_CP_RING, bytes: 2 * 2 * t * nkv * d * ab });
        }
        if gather {
            terms.push(Term { name: term::COMM_CP_ALLGATHER, bytes: 2 * b * u(self.seq_len) * nkv * d * ab });
        }
        if self.ep > 1 {
            terms.push(Term { name: term::COMM_EP, bytes: 2 * rows * h * ab });
        }
        if self.tp > 1 {
            terms.push(Term { name: term::COMM_TP, bytes: t * h * ab });
        }
        let total = terms.iter().map(|t| t.bytes).sum();
        Ok(Budget { terms, total })
    }
}

fn with_commas(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

impl Budget {
    /// Bytes of the named term; 0 if the layout has no such term.
    pub fn bytes(&self, name: &str) -> u64 {
        self.terms.iter().find(|t| t.name == name).map_or(0, |t| t.bytes)
    }

    pub fn largest(&self) -> Option<&Term> {
        self.terms.iter().max_by_key(|t| t.bytes)
    }

    pub fn check_fit(&self, device_bytes: u64) -> Result<(), Overflow> {
        if self.total <= device_bytes {
            return Ok(());
        }
        let (term, term_bytes) = self.largest().map_or(("none", 0), |t| (t.name, t.bytes));
        Err(Overflow { term, term_bytes, by_bytes: self.total - device_bytes, total: self.total, device: device_bytes })
    }

    /// A table of the terms in bytes and GiB, the total, and (given the device's memory) the
    /// headroom or the overflow.
    pub fn render(&self, device_bytes: Option<u64>, out: &mut dyn Write) -> io::Result<()> {
        let width = self.terms.iter().map(|t| t.name.len()).max().unwrap_or(0).max("device memory".len());
        let line = |out: &mut dyn Write, name: &str, bytes: u64| {
            writeln!(out, "{name:<width$}  {:>20}  {:>10.3} GiB", with_commas(bytes), gib(bytes))
        };
        writeln!(out, "{:<width$}  {:>20}  {:>14}", "per-rank memory", "bytes", "GiB")?;
        for t in &self.terms {
            line(out, t.name, t.bytes)?;
        }
        line(out, "total", self.total)?;
        if let Some(dev) = device_bytes {
            line(out, "device memory", dev)?;
            match self.check_fit(dev) {
                Ok(()) => line(out, "headroom", dev - self.total)?,
                Err(e) => writeln!(out, "DOES NOT FIT: {e}")?,
            }
        }
        Ok(())
    }
}
