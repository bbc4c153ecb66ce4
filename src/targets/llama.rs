//! The `llama` target: full-model prefill, baseline vs optimized vs FP8.

use crate::backend::{AttnAlgo, BackendKind, Error, Replay};
use crate::harness::{Ctx, Result, VariantSpec, Workload};
use crate::models::checkpoint::weights_dir;
use crate::models::hf_config::HfConfig;
use crate::models::llama::{Llama, LlamaConfig, Mode};
use crate::models::tokenizer::{Tokenizer, prompt_ids};
use crate::models::weights::Source;
use crate::tensor::{DType, Tensor};
use serde_json::json;

pub struct LlamaTarget {
    pub cfg: LlamaConfig,
    model: Option<Llama>,
    ids: Option<Tensor>,
    /// The prompt's own tokens (before repeating to seq_len) and its tokenizer, if any.
    prompt: Option<(Vec<u32>, Option<Tokenizer>)>,
    /// The checkpoint's stated element type (config.json `torch_dtype`).
    checkpoint_dtype: Option<String>,
    fp8_ready: bool,
    /// The prefill recorded as a CUDA graph for the variant running now (optimized, fp8).
    graph: Option<Box<dyn Replay>>,
}

impl LlamaTarget {
    pub fn new(cfg: LlamaConfig) -> Self {
        LlamaTarget { cfg, model: None, ids: None, prompt: None, checkpoint_dtype: None, fp8_ready: false, graph: None }
    }

    fn mode(&self, ctx: &Ctx, variant: &str) -> Mode {
        mode(ctx.gemm_dtype, variant)
    }
}

/// How `variant` runs, given the run's `--dtype`.
pub(crate) fn mode(gemm_dtype: DType, variant: &str) -> Mode {
    match variant {
        "baseline" => Mode { attn: AttnAlgo::Naive, fused_norm: false, gemm: DType::Bf16 },
        "fp8" => Mode { attn: AttnAlgo::Flash, fused_norm: true, gemm: DType::F8 },
        _ => Mode { attn: AttnAlgo::Flash, fused_norm: true, gemm: gemm_dtype },
    }
}

/// How many next tokens the record lists.
const TOP_K: usize = 5;

/// The prompt repeated, then cut, to `n` tokens: real text for timing at any length.
pub fn fill(prompt: &[u32], n: usize) -> Vec<i32> {
    prompt.iter().cycle().take(n).map(|&i| i as i32).collect()
}

/// Seeded token ids in [0, vocab).
pub fn token_ids(seed: u64, n: usize, vocab: usize) -> Vec<i32> {
    (0..n as u64).map(|i| (crate::rng::splitmix64(seed ^ crate::rng::splitmix64(i)) % vocab as u64) as i32).collect()
}

