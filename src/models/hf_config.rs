//! A Hugging Face Llama checkpoint's config.json, read into `LlamaConfig`.
//! Both layouts are read: transformers 4.x (`rope_theta` + `rope_scaling`, `torch_dtype`,
//! as published for Llama 3.x) and 5.x (`rope_parameters`, `dtype`).

use super::llama::LlamaConfig;
use super::weights::Error;
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// The config.json fields the Llama decoder depends on; the rest are ignored.
#[derive(Debug, Deserialize)]
struct Raw {
    architectures: Option<Vec<String>>,
    model_type: Option<String>,
    vocab_size: usize,
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    num_key_value_heads: Option<usize>,
    head_dim: Option<usize>,
    #[serde(default = "default_eps")]
    rms_norm_eps: f64,
    rope_theta: Option<f64>,
    rope_scaling: Option<serde_json::Map<String, serde_json::Value>>,
    rope_parameters: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(default)]
    tie_word_embeddings: bool,
    torch_dtype: Option<String>,
    dtype: Option<String>,
    hidden_act: Option<String>,
    #[serde(default)]
    attention_bias: bool,
    #[serde(default)]
    mlp_bias: bool,
    quantization_config: Option<serde_json::Value>,
}

/// transformers' LlamaConfig default.
fn default_eps() -> f64 {
    1e-6
}

/// What a checkpoint's config.json says, in `llama.*` terms.
#[derive(Debug, Clone, PartialEq)]
pub struct HfConfig {
    pub path: PathBuf,
    /// The architecture keys (everything but seq_len, seed, weights, prompt).
    pub arch: LlamaConfig,
    /// Element type the weights were published in (`torch_dtype` / `dtype`), if stated.
    pub dtype: Option<String>,
}

/// Keys of `LlamaConfig` the checkpoint decides, with the config.json key each comes from.
const OWNED: [(&str, &str); 10] = [
    ("vocab", "vocab_size"),
    ("hidden", "hidden_size"),
    ("layers", "num_hidden_layers"),
    ("heads", "num_attention_heads"),
    ("kv_heads", "num_key_value_heads"),
    ("head_dim", "head_dim"),
    ("ffn", "intermediate_size"),
    ("rope_theta", "rope_theta"),
    ("eps", "rms_norm_eps"),
    ("tie_embeddings", "tie_word_embeddings"),
];

/// Owned only when the checkpoint uses llama3 RoPE scaling (otherwise they have no effect).
const ROPE_OWNED: [(&str, &str); 4] = [
    ("rope_factor", "rope_scaling.factor"),
    ("rope_low_freq_factor", "rope_scaling.low_freq_factor"),
    ("rope_high_freq_factor", "rope_scaling.high_freq_factor"),
    ("rope_original_max_position", "rope_scaling.original_max_position_embeddings"),
];

impl HfConfig {
    /// Read `dir/config.json`; refuse what the Llama decoder here does not compute.
    pub fn load(dir: &Path, base: &LlamaConfig) -> Result<HfConfig, Error> {
        let path = dir.join("config.json");
        if !path.exists() {
            return Err(Error::bad(dir, "no config.json (a Hugging Face checkpoint directory has one)"));
        }
        let text = std::fs::read_to_string(&path).map_err(Error::io(&path))?;
        let raw: Raw = serde_json::from_str(&text).map_err(|e| Error::bad(&path, e.to_string()))?;
        Self::from_raw(raw, path, base)
    }

