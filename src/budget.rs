//! Per-rank memory budget for forward-only prefill (`rwm-dist estimate`), computed before anything
//! is allocated: parameters, KV cache, activations, logits, attention workspace, MoE dispatch and
//! communication buffers. Every formula is in docs/metrics.md; terms are summed, so the total is an
//! upper bound for an implementation that frees buffers between phases of a layer.

use crate::backend::AttnAlgo;
use crate::layout::CpKind;
use crate::metrics::ceil_count;
use serde::Serialize;
use std::io::{self, Write};

pub const GIB: u64 = 1 << 30;

pub const MIB: u64 = 1 << 20;

/// Device memory presets for `--device-memory`, in MiB. gb200 is NVML's total for a GB200 GPU
/// (189,471 MiB = 198.67 GB = 185.03 GiB), the same figure as topology/gb200-nvl72.toml.
pub const DEVICE_PRESETS: [(&str, u64); 3] = [("h100", 80 * 1024), ("h200", 141 * 1024), ("gb200", 189_471)];

#[derive(Debug, PartialEq, thiserror::Error)]
pub enum MemoryError {
    #[error("memory estimate: {field} = {value} is invalid; allowed: {allowed}")]
    Invalid { field: &'static str, value: String, allowed: String },
    #[error("memory estimate: {term} overflows 64-bit byte counts: the config is far too large for any device")]
    TooLarge { term: &'static str },
    #[error(
        "--device-memory: cannot use '{0}'; allowed: h100 (80 GiB), h200 (141 GiB), gb200 (189,471 MiB = 185.03 GiB), or GiB as a number such as 80 or 79.6GiB"
    )]
    Device(String),
}

/// The estimate overflows the device: names the largest term, and the overflow in GiB.
#[derive(Debug, PartialEq, thiserror::Error)]
#[error(
    "estimated {:.2} GiB per rank exceeds the {:.2} GiB available by {:.2} GiB; largest term: {term} ({:.2} GiB)",
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
        return Ok(g * MIB);
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
    /// Naive attention also holds its probabilities at the activation width (the GPU kernel's);
    /// the CPU backend keeps only the f32 scores.
    pub naive_probs: bool,
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
            naive_probs: true,
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
    fn params_at(&self, tp: usize, ep: usize) -> Result<u64, MemoryError> {
        let (h, d) = (n(self.hidden), n(self.head_dim));
        let kv = n(self.kv_heads_at(tp));
        let attn = n(2) * h * n(self.heads / tp) * d + n(2) * h * kv * d;
        let per_layer = attn + n(2) * h;
        let embed = n(if self.tied_embeddings { 1 } else { 2 }) * n(self.vocab.div_ceil(tp)) * h;
        let dense_mlp = n(3) * h * n(self.ffn / tp);
        let expert = n(3) * h * n(self.expert_ffn / tp);
        let moe = if self.moe_layer_count > 0 {
            h * n(self.num_experts) + n(self.num_experts / ep) * expert + n(self.shared_experts) * expert
        } else {
            n(0)
        };
        let total =
            embed + n(self.layers) * per_layer + h + n(self.dense_layers()) * dense_mlp + n(self.moe_layer_count) * moe;
        total.get(term::PARAMETERS)
    }

    /// Total parameter count of the model, unsharded.
    pub fn param_count(&self) -> Result<u64, MemoryError> {
        self.validate()?;
        self.params_at(1, 1)
    }

    /// Parameter count held by one rank.
    pub fn local_param_count(&self) -> Result<u64, MemoryError> {
        self.validate()?;
        self.params_at(self.tp, self.ep)
    }

    /// The per-rank budget. Every size is computed in checked arithmetic: a term that does not fit
    /// in 64 bits is an error naming it, never a wrapped small number.
    pub fn estimate(&self) -> Result<Budget, MemoryError> {
        self.validate()?;
        let (h, d, ab) = (n(self.hidden), n(self.head_dim), n(self.act_bytes));
        let b = n(self.batch / self.dp);
        // Zigzag shards differ by at most a row per chunk: the largest one bounds every rank.
        let s_loc = n(self.seq_len.div_ceil(self.cp));
        let t = b * s_loc;
        let nh = n(self.heads / self.tp);
        let nkv = n(self.kv_heads_at(self.tp));
        let moe = self.moe_layer_count > 0;
        let ring = self.cp > 1 && self.cp_mode == CpKind::Ring;
        let gather = self.cp > 1 && self.cp_mode == CpKind::AllGather;
        let f32b = n(4);

        let params = Checked::from(self.params_at(self.tp, self.ep)?) * n(self.param_bytes);
        let kv_cache = n(2) * n(self.layers) * t * nkv * d * ab;

        let dense_inter = if self.dense_layers() > 0 { n(2) * t * n(self.ffn / self.tp) } else { n(0) };
        let shared_inter = if moe { n(2) * t * n(self.shared_experts) * n(self.expert_ffn / self.tp) } else { n(0) };
        let router = if moe { n(2) * t * n(self.num_experts) * f32b } else { n(0) };
        let activations =
            (n(2) * t * h + t * (nh + n(2) * nkv) * d + t * nh * d + dense_inter.max(shared_inter)) * ab + router;

        let logit_rows = if self.full_logits { t } else { b };
        let logits = logit_rows * n(self.vocab.div_ceil(self.tp)) * f32b;

        let s_kv = if gather { n(self.seq_len) } else { s_loc };
        let mut attention = match self.attention {
            // f32 scores, and the probabilities at the activation width that the GPU kernel
            // writes beside them before multiplying by V.
            AttnAlgo::Naive => {
                let probs = if self.naive_probs { ab } else { n(0) };
                n(self.naive_heads_at_once).min(b * nh) * s_loc * s_kv * (f32b + probs)
            }
            AttnAlgo::Flash => t * nh * f32b,
        };
        if ring {
            // Partial results of successive blocks merge into an f32 output and a running lse.
            attention = attention + t * nh * (d + n(1)) * f32b;
        }

        let rows = if moe { Checked::rows(self.capacity_factor, t * n(self.top_k)) } else { n(0) };
        // Rows in, the activation (F: SwiGLU is fused into the gate/up GEMM, no 2F buffer), then the
        // expert output (h) beside it.
        let fe = n(self.expert_ffn / self.tp);
        let dispatch = if moe { rows * (h + fe + h) * ab } else { n(0) };

        let mut terms = vec![
            (term::PARAMETERS, params),
            (term::KV_CACHE, kv_cache),
            (term::ACTIVATIONS, activations),
            (term::LOGITS, logits),
            (term::ATTENTION, attention),
            (term::MOE_DISPATCH, dispatch),
        ];
        if ring {
            terms.push((term::COMM_CP_RING, n(2) * n(2) * t * nkv * d * ab));
        }
        if gather {
            terms.push((term::COMM_CP_ALLGATHER, n(2) * b * n(self.seq_len) * nkv * d * ab));
        }
        if self.ep > 1 {
            terms.push((term::COMM_EP, n(2) * rows * h * ab));
        }
        if self.tp > 1 {
            terms.push((term::COMM_TP, t * h * ab));
        }
        let terms = terms
            .into_iter()
            .map(|(name, bytes)| Ok(Term { name, bytes: bytes.get(name)? }))
            .collect::<Result<Vec<_>, MemoryError>>()?;
        Budget::new(terms)
    }
}

