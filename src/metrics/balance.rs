//! The `balanced` variant's two remedies for skewed expert load:
//! (a) DeepSeek-V3's auxiliary-loss-free balancing, a per-expert selection bias nudged after each
//!     batch toward the mean load;
//! (b) EPLB-style placement: replicate the hottest experts into redundant slots and pack the
//!     replicas onto EP ranks so that rank loads even out.

use super::routing::{gini, max_mean};
use serde::Serialize;

/// DeepSeek-V3 (sec. 2.1.2) used a bias update speed of 0.001 for most of pre-training.
pub const DEFAULT_GAMMA: f32 = 1e-3;

#[derive(Debug, PartialEq, thiserror::Error)]
pub enum BalanceError {
    #[error("balance: gamma must be a finite number > 0, got {0}")]
    Gamma(f32),
    #[error("balance: experts must be at least 1, got 0")]
    NoExperts,
    #[error("balance: load holds {got} experts, the balancer has {expected}")]
    LoadLen { got: usize, expected: usize },
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

pub type Result<T> = std::result::Result<T, BalanceError>;

/// Auxiliary-loss-free balancing (DeepSeek-V3): the router selects its top-k by `score + bias_i`
/// while gate weights still use the unbiased scores; after each batch
/// `bias_i += gamma * sign(mean_load - load_i)`, with sign(0) = 0.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BiasBalancer {
    gamma: f32,
    bias: Vec<f32>,
}

impl BiasBalancer {
    pub fn new(experts: usize, gamma: f32) -> Result<Self> {
        if experts == 0 {
            return Err(BalanceError::NoExperts);
        }
        if !(gamma.is_finite() && gamma > 0.0) {
            return Err(BalanceError::Gamma(gamma));
        }
        Ok(Self { gamma, bias: vec![0.0; experts] })
    }

    /// The selection bias to pass to the router (`ops::routing::route`'s `bias`).
    pub fn bias(&self) -> &[f32] {
        &self.bias
    }

    pub fn gamma(&self) -> f32 {
        self.gamma
    }

    /// One update from a batch's per-expert token-slot counts.
    pub fn update(&mut self, load: &[u64]) -> Result<()> {
        if load.len() != self.bias.len() {
            return Err(BalanceError::LoadLen { got: load.len(), expected: self.bias.len() });
        }
        // Compare load_i * E with the total to keep the sign exact in integers.
        let total: u128 = load.iter().map(|&c| c as u128).sum();
        let e = load.len() as u128;
        for (b, &c) in self.bias.iter_mut().zip(load) {
            match (c as u128 * e).cmp(&total) {
                std::cmp::Ordering::Less => *b += self.gamma,
                std::cmp::Ordering::Greater => *b -= self.gamma,
                std::cmp::Ordering::Equal => {}
            }
        }
        Ok(())
    }
}

/// Where every logical expert's replicas live, and the load each rank then carries (each replica
/// takes an equal share of its expert's load).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Placement {
    pub slots_per_rank: usize,
    /// Per logical expert: its (rank, slot) replicas.
    pub replicas: Vec<Vec<(usize, usize)>>,
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

impl Placement {
    pub fn ranks(&self) -> usize {
        self.rank_load.len()
    }

    /// rank -> slot -> logical expert: the table each rank uses to load weights and route tokens.
    pub fn rank_slots(&self) -> Vec<Vec<usize>> {
        let mut table = vec![vec![usize::MAX; self.slots_per_rank]; self.ranks()];
        for (expert, reps) in self.replicas.iter().enumerate() {
            for &(rank, slot) in reps {
                table[rank][slot] = expert;
            }
        }
        table
    }

    /// Compares with the contiguous placement of the same per-expert `loads`.
    pub fn report(&self, loads: &[f64]) -> Result<PlacementReport> {
        let before = contiguous_rank_load(loads, self.ranks())?;
        Ok(PlacementReport { before: RankBalance::of(&before), after: RankBalance::of(&self.rank_load) })
    }
}

