//! A `llama` config checked against its checkpoint and prompt before any device is
//! touched: the architecture comes from config.json, every tensor is present with its
//! shape, and the prompt tokenizes. Failures here are bad input (exit code 2).

use super::hf_config::HfConfig;
use super::llama::LlamaConfig;
use super::tokenizer::prompt_ids;
use super::weights::Checkpoint;
use crate::config::ConfigError;
use std::path::Path;

/// `asked` (profile, presets and flags applied) with the checkpoint's architecture.
/// `explicit` names the keys the user set, which must agree with the checkpoint.
pub fn resolve(asked: &LlamaConfig, explicit: &[&str]) -> Result<LlamaConfig, ConfigError> {
    let cfg = match weights_dir(asked) {
        None => asked.clone(),
        Some(dir) => {
            let cfg = HfConfig::load(dir, asked)?.adopt(asked, explicit)?;
            let (ck, want) = (Checkpoint::open(dir)?, cfg.tensors());
            ck.check(&want)?;
            // Old exports carry buffers (rotary inv_freq) and tied ones may store lm_head:
            // worth a word, not a refusal.
            let unused = ck.unused(&want);
            if !unused.is_empty() {
                tracing::warn!(
                    "weights: {} tensor(s) in {} are not used: {}",
                    unused.len(),
                    dir.display(),
                    unused.join(", ")
                );
            }
            cfg
        }
    };
    if !cfg.prompt.is_empty() {
        prompt_ids(&cfg.prompt, weights_dir(&cfg), cfg.vocab)?;
    }
    Ok(cfg)
}

/// The checkpoint directory, if the weights are not seeded random ones.
pub fn weights_dir(c: &LlamaConfig) -> Option<&Path> {
    (!c.weights.is_empty()).then(|| Path::new(&c.weights))
}