/// A size in checked arithmetic: `None` once any step overflowed u64, so that formulas read as
/// formulas and an overflow anywhere surfaces as an error naming the term.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Checked(Option<u64>);

/// A count as a checked size.
pub fn n(x: usize) -> Checked {
    Checked(u64::try_from(x).ok())
}

impl From<u64> for Checked {
    fn from(x: u64) -> Self {
        Checked(Some(x))
    }
}

impl std::ops::Add for Checked {
    type Output = Checked;
    fn add(self, o: Checked) -> Checked {
        Checked(self.0.zip(o.0).and_then(|(a, b)| a.checked_add(b)))
    }
}

impl std::ops::Mul for Checked {
    type Output = Checked;
    fn mul(self, o: Checked) -> Checked {
        Checked(self.0.zip(o.0).and_then(|(a, b)| a.checked_mul(b)))
    }
}

impl Checked {
    pub fn max(self, o: Checked) -> Checked {
        Checked(self.0.zip(o.0).map(|(a, b)| a.max(b)))
    }
    /// `self - o`, an overflow too when `o` is larger.
    pub fn minus(self, o: Checked) -> Checked {
        Checked(self.0.zip(o.0).and_then(|(a, b)| a.checked_sub(b)))
    }
    pub fn min(self, o: Checked) -> Checked {
        Checked(self.0.zip(o.0).map(|(a, b)| a.min(b)))
    }
    /// `ceil(cf * slots)` rows, with the rounding of `ceil_count`.
    pub fn rows(cf: f64, slots: Checked) -> Checked {
        // 2^53: beyond it f64 no longer holds every integer, and the count is absurd anyway.
        let x = slots.0.map(|s| cf * s as f64).filter(|x| *x < (1u64 << 53) as f64);
        Checked(x.map(ceil_count))
    }
    /// The bytes, or an overflow error naming `what`.
    pub fn get(self, what: &'static str) -> Result<u64, MemoryError> {
        self.0.ok_or(MemoryError::TooLarge { term: what })
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
    /// The terms and their checked sum.
    pub fn new(terms: Vec<Term>) -> Result<Budget, MemoryError> {
        let total = terms.iter().try_fold(0u64, |acc, t| acc.checked_add(t.bytes));
        Ok(Budget { total: total.ok_or(MemoryError::TooLarge { term: "total" })?, terms })
    }

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
        self.render_against(device_bytes.map(|d| ("device memory", d)), out)
    }

