//! The `llama` target: full-model prefill, baseline vs optimized vs FP8.

use crate::backend::{AttnAlgo, BackendKind, Error, Replay};
use crate::budget::{Budget, Checked, MemoryError, MemoryInputs, Storage, n};
use crate::config::ConfigError;
use crate::harness::target::{Flag, Preset, Registration, Size, Target, preset_names, set_key};
use crate::harness::variant::{Gemm, Recipe};
use crate::harness::{Ctx, Result, Variant, VariantSpec, Workload};
use crate::layout::ParallelDims;
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
}

/// How the model runs `v` of `c`.
fn mode(c: &LlamaConfig, v: &Variant) -> Mode {
    let fused_norm = v.recipe().fused_norm;
    Mode { attn: v.attention(), fused_norm, gemm: v.gemm, fused_swiglu: fused_norm && c.fused_swiglu }
}

/// Whether `v`'s gate/up GEMM writes the SwiGLU activation itself where it runs (`at`): with
/// `llama.fused_swiglu=true`, the fused variants with bf16 GEMMs on a GPU that fuses it (sm_90a).
fn swiglu_in_gemm(c: &LlamaConfig, v: &Variant, at: Storage) -> bool {
    mode(c, v).swiglu_in_gemm() && at.fuses_swiglu()
}

pub const REGISTRATION: Registration = Registration {
    name: "llama",
    about: "Llama 3.1 8B prefill (embedding, 32 decoder layers, LM head)",
    config: |size| {
        Box::new(match size {
            Size::Quick => LlamaConfig::small(),
            Size::Bench => LlamaConfig { seq_len: 8192, ..LlamaConfig::llama31_8b() },
            Size::Long => LlamaConfig { seq_len: 32_768, ..LlamaConfig::llama31_8b() },
        })
    },
};

const PRESETS: &[Preset<LlamaConfig>] = &[("llama3.1-8b", LlamaConfig::llama31_8b), ("small", LlamaConfig::small)];

const OPTIMIZED: Recipe =
    Recipe { attention: Some(AttnAlgo::Flash), fused_norm: true, experts: None, gemm: Gemm::Run, graph: true };

pub fn variants() -> Vec<VariantSpec> {
    vec![
        VariantSpec::baseline(
            "unfused norms, naive attention (f32 scores)",
            Recipe { attention: Some(AttnAlgo::Naive), ..Recipe::PLAIN },
        ),
        VariantSpec::candidate(
            "optimized",
            "flash attention, residual fused into RMSNorm, CUDA graph replay",
            OPTIMIZED,
            0.05,
        ),
        VariantSpec::candidate(
            "fp8",
            "optimized with FP8 e4m3 GEMMs (per-tensor scales)",
            Recipe { gemm: Gemm::Fp8, ..OPTIMIZED },
            0.25,
        ),
    ]
}

impl Target for LlamaConfig {
    fn name(&self) -> &'static str {
        REGISTRATION.name
    }
    fn presets(&self) -> Vec<&'static str> {
        preset_names(PRESETS)
    }
    fn flag_key(&self, flag: Flag) -> Option<&'static str> {
        match flag {
            Flag::SeqLen => Some("seq_len"),
            Flag::Layers => Some("layers"),
            Flag::Weights => Some("weights"),
            Flag::Prompt => Some("prompt"),
            Flag::CpKind | Flag::Skew => None,
        }
    }
    fn set(&mut self, key: &str, value: &str) -> std::result::Result<(), ConfigError> {
        set_key(self, REGISTRATION.name, key, value, PRESETS)
    }
    /// The checkpoint decides the architecture; what the user set must agree with it.
    fn finish(&mut self, explicit: &[&str]) -> std::result::Result<(), ConfigError> {
        *self = crate::models::checkpoint::resolve(self, explicit)?;
        self.validate()
    }
    fn variants(&self) -> Vec<VariantSpec> {
        variants()
    }
    /// The model at the variant's attention (naive for the baseline, with its score matrix) and,
    /// for FP8 GEMMs, one-byte copies of every linear weight.
    fn run_budget(&self, _dims: &ParallelDims, v: &Variant, at: Storage) -> std::result::Result<Budget, MemoryError> {
        let inputs = at.inputs(self.memory_inputs(v.attention()));
        let fp8 = if v.gemm == DType::F8 {
            // Every linear weight; the embedding table only when it is the tied LM head.
            let table = if self.tie_embeddings { n(0) } else { n(self.vocab) * n(self.hidden) };
            let linear = Checked::from(inputs.param_count()?).minus(table);
            linear * n(at.bytes(DType::F8))
        } else {
            n(0)
        };
        let fused = swiglu_in_gemm(self, v, at);
        let phases = super::working_set::llama(inputs.estimate()?, self, at.bytes(DType::Bf16), fused)?;
        // Only the CUDA backend records the graph; its pool maps the capture's packing, holes included.
        let graph = if v.recipe().graph && matches!(at, Storage::Device { .. }) {
            super::graph_pool::llama(self, v.gemm == DType::F8, fused)
        } else {
            n(0)
        };
        phases.with_extras(vec![("fp8 weight copies", fp8), (GRAPH_POOL, graph)])
    }
    fn model_inputs(&self, dims: &ParallelDims) -> Option<MemoryInputs> {
        Some(MemoryInputs { tp: dims.tp, ..self.memory_inputs(AttnAlgo::Flash) })
    }
    fn workload(&self) -> Box<dyn Workload> {
        Box::new(LlamaTarget::new(self.clone()))
    }
}

