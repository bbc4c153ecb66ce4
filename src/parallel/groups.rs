//! The communicators of one rank's groups in the layout, split once from the world
//! and handed to the features that use them (torchtitan's per-feature meshes): context
//! parallelism gets `cp`, expert parallelism `ep`, and replica-wide statistics `dp`.

use super::Result;
use crate::backend::Backend;
use crate::comm::{Comm, single::SingleComm};
use crate::layout::{Dim, ParallelDims};
use std::sync::Arc;

#[derive(Clone)]
pub struct Groups {
    pub cp: Arc<dyn Comm>,
    pub ep: Arc<dyn Comm>,
    pub dp: Arc<dyn Comm>,
}

impl Groups {
    /// Split `world` along each dimension of `dims`. Collective over `world`: every rank
    /// calls it with the same `dims`. A dimension of degree 1 gets a one-rank communicator
    /// without a split (every rank skips the same splits, so the calls still match).
    pub fn split(world: &dyn Comm, dims: &ParallelDims, backend: &Arc<dyn Backend>) -> Result<Groups> {
        let rank = world.rank();
        let one = |dim: Dim| -> Result<Arc<dyn Comm>> {
            if dims.get(dim) == 1 {
                return Ok(Arc::new(SingleComm::new(backend.clone())));
            }
            let (color, key) = dims.split_color_key(rank, dim);
            let c: Arc<dyn Comm> = Arc::from(world.split(color, key)?);
            if c.size() != dims.get(dim) || c.rank() != key {
                let what = format!("{} group of rank {rank}: {} of {}", dim.name(), c.rank(), c.size());
                return Err(super::invalid("split", what, format!("rank {key} of {}", dims.get(dim))));
            }
            Ok(c)
        };
        Ok(Groups { cp: one(Dim::Cp)?, ep: one(Dim::Ep)?, dp: one(Dim::Dp)? })
    }

    /// Every group of one rank alone.
    pub fn single(backend: &Arc<dyn Backend>) -> Groups {
        let one = || -> Arc<dyn Comm> { Arc::new(SingleComm::new(backend.clone())) };
        Groups { cp: one(), ep: one(), dp: one() }
    }
}
