//! What a target is to the plan, the app and the harness: a registration (name, about,
//! presets, the config each profile gives it) and a configured `Target` (keys, checks,
//! variants, per-rank memory budget, workload). Targets implement these in one file each
//! and are listed once in `targets::ALL`; nothing here names one.

use super::Workload;
use super::variant::{Variant, VariantSpec};
use crate::budget::{Budget, MemoryError, MemoryInputs, Storage};
use crate::config::ConfigError;
use crate::layout::ParallelDims;

/// How large a profile's shapes are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Size {
    /// Small shapes of each model: seconds on a 2-core CPU.
    Quick,
    /// Real sizes at 8K context.
    Bench,
    /// Real sizes at 32K context.
    Long,
}

pub struct Profile {
    pub name: &'static str,
    pub about: &'static str,
    pub size: Size,
    pub warmup: usize,
    pub iterations: usize,
    /// Health gates every run of the profile applies (`harness::gates`); `--gate` adds to them.
    pub gates: &'static [&'static str],
}

/// The lab's bar: the balanced variant's load, summed over the judged batches, has Gini < 0.2.
const DEFAULT_GATES: &[&str] = &["moe.gini<0.2@balanced"];

pub const PROFILES: [Profile; 3] = [
    Profile {
        name: "quick",
        about: "small shapes of each model; seconds on a 2-core CPU",
        size: Size::Quick,
        warmup: 1,
        iterations: 5,
        gates: DEFAULT_GATES,
    },
    Profile {
        name: "bench",
        about: "real sizes: Llama 3.1 8B at 8K, DeepSeek-V2-Lite layer with 16K tokens, GPT-4 scaled to one GPU",
        size: Size::Bench,
        warmup: 2,
        iterations: 10,
        gates: DEFAULT_GATES,
    },
    Profile {
        name: "long",
        about: "bench at 32K context",
        size: Size::Long,
        warmup: 1,
        iterations: 5,
        gates: DEFAULT_GATES,
    },
];

pub fn profile(name: &str) -> Result<&'static Profile, ConfigError> {
    PROFILES.iter().find(|p| p.name == name).ok_or_else(|| ConfigError::UnknownName {
        what: "profile",
        name: name.into(),
        allowed: PROFILES.iter().map(|p| p.name).collect::<Vec<_>>().join(", "),
    })
}

/// A flag that sets a key in every target that has it (`--seq-len` is llama.seq_len and
/// moe.tokens); each target says which key, if any.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flag {
    SeqLen,
    Layers,
    CpKind,
    Skew,
    Weights,
    Prompt,
}

/// One line of `targets::ALL`.
pub struct Registration {
    pub name: &'static str,
    pub about: &'static str,
    /// The config a profile of this size gives the target.
    pub config: fn(Size) -> Box<dyn Target>,
}

/// A `--set NAME.preset=...` value and the config it swaps in (before other keys apply).
pub type Preset<T> = (&'static str, fn() -> T);

/// The config as JSON: what records carry and whose keys `--set` accepts (any serde config).
pub trait ConfigJson {
    fn config_json(&self) -> serde_json::Value;
}

impl<T: serde::Serialize> ConfigJson for T {
    fn config_json(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("configs serialise")
    }
}

/// A target with its resolved config.
pub trait Target: ConfigJson + std::fmt::Debug + Send + Sync {
    fn name(&self) -> &'static str;
    /// Values `--set NAME.preset=` accepts.
    fn presets(&self) -> Vec<&'static str>;
    /// The key `flag` sets in this target, if it applies here.
    fn flag_key(&self, flag: Flag) -> Option<&'static str>;
    /// Applies one `--set KEY=VALUE` (see `set_key`).
    fn set(&mut self, key: &str, value: &str) -> Result<(), ConfigError>;
    /// Checks the values once every override is applied; `explicit` names the keys the user set
    /// (a checkpoint decides the others).
    fn finish(&mut self, _explicit: &[&str]) -> Result<(), ConfigError> {
        Ok(())
    }
    /// Checks what the model asks of the layout (experts over EP, sequence over CP).
    fn check_layout(&self, _dims: &ParallelDims) -> Result<(), ConfigError> {
        Ok(())
    }
    fn variants(&self) -> Vec<VariantSpec>;
    /// One rank's memory running `v` under `dims`, with tensors stored `at`.
    fn run_budget(&self, dims: &ParallelDims, v: &Variant, at: Storage) -> Result<Budget, MemoryError>;
    /// The deployed model's terms for `estimate` (flash attention, embeddings included); None
    /// for a target that is not a model, whose `estimate` is its largest run budget.
    fn model_inputs(&self, _dims: &ParallelDims) -> Option<MemoryInputs> {
        None
    }
    fn workload(&self) -> Box<dyn Workload>;
}

impl serde::Serialize for dyn Target {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.config_json().serialize(s)
    }
}

/// `--set target.key=value` on `cfg`: `preset` swaps in one of `presets`, any other key is set
/// through serde (`config::apply`).
pub fn set_key<T: serde::Serialize + serde::de::DeserializeOwned>(
    cfg: &mut T,
    target: &'static str,
    key: &str,
    value: &str,
    presets: &[Preset<T>],
) -> Result<(), ConfigError> {
    if key != "preset" {
        *cfg = crate::config::apply(cfg, target, key, value)?;
        return Ok(());
    }
    let (_, make) = presets.iter().find(|(name, _)| *name == value).ok_or_else(|| ConfigError::UnknownName {
        what: "preset",
        name: format!("{target}.preset={value}"),
        allowed: preset_names(presets).join(", "),
    })?;
    *cfg = make();
    Ok(())
}

pub fn preset_names<T>(presets: &[Preset<T>]) -> Vec<&'static str> {
    presets.iter().map(|(name, _)| *name).collect()
}