    /// `render` against a limit of any kind, e.g. ("host available per rank", bytes).
    pub fn render_against(&self, limit: Option<(&str, u64)>, out: &mut dyn Write) -> io::Result<()> {
        let label = limit.map_or("", |(l, _)| l);
        let width = self.terms.iter().map(|t| t.name.len()).max().unwrap_or(0).max(label.len());
        let line = |out: &mut dyn Write, name: &str, bytes: u64| {
            writeln!(out, "{name:<width$}  {:>20}  {:>10.3} GiB", with_commas(bytes), gib(bytes))
        };
        writeln!(out, "{:<width$}  {:>20}  {:>14}", "per-rank memory", "bytes", "GiB")?;
        for t in &self.terms {
            line(out, t.name, t.bytes)?;
        }
        line(out, "total", self.total)?;
        if let Some((label, dev)) = limit {
            line(out, label, dev)?;
            match self.check_fit(dev) {
                Ok(()) => line(out, "headroom", dev - self.total)?,
                Err(e) => writeln!(out, "DOES NOT FIT: {e}")?,
            }
        }
        Ok(())
    }
}

/// Where a run's tensors live: a GPU's memory, at each dtype's size, or the host's, where the
/// CPU backend keeps every element as an f32 whatever its dtype (src/tensor.rs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Storage {
    /// `fused_swiglu`: the GPU's grouped gate/up GEMM writes the SwiGLU activation from its
    /// epilogue (sm_90a), so no [rows, 2F] gate/up buffer exists; elsewhere the two run apart.
    Device {
        fused_swiglu: bool,
    },
    Host,
    /// The CPU backend's byte counter, what its runs report as peak: tensors at their dtype's
    /// size, and naive attention's f32 scores without the GPU's bf16 probabilities.
    Counter,
}

impl Storage {
    pub fn bytes(self, dt: crate::tensor::DType) -> usize {
        match self {
            Storage::Device { .. } | Storage::Counter => dt.size(),
            Storage::Host => 4,
        }
    }

    /// What a run's record compares with its measured peak on `backend`.
    pub fn measured_on(backend: &dyn crate::backend::Backend) -> Storage {
        match backend.kind() {
            crate::backend::BackendKind::Cpu => Storage::Counter,
            _ => Storage::Device { fused_swiglu: backend.fuses_grouped_swiglu() },
        }
    }

    /// A GPU named `model` (a topology's `gpu.model`): Hopper's kernels fuse the grouped SwiGLU.
    /// An unknown model counts the unfused path, the larger.
    pub fn device_named(model: &str) -> Storage {
        let m = model.to_ascii_uppercase();
        let hopper = ["H100", "H200", "H800", "H20", "GH200"].iter().any(|h| m.contains(h));
        Storage::Device { fused_swiglu: hopper }
    }

    /// Whether grouped experts hold no [rows, 2F] gate/up buffer (see `Device`).
    pub fn fuses_swiglu(self) -> bool {
        matches!(self, Storage::Device { fused_swiglu: true })
    }

    /// Every GPU adds the shared experts inside the unpermute kernel (`unpermute_add`); the CPU
    /// unpermutes, then adds.
    pub fn fuses_combine_add(self) -> bool {
        matches!(self, Storage::Device { .. })
    }

    /// The model's terms with bf16 weights and activations stored here.
    pub fn inputs(self, m: MemoryInputs) -> MemoryInputs {
        let b = self.bytes(crate::tensor::DType::Bf16);
        MemoryInputs { param_bytes: b, act_bytes: b, naive_probs: self != Storage::Counter, ..m }
    }
}

impl Budget {
    /// This budget with a run's own buffers added as further terms.
    pub fn with_extras(self, extras: Vec<(&'static str, Checked)>) -> Result<Budget, MemoryError> {
        let mut terms = self.terms;
        for (name, bytes) in extras {
            terms.push(Term { name, bytes: bytes.get(name)? });
        }
        Budget::new(terms)
    }
}

/// Runs are dropless (every routed row is computed): their buffers hold exactly t*k rows, which
/// a capacity factor of 1 gives. `estimate` keeps the configured one.
pub const DROPLESS: f64 = 1.0;
