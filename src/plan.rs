//! The validated plan: flags resolved into target configs, a profile and a layout.
//! Everything here is checked before any device is touched (`run --dry-run` stops here).

use crate::backend::BackendKind;
use crate::cli::{ConfigArgs, GemmDtype, RunArgs};
use crate::config::{ConfigError, Override};
use crate::harness::registry::{self, Profile, TARGETS, TargetConfig};
use crate::tensor::DType;
use serde::Serialize;
use std::path::PathBuf;

/// The most warm-up or timed steps per variant a run accepts.
pub const MAX_STEPS: usize = 1_000_000;

#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq)]
pub struct Layout {
    pub cp: usize,
    pub ep: usize,
}

#[derive(Debug, Serialize)]
pub struct Plan {
    pub profile: &'static str,
    pub targets: Vec<TargetConfig>,
    pub gemm_dtype: DType,
    pub layout: Layout,
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
        if a.cp == 0 || a.ep == 0 {
            return Err(ConfigError::Invalid(format!("--cp ({}) and --ep ({}) must be at least 1", a.cp, a.ep)));
        }
        let layout = Layout { cp: a.cp, ep: a.ep };
        let mut targets = vec![];
        for name in &names {
            let mut cfg = TargetConfig::for_profile(name, profile.name)?;
            // Presets first, so that other keys refine them; flags last.
            let ordered =
                overrides.iter().filter(|o| o.key == "preset").chain(overrides.iter().filter(|o| o.key != "preset"));
            for o in ordered.chain(flags.iter()).filter(|o| &o.target == name) {
                cfg = cfg.set(o)?;
            }
            match &cfg {
                TargetConfig::Llama(c) => c.validate()?,
                TargetConfig::Moe(c) => c.validate(layout.ep)?,
                TargetConfig::Gpt4(c) => c.validate(layout.cp, layout.ep)?,
            }
            targets.push(cfg);
        }
        let gemm_dtype = match a.dtype {
            GemmDtype::Bf16 => DType::Bf16,
            GemmDtype::Fp8 => DType::F8,
        };
        Ok(Plan { profile: profile.name, targets, gemm_dtype, layout, topology: a.topology.clone() })
    }

    /// The world size the layout needs: CP and EP groups span the same ranks
    /// (gpt4 reuses the CP ranks as its EP group), so it is the larger of the two.
    pub fn world_size(&self) -> usize {
        self.layout.cp.max(self.layout.ep)
    }

    /// Each degree must divide the world; messages name each factor.
    pub fn check_world(&self, world: usize) -> Result<(), ConfigError> {
        let Layout { cp, ep } = self.layout;
        for (name, d) in [("--cp", cp), ("--ep", ep)] {
            if !world.is_multiple_of(d) {
                return Err(ConfigError::Invalid(format!("{name} {d} does not divide the world size {world}")));
            }
        }
        Ok(())
    }

    /// Runs use the whole world as the CP group and as the EP group: each degree is 1 or the world size.
    pub fn check_run_world(&self, world: usize) -> Result<(), ConfigError> {
        self.check_world(world)?;
        let Layout { cp, ep } = self.layout;
        for (name, d, group) in [("--cp", cp, "context-parallel"), ("--ep", ep, "expert-parallel")] {
            if d > 1 && d != world {
                return Err(ConfigError::Invalid(format!(
                    "{name} {d} must equal the world size {world} (or be 1): every rank joins the {group} group"
                )));
            }
        }
        Ok(())
    }
}

impl RunPlan {
    pub fn resolve(a: &RunArgs) -> Result<RunPlan, ConfigError> {
        let plan = Plan::resolve(&a.config)?;
        let profile = registry::profile(plan.profile)?;
        let variants = if a.variant.is_empty() { None } else { Some(a.variant.clone()) };
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
            plan,
        })
    }
}
