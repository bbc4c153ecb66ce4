//! GPT-4-style MoE transformer block stack (as publicly rumoured: 120 layers,
//! 16 experts top-2, few KV heads), written for one device. Attention and the
//! MoE are passed in as closures so that context and expert parallelism can
//! wrap them without touching the maths here.

use super::moe::{MoeConfig, MoeLayer};
use super::weights::Source;
use super::{Linear, causal_attn_flops, gemm_flops};
use crate::backend::{AttnAlgo, Backend, Gate, Result, RopeParams};
use crate::budget::MemoryInputs;
use crate::config::ConfigError;
use crate::layout::ParallelDims;
use crate::parallel::context::CpKind;
use crate::tensor::{DType, Tensor};
use serde::{Deserialize, Serialize};
use std::ops::Range;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Gpt4Config {
    pub layers: usize,
    pub hidden: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub num_experts: usize,
    pub top_k: usize,
    pub expert_ffn: usize,
    pub vocab: usize,
    pub seq_len: usize,
    pub rope_theta: f32,
    pub eps: f32,
    pub cp_kind: CpKind,
    pub capacity_factor: f64,
    pub seed: u64,
}

impl Gpt4Config {
    /// The rumoured full size: about 1.8T parameters.
    pub fn full() -> Self {
        Gpt4Config {
            layers: 120,
            hidden: 12_288,
            heads: 96,
            kv_heads: 8,
            head_dim: 128,
            num_experts: 16,
            top_k: 2,
            expert_ffn: 24_576,
            vocab: 100_277,
            seq_len: 8192,
            rope_theta: 500_000.0,
            eps: 1e-5,
            cp_kind: CpKind::Ring,
            capacity_factor: 1.25,
            seed: 0,
        }
    }

    /// Scaled down to run in seconds on a 2-core CPU.
    pub fn small() -> Self {
        Gpt4Config {
            layers: 2,
            hidden: 512,
            heads: 8,
            kv_heads: 2,
            head_dim: 64,
            expert_ffn: 512,
            seq_len: 256,
            ..Self::full()
        }
    }

    /// The config's own facts; how they meet the layout is `plan::Plan::dims`'s business.
    pub fn validate(&self) -> std::result::Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        for (k, v) in [("layers", self.layers), ("hidden", self.hidden), ("heads", self.heads)].into_iter().chain([
            ("kv_heads", self.kv_heads),
            ("num_experts", self.num_experts),
            ("expert_ffn", self.expert_ffn),
            ("seq_len", self.seq_len),
        ]) {
            if v == 0 {
                return bad(format!("gpt4.{k} must be > 0"));
            }
        }
        if !self.heads.is_multiple_of(self.kv_heads) {
            return bad(format!("gpt4.heads ({}) must be a multiple of gpt4.kv_heads ({})", self.heads, self.kv_heads));
        }
        if self.head_dim == 0 || !self.head_dim.is_multiple_of(2) {
            return bad(format!("gpt4.head_dim ({}) must be even and > 0", self.head_dim));
        }
        if self.top_k == 0 || self.top_k > self.num_experts {
            return bad(format!("gpt4.top_k ({}) must be in 1..=gpt4.num_experts ({})", self.top_k, self.num_experts));
        }
        for (k, v) in [("rope_theta", self.rope_theta), ("eps", self.eps)] {
            if !(v.is_finite() && v > 0.0) {
                return bad(format!("gpt4.{k} ({v}) must be a finite number > 0"));
            }
        }
        if !(self.capacity_factor.is_finite() && self.capacity_factor > 0.0) {
            return bad(format!("gpt4.capacity_factor ({}) must be a finite number > 0", self.capacity_factor));
        }
        Ok(())
    }

    /// The MoE block as a DeepSeek-style layer with no shared experts and a softmax top-k gate.
    pub fn moe(&self) -> MoeConfig {
        MoeConfig {
            hidden: self.hidden,
            expert_ffn: self.expert_ffn,
            num_experts: self.num_experts,
            top_k: self.top_k,
            shared_experts: 0,
            gate: Gate::Softmax,
            n_group: 1,
            topk_group: 1,
            norm_topk: true,
            routed_scaling: 1.0,
            tokens: self.seq_len,
            capacity_factor: self.capacity_factor,
            seed: self.seed,
            ..MoeConfig::deepseek_v2_lite()
        }
    }

    pub fn rope(&self) -> RopeParams {
        RopeParams {
            theta: self.rope_theta,
            factor: 1.0,
            low_freq_factor: 1.0,
            high_freq_factor: 4.0,
            original_max_position: 8192,
        }
    }

    pub fn q_dim(&self) -> usize {
        self.heads * self.head_dim
    }
    pub fn kv_dim(&self) -> usize {
        self.kv_heads * self.head_dim
    }

    /// Parameters of the block stack plus embedding and LM head (untied).
    /// The parameter count (embeddings included): the memory estimate's, so that the two cannot
    /// disagree.
    pub fn params(&self) -> u64 {
        let one = ParallelDims::single();
        self.memory_inputs(&one, AttnAlgo::Flash, true)
            .param_count()
            .expect("a validated config's parameters fit 64 bits")
    }

    /// The model's terms for the memory estimate (`budget`) under `layout`. `with_embedding`:
    /// count the token embedding and LM head of the deployed model (`estimate`); the `gpt4`
    /// target runs the block stack on hidden states and has none.
    pub fn memory_inputs(&self, layout: &ParallelDims, attn: AttnAlgo, with_embedding: bool) -> MemoryInputs {
        MemoryInputs {
            layers: self.layers,
            hidden: self.hidden,
            heads: self.heads,
            kv_heads: self.kv_heads,
            head_dim: self.head_dim,
            vocab: if with_embedding { self.vocab } else { 1 },
            num_experts: self.num_experts,
            top_k: self.top_k,
            expert_ffn: self.expert_ffn,
            moe_layer_count: self.layers,
            seq_len: self.seq_len,
            cp: layout.cp,
            ep: layout.ep,
            attention: attn,
            cp_mode: self.cp_kind,
            capacity_factor: self.capacity_factor,
            ..Default::default()
        }
    }

    /// FLOPs of a forward over the whole sequence (all ranks together).
    pub fn flops(&self) -> f64 {
        let s = self.seq_len;
        let attn = gemm_flops(s, 2 * self.q_dim() + 2 * self.kv_dim(), self.hidden)
            + causal_attn_flops(s, self.heads, self.head_dim);
        self.layers as f64 * (attn + self.moe().flops(s))
    }
}

