//! Llama 3 decoder (Llama 3.1 8B by default) for prefill on one device.

use super::next_token::{Scorer, Verdict};
use super::weights::Source;
use super::{Linear, Mlp, causal_attn_flops, gemm_flops};
use crate::backend::{AttnAlgo, AttnParams, Backend, Result, RopeParams};
use crate::budget::MemoryInputs;
use crate::config::ConfigError;
use crate::tensor::{DType, Tensor};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LlamaConfig {
    pub vocab: usize,
    pub hidden: usize,
    pub layers: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub ffn: usize,
    pub rope_theta: f32,
    pub rope_factor: f32,
    pub rope_low_freq_factor: f32,
    pub rope_high_freq_factor: f32,
    pub rope_original_max_position: usize,
    pub eps: f32,
    /// The LM head is the embedding table (Llama 3.2 1B/3B); no `lm_head.weight` is read.
    #[serde(default)]
    pub tie_embeddings: bool,
    pub seq_len: usize,
    pub seed: u64,
    /// Directory of a Hugging Face checkpoint (config.json, safetensors, tokenizer.json);
    /// empty for seeded random weights. Its config.json decides the architecture keys.
    pub weights: String,
    /// Text to prefill (token ids when there is no tokenizer.json); empty for seeded ids.
    /// Its top next tokens and perplexity are reported; timing repeats or cuts it to seq_len.
    #[serde(default)]
    pub prompt: String,
    /// The fused variants' SwiGLU in the gate/up GEMM's epilogue where the GPU fuses it (sm_90a:
    /// the grouped TMA kernel as one expert, in bands of 16 row blocks); false: cuBLASLt's GEMM, then
    /// the SwiGLU kernel. On by default: on the H200 (session 8) the banded kernel's 677 / 689 TFLOP/s
    /// at 8K / 32K beat cuBLASLt + the SwiGLU pass (606 / 654), and it saves the [s, 2f] buffer
    /// (0.37 GiB of peak at 8K).
    #[serde(default = "on")]
    pub fused_swiglu: bool,
}

fn on() -> bool {
    true
}

impl LlamaConfig {
    pub fn llama31_8b() -> Self {
        LlamaConfig {
            vocab: 128_256,
            hidden: 4096,
            layers: 32,
            heads: 32,
            kv_heads: 8,
            head_dim: 128,
            ffn: 14_336,
            rope_theta: 500_000.0,
            rope_factor: 8.0,
            rope_low_freq_factor: 1.0,
            rope_high_freq_factor: 4.0,
            rope_original_max_position: 8192,
            eps: 1e-5,
            tie_embeddings: false,
            seq_len: 8192,
            seed: 0,
            weights: String::new(),
            prompt: String::new(),
            fused_swiglu: true,
        }
    }

    /// Same architecture, small enough for a 2-core CPU in seconds.
    pub fn small() -> Self {
        LlamaConfig {
            vocab: 4096,
            hidden: 512,
            layers: 2,
            heads: 8,
            kv_heads: 2,
            head_dim: 64,
            ffn: 1024,
            seq_len: 256,
            rope_original_max_position: 64,
            ..Self::llama31_8b()
        }
    }

