//! The validated plan: flags resolved into target configs, a profile and a layout.
//! Everything here is checked before any device is touched (`run --dry-run` stops here).

pub mod fit;

use crate::backend::BackendKind;
use crate::cli::{ConfigArgs, GemmDtype, RunArgs};
use crate::config::{ConfigError, Override};
use crate::harness::target::{self, Flag, Profile, Target};
use crate::layout::{LayoutArgs, ParallelDims};
use crate::targets;
use crate::tensor::DType;
use serde::Serialize;
use std::path::PathBuf;

/// The most warm-up or timed steps per variant a run accepts.
pub const MAX_STEPS: usize = 1_000_000;

#[derive(Debug, Serialize)]
pub struct Plan {
    pub profile: &'static str,
    pub targets: Vec<Box<dyn Target>>,
    pub gemm_dtype: DType,
    /// The layout flags; `dims` resolves them against a world size.
    #[serde(skip)]
    pub layout: LayoutArgs,
    #[serde(skip)]
    pub topology: Option<PathBuf>,
}

#[derive(Debug, Serialize)]
pub struct RunPlan {
    #[serde(flatten)]
    pub plan: Plan,
    pub variants: Option<Vec<String>>,
    pub backend: Option<BackendKind>,
    pub warmup: usize,
    pub iterations: usize,
    pub output: Option<PathBuf>,
    /// Distributed runs compare each rank's output with one rank alone: always in the
    /// quick profile, with --single-rank-check in the others.
    pub single_rank_check: bool,
    /// cuProfilerStart/Stop around the timed steps (--profile-steps).
    pub profile_steps: bool,
    /// Health gates: the profile's, with --gate's added (`harness::gates::merge`).
    pub gates: Vec<crate::harness::gates::Gate>,
}

impl Plan {
    pub fn resolve(a: &ConfigArgs) -> Result<Plan, ConfigError> {
        let profile: &Profile = target::profile(&a.profile)?;
        let names: Vec<String> = if a.target.is_empty() {
            targets::ALL.iter().map(|t| t.name.to_string()).collect()
        } else {
            a.target.clone()
        };
        let overrides = a.set.iter().map(|s| s.parse()).collect::<Result<Vec<Override>, _>>()?;
        for o in &overrides {
            targets::find(&o.target)?;
        }
        let mut flags: Vec<(Flag, String)> = vec![];
        flags.extend(a.seq_len.map(|s| (Flag::SeqLen, s.to_string())));
        flags.extend(a.layers.map(|l| (Flag::Layers, l.to_string())));
        flags.extend(a.cp_kind.clone().map(|k| (Flag::CpKind, k)));
        flags.extend(a.skew.clone().map(|s| (Flag::Skew, s)));
        flags.extend(a.weights.as_ref().map(|w| (Flag::Weights, w.display().to_string())));
        flags.extend(a.prompt.clone().map(|p| (Flag::Prompt, p)));
        if let Some(f) = &a.prompt_file {
            flags.push((Flag::Prompt, crate::models::tokenizer::read_prompt_file(f)?));
        }
        let layout = a.layout;
        let mut resolved = vec![];
        for name in &names {
            let mut cfg = (targets::find(name)?.config)(profile.size);
            // Presets first, so that other keys refine them; flags last.
            let mine: Vec<(&str, &str)> = overrides
                .iter()
                .filter(|o| &o.target == name && o.key == "preset")
                .chain(overrides.iter().filter(|o| &o.target == name && o.key != "preset"))
                .map(|o| (o.key.as_str(), o.value.as_str()))
                .collect();
            let from_flags: Vec<(&str, &str)> =
                flags.iter().filter_map(|(f, v)| cfg.flag_key(*f).map(|k| (k, v.as_str()))).collect();
            for (k, v) in mine.iter().chain(&from_flags) {
                cfg.set(k, v)?;
            }
            let explicit: Vec<&str> = mine.iter().chain(&from_flags).map(|(k, _)| *k).collect();
            cfg.finish(&explicit)?;
            resolved.push(cfg);
        }
        let gemm_dtype = match a.dtype {
            GemmDtype::Bf16 => DType::Bf16,
            GemmDtype::Fp8 => DType::F8,
        };
        Ok(Plan { profile: profile.name, targets: resolved, gemm_dtype, layout, topology: a.topology.clone() })
    }

    /// The layout over `world` ranks, checked against every selected target's model:
    /// the one check `run`, `run --dry-run` and `estimate` share (`topo show` shares the
    /// layout part). Messages name each factor and the target's own keys.
    pub fn dims(&self, world: usize) -> Result<ParallelDims, ConfigError> {
        let dims = ParallelDims::resolve(world, &self.layout).map_err(|e| ConfigError::Invalid(e.to_string()))?;
        for t in &self.targets {
            t.check_layout(&dims)?;
        }
        Ok(dims)
    }

    /// The world size used when none is given: the smallest the layout flags fit.
    pub fn smallest_world(&self) -> usize {
        self.layout.smallest_world()
    }
}

impl RunPlan {
    pub fn resolve(a: &RunArgs) -> Result<RunPlan, ConfigError> {
        let plan = Plan::resolve(&a.config)?;
        let profile = target::profile(plan.profile)?;
        let variants = if a.variant.is_empty() { None } else { Some(a.variant.clone()) };
        // `@VARIANT` may name a variant of any target, run or not.
        let mut all: Vec<&str> = crate::targets::ALL
            .iter()
            .flat_map(|r| (r.config)(crate::harness::target::Size::Quick).variants().into_iter().map(|v| v.name))
            .collect();
        all.sort_unstable();
        all.dedup();
        let gates = crate::harness::gates::resolve(profile.gates, &a.gate, &all)
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        if let Some(vs) = &variants {
            let known: Vec<String> =
                plan.targets.iter().flat_map(|t| t.variants().into_iter().map(|v| v.name.to_string())).collect();
            if let Some(bad) = vs.iter().find(|v| !known.contains(v)) {
                let mut allowed = known.clone();
                allowed.sort();
                allowed.dedup();
                return Err(ConfigError::UnknownName {
                    what: "variant",
                    name: bad.clone(),
                    allowed: allowed.join(", "),
                });
            }
        }
        // Zero timed steps would record null medians as a success; a huge count would reserve its
        // samples up front and abort.
        if a.iters == Some(0) {
            return Err(ConfigError::Invalid("--iters must be at least 1 (timed steps per variant)".into()));
        }
        for (flag, v) in [("--iters", a.iters), ("--warmup", a.warmup)] {
            if v.is_some_and(|v| v > MAX_STEPS) {
                return Err(ConfigError::Invalid(format!("{flag} must be at most {MAX_STEPS}")));
            }
        }
        if a.world == Some(0) {
            return Err(ConfigError::Invalid("--world must be at least 1".into()));
        }
        Ok(RunPlan {
            variants,
            backend: a.backend,
            warmup: a.warmup.unwrap_or(profile.warmup),
            iterations: a.iters.unwrap_or(profile.iterations),
            output: a.output.clone(),
            single_rank_check: a.single_rank_check || plan.profile == "quick",
            profile_steps: a.profile_steps,
            gates,
            plan,
        })
    }
}
