//! Each target's config and layout as `metrics::memory` inputs: the per-rank budget
//! that `rwm-dist estimate` prints and that runs print next to the measured peak.

use crate::backend::AttnAlgo;
use crate::harness::registry::TargetConfig;
use crate::layout::ParallelDims;
use crate::metrics::memory::{Budget, Checked, MemoryError, MemoryInputs, Term, n, term};
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
}

impl Storage {
    fn bytes(self, dt: DType) -> usize {
        match self {
            Storage::Device => dt.size(),
            Storage::Host => 4,
        }
    }

    /// The model's terms with bf16 weights and activations stored here.
    fn inputs(self, m: MemoryInputs) -> MemoryInputs {
        let b = self.bytes(DType::Bf16);
        MemoryInputs { param_bytes: b, act_bytes: b, ..m }
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
    with_extras(inputs.estimate()?, vec![("fp8 weight copies", fp8)])
}

/// One rank of `moe` running `variant` with expert GEMMs in `gemm` (dropless: t*k rows), with the
/// other input batches kept for the routing statistics, the baseline's per-expert weight copies,
/// the balanced variant's second layer on its EPLB placement and, for FP8, the experts' FP8 copies.
pub fn moe_run(
    c: &MoeConfig,
    layout: &ParallelDims,
    variant: &str,
    gemm: DType,
    at: Storage,
) -> Result<Budget, MemoryError> {
    let inputs = MemoryInputs { capacity_factor: DROPLESS, ..at.inputs(moe(c, layout)) };
    let bf16 = n(at.bytes(DType::Bf16));
    let expert = n(3) * n(c.hidden) * n(c.expert_ffn) * bf16;
    let batches = n(c.batches.saturating_sub(1)) * n(c.tokens) * n(c.hidden) * bf16;
    let copies = if variant == "baseline" { n(c.num_experts / layout.ep) * expert } else { n(0) };
    let replicas = (c.num_experts + c.redundant_experts) / layout.ep;
    let balanced = if variant == "balanced" && layout.ep > 1 { n(replicas) * expert } else { n(0) };
    // FP8 experts (beside the bf16 ones, which the baseline and the balanced reference use), and
    // the per-token FP8 copies of the rows in and of the activation.
    let (fp8, rows) = (gemm == DType::F8 && variant != "baseline", n(c.tokens) * n(c.top_k));
    let local = n(c.num_experts / layout.ep) + if variant == "balanced" && layout.ep > 1 { n(replicas) } else { n(0) };
    let b8 = n(at.bytes(DType::F8));
    let fp8_experts = if fp8 { local * n(3) * n(c.hidden) * n(c.expert_ffn) * b8 } else { n(0) };
    let fp8_rows = if fp8 { rows * (n(c.hidden) + n(c.expert_ffn)) * b8 } else { n(0) };
    let extras = vec![
        ("other input batches", batches),
        ("per-expert weight copies", copies),
        ("balanced placement's experts", balanced),
        ("fp8 expert weights", fp8_experts),
        ("fp8 rows", fp8_rows),
    ];
    with_extras(inputs.estimate()?, extras)
}

/// One rank of `gpt4` running `variant` with GEMMs in `gemm` (see `gpt4::variant_gemm`): the block
/// stack (naive attention for the baseline), the baseline loop's per-expert weight copies, and for
/// FP8 copies of the attention projections and block-scaled FP8 experts in place of the bf16 ones.
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
    let copies = if base { per_copy * b16 } else { n(0) };
    let attn_params = n(c.layers) * n(c.hidden) * (n(2) * n(c.q_dim()) + n(2) * n(c.kv_dim()));
    let mut budget = inputs.estimate()?;
    // FP8 experts replace the bf16 ones (freed while FP8 runs); plus an f32 scale per 128 x 128 block.
    let fp8_experts = if fp8 && !base {
        let p = budget.terms.iter_mut().find(|t| t.name == term::PARAMETERS).expect("a parameters term");
        p.bytes = Checked::from(p.bytes).minus(per_copy * b16).get(term::PARAMETERS)?;
        let blocks =
            n(c.layers) * n(c.num_experts / layout.ep) * n(3 * c.hidden.div_ceil(128) * c.expert_ffn.div_ceil(128));
        per_copy * b8 + blocks * n(4)
    } else {
        n(0)
    };
    let extras = vec![
        ("per-expert weight copies", copies),
        ("fp8 attention weights", if fp8 { attn_params * b8 } else { n(0) }),
        ("fp8 expert weights", fp8_experts),
    ];
    with_extras(budget, extras)
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
        TargetConfig::Moe(c) => {
            moe_run(c, layout, variant, super::gpt4::variant_gemm(DType::Bf16, gemm_dtype, variant), at)
        }
        TargetConfig::Gpt4(c) => {
            gpt4_run(c, layout, variant, super::gpt4::variant_gemm(DType::Bf16, gemm_dtype, variant), at)
        }
    }
}