    fn from_raw(r: Raw, path: PathBuf, base: &LlamaConfig) -> Result<HfConfig, Error> {
        let refuse = |what: String| Err(Error::bad(&path, what));
        match (&r.architectures, &r.model_type) {
            (Some(a), _) if a.iter().any(|a| a == "LlamaForCausalLM") => {}
            (Some(a), _) => {
                return refuse(format!("architecture {} is not supported (LlamaForCausalLM is)", a.join(", ")));
            }
            (None, Some(t)) if t == "llama" => {}
            (None, t) => {
                return refuse(format!("model_type {t:?} without `architectures` is not supported (llama is)"));
            }
        }
        if let Some(act) = r.hidden_act.as_deref().filter(|a| *a != "silu") {
            return refuse(format!("hidden_act `{act}` is not supported (silu is)"));
        }
        if r.attention_bias || r.mlp_bias {
            return refuse("attention_bias / mlp_bias are not supported (Llama has no biases)".into());
        }
        if r.quantization_config.is_some() {
            return refuse("quantized checkpoints (quantization_config) are not supported".into());
        }
        if r.num_attention_heads == 0 {
            return refuse("num_attention_heads is 0".into());
        }
        // transformers 5 keeps theta and scaling together; 4.x keeps them apart.
        let rope = r.rope_parameters.clone().or_else(|| r.rope_scaling.clone()).unwrap_or_default();
        let num = |k: &str| rope.get(k).and_then(|v| v.as_f64());
        let kind = rope.get("rope_type").or_else(|| rope.get("type")).and_then(|v| v.as_str()).unwrap_or("default");
        let theta = num("rope_theta").or(r.rope_theta).unwrap_or(10_000.0) as f32;
        let mut arch = LlamaConfig {
            vocab: r.vocab_size,
            hidden: r.hidden_size,
            layers: r.num_hidden_layers,
            heads: r.num_attention_heads,
            kv_heads: r.num_key_value_heads.unwrap_or(r.num_attention_heads),
            head_dim: r.head_dim.unwrap_or(r.hidden_size / r.num_attention_heads),
            ffn: r.intermediate_size,
            rope_theta: theta,
            rope_factor: 1.0,
            eps: r.rms_norm_eps as f32,
            tie_embeddings: r.tie_word_embeddings,
            ..base.clone()
        };
        match kind {
            "default" => {}
            "llama3" => {
                let need =
                    |k: &str| num(k).ok_or_else(|| Error::bad(&path, format!("llama3 rope scaling without `{k}`")));
                arch.rope_factor = need("factor")? as f32;
                arch.rope_low_freq_factor = need("low_freq_factor")? as f32;
                arch.rope_high_freq_factor = need("high_freq_factor")? as f32;
                arch.rope_original_max_position = need("original_max_position_embeddings")? as usize;
            }
            other => return refuse(format!("rope type `{other}` is not supported (llama3 and none are)")),
        }
        Ok(HfConfig { dtype: r.torch_dtype.or(r.dtype), arch, path })
    }

