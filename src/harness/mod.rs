//! One harness every workload plugs into (nccl-tests style): the workload says
//! how to set up and run one step of each variant; the harness owns warm-up,
//! timing, statistics, the correctness gate, gathering and output.

pub mod env;
pub mod gates;
pub mod profile;
pub mod record;
pub mod registry;
pub mod runner;
pub mod stats;
pub mod table;

use crate::backend::Backend;
use crate::comm::Comm;
use crate::layout::{Coords, ParallelDims};
use crate::parallel::groups::Groups;
use crate::tensor::{DType, Tensor};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Backend(#[from] crate::backend::Error),
    #[error(transparent)]
    Comm(#[from] crate::comm::Error),
    #[error(transparent)]
    Parallel(#[from] crate::parallel::Error),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Balance(#[from] crate::metrics::balance::BalanceError),
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{0}")]
    Workload(String),
}

pub type Result<T> = std::result::Result<T, Error>;

pub struct VariantSpec {
    pub name: &'static str,
    pub about: &'static str,
    /// Largest accepted error against the reference, measured by `gate`.
    pub tolerance: f64,
    /// The bound when the variant's GEMMs run in FP8 (`--dtype fp8`), if it differs.
    pub fp8_tolerance: Option<f64>,
    pub gate: GateMetric,
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

impl VariantSpec {
    pub const fn new(name: &'static str, about: &'static str, tolerance: f64) -> Self {
        VariantSpec { name, about, tolerance, fp8_tolerance: None, gate: GateMetric::MaxErr }
    }

    /// The bound that applies when the variant's GEMMs run in `dtype`.
    pub fn tolerance_for(&self, dtype: DType) -> f64 {
        match (dtype, self.fp8_tolerance) {
            (DType::F8, Some(t)) => t,
            _ => self.tolerance,
        }
    }
}

/// What a workload runs on.
pub struct Ctx {
    pub backend: Arc<dyn Backend>,
    /// All ranks of the run (records, the single-rank check); workloads use `groups`.
    pub world: Arc<dyn Comm>,
    /// This rank's CP, EP and DP communicators, split once from the world.
    pub groups: Groups,
    /// The validated layout.
    pub dims: ParallelDims,
    /// Element type of the GEMM operands in non-baseline variants (bf16 or fp8).
    pub gemm_dtype: DType,
    /// Whose inputs this context generates (see `Data`).
    pub data: Data,
}

/// Which inputs a rank generates, from seeds: its own `rank` (tokens of its own, as the
/// moe target draws them) and its `replica` (one sequence per TP x CP block, as gpt4
/// draws it). The single-rank check keeps the checked rank's `Data`, so a one-rank
/// run computes the same inputs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Data {
    pub rank: usize,
    pub replica: usize,
}

impl Ctx {
    /// A context over `world` with the layout `dims`; splits the groups (collective).
    pub fn new(backend: Arc<dyn Backend>, world: Arc<dyn Comm>, dims: ParallelDims, gemm_dtype: DType) -> Result<Ctx> {
        let rank = world.rank();
        if dims.world_size() != world.size() {
            let msg = format!("layout {dims} is for {} ranks, the world has {}", dims.world_size(), world.size());
            return Err(Error::Workload(msg));
        }
        let groups = Groups::split(world.as_ref(), &dims, &backend)?;
        Ok(Ctx { data: Data { rank, replica: dims.replica(rank) }, backend, world, groups, dims, gemm_dtype })
    }

    /// One rank alone, on this backend.
    pub fn single(backend: Arc<dyn Backend>, gemm_dtype: DType) -> Ctx {
        let world: Arc<dyn Comm> = Arc::new(crate::comm::single::SingleComm::new(backend.clone()));
        let groups = Groups::single(&backend);
        Ctx { backend, world, groups, dims: ParallelDims::single(), gemm_dtype, data: Data { rank: 0, replica: 0 } }
    }

    /// This rank's inputs on one rank alone (the single-rank check's context).
    pub fn single_rank(&self) -> Ctx {
        Ctx { data: self.data, ..Ctx::single(self.backend.clone(), self.gemm_dtype) }
    }

    pub fn rank(&self) -> usize {
        self.world.rank()
    }

    /// This rank's coordinates in the layout.
    pub fn coords(&self) -> Coords {
        self.dims.coords(self.rank())
    }
}

pub trait Workload {
    fn name(&self) -> &'static str;
    /// The resolved config, recorded with every result.
    fn config(&self) -> serde_json::Value;
    fn variants(&self) -> Vec<VariantSpec>;
    /// Allocate weights and inputs; called once before any variant runs.
    fn setup(&mut self, ctx: &Ctx) -> Result<()>;
    /// Hold what `variant` needs and free what only other variants need (weight copies),
    /// before its peak memory is measured. Called once before each variant's steps.
    fn prepare(&mut self, _ctx: &Ctx, _variant: &str) -> Result<()> {
        Ok(())
    }
    /// One timed step of `variant`; returns the output the correctness gate compares.
    fn step(&mut self, ctx: &Ctx, variant: &str) -> Result<Tensor>;
    /// This rank's output of `variant` computed on one rank alone on the same inputs
    /// (the whole sequence, every expert), for the single-rank check of distributed runs;
    /// None where no such run can reproduce it.
    fn single_rank_output(&mut self, _ctx: &Ctx, _variant: &str) -> Result<Option<Tensor>> {
        Ok(None)
    }
    /// A variant-specific reference output (e.g. the baseline algorithm on the same
    /// routing), when comparing with the baseline's output would be wrong.
    fn reference(&mut self, _ctx: &Ctx, _variant: &str) -> Result<Option<Tensor>> {
        Ok(None)
    }
    /// Element type of `variant`'s GEMMs (recorded with its results).
    fn gemm_dtype(&self, ctx: &Ctx, variant: &str) -> DType {
        if variant == "baseline" { DType::Bf16 } else { ctx.gemm_dtype }
    }
    /// Tokens processed by one step on this rank.
    fn tokens(&self) -> usize;
    /// Floating-point operations of one step on this rank.
    fn flops(&self, variant: &str) -> f64;
    /// Predicted peak bytes on this rank, when the workload can estimate it.
    fn estimate_bytes(&self, _ctx: &Ctx, _variant: &str) -> Option<u64> {
        None
    }
    /// Workload-specific results after a variant's steps (routing health, KV bytes, ...).
    fn metrics(&mut self, _ctx: &Ctx, _variant: &str) -> Result<serde_json::Map<String, serde_json::Value>> {
        Ok(Default::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fp8_bound_applies_only_to_fp8_gemms() {
        let v = VariantSpec { fp8_tolerance: Some(0.2), ..VariantSpec::new("optimized", "", 0.05) };
        assert_eq!(v.tolerance_for(DType::Bf16), 0.05);
        assert_eq!(v.tolerance_for(DType::F8), 0.2);
        assert_eq!(VariantSpec::new("x", "", 0.05).tolerance_for(DType::F8), 0.05);
    }
}
