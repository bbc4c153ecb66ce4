//! One harness every workload plugs into (nccl-tests style): the workload says
//! how to set up and run one step of each variant; the harness owns warm-up,
//! timing, statistics, the correctness gate, gathering and output.

pub mod env;
pub mod gates;
pub mod record;
pub mod runner;
pub mod stats;
pub mod table;
pub mod target;
pub mod variant;

use crate::backend::Backend;
use crate::comm::Comm;
use crate::layout::{Coords, ParallelDims};
use crate::parallel::groups::Groups;
use crate::tensor::{DType, Tensor};
use std::sync::Arc;
pub use variant::{GateMetric, Variant, VariantSpec};

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
    Balance(#[from] crate::models::balance::BalanceError),
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{0}")]
    Workload(String),
}

pub type Result<T> = std::result::Result<T, Error>;

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
    /// Hold what `v` needs and free what only other variants need (weight copies),
    /// before its peak memory is measured. Called once before each variant's steps.
    fn prepare(&mut self, _ctx: &Ctx, _v: &Variant) -> Result<()> {
        Ok(())
    }
    /// One timed step of `v`; returns the output the correctness gate compares.
    fn step(&mut self, ctx: &Ctx, v: &Variant) -> Result<Tensor>;
    /// This rank's output of `v` computed on one rank alone on the same inputs
    /// (the whole sequence, every expert), for the single-rank check of distributed runs;
    /// None where no such run can reproduce it.
    fn single_rank_output(&mut self, _ctx: &Ctx, _v: &Variant) -> Result<Option<Tensor>> {
        Ok(None)
    }
    /// A variant-specific reference output (e.g. the reference algorithm on the same
    /// routing), when comparing with the reference variant's output would be wrong.
    fn reference(&mut self, _ctx: &Ctx, _v: &Variant) -> Result<Option<Tensor>> {
        Ok(None)
    }
    /// Element type `v`'s GEMMs run in (recorded with its results): the recipe's, decided
    /// when the variant was resolved, unless the model itself is built in another type.
    fn gemm_dtype(&self, v: &Variant) -> DType {
        v.gemm
    }
    /// Tokens processed by one step on this rank.
    fn tokens(&self) -> usize;
    /// Floating-point operations of one step on this rank.
    fn flops(&self, v: &Variant) -> f64;
    /// Predicted peak bytes on this rank, when the workload can estimate it.
    fn estimate_bytes(&self, _ctx: &Ctx, _v: &Variant) -> Option<u64> {
        None
    }
    /// Workload-specific results after a variant's steps (routing health, KV bytes, ...).
    fn metrics(&mut self, _ctx: &Ctx, _v: &Variant) -> Result<serde_json::Map<String, serde_json::Value>> {
        Ok(Default::default())
    }
}