    /// `asked` with the architecture taken from the checkpoint. `explicit` are the
    /// keys the user set (`--set llama.KEY`, or a flag such as `--layers`); one that
    /// disagrees with the checkpoint is an error naming both values.
    pub fn adopt(&self, asked: &LlamaConfig, explicit: &[&str]) -> Result<LlamaConfig, Error> {
        let rope_scaled = self.arch.rope_factor != 1.0;
        let owned = OWNED.iter().chain(ROPE_OWNED.iter().filter(|_| rope_scaled));
        let mine = serde_json::to_value(&self.arch).expect("configs serialise");
        let theirs = serde_json::to_value(asked).expect("configs serialise");
        // A preset names every architecture key at once.
        let preset = explicit.contains(&"preset");
        for (key, hf_key) in owned {
            if (preset || explicit.contains(key)) && mine[key] != theirs[key] {
                let what = format!(
                    "llama.{key} = {} contradicts the checkpoint's {hf_key} = {}; leave it out to use the checkpoint's",
                    theirs[key], mine[key]
                );
                return Err(Error::bad(&self.path, what));
            }
        }
        Ok(LlamaConfig {
            seq_len: asked.seq_len,
            seed: asked.seed,
            weights: asked.weights.clone(),
            prompt: asked.prompt.clone(),
            fused_swiglu: asked.fused_swiglu,
            // Without llama3 scaling these keys have no effect: keep what was asked.
            rope_low_freq_factor: if rope_scaled { self.arch.rope_low_freq_factor } else { asked.rope_low_freq_factor },
            rope_high_freq_factor: if rope_scaled {
                self.arch.rope_high_freq_factor
            } else {
                asked.rope_high_freq_factor
            },
            rope_original_max_position: if rope_scaled {
                self.arch.rope_original_max_position
            } else {
                asked.rope_original_max_position
            },
            ..self.arch.clone()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// config.json of meta-llama/Llama-3.1-8B as published (transformers 4.43).
    const LLAMA31_8B: &str = r#"{
      "architectures": ["LlamaForCausalLM"], "attention_bias": false, "attention_dropout": 0.0,
      "bos_token_id": 128000, "eos_token_id": 128001, "hidden_act": "silu", "hidden_size": 4096,
      "initializer_range": 0.02, "intermediate_size": 14336, "max_position_embeddings": 131072,
      "mlp_bias": false, "model_type": "llama", "num_attention_heads": 32, "num_hidden_layers": 32,
      "num_key_value_heads": 8, "pretraining_tp": 1, "rms_norm_eps": 1e-05,
      "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                       "original_max_position_embeddings": 8192, "rope_type": "llama3"},
      "rope_theta": 500000.0, "tie_word_embeddings": false, "torch_dtype": "bfloat16",
      "transformers_version": "4.43.0.dev0", "use_cache": true, "vocab_size": 128256 }"#;

    /// config.json of meta-llama/Llama-3.2-1B (tied embeddings, scaling x32, head_dim given).
    const LLAMA32_1B: &str = r#"{
      "architectures": ["LlamaForCausalLM"], "attention_bias": false, "hidden_act": "silu", "head_dim": 64,
      "hidden_size": 2048, "intermediate_size": 8192, "max_position_embeddings": 131072, "mlp_bias": false,
      "model_type": "llama", "num_attention_heads": 32, "num_hidden_layers": 16, "num_key_value_heads": 8,
      "rms_norm_eps": 1e-05, "rope_scaling": {"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
      "original_max_position_embeddings": 8192, "rope_type": "llama3"}, "rope_theta": 500000.0,
      "tie_word_embeddings": true, "torch_dtype": "bfloat16", "vocab_size": 128256 }"#;

    fn parse(text: &str) -> Result<HfConfig, Error> {
        HfConfig::from_raw(serde_json::from_str(text).unwrap(), "x/config.json".into(), &LlamaConfig::small())
    }

    #[test]
    fn reads_llama31_8b_as_the_builtin_config() {
        let c = parse(LLAMA31_8B).unwrap();
        let want = LlamaConfig { seq_len: 256, ..LlamaConfig::llama31_8b() };
        assert_eq!(c.arch, want);
        assert_eq!(c.dtype.as_deref(), Some("bfloat16"));
    }

    #[test]
    fn reads_llama32_tied_and_transformers5_layout() {
        let c = parse(LLAMA32_1B).unwrap().arch;
        assert!(c.tie_embeddings && c.rope_factor == 32.0 && c.head_dim == 64 && c.layers == 16);
        // transformers 5 writes rope_parameters (theta inside) and `dtype`.
        let v5 = LLAMA32_1B
            .replace(
                r#""rope_scaling": {"factor": 32.0"#,
                r#""rope_parameters": {"rope_theta": 250000.0, "factor": 32.0"#,
            )
            .replace(r#""rope_theta": 500000.0,"#, "")
            .replace("torch_dtype", "dtype");
        let c5 = parse(&v5).unwrap();
        assert_eq!(c5.arch, LlamaConfig { rope_theta: 250000.0, ..c });
        assert_eq!(c5.dtype.as_deref(), Some("bfloat16"));
    }

    #[test]
    fn defaults_follow_transformers() {
        // Llama 2 style: no scaling, no head_dim, no num_key_value_heads, no rope_theta.
        let text = r#"{"architectures": ["LlamaForCausalLM"], "hidden_size": 4096, "intermediate_size": 11008,
            "num_attention_heads": 32, "num_hidden_layers": 32, "rope_scaling": null, "vocab_size": 32000}"#;
        let c = parse(text).unwrap().arch;
        assert_eq!((c.kv_heads, c.head_dim, c.rope_theta, c.rope_factor, c.eps), (32, 128, 10_000.0, 1.0, 1e-6));
        assert!(!c.tie_embeddings);
    }

    #[test]
    fn refuses_what_is_not_computed_here_by_name() {
        let e = parse(&LLAMA31_8B.replace("LlamaForCausalLM", "MistralForCausalLM")).unwrap_err().to_string();
        assert!(e.starts_with("weights: x/config.json: architecture MistralForCausalLM"), "{e}");
        let e = parse(&LLAMA31_8B.replace(r#""rope_type": "llama3""#, r#""rope_type": "yarn""#)).unwrap_err();
        assert!(e.to_string().contains("rope type `yarn`"), "{e}");
        let e = parse(&LLAMA31_8B.replace(r#""mlp_bias": false"#, r#""mlp_bias": true"#)).unwrap_err();
        assert!(e.to_string().contains("mlp_bias"), "{e}");
    }

    #[test]
    fn explicit_keys_must_agree_with_the_checkpoint() {
        let ck = parse(LLAMA31_8B).unwrap();
        let asked = LlamaConfig { heads: 16, seq_len: 100, prompt: "hi".into(), ..LlamaConfig::small() };
        // Not set by the user: the checkpoint's value wins, run keys stay.
        let c = ck.adopt(&asked, &["seq_len"]).unwrap();
        assert_eq!((c.heads, c.hidden, c.seq_len, c.prompt.as_str()), (32, 4096, 100, "hi"));
        let e = ck.adopt(&asked, &["heads"]).unwrap_err().to_string();
        assert!(e.contains("llama.heads = 16") && e.contains("num_attention_heads = 32"), "{e}");
        let agree = LlamaConfig { heads: 32, ..asked.clone() };
        assert_eq!(ck.adopt(&agree, &["heads"]).unwrap().heads, 32);
        // A preset asserts every architecture key.
        let e = ck.adopt(&LlamaConfig::small(), &["preset"]).unwrap_err().to_string();
        assert!(e.contains("llama.vocab = 4096") && e.contains("vocab_size = 128256"), "{e}");
        assert!(ck.adopt(&LlamaConfig::llama31_8b(), &["preset"]).is_ok());
    }
}
