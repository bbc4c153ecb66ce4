//! Each target's config and layout as `metrics::memory` inputs: the per-rank budget
//! that `rwm-dist estimate` prints and that runs print next to the measured peak.

use crate::backend::AttnAlgo;
use crate::harness::registry::TargetConfig;
use crate::layout::ParallelDims;
use crate::metrics::memory::{Budget, Checked, MemoryError, MemoryInputs, Term, n};
use crate::models::gpt4::Gpt4Config;
use crate::models::llama::LlamaConfig;
use crate::models::moe::MoeConfig;
use crate::tensor::DType;

pub fn llama(c: &LlamaConfig, attn: AttnAlgo) -> MemoryInputs {
    MemoryInputs {
        layers: c.layers,
        hidden: c.hidden,
        heads: c.heads,
        kv_heads: c.kv_heads,
        head_dim: c.head_dim,
        ffn: c.ffn,
        vocab: c.vocab,
        tied_embeddings: c.tie_embeddings,
        seq_len: c.seq_len,
        attention: attn,
        ..Default::default()
    }
}

/// Runs are dropless (every routed row is computed): their buffers hold exactly
/// t*k rows, which a capacity factor of 1 gives. `estimate` keeps the configured one.
pub const DROPLESS: f64 = 1.0;

/// One MoE layer with no attention of its own: the attention fields describe a
/// one-head, one-dimension stub so that only the MoE terms count.
pub fn moe(c: &MoeConfig, layout: &ParallelDims) -> MemoryInputs {
    MemoryInputs {
        layers: 1,
        hidden: c.hidden,
        heads: 1,
        kv_heads: 1,
        head_dim: 1,
        vocab: 1,
        num_experts: c.num_experts,
        top_k: c.top_k,
        expert_ffn: c.expert_ffn,
        shared_experts: c.shared_experts,
        moe_layer_count: 1,
        // `tokens` are this rank's own tokens.
        seq_len: c.tokens,
        ep: layout.ep,
        capacity_factor: c.capacity_factor,
        ..Default::default()
    }
}

/// `with_embedding`: count the token embedding and LM head of the deployed model
/// (`estimate`); the `gpt4` target runs the block stack on hidden states and has none.
pub fn gpt4(c: &Gpt4Config, layout: &ParallelDims, attn: AttnAlgo, with_embedding: bool) -> MemoryInputs {
    MemoryInputs {
        layers: c.layers,
        hidden: c.hidden,
        heads: c.heads,
        kv_heads: c.kv_heads,
        head_dim: c.head_dim,
        vocab: if with_embedding { c.vocab } else { 1 },
        num_experts: c.num_experts,
        top_k: c.top_k,
        expert_ffn: c.expert_ffn,
        moe_layer_count: c.layers,
        seq_len: c.seq_len,
        cp: layout.cp,
        ep: layout.ep,
        attention: attn,
        cp_mode: c.cp_kind,
        capacity_factor: c.capacity_factor,
        ..Default::default()
    }
}

/// Where a run's tensors live: a GPU's memory, at each dtype's size, or the host's, where the
/// CPU backend keeps every element as an f32 whatever its dtype (src/tensor.rs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Storage {
    Device,
    Host,
    /// The CPU backend's byte counter, what its runs report as peak: tensors at their dtype's
    /// size, and naive attention's f32 scores without the GPU's bf16 probabilities.
    Counter,
}

impl Storage {
    pub(crate) fn bytes(self, dt: DType) -> usize {
        match self {
            Storage::Device | Storage::Counter => dt.size(),
            Storage::Host => 4,
        }
    }

    /// What a run's record compares with its measured peak on `backend`.
    pub fn measured_on(backend: crate::backend::BackendKind) -> Storage {
        match backend {
            crate::backend::BackendKind::Cpu => Storage::Counter,
            _ => Storage::Device,
        }
    }

    /// The model's terms with bf16 weights and activations stored here.
    fn inputs(self, m: MemoryInputs) -> MemoryInputs {
        let b = self.bytes(DType::Bf16);
        MemoryInputs { param_bytes: b, act_bytes: b, naive_probs: self != Storage::Counter, ..m }
    }
}