/// The budget term of the CUDA graph's pool beyond the eager working set (`graph_pool`).
pub const GRAPH_POOL: &str = "CUDA graph pool: holes in the captured pass's packing";

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
        variants()
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
    fn prepare(&mut self, ctx: &Ctx, v: &Variant) -> Result<()> {
        let b = ctx.backend.as_ref();
        self.graph = None;
        // FP8 weight copies exist only while an FP8 variant runs.
        let mode = mode(&self.cfg, v);
        let want = mode.gemm == DType::F8;
        let model = self.model.as_mut().expect("setup ran");
        if want != self.fp8_ready {
            model.set_fp8(b, want)?;
            self.fp8_ready = want;
        }
        if v.recipe().graph && b.kind() == BackendKind::Cuda {
            // One eager pass compiles the kernels and fills the GEMM plans, then the pass is recorded.
            let ids = self.ids.as_ref().expect("setup ran");
            drop(model.prefill(b, ids, mode)?);
            match b.capture(&mut || model.prefill(b, ids, mode)) {
                Ok(g) => self.graph = g,
                Err(e) => tracing::warn!("llama {}: CUDA graph capture failed ({e}); running eagerly", v.name()),
            }
        }
        Ok(())
    }
    fn step(&mut self, ctx: &Ctx, v: &Variant) -> Result<Tensor> {
        let b = ctx.backend.as_ref();
        if let Some(g) = &self.graph {
            g.replay()?;
            // The graph rewrites its output in place: hand the harness its own copy.
            return Ok(b.concat_rows(&[g.output()])?);
        }
        let model = self.model.as_ref().expect("setup ran");
        Ok(model.prefill(b, self.ids.as_ref().expect("setup ran"), mode(&self.cfg, v))?)
    }
    fn tokens(&self) -> usize {
        self.cfg.seq_len
    }
    fn flops(&self, _v: &Variant) -> f64 {
        self.cfg.prefill_flops()
    }
    fn estimate_bytes(&self, ctx: &Ctx, v: &Variant) -> Option<u64> {
        Some(self.cfg.run_budget(&ctx.dims, v, Storage::measured_on(ctx.backend.as_ref())).ok()?.total)
    }
    fn metrics(&mut self, ctx: &Ctx, v: &Variant) -> Result<serde_json::Map<String, serde_json::Value>> {
        let c = &self.cfg;
        let mut m = serde_json::Map::new();
        if let Some(d) = &self.checkpoint_dtype {
            m.insert("checkpoint_dtype".into(), json!(d));
        }
        if let Some((ids, tok)) = &self.prompt {
            // Untimed: this variant's arithmetic on the prompt exactly as written.
            let model = self.model.as_ref().expect("setup ran");
            let v = model.score(ctx.backend.as_ref(), ids, mode(c, v), TOP_K)?;
            let text = |id: u32| tok.as_ref().map(|t| t.token_text(id));
            let next: Vec<_> = v.top.iter().map(|&(id, p)| json!({"id": id, "text": text(id), "p": p})).collect();
            m.insert("prompt".into(), json!({"tokens": v.tokens, "perplexity": v.perplexity, "next": next}));
        }
        m.insert("params".into(), json!(c.params()));
        m.insert("kv_cache_bytes".into(), json!(c.kv_cache_bytes(2)));
        // The naive kernel holds one head's f32 score matrix at a time; flash holds none.
        let scores = if v.attention() == AttnAlgo::Naive { (c.seq_len * c.seq_len * 4) as u64 } else { 0 };
        m.insert("attn_score_bytes".into(), json!(scores));
        m.insert("cuda_graph".into(), json!(self.graph.is_some()));
        let b = ctx.backend.as_ref();
        m.insert("swiglu_in_gemm".into(), json!(swiglu_in_gemm(c, v, Storage::measured_on(b))));
        Ok(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn variant(name: &str) -> Variant {
        variants().into_iter().find(|s| s.name == name).unwrap().resolve(DType::Bf16)
    }

    #[test]
    fn swiglu_in_gemm_only_for_fused_bf16_variants_on_a_fusing_gpu_and_the_budget_follows() {
        // On by default (the banded kernel beats cuBLASLt then SwiGLU on the H200, BENCHMARKS.md).
        let c = LlamaConfig::llama31_8b();
        assert!(c.fused_swiglu);
        let (hopper, other) = (Storage::Device { fused_swiglu: true }, Storage::Device { fused_swiglu: false });
        assert!(swiglu_in_gemm(&c, &variant("optimized"), hopper));
        assert!(!swiglu_in_gemm(&c, &variant("optimized"), other));
        assert!(!swiglu_in_gemm(&c, &variant("optimized"), Storage::Counter));
        assert!(!swiglu_in_gemm(&c, &variant("fp8"), hopper));
        assert!(!swiglu_in_gemm(&c, &variant("baseline"), hopper));
        let off = LlamaConfig { fused_swiglu: false, ..c.clone() };
        assert!(!swiglu_in_gemm(&off, &variant("optimized"), hopper));
        // The fused pass holds no [s, 2f] gate/up buffer: the MLP phase is 2 * s * f * 2 bytes smaller.
        let dims = ParallelDims::single();
        let total = |c: &LlamaConfig, at| c.run_budget(&dims, &variant("optimized"), at).unwrap();
        let (fused, split) = (total(&c, hopper), total(&c, other));
        let mlp = |b: &Budget| b.bytes(crate::targets::working_set::MLP_PHASE);
        assert_eq!(mlp(&split) - mlp(&fused), (2 * c.seq_len * c.ffn * 2) as u64);
        assert!(fused.total < split.total);
    }
}
