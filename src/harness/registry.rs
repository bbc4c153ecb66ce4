//! The targets, their profiles, and the configs a profile gives them.

use super::Workload;
use crate::config::{ConfigError, Override, apply};
use crate::models::gpt4::Gpt4Config;
use crate::models::llama::LlamaConfig;
use crate::models::moe::MoeConfig;
use crate::targets::{gpt4::Gpt4Target, llama::LlamaTarget, moe::MoeTarget};
use serde::Serialize;

pub const TARGETS: [(&str, &str); 3] = [
    ("llama", "Llama 3.1 8B prefill (embedding, 32 decoder layers, LM head)"),
    ("moe", "DeepSeek MoE layer: routing health, grouped experts, expert parallelism"),
    ("gpt4", "GPT-4-style MoE stack: context-parallel attention, expert parallelism, FP8"),
];

pub struct Profile {
    pub name: &'static str,
    pub about: &'static str,
    pub warmup: usize,
    pub iterations: usize,
    /// Health gates every run of the profile applies (`harness::gates`); `--gate` adds to them.
    pub gates: &'static [&'static str],
}

/// The lab's bar: the balanced variant's load, summed over the judged batches, has Gini < 0.2.
const DEFAULT_GATES: &[&str] = &["moe.gini<0.2@balanced"];

pub const PROFILES: [Profile; 3] = [
    Profile { name: "quick", about: "small shapes of each model; seconds on a 2-core CPU", warmup: 1, iterations: 5, gates: DEFAULT_GATES },
    Profile {
        name: "bench",
        about: "real sizes: Llama 3.1 8B at 8K, DeepSeek-V2-Lite layer with 16K tokens, GPT-4 scaled to one GPU",
        warmup: 2,
        iterations: 10,
        gates: DEFAULT_GATES,
    },
    Profile { name: "long", about: "bench at 32K context", warmup: 1, iterations: 5, gates: DEFAULT_GATES },
];

pub fn profile(name: &str) -> Result<&'static Profile, ConfigError> {
    PROFILES.iter().find(|p| p.name == name).ok_or_else(|| ConfigError::UnknownName {
        what: "profile",
        name: name.into(),
        allowed: PROFILES.iter().map(|p| p.name).collect::<Vec<_>>().join(", "),
    })
}

pub fn check_target(name: &str) -> Result<(), ConfigError> {
    if TARGETS.iter().any(|(t, _)| *t == name) {
        Ok(())
    } else {
        Err(ConfigError::UnknownTarget {
            name: name.into(),
            allowed: TARGETS.iter().map(|(t, _)| *t).collect::<Vec<_>>().join(", "),
        })
    }
}

fn unknown_preset(what: &'static str, name: &str, allowed: &str) -> ConfigError {
    ConfigError::UnknownName { what, name: name.into(), allowed: allowed.into() }
}

/// A target's resolved config.
#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(untagged)]
pub enum TargetConfig {
    Llama(LlamaConfig),
    Moe(MoeConfig),
    Gpt4(Gpt4Config),
}

impl TargetConfig {
    pub fn name(&self) -> &'static str {
        match self {
            TargetConfig::Llama(_) => "llama",
            TargetConfig::Moe(_) => "moe",
            TargetConfig::Gpt4(_) => "gpt4",
        }
    }

    /// The config `profile` gives `target`.
    pub fn for_profile(target: &str, profile: &str) -> Result<TargetConfig, ConfigError> {
        check_target(target)?;
        let long = profile == "long";
        Ok(match (target, profile) {
            ("llama", "quick") => TargetConfig::Llama(LlamaConfig::small()),
            ("llama", _) => TargetConfig::Llama(LlamaConfig {
                seq_len: if long { 32_768 } else { 8192 },
                ..LlamaConfig::llama31_8b()
            }),
            ("moe", "quick") => TargetConfig::Moe(MoeConfig {
                hidden: 512,
                expert_ffn: 256,
                tokens: 512,
                batches: 4,
                ..MoeConfig::deepseek_v2_lite()
            }),
            ("moe", _) => TargetConfig::Moe(MoeConfig::deepseek_v2_lite()),
            ("gpt4", "quick") => TargetConfig::Gpt4(Gpt4Config::small()),
            (_, _) => TargetConfig::Gpt4(Gpt4Config {
                layers: 2,
                hidden: 4096,
                heads: 32,
                kv_heads: 8,
                expert_ffn: 8192,
                seq_len: if long { 32_768 } else { 8192 },
                ..Gpt4Config::full()
            }),
        })
    }

    /// Apply one `--set` (the target already matched). `preset` swaps the whole config.
    pub fn set(&self, o: &Override) -> Result<TargetConfig, ConfigError> {
        Ok(match self {
            TargetConfig::Moe(_) if o.key == "preset" => TargetConfig::Moe(MoeConfig::preset(&o.value)?),
            TargetConfig::Llama(_) if o.key == "preset" => TargetConfig::Llama(match o.value.as_str() {
                "llama3.1-8b" => LlamaConfig::llama31_8b(),
                "small" => LlamaConfig::small(),
                _ => return Err(unknown_preset("llama.preset", &o.value, "llama3.1-8b, small")),
            }),
            TargetConfig::Gpt4(_) if o.key == "preset" => TargetConfig::Gpt4(match o.value.as_str() {
                "full" => Gpt4Config::full(),
                "small" => Gpt4Config::small(),
                _ => return Err(unknown_preset("gpt4.preset", &o.value, "full, small")),
            }),
            TargetConfig::Llama(c) => TargetConfig::Llama(apply(c, &o.target, &o.key, &o.value)?),
            TargetConfig::Moe(c) => TargetConfig::Moe(apply(c, &o.target, &o.key, &o.value)?),
            TargetConfig::Gpt4(c) => TargetConfig::Gpt4(apply(c, &o.target, &o.key, &o.value)?),
        })
    }

    pub fn workload(&self) -> Box<dyn Workload> {
        match self {
            TargetConfig::Llama(c) => Box::new(LlamaTarget::new(c.clone())),
            TargetConfig::Moe(c) => Box::new(MoeTarget::new(c.clone())),
            TargetConfig::Gpt4(c) => Box::new(Gpt4Target::new(c.clone())),
        }
    }
}