impl Workload for LlamaTarget {
    fn name(&self) -> &'static str {
        "llama"
    }
    fn config(&self) -> serde_json::Value {
        serde_json::to_value(&self.cfg).expect("config serialises")
    }
    fn variants(&self) -> Vec<VariantSpec> {
        vec![
            VariantSpec::new("baseline", "unfused norms, naive attention (f32 scores)", 0.0),
            VariantSpec::new("optimized", "flash attention, residual fused into RMSNorm, CUDA graph replay", 0.05),
            VariantSpec::new("fp8", "optimized with FP8 e4m3 GEMMs (per-tensor scales)", 0.25),
        ]
    }
    fn setup(&mut self, ctx: &Ctx) -> Result<()> {
        let b = ctx.backend.as_ref();
        let c = &self.cfg;
        let src = match weights_dir(c) {
            None => Source::Random { seed: c.seed },
            Some(dir) => {
                self.checkpoint_dtype = HfConfig::load(dir, c).map_err(Error::from)?.dtype;
                Source::load(dir).map_err(Error::from)?
            }
        };
        self.model = Some(Llama::new(b, c, &src, DType::Bf16)?);
        if !c.prompt.is_empty() {
            self.prompt = Some(prompt_ids(&c.prompt, weights_dir(c), c.vocab).map_err(Error::from)?);
        }
        let ids = match &self.prompt {
            Some((p, _)) => fill(p, c.seq_len),
            None => token_ids(c.seed ^ 0x1d5, c.seq_len, c.vocab),
        };
        self.ids = Some(b.upload_i32(&ids, &[ids.len()])?);
        Ok(())
    }
    fn gemm_dtype(&self, ctx: &Ctx, variant: &str) -> DType {
        self.mode(ctx, variant).gemm
    }
    fn prepare(&mut self, ctx: &Ctx, variant: &str) -> Result<()> {
        let b = ctx.backend.as_ref();
        self.graph = None;
        // FP8 weight copies exist only while an FP8 variant runs.
        let mode = self.mode(ctx, variant);
        let want = mode.gemm == DType::F8;
        let model = self.model.as_mut().expect("setup ran");
        if want != self.fp8_ready {
            model.set_fp8(b, want)?;
            self.fp8_ready = want;
        }
        if variant != "baseline" && b.kind() == BackendKind::Cuda {
            // One eager pass compiles the kernels and fills the GEMM plans, then the pass is recorded.
            let ids = self.ids.as_ref().expect("setup ran");
            drop(model.prefill(b, ids, mode)?);
            match b.capture(&mut || model.prefill(b, ids, mode)) {
                Ok(g) => self.graph = g,
                Err(e) => tracing::warn!("llama {variant}: CUDA graph capture failed ({e}); running eagerly"),
            }
        }
        Ok(())
    }
    fn step(&mut self, ctx: &Ctx, variant: &str) -> Result<Tensor> {
        let b = ctx.backend.as_ref();
        if let Some(g) = &self.graph {
            g.replay()?;
            // The graph rewrites its output in place: hand the harness its own copy.
            return Ok(b.concat_rows(&[g.output()])?);
        }
        let mode = self.mode(ctx, variant);
        let model = self.model.as_ref().expect("setup ran");
        Ok(model.prefill(b, self.ids.as_ref().expect("setup ran"), mode)?)
    }
    fn tokens(&self) -> usize {
        self.cfg.seq_len
    }
    fn flops(&self, _variant: &str) -> f64 {
        self.cfg.prefill_flops()
    }
    fn estimate_bytes(&self, ctx: &Ctx, variant: &str) -> Option<u64> {
        let at = super::memory::Storage::measured_on(ctx.backend.kind());
        Some(super::memory::llama_run(&self.cfg, ctx.gemm_dtype, variant, at).ok()?.total)
    }
    fn metrics(&mut self, ctx: &Ctx, variant: &str) -> Result<serde_json::Map<String, serde_json::Value>> {
        let c = &self.cfg;
        let mut m = serde_json::Map::new();
        if let Some(d) = &self.checkpoint_dtype {
            m.insert("checkpoint_dtype".into(), json!(d));
        }
        if let Some((ids, tok)) = &self.prompt {
            // Untimed: this variant's arithmetic on the prompt exactly as written.
            let model = self.model.as_ref().expect("setup ran");
            let v = model.score(ctx.backend.as_ref(), ids, self.mode(ctx, variant), TOP_K)?;
            let text = |id: u32| tok.as_ref().map(|t| t.token_text(id));
            let next: Vec<_> = v.top.iter().map(|&(id, p)| json!({"id": id, "text": text(id), "p": p})).collect();
            m.insert("prompt".into(), json!({"tokens": v.tokens, "perplexity": v.perplexity, "next": next}));
        }
        m.insert("params".into(), json!(c.params()));
        m.insert("kv_cache_bytes".into(), json!(c.kv_cache_bytes(2)));
        // The naive kernel holds one head's f32 score matrix at a time; flash holds none.
        let scores = if variant == "baseline" { (c.seq_len * c.seq_len * 4) as u64 } else { 0 };
        m.insert("attn_score_bytes".into(), json!(scores));
        m.insert("cuda_graph".into(), json!(self.graph.is_some()));
        Ok(m)
    }
}