    pub fn validate(&self) -> std::result::Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        for (k, v) in [("vocab", self.vocab), ("hidden", self.hidden), ("layers", self.layers), ("heads", self.heads)]
            .into_iter()
            .chain([("kv_heads", self.kv_heads), ("ffn", self.ffn), ("seq_len", self.seq_len)])
        {
            if v == 0 {
                return bad(format!("llama.{k} must be > 0"));
            }
        }
        if !self.heads.is_multiple_of(self.kv_heads) {
            return bad(format!(
                "llama.heads ({}) must be a multiple of llama.kv_heads ({})",
                self.heads, self.kv_heads
            ));
        }
        if self.head_dim == 0 || !self.head_dim.is_multiple_of(2) {
            return bad(format!("llama.head_dim ({}) must be even and > 0 (RoPE rotates pairs)", self.head_dim));
        }
        if self.vocab > i32::MAX as usize {
            return bad(format!("llama.vocab ({}) must be at most {} (token ids are i32)", self.vocab, i32::MAX));
        }
        for (k, v) in [("rope_theta", self.rope_theta), ("rope_factor", self.rope_factor), ("eps", self.eps)]
            .into_iter()
            .chain([("rope_low_freq_factor", self.rope_low_freq_factor)])
        {
            // A zero or negative factor turns the inverse frequencies into inf or NaN.
            if !(v.is_finite() && v > 0.0) {
                return bad(format!("llama.{k} ({v}) must be a finite number > 0"));
            }
        }
        if self.rope_factor != 1.0 && self.rope_original_max_position == 0 {
            return bad("llama.rope_original_max_position must be > 0 when llama.rope_factor is not 1".into());
        }
        if self.rope_factor != 1.0 && self.rope_high_freq_factor <= self.rope_low_freq_factor {
            return bad(format!(
                "llama.rope_high_freq_factor ({}) must exceed llama.rope_low_freq_factor ({})",
                self.rope_high_freq_factor, self.rope_low_freq_factor
            ));
        }
        Ok(())
    }

    pub fn rope(&self) -> RopeParams {
        RopeParams {
            theta: self.rope_theta,
            factor: self.rope_factor,
            low_freq_factor: self.rope_low_freq_factor,
            high_freq_factor: self.rope_high_freq_factor,
            original_max_position: self.rope_original_max_position,
        }
    }

    pub fn q_dim(&self) -> usize {
        self.heads * self.head_dim
    }
    pub fn kv_dim(&self) -> usize {
        self.kv_heads * self.head_dim
    }

    /// Parameters, embedding and LM head included (once when tied).
    /// The parameter count: the memory estimate's, so that the two cannot disagree.
    pub fn params(&self) -> u64 {
        self.memory_inputs(AttnAlgo::Flash).param_count().expect("a validated config's parameters fit 64 bits")
    }

    /// The model's terms for the memory estimate (`budget`), at attention `attn`.
    pub fn memory_inputs(&self, attn: AttnAlgo) -> MemoryInputs {
        MemoryInputs {
            layers: self.layers,
            hidden: self.hidden,
            heads: self.heads,
            kv_heads: self.kv_heads,
            head_dim: self.head_dim,
            ffn: self.ffn,
            vocab: self.vocab,
            tied_embeddings: self.tie_embeddings,
            seq_len: self.seq_len,
            attention: attn,
            ..Default::default()
        }
    }

    /// Every checkpoint tensor the model reads, with its shape (Hugging Face names).
    pub fn tensors(&self) -> Vec<(String, Vec<usize>)> {
        let (h, f, q, kv) = (self.hidden, self.ffn, self.q_dim(), self.kv_dim());
        let mut t = vec![("model.embed_tokens.weight".to_string(), vec![self.vocab, h])];
        for i in 0..self.layers {
            let p = format!("model.layers.{i}");
            t.extend([
                (format!("{p}.input_layernorm.weight"), vec![h]),
                (format!("{p}.self_attn.q_proj.weight"), vec![q, h]),
                (format!("{p}.self_attn.k_proj.weight"), vec![kv, h]),
                (format!("{p}.self_attn.v_proj.weight"), vec![kv, h]),
                (format!("{p}.self_attn.o_proj.weight"), vec![h, q]),
                (format!("{p}.post_attention_layernorm.weight"), vec![h]),
                (format!("{p}.mlp.gate_proj.weight"), vec![f, h]),
                (format!("{p}.mlp.up_proj.weight"), vec![f, h]),
                (format!("{p}.mlp.down_proj.weight"), vec![h, f]),
            ]);
        }
        t.push(("model.norm.weight".into(), vec![h]));
        if !self.tie_embeddings {
            t.push(("lm_head.weight".into(), vec![self.vocab, h]));
        }
        t
    }

    /// Prefill FLOPs: every projection for every token, causal attention, LM head for the last token.
    pub fn prefill_flops(&self) -> f64 {
        let (s, h) = (self.seq_len, self.hidden);
        let proj = gemm_flops(s, 2 * self.q_dim() + 2 * self.kv_dim(), h) + gemm_flops(s, 3 * self.ffn, h);
        let per_layer = proj + causal_attn_flops(s, self.heads, self.head_dim);
        self.layers as f64 * per_layer + gemm_flops(1, self.vocab, h)
    }

    /// K and V of every layer for the whole sequence, at `bytes` per element.
    pub fn kv_cache_bytes(&self, bytes: usize) -> u64 {
        (self.layers * 2 * self.seq_len * self.kv_dim() * bytes) as u64
    }
}