/// The budget with the variant's own buffers added as further terms.
fn with_extras(budget: Budget, extras: Vec<(&'static str, Checked)>) -> Result<Budget, MemoryError> {
    let mut terms = budget.terms;
    for (name, bytes) in extras {
        terms.push(Term { name, bytes: bytes.get(name)? });
    }
    Budget::new(terms)
}

/// One rank of `llama` running `variant`: the model at the variant's attention (naive for the
/// baseline, with its score matrix) and, for FP8 GEMMs, one-byte copies of every linear weight.
pub fn llama_run(c: &LlamaConfig, gemm_dtype: DType, variant: &str, at: Storage) -> Result<Budget, MemoryError> {
    let mode = super::llama::mode(gemm_dtype, variant);
    let inputs = at.inputs(llama(c, mode.attn));
    let fp8 = if mode.gemm == DType::F8 {
        // Every linear weight; the embedding table only when it is the tied LM head.
        let table = if c.tie_embeddings { n(0) } else { n(c.vocab) * n(c.hidden) };
        let linear = Checked::from(inputs.param_count()?).minus(table);
        linear * n(at.bytes(DType::F8))
    } else {
        n(0)
    };
    let phases = super::working_set::llama(inputs.estimate()?, c, at.bytes(DType::Bf16))?;
    with_extras(phases, vec![("fp8 weight copies", fp8)])
}

/// One rank of `moe` running `variant` (dropless: t*k rows), with the other input batches kept
/// for the routing statistics, the baseline's per-expert weight copies, and the balanced variant's
/// second layer on its EPLB placement.
pub fn moe_run(c: &MoeConfig, layout: &ParallelDims, variant: &str, at: Storage) -> Result<Budget, MemoryError> {
    let inputs = MemoryInputs { capacity_factor: DROPLESS, ..at.inputs(moe(c, layout)) };
    let bf16 = n(at.bytes(DType::Bf16));
    let expert = n(3) * n(c.hidden) * n(c.expert_ffn) * bf16;
    let batches = n(c.batches.saturating_sub(1)) * n(c.tokens) * n(c.hidden) * bf16;
    let copies = if variant == "baseline" { n(c.num_experts / layout.ep) * expert } else { n(0) };
    let replicas = (c.num_experts + c.redundant_experts) / layout.ep;
    // The balanced layer is a whole second layer: its replicas, shared experts and router.
    let second = n(replicas) * expert + n(c.shared_experts) * expert + n(c.hidden) * n(c.num_experts) * bf16;
    let balanced = if variant == "balanced" && layout.ep > 1 { second } else { n(0) };
    let extras = vec![
        ("other input batches", batches),
        ("per-expert weight copies", copies),
        ("balanced placement's experts", balanced),
    ];
    let mut budget = inputs.estimate()?;
    if layout.ep > 1 {
        use super::working_set::{Experts, moe_ep};
        let experts = if variant == "baseline" { Experts::Loop } else { Experts::Grouped };
        budget = moe_ep(budget, c, layout, experts, at.bytes(DType::Bf16))?;
    }
    with_extras(budget, extras)
}

/// One rank of `gpt4` running `variant` with GEMMs in `gemm` (see `gpt4::variant_gemm`): the block
/// stack (naive attention for the baseline), the expert loops' per-expert weight copies (bf16 for
/// the baseline, bf16 and FP8 for FP8) and FP8 copies of the attention projections.
pub fn gpt4_run(
    c: &Gpt4Config,
    layout: &ParallelDims,
    variant: &str,
    gemm: DType,
    at: Storage,
) -> Result<Budget, MemoryError> {
    let base = variant == "baseline";
    let attn = if base { AttnAlgo::Naive } else { AttnAlgo::Flash };
    let inputs = MemoryInputs { capacity_factor: DROPLESS, ..at.inputs(gpt4(c, layout, attn, false)) };
    let fp8 = gemm == DType::F8;
    let (b16, b8) = (n(at.bytes(DType::Bf16)), n(at.bytes(DType::F8)));
    let per_copy = n(c.layers) * n(c.num_experts / layout.ep) * n(3) * n(c.hidden) * n(c.expert_ffn);
    let copies = match (base, fp8) {
        (true, _) => per_copy * b16,
        (false, true) => per_copy * (b16 + b8),
        (false, false) => n(0),
    };
    let attn_params = n(c.layers) * n(c.hidden) * (n(2) * n(c.q_dim()) + n(2) * n(c.kv_dim()));
    let extras = vec![
        ("per-expert weight copies", copies),
        ("fp8 attention weights", if fp8 { attn_params * b8 } else { n(0) }),
    ];
    let experts = if base || fp8 { super::working_set::Experts::Loop } else { super::working_set::Experts::Grouped };
    let phases = super::working_set::gpt4(inputs.estimate()?, c, layout, experts, at.bytes(DType::Bf16))?;
    with_extras(phases, extras)
}

/// One rank of `cfg` running `variant` under the plan's layout and `--dtype`.
pub fn run_budget(
    cfg: &TargetConfig,
    layout: &ParallelDims,
    gemm_dtype: DType,
    variant: &str,
    at: Storage,
) -> Result<Budget, MemoryError> {
    match cfg {
        TargetConfig::Llama(c) => llama_run(c, gemm_dtype, variant, at),
        TargetConfig::Moe(c) => moe_run(c, layout, variant, at),
        TargetConfig::Gpt4(c) => {
            gpt4_run(c, layout, variant, super::gpt4::variant_gemm(DType::Bf16, gemm_dtype, variant), at)
        }
    }
}
