//! Variants, typed: each declares once whether it is the reference or a candidate and what
//! it changes (attention algorithm, fused norms, how experts run, GEMM element type, graph
//! replay). Targets read the recipe; nothing matches on a variant's name.

use crate::backend::AttnAlgo;
use crate::tensor::DType;

/// The name of every target's reference variant.
pub const BASELINE: &str = "baseline";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Timed first; the others are checked against its output and their speed-up is over it.
    Reference,
    Candidate,
}

/// Element type of a variant's GEMM operands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gemm {
    Bf16,
    Fp8,
    /// The run's `--dtype`.
    Run,
}

/// How a MoE layer's routed experts run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Experts {
    /// One GEMM chain per expert, group sizes read on the host.
    Loop,
    /// Grouped GEMMs, routing and permutation on the device.
    Grouped,
    /// Grouped, with auxiliary-loss-free bias balancing (and EPLB replicas under EP).
    Balanced,
}

/// What a variant runs: the choices a target makes per variant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Recipe {
    /// For targets with attention.
    pub attention: Option<AttnAlgo>,
    /// Residual add fused into RMSNorm.
    pub fused_norm: bool,
    /// For targets with routed experts.
    pub experts: Option<Experts>,
    pub gemm: Gemm,
    /// Replayed as a CUDA graph where the backend can record one.
    pub graph: bool,
}

impl Recipe {
    /// Naive attention, unfused norms, expert loops, bf16, eager: the plainest arithmetic.
    pub const PLAIN: Recipe =
        Recipe { attention: None, fused_norm: false, experts: None, gemm: Gemm::Bf16, graph: false };
}

/// What the correctness gate bounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GateMetric {
    /// max |out - ref| / max |ref|: every element must be close.
    MaxErr,
    /// ||out - ref|| / ||ref||: for MoE stacks, where a bf16 rounding difference may flip a
    /// token's expert choice and move that one token a lot.
    RelL2,
}

#[derive(Clone, Copy, Debug)]
pub struct VariantSpec {
    pub name: &'static str,
    pub about: &'static str,
    pub role: Role,
    pub recipe: Recipe,
    /// Largest accepted error against the reference, measured by `gate`.
    pub tolerance: f64,
    /// The bound when the variant's GEMMs run in FP8, if it differs.
    pub fp8_tolerance: Option<f64>,
    pub gate: GateMetric,
}

impl VariantSpec {
    /// The target's reference variant, named `BASELINE`.
    pub const fn baseline(about: &'static str, recipe: Recipe) -> Self {
        VariantSpec {
            name: BASELINE,
            about,
            role: Role::Reference,
            recipe,
            tolerance: 0.0,
            fp8_tolerance: None,
            gate: GateMetric::MaxErr,
        }
    }

    pub const fn candidate(name: &'static str, about: &'static str, recipe: Recipe, tolerance: f64) -> Self {
        VariantSpec {
            name,
            about,
            role: Role::Candidate,
            recipe,
            tolerance,
            fp8_tolerance: None,
            gate: GateMetric::MaxErr,
        }
    }

    /// The bound that applies when the variant's GEMMs run in `dtype`.
    pub fn tolerance_for(&self, dtype: DType) -> f64 {
        match (dtype, self.fp8_tolerance) {
            (DType::F8, Some(t)) => t,
            _ => self.tolerance,
        }
    }

    pub fn is_reference(&self) -> bool {
        self.role == Role::Reference
    }

    /// This variant as a run with `--dtype run_dtype` executes it.
    pub fn resolve(self, run_dtype: DType) -> Variant {
        let gemm = match self.recipe.gemm {
            Gemm::Bf16 => DType::Bf16,
            Gemm::Fp8 => DType::F8,
            Gemm::Run => run_dtype,
        };
        Variant { spec: self, gemm }
    }
}

/// A variant as this run executes it: the spec, with its GEMM element type decided.
#[derive(Clone, Copy, Debug)]
pub struct Variant {
    pub spec: VariantSpec,
    pub gemm: DType,
}

impl Variant {
    pub fn name(&self) -> &'static str {
        self.spec.name
    }
    pub fn recipe(&self) -> &Recipe {
        &self.spec.recipe
    }
    pub fn is_reference(&self) -> bool {
        self.spec.is_reference()
    }
    /// The attention algorithm; naive where the recipe names none.
    pub fn attention(&self) -> AttnAlgo {
        self.spec.recipe.attention.unwrap_or(AttnAlgo::Naive)
    }
    pub fn experts(&self) -> Experts {
        self.spec.recipe.experts.unwrap_or(Experts::Loop)
    }
    pub fn tolerance(&self) -> f64 {
        self.spec.tolerance_for(self.gemm)
    }
}

/// The reference among `specs` (every target declares exactly one).
pub fn reference(specs: &[VariantSpec]) -> &VariantSpec {
    let mut refs = specs.iter().filter(|s| s.is_reference());
    let r = refs.next().expect("a target declares a reference variant");
    debug_assert!(refs.next().is_none(), "a target declares one reference variant");
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPT: Recipe = Recipe { attention: Some(AttnAlgo::Flash), gemm: Gemm::Run, ..Recipe::PLAIN };

    #[test]
    fn fp8_bound_applies_only_to_fp8_gemms() {
        let v = VariantSpec { fp8_tolerance: Some(0.2), ..VariantSpec::candidate("optimized", "", OPT, 0.05) };
        assert_eq!(v.tolerance_for(DType::Bf16), 0.05);
        assert_eq!(v.tolerance_for(DType::F8), 0.2);
        assert_eq!(VariantSpec::candidate("x", "", OPT, 0.05).tolerance_for(DType::F8), 0.05);
    }

    #[test]
    fn the_gemm_type_is_decided_by_the_recipe_then_the_run() {
        let run = |gemm, dt| VariantSpec::candidate("x", "", Recipe { gemm, ..OPT }, 0.1).resolve(dt).gemm;
        assert_eq!(run(Gemm::Run, DType::F8), DType::F8);
        assert_eq!(run(Gemm::Run, DType::Bf16), DType::Bf16);
        assert_eq!(run(Gemm::Bf16, DType::F8), DType::Bf16, "a bf16-only variant records bf16 under --dtype fp8");
        assert_eq!(run(Gemm::Fp8, DType::Bf16), DType::F8);
    }

    #[test]
    fn the_reference_is_found_by_role_not_position() {
        let specs = [VariantSpec::candidate("fast", "", OPT, 0.1), VariantSpec::baseline("", Recipe::PLAIN)];
        assert_eq!(reference(&specs).name, BASELINE);
    }
}