fn check_loads(loads: &[f64], ep: usize) -> Result<()> {
    if loads.is_empty() {
        return Err(BalanceError::NoExperts);
    }
    if ep == 0 {
        return Err(BalanceError::NoRanks);
    }
    if let Some((index, &value)) = loads.iter().enumerate().find(|(_, v)| !(v.is_finite() && **v >= 0.0)) {
        return Err(BalanceError::BadLoad { index, value });
    }
    if !loads.len().is_multiple_of(ep) {
        return Err(BalanceError::Indivisible { experts: loads.len(), ep });
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
pub fn plan_placement(loads: &[f64], ep: usize, redundant: usize) -> Result<Placement> {
    check_loads(loads, ep)?;
    let e = loads.len();
    let max = e * (ep - 1);
    if !(e + redundant).is_multiple_of(ep) || redundant > max {
        return Err(BalanceError::Redundant { redundant, experts: e, ep, max });
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
    Ok(Placement { slots_per_rank, replicas, rank_load })
}

/// When the learned bias has settled. Sign updates move every bias by ±gamma (or 0) at every step,
/// so the per-step change never falls below gamma; what stops is the net drift: the bias has
/// settled once, over the last `window` updates, no expert's bias moved by more than
/// `fraction * window * gamma` net. A bias still walking toward its level moves `window * gamma`;
/// one at its level only wanders (about sqrt(window) * gamma, since each batch's loads are noisy).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct SettleRule {
    pub window: usize,
    pub fraction: f64,
}

/// 50 updates, half the steady drift: a wandering bias (~2.5 sqrt(50) = 18 gamma at the
/// maximum over 64 experts) stays under 25 gamma, a walking one moves 50.
pub const DEFAULT_SETTLE: SettleRule = SettleRule { window: 50, fraction: 0.5 };

/// The balancing as learned: the final bias, the updates taken, when it settled.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Learned {
    pub gamma: f32,
    pub bias: Vec<f32>,
    pub bias_abs_max: f32,
    /// Updates taken (at most the step limit).
    pub steps: usize,
    pub step_limit: usize,
    pub settle_rule: SettleRule,
    /// The update after which the rule first held; None when the limit came first.
    pub settled_at: Option<usize>,
    /// max_i |b_i(t) - b_i(t - window)| / (window gamma) at the last update (None before `window`).
    pub drift: Option<f64>,
    /// Per expert, the load summed over the learning steps (the EPLB placement's input).
    pub load: Vec<u64>,
}

/// Learns the bias: `load_of(step, bias)` routes the step's learning batch with `bias` and returns
/// the layer's load; updates stop when the bias settles under `rule` or after `step_limit`.
pub fn learn_bias<E: From<BalanceError>>(
    experts: usize,
    gamma: f32,
    rule: SettleRule,
    step_limit: usize,
    mut load_of: impl FnMut(usize, &[f32]) -> std::result::Result<Vec<u64>, E>,
) -> std::result::Result<Learned, E> {
    let mut bal = BiasBalancer::new(experts, gamma)?;
    let mut history: std::collections::VecDeque<Vec<f32>> = std::collections::VecDeque::from([bal.bias().to_vec()]);
    let mut total = vec![0u64; experts];
    let (mut steps, mut settled_at, mut drift) = (0, None, None);
    while steps < step_limit && settled_at.is_none() {
        let load = load_of(steps, bal.bias())?;
        bal.update(&load)?;
        total.iter_mut().zip(&load).for_each(|(t, l)| *t += l);
        steps += 1;
        history.push_back(bal.bias().to_vec());
        if history.len() > rule.window + 1 {
            history.pop_front();
        }
        if history.len() == rule.window + 1 {
            let d = net_drift(&history[0], bal.bias()) / (rule.window as f64 * gamma as f64);
            drift = Some(d);
            if d <= rule.fraction {
                settled_at = Some(steps);
            }
        }
    }
    let bias = bal.bias().to_vec();
    Ok(Learned {
        gamma,
        bias_abs_max: bias.iter().fold(0f32, |m, x| m.max(x.abs())),
        bias,
        steps,
        step_limit,
        settle_rule: rule,
        settled_at,
        drift,
        load: total,
    })
}

/// max_i |b_i - a_i|
fn net_drift(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (*y as f64 - *x as f64).abs()).fold(0.0, f64::max)
}