pub struct Block {
    pub attn_norm: Tensor,
    pub wq: Linear,
    pub wk: Linear,
    pub wv: Linear,
    pub wo: Linear,
    pub moe_norm: Tensor,
    pub moe: MoeLayer,
}

pub struct Gpt4 {
    pub cfg: Gpt4Config,
    pub blocks: Vec<Block>,
}

impl Gpt4 {
    /// `experts`: the logical expert of each local MoE slot (all of them on one device).
    /// Weights and activations in `dt` (bf16 normally; f32 for tight checks on the CPU).
    pub fn new(b: &dyn Backend, cfg: &Gpt4Config, src: &Source, experts: &[usize], dt: DType) -> Result<Gpt4> {
        let h = cfg.hidden;
        let lin = |name: String, out: usize, inp: usize| -> Result<Linear> {
            Ok(Linear::new(src.get(b, &name, &[out, inp], dt, 1.0 / (inp as f32).sqrt())?))
        };
        let blocks = (0..cfg.layers)
            .map(|i| {
                let p = format!("layers.{i}");
                Ok(Block {
                    attn_norm: src.norm(b, &format!("{p}.attn_norm"), h, dt)?,
                    wq: lin(format!("{p}.wq"), cfg.q_dim(), h)?,
                    wk: lin(format!("{p}.wk"), cfg.kv_dim(), h)?,
                    wv: lin(format!("{p}.wv"), cfg.kv_dim(), h)?,
                    wo: lin(format!("{p}.wo"), h, cfg.q_dim())?,
                    moe_norm: src.norm(b, &format!("{p}.moe_norm"), h, dt)?,
                    moe: MoeLayer::new(b, &cfg.moe(), src, &format!("{p}.moe"), experts, dt)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Gpt4 { cfg: cfg.clone(), blocks })
    }

    pub fn set_fp8(&mut self, b: &dyn Backend, on: bool) -> Result<()> {
        for blk in &mut self.blocks {
            for l in [&mut blk.wq, &mut blk.wk, &mut blk.wv, &mut blk.wo] {
                if on { l.prepare_fp8(b)? } else { l.drop_fp8() }
            }
        }
        Ok(())
    }

    /// RoPE for rows that hold the positions in `chunks` (in order).
    fn rope_chunks(&self, b: &dyn Backend, x: &Tensor, chunks: &[Range<usize>]) -> Result<Tensor> {
        let rope = self.cfg.rope();
        if let [one] = chunks {
            return b.rope(x, one.start, &rope);
        }
        let mut row = 0;
        let mut parts = Vec::with_capacity(chunks.len());
        for c in chunks {
            parts.push(b.rope(&b.rows(x, row, c.len())?, c.start, &rope)?);
            row += c.len();
        }
        b.concat_rows(&parts.iter().collect::<Vec<_>>())
    }

    /// Hidden states x [rows, h] at sequence positions `chunks` through every block.
    /// `attn(q, k, v)` attends the local rows ([rows, heads, d]); `moe(layer, x)` runs the
    /// MoE over the local rows: the caller decides how (one device, or context/expert parallel).
    pub fn forward<E: From<crate::backend::Error>>(
        &self,
        b: &dyn Backend,
        mut x: Tensor,
        chunks: &[Range<usize>],
        gemm: DType,
        attn: &mut dyn FnMut(&Tensor, &Tensor, &Tensor) -> std::result::Result<Tensor, E>,
        moe: &mut dyn FnMut(&MoeLayer, &Tensor) -> std::result::Result<Tensor, E>,
    ) -> std::result::Result<Tensor, E> {
        let c = &self.cfg;
        let rows = x.shape()[0];
        // Prefill fills the KV cache that decoding would read: it stays until the pass ends.
        let mut kv_cache = Vec::with_capacity(self.blocks.len());
        for blk in &self.blocks {
            let n = b.rms_norm(&x, &blk.attn_norm, c.eps)?;
            let q = self.rope_chunks(b, &blk.wq.forward(b, &n, gemm)?.reshape(&[rows, c.heads, c.head_dim]), chunks)?;
            let k =
                self.rope_chunks(b, &blk.wk.forward(b, &n, gemm)?.reshape(&[rows, c.kv_heads, c.head_dim]), chunks)?;
            let v = blk.wv.forward(b, &n, gemm)?.reshape(&[rows, c.kv_heads, c.head_dim]);
            let a = {
                let _phase = crate::marks::phase(c"attention");
                attn(&q, &k, &v)?.reshape(&[rows, c.q_dim()])
            };
            kv_cache.push((k, v));
            let (sum, n2) = b.add_rms_norm(&blk.wo.forward(b, &a, gemm)?, &x, &blk.moe_norm, c.eps)?;
            x = b.add(&sum, &moe(&blk.moe, &n2)?)?;
        }
        Ok(x)
    }
}
