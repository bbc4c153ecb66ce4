//! Each target's config and layout as `metrics::memory` inputs: the per-rank budget
//! that `rwm-dist estimate` prints and that runs print next to the measured peak.

use crate::backend::AttnAlgo;
use crate::layout::ParallelDims;
use crate::metrics::memory::MemoryInputs;
use crate::models::gpt4::Gpt4Config;
use crate::models::llama::LlamaConfig;
use crate::models::moe::MoeConfig;

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
        capacity_factor: c.capacity_factor as f64,
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
        capacity_factor: c.capacity_factor as f64,
        ..Default::default()
    }
}