pub struct Layer {
    pub attn_norm: Tensor,
    pub wq: Linear,
    pub wk: Linear,
    pub wv: Linear,
    pub wo: Linear,
    pub mlp_norm: Tensor,
    pub mlp: Mlp,
}

impl Layer {
    fn linears(&mut self) -> Vec<&mut Linear> {
        let [a, b] = self.mlp.linears();
        vec![&mut self.wq, &mut self.wk, &mut self.wv, &mut self.wo, a, b]
    }
}

pub struct Llama {
    pub cfg: LlamaConfig,
    /// The embedding table, [vocab, hidden]; also the LM head when tied.
    pub embed: Linear,
    pub layers: Vec<Layer>,
    pub norm: Tensor,
    /// None when tied to the embedding.
    pub lm_head: Option<Linear>,
}

/// How a forward pass runs: the knobs that separate the variants.
#[derive(Clone, Copy, Debug)]
pub struct Mode {
    pub attn: AttnAlgo,
    /// Residual add fused into the following RMSNorm.
    pub fused_norm: bool,
    pub gemm: DType,
    /// SwiGLU in the gate/up GEMM (`Backend::matmul_swiglu`) instead of a pass of its own;
    /// bf16/f32 GEMMs only (FP8 keeps its quantised gate/up GEMM): see `swiglu_in_gemm`.
    pub fused_swiglu: bool,
}

impl Mode {
    /// Whether the gate/up GEMM writes the SwiGLU activation: asked for, and not an FP8 GEMM.
    pub fn swiglu_in_gemm(&self) -> bool {
        self.fused_swiglu && self.gemm != DType::F8
    }
}

impl Llama {
    /// Weights and activations in `dt` (bf16 normally; f32 for tight checks on the CPU).
    pub fn new(b: &dyn Backend, cfg: &LlamaConfig, src: &Source, dt: DType) -> Result<Llama> {
        let (h, f) = (cfg.hidden, cfg.ffn);
        let lin = |name: &str, out: usize, inp: usize| -> Result<Linear> {
            Ok(Linear::new(src.get(b, name, &[out, inp], dt, 1.0 / (inp as f32).sqrt())?))
        };
        let mut layers = Vec::with_capacity(cfg.layers);
        for i in 0..cfg.layers {
            let p = format!("model.layers.{i}");
            let gate = src.get(b, &format!("{p}.mlp.gate_proj.weight"), &[f, h], dt, 1.0 / (h as f32).sqrt())?;
            let up = src.get(b, &format!("{p}.mlp.up_proj.weight"), &[f, h], dt, 1.0 / (h as f32).sqrt())?;
            layers.push(Layer {
                attn_norm: src.norm(b, &format!("{p}.input_layernorm.weight"), h, dt)?,
                wq: lin(&format!("{p}.self_attn.q_proj.weight"), cfg.q_dim(), h)?,
                wk: lin(&format!("{p}.self_attn.k_proj.weight"), cfg.kv_dim(), h)?,
                wv: lin(&format!("{p}.self_attn.v_proj.weight"), cfg.kv_dim(), h)?,
                wo: lin(&format!("{p}.self_attn.o_proj.weight"), h, cfg.q_dim())?,
                mlp_norm: src.norm(b, &format!("{p}.post_attention_layernorm.weight"), h, dt)?,
                mlp: Mlp {
                    gate_up: Linear::new(b.concat_rows(&[&gate, &up])?),
                    down: lin(&format!("{p}.mlp.down_proj.weight"), h, f)?,
                },
            });
        }
        Ok(Llama {
            cfg: cfg.clone(),
            embed: Linear::new(src.get(b, "model.embed_tokens.weight", &[cfg.vocab, h], dt, 1.0)?),
            layers,
            norm: src.norm(b, "model.norm.weight", h, dt)?,
            lm_head: if cfg.tie_embeddings { None } else { Some(lin("lm_head.weight", cfg.vocab, h)?) },
        })
    }

    /// The LM head: its own weight, or the embedding table when tied.
    pub fn head(&self) -> &Linear {
        self.lm_head.as_ref().unwrap_or(&self.embed)
    }

    pub fn set_fp8(&mut self, b: &dyn Backend, on: bool) -> Result<()> {
        let head = self.lm_head.as_mut().unwrap_or(&mut self.embed);
        for l in self.layers.iter_mut().flat_map(|l| l.linears()).chain([head]) {
            if on { l.prepare_fp8(b)? } else { l.drop_fp8() }
        }
        Ok(())
    }

