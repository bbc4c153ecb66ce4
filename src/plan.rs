//! The validated plan: flags resolved into target configs, a profile and a layout.
//! Everything here is checked before any device is touched (`run --dry-run` stops here).

use crate::backend::BackendKind;
use crate::cli::{ConfigArgs, GemmDtype, RunArgs};
use crate::config::{ConfigError, Override};
use crate::harness::registry::{self, Profile, TARGETS, TargetConfig};
use crate::layout::{LayoutArgs, ParallelDims};
use crate::tensor::DType;
use serde::Serialize;
use std::path::PathBuf;

/// The most warm-up or timed steps per variant a run accepts.
pub const MAX_STEPS: usize = 1_000_000;

#[derive(Debug, Serialize)]
pub struct Plan {
    pub profile: &'static str,
    pub targets: Vec<TargetConfig>,
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
        let profile: &Profile = registry::profile(&a.profile)?;
        let names: Vec<String> =
            if a.target.is_empty() { TARGETS.iter().map(|(t, _)| t.to_string()).collect() } else { a.target.clone() };
        let overrides = a.set.iter().map(|s| s.parse()).collect::<Result<Vec<Override>, _>>()?;
        for o in &overrides {
            registry::check_target(&o.target)?;
        }
        let shortcut = |t: &str, k: &str, v: String| Override { target: t.into(), key: k.into(), value: v };
        let mut flags = vec![];
        if let Some(s) = a.seq_len {
            flags.extend([shortcut("llama", "seq_len", s.to_string()), shortcut("gpt4", "seq_len", s.to_string())]);
            flags.push(shortcut("moe", "tokens", s.to_string()));
        }
        if let Some(l) = a.layers {
            flags.extend([shortcut("llama", "layers", l.to_string()), shortcut("gpt4", "layers", l.to_string())]);
        }
        if let Some(k) = &a.cp_kind {
            flags.push(shortcut("gpt4", "cp_kind", k.clone()));
        }
        if let Some(s) = &a.skew {
            flags.push(shortcut("moe", "skew", s.clone()));
        }
        if let Some(w) = &a.weights {
            flags.push(shortcut("llama", "weights", w.display().to_string()));
        }
        if let Some(p) = &a.prompt {
            flags.push(shortcut("llama", "prompt", p.clone()));
        }
        if let Some(f) = &a.prompt_file {
            flags.push(shortcut("llama", "prompt", crate::models::tokenizer::read_prompt_file(f)?));
        }
        let layout = a.layout;
        let mut targets = vec![];
        for name in &names {
            let mut cfg = TargetConfig::for_profile(name, profile.name)?;
            // Presets first, so that other keys refine them; flags last.
            let ordered =
                overrides.iter().filter(|o| o.key == "preset").chain(overrides.iter().filter(|o| o.key != "preset"));
            for o in ordered.chain(flags.iter()).filter(|o| &o.target == name) {
                cfg = cfg.set(o)?;
            }
            if let TargetConfig::Llama(c) = &cfg {
                // The checkpoint decides the architecture; what the user set must agree with it.
                let explicit: Vec<&str> =
                    overrides.iter().chain(&flags).filter(|o| &o.target == name).map(|o| o.key.as_str()).collect();
                cfg = TargetConfig::Llama(crate::models::checkpoint::resolve(c, &explicit)?);
            }
            match &cfg {
                TargetConfig::Llama(c) => c.validate()?,
                TargetConfig::Moe(c) => c.validate()?,
                TargetConfig::Gpt4(c) => c.validate()?,
            }
            targets.push(cfg);
        }
        let gemm_dtype = match a.dtype {
            GemmDtype::Bf16 => DType::Bf16,
            GemmDtype::Fp8 => DType::F8,
        };
        Ok(Plan { profile: profile.name, targets, gemm_dtype, layout, topology: a.topology.clone() })
    }

    /// The layout over `world` ranks, checked against every selected target's model:
    /// the one check `run`, `run --dry-run` and `estimate` share (`topo show` shares the
    /// layout part). Messages name each factor and the target's own keys.
    pub fn dims(&self, world: usize) -> Result<ParallelDims, ConfigError> {
        let dims = ParallelDims::resolve(world, &self.layout).map_err(|e| ConfigError::Invalid(e.to_string()))?;
        let bad = |e: crate::layout::Error| ConfigError::Invalid(e.to_string());
        for t in &self.targets {
            match t {
                TargetConfig::Llama(_) => {}
                TargetConfig::Moe(c) => {
                    dims.check_experts(c.num_experts, "moe.num_experts").map_err(bad)?;
                    c.check_redundant(dims.ep)?;
                }
                TargetConfig::Gpt4(c) => {
                    dims.check_experts(c.num_experts, "gpt4.num_experts").map_err(bad)?;
                    if c.seq_len < 2 * dims.cp {
                        return Err(ConfigError::Invalid(format!(
                            "gpt4.seq_len ({}) must be at least 2 x cp ({}): each CP rank holds two zigzag chunks",
                            c.seq_len, dims.cp
                        )));
                    }
                }
            }
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
        let profile = registry::profile(plan.profile)?;
        let variants = if a.variant.is_empty() { None } else { Some(a.variant.clone()) };
        let gates = crate::harness::gates::resolve(profile.gates, &a.gate)?;
        if let Some(vs) = &variants {
            let known: Vec<String> = plan
                .targets
                .iter()
                .flat_map(|t| t.workload().variants().into_iter().map(|v| v.name.to_string()))
                .collect();
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
