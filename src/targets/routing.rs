//! Routing records of the MoE targets (`moe`, and each block of `gpt4`): one routing's tally
//! (loads, router probabilities, entropy) read from the device, summed over the ranks of the
//! world, and the per-batch statistics docs/recompute_routing.py recomputes.

use crate::backend::{Backend, Gate, Routing};
use crate::comm::Comm;
use crate::harness::{Error, Result};
use crate::metrics::routing::{RoutingStats, RoutingTally, normalize_rows};

fn err(e: impl std::fmt::Display) -> Error {
    Error::Workload(e.to_string())
}

/// The tally of routing `r` over `experts` experts, top-`k`; sigmoid scores normalised per token.
pub fn tally(b: &dyn Backend, r: &Routing, gate: Gate, experts: usize, k: usize) -> Result<RoutingTally> {
    let mut probs = b.download(&r.probs)?;
    if gate == Gate::Sigmoid {
        probs = normalize_rows(&probs, experts);
    }
    RoutingTally::from_assignments(&b.download_i32(&r.ids)?, &probs, experts, k).map_err(err)
}

/// `tally` summed over every rank of `comm` (exact: gathered to rank 0 as JSON, merged,
/// broadcast back).
pub fn sum_over(comm: &dyn Comm, tally: RoutingTally) -> Result<RoutingTally> {
    if comm.size() == 1 {
        return Ok(tally);
    }
    let mine = serde_json::to_vec(&tally).expect("tallies serialise");
    let merged = match comm.gather_bytes(&mine)? {
        Some(all) => {
            let mut sum = tally.clone();
            for bytes in &all[1..] {
                let other: RoutingTally = serde_json::from_slice(bytes).map_err(err)?;
                sum.merge(&other).map_err(err)?;
            }
            serde_json::to_vec(&sum).expect("tallies serialise")
        }
        None => vec![],
    };
    serde_json::from_slice(&comm.broadcast_bytes(&merged)?).map_err(err)
}

/// The statistics of these batches' tallies at `capacity_factor`: this rank's, and the world's
/// (each batch summed over every rank).
pub fn stats(
    comm: &dyn Comm,
    batches: Vec<RoutingTally>,
    capacity_factor: f64,
) -> Result<(RoutingStats, RoutingStats)> {
    let (mut mine, mut world) = (vec![], vec![]);
    for t in batches {
        mine.push(t.batch_stats(capacity_factor).map_err(err)?);
        world.push(sum_over(comm, t)?.batch_stats(capacity_factor).map_err(err)?);
    }
    Ok((RoutingStats::from_batches(&mine).map_err(err)?, RoutingStats::from_batches(&world).map_err(err)?))
}