    /// Prefill `ids` ([s] i32) and return the f32 logits of the last position ([1, vocab]).
    pub fn prefill(&self, b: &dyn Backend, ids: &Tensor, mode: Mode) -> Result<Tensor> {
        let x = self.hidden(b, ids, mode)?;
        let last = b.rows(&x, ids.numel() - 1, 1)?;
        self.logits(b, &last, mode)
    }

    /// What the model says about the prompt `ids`: its perplexity and the `k` most likely
    /// next tokens. Logits are made and read a chunk of rows at a time (a 128K vocabulary
    /// is 0.5 MB of f32 per position).
    pub fn score(&self, b: &dyn Backend, ids: &[u32], mode: Mode, k: usize) -> Result<Verdict> {
        const ROWS: usize = 256;
        let as_i32: Vec<i32> = ids.iter().map(|&i| i as i32).collect();
        let x = self.hidden(b, &b.upload_i32(&as_i32, &[ids.len()])?, mode)?;
        let mut scorer = Scorer::new(ids);
        for start in (0..ids.len()).step_by(ROWS) {
            let rows = b.rows(&x, start, ROWS.min(ids.len() - start))?;
            scorer.feed(&b.download(&self.logits(b, &rows, mode)?)?, self.cfg.vocab);
        }
        Ok(scorer.finish(k))
    }

    /// Final norm and LM head over rows of hidden states.
    pub fn logits(&self, b: &dyn Backend, x: &Tensor, mode: Mode) -> Result<Tensor> {
        let n = b.rms_norm(x, &self.norm, self.cfg.eps)?;
        match mode.gemm {
            DType::F8 => self.head().forward(b, &n, DType::F8),
            _ => b.matmul(&n, &self.head().w, DType::F32),
        }
    }

    /// Hidden states of every position after the last decoder layer ([s, hidden]).
    pub fn hidden(&self, b: &dyn Backend, ids: &Tensor, mode: Mode) -> Result<Tensor> {
        let c = &self.cfg;
        let s = ids.numel();
        let rope = c.rope();
        let mut x = b.embedding(&self.embed.w, ids)?;
        let mut pending: Option<Tensor> = None;
        // Prefill fills the KV cache that decoding would read: it stays until the pass ends.
        let mut kv_cache = Vec::with_capacity(self.layers.len());
        for l in &self.layers {
            // With fused norms the previous layer's MLP output is added here, inside the norm.
            let n = match pending.take() {
                Some(d) => {
                    let (sum, n) = b.add_rms_norm(&d, &x, &l.attn_norm, c.eps)?;
                    x = sum;
                    n
                }
                None => b.rms_norm(&x, &l.attn_norm, c.eps)?,
            };
            let q = b.rope(&l.wq.forward(b, &n, mode.gemm)?.reshape(&[s, c.heads, c.head_dim]), 0, &rope)?;
            let k = b.rope(&l.wk.forward(b, &n, mode.gemm)?.reshape(&[s, c.kv_heads, c.head_dim]), 0, &rope)?;
            let v = l.wv.forward(b, &n, mode.gemm)?.reshape(&[s, c.kv_heads, c.head_dim]);
            drop(n);
            let p = AttnParams::causal(0, 0, mode.attn);
            let a = {
                let _phase = crate::marks::phase(c"attention");
                b.attention(&q, &k, &v, &p)?.out.reshape(&[s, c.q_dim()])
            };
            drop(q);
            kv_cache.push((k, v));
            let o = l.wo.forward(b, &a, mode.gemm)?;
            let n2 = if mode.fused_norm {
                let (sum, n2) = b.add_rms_norm(&o, &x, &l.mlp_norm, c.eps)?;
                x = sum;
                n2
            } else {
                x = b.add(&x, &o)?;
                b.rms_norm(&x, &l.mlp_norm, c.eps)?
            };
            let d = if mode.swiglu_in_gemm() {
                l.mlp.forward_fused_swiglu(b, &n2)?
            } else {
                l.mlp.forward(b, &n2, mode.gemm)?
            };
            if mode.fused_norm {
                pending = Some(d);
            } else {
                x = b.add(&x, &d)?;
            }
        }
        if let Some(d) = pending {
            x = b.add(&x, &d)?;
        }
        Ok(x)
    }
}
