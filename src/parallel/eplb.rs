//! EPLB-style placement, the `balanced` variant's second remedy for skewed expert load under
//! EP: replicate the hottest experts into redundant slots and pack the replicas onto EP ranks
//! so that rank loads even out. The result is an `ExpertPlacement` that `expert::forward` runs.

use super::expert::ExpertPlacement;
use crate::metrics::routing::{gini, max_mean};
use serde::Serialize;

#[derive(Debug, PartialEq, thiserror::Error)]
pub enum EplbError {
    #[error("balance: experts must be at least 1, got 0")]
    NoExperts,
    #[error("balance: loads[{index}] = {value}; loads must be finite and >= 0")]
    BadLoad { index: usize, value: f64 },
    #[error("balance: ep (expert-parallel size) must be at least 1, got 0")]
    NoRanks,
    #[error("balance: experts = {experts} must be a multiple of ep = {ep} (contiguous placement gives each rank E/ep)")]
    Indivisible { experts: usize, ep: usize },
    #[error(
        "balance: redundant slots = {redundant} must make experts + redundant = {experts} + {redundant} a multiple \
         of ep = {ep} and be at most experts * (ep - 1) = {max}, so every rank gets the same number of slots"
    )]
    Redundant { redundant: usize, experts: usize, ep: usize, max: usize },
}

pub type Result<T> = std::result::Result<T, EplbError>;

/// A planned placement and the load each rank then carries (each replica takes an equal share
/// of its expert's load).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Eplb {
    pub placement: ExpertPlacement,
    pub rank_load: Vec<f64>,
}

/// Gini and max/mean of the per-rank load.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct RankBalance {
    pub gini: f64,
    pub max_mean: f64,
}

impl RankBalance {
    pub fn of(rank_load: &[f64]) -> RankBalance {
        RankBalance { gini: gini(rank_load), max_mean: max_mean(rank_load) }
    }
}

/// Rank balance under the contiguous placement and under a planned one.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct PlacementReport {
    pub before: RankBalance,
    pub after: RankBalance,
}

impl Eplb {
    pub fn ranks(&self) -> usize {
        self.rank_load.len()
    }

    /// rank -> slot -> logical expert: the table each rank uses to load weights and route tokens.
    pub fn rank_slots(&self) -> Vec<Vec<usize>> {
        (0..self.ranks()).map(|r| self.placement.slot_experts(r)).collect()
    }

    /// Compares with the contiguous placement of the same per-expert `loads`.
    pub fn report(&self, loads: &[f64]) -> Result<PlacementReport> {
        let before = contiguous_rank_load(loads, self.ranks())?;
        Ok(PlacementReport { before: RankBalance::of(&before), after: RankBalance::of(&self.rank_load) })
    }
}

fn check_loads(loads: &[f64], ep: usize) -> Result<()> {
    if loads.is_empty() {
        return Err(EplbError::NoExperts);
    }
    if ep == 0 {
        return Err(EplbError::NoRanks);
    }
    if let Some((index, &value)) = loads.iter().enumerate().find(|(_, v)| !(v.is_finite() && **v >= 0.0)) {
        return Err(EplbError::BadLoad { index, value });
    }
    if !loads.len().is_multiple_of(ep) {
        return Err(EplbError::Indivisible { experts: loads.len(), ep });
    }
    Ok(())
}

/// Rank loads when expert e lives on rank e / (E / ep), as without balancing.
pub fn contiguous_rank_load(loads: &[f64], ep: usize) -> Result<Vec<f64>> {
    check_loads(loads, ep)?;
    Ok(loads.chunks(loads.len() / ep).map(|c| c.iter().sum()).collect())
}

/// EPLB-style placement over `ep` ranks with `redundant` extra slots.
///
/// Replication: `redundant` times, give one more replica to the expert with the highest load per
/// replica (ties: lower index), never more replicas than ranks. Packing: replicas largest load
/// first (ties: lower expert) onto the least-loaded rank (ties: lower rank) that has a free slot
/// and does not yet hold that expert, falling back to one that does only when no other rank has
/// room. Slots within a rank are numbered in expert order.
pub fn plan_placement(loads: &[f64], ep: usize, redundant: usize) -> Result<Eplb> {
    check_loads(loads, ep)?;
    let e = loads.len();
    let max = e * (ep - 1);
    if !(e + redundant).is_multiple_of(ep) || redundant > max {
        return Err(EplbError::Redundant { redundant, experts: e, ep, max });
    }
    let mut reps = vec![1usize; e];
    for _ in 0..redundant {
        let per = |i: usize| loads[i] / reps[i] as f64;
        let best = (0..e)
            .filter(|&i| reps[i] < ep)
            .max_by(|&a, &b| per(a).total_cmp(&per(b)).then(b.cmp(&a)))
            .expect("redundant <= experts * (ep - 1) leaves an expert with fewer than ep replicas");
        reps[best] += 1;
    }
    let mut items: Vec<(usize, f64)> =
        (0..e).flat_map(|i| std::iter::repeat_n((i, loads[i] / reps[i] as f64), reps[i])).collect();
    items.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));

    let slots_per_rank = (e + redundant) / ep;
    let mut rank_load = vec![0.0f64; ep];
    let mut held: Vec<Vec<usize>> = vec![Vec::with_capacity(slots_per_rank); ep];
    for (expert, w) in items {
        let pick = |allow_dup: bool| {
            (0..ep)
                .filter(|&r| held[r].len() < slots_per_rank && (allow_dup || !held[r].contains(&expert)))
                .min_by(|&a, &b| rank_load[a].total_cmp(&rank_load[b]).then(a.cmp(&b)))
        };
        let r = pick(false).or_else(|| pick(true)).expect("slots in total equal replicas in total");
        held[r].push(expert);
        rank_load[r] += w;
    }
    let mut replicas = vec![Vec::new(); e];
    for (rank, experts) in held.iter_mut().enumerate() {
        experts.sort_unstable();
        for (slot, &x) in experts.iter().enumerate() {
            replicas[x].push((rank, slot));
        }
    }
    Ok(Eplb { placement: ExpertPlacement { slots_per_rank, replicas }, rank_load })
}
