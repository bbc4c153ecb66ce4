//! MoE routing health from the hard top-k assignments and the router probabilities: expert load,
//! Gini, max/mean, load entropy, router entropy, the auxiliary balance loss and capacity drops,
//! per batch and across batches. One `RoutingStats` describes one MoE layer.
//!
//! Probabilities are per-token distributions over the experts: softmax outputs as they are, or
//! for sigmoid gates (DeepSeek-V3) the scores divided by their per-token sum (`normalize_rows`).

use super::ceil_count;
use serde::Serialize;

#[derive(Debug, PartialEq, thiserror::Error)]
pub enum RoutingError {
    #[error("routing: experts must be at least 1, got 0")]
    NoExperts,
    #[error("routing: top_k must be in 1..={experts}, got {top_k}")]
    TopK { top_k: usize, experts: usize },
    #[error("routing: expert ids hold {len} entries, not a multiple of top_k = {top_k}")]
    IdsLen { len: usize, top_k: usize },
    #[error("routing: probabilities hold {len} entries, expected tokens*experts = {tokens}*{experts}")]
    ProbsLen { len: usize, tokens: usize, experts: usize },
    #[error("routing: expert id {id} at slot {slot} is outside 0..{experts}")]
    IdOutOfRange { id: i32, slot: usize, experts: usize },
    #[error(
        "routing: router probabilities of token {token} sum to {sum}, expected 1 \
         (normalise sigmoid scores per token with normalize_rows)"
    )]
    NotNormalized { token: usize, sum: f64 },
    #[error("routing: capacity_factor must be a finite number > 0, got {0}")]
    CapacityFactor(f64),
    #[error("routing: the batch has no tokens")]
    Empty,
    #[error("routing: no batches to aggregate")]
    NoBatches,
    #[error("routing: cannot combine {what} {a} with {b}")]
    Mismatch { what: &'static str, a: String, b: String },
}

pub type Result<T> = std::result::Result<T, RoutingError>;

/// Largest tolerated |sum - 1| of a probability row: f32 softmax over 256 experts is off by ~1e-6,
/// an unnormalised sigmoid row by far more.
const PROB_SUM_TOL: f64 = 1e-3;

/// Additive per-batch sums: tallies from several ranks (or micro-batches) of one batch merge by
/// adding, so ranks can all-reduce `2 * experts + 2` numbers instead of gathering the assignments.
#[derive(Clone, Debug, PartialEq, Serialize, serde::Deserialize)]
pub struct RoutingTally {
    pub experts: usize,
    pub top_k: usize,
    pub tokens: u64,
    /// Token-slots sent to each expert.
    pub load: Vec<u64>,
    /// Sum over tokens of each expert's router probability.
    pub prob_sum: Vec<f64>,
    /// Sum over tokens of the router entropy -sum_j p ln p, in nats.
    pub entropy_sum: f64,
}

impl RoutingTally {
    pub fn new(experts: usize, top_k: usize) -> Result<Self> {
        if experts == 0 {
            return Err(RoutingError::NoExperts);
        }
        if top_k == 0 || top_k > experts {
            return Err(RoutingError::TopK { top_k, experts });
        }
        Ok(Self { experts, top_k, tokens: 0, load: vec![0; experts], prob_sum: vec![0.0; experts], entropy_sum: 0.0 })
    }

    /// `ids`: [t, top_k] expert ids; `probs`: [t, experts] router probabilities.
    pub fn from_assignments(ids: &[i32], probs: &[f32], experts: usize, top_k: usize) -> Result<Self> {
        let mut tally = Self::new(experts, top_k)?;
        tally.add(ids, probs)?;
        Ok(tally)
    }

    /// Adds more tokens of the same batch. Nothing is added if any input is invalid.
    pub fn add(&mut self, ids: &[i32], probs: &[f32]) -> Result<()> {
        let (e, k) = (self.experts, self.top_k);
        if !ids.len().is_multiple_of(k) {
            return Err(RoutingError::IdsLen { len: ids.len(), top_k: k });
        }
        let t = ids.len() / k;
        if probs.len() != t * e {
            return Err(RoutingError::ProbsLen { len: probs.len(), tokens: t, experts: e });
        }
        if let Some((slot, &id)) = ids.iter().enumerate().find(|(_, id)| **id < 0 || **id as usize >= e) {
            return Err(RoutingError::IdOutOfRange { id, slot, experts: e });
        }
        let mut prob_sum = vec![0.0f64; e];
        let mut entropy_sum = 0.0f64;
        for (token, row) in probs.chunks(e).enumerate() {
            let sum: f64 = row.iter().map(|&p| p as f64).sum();
            if sum.is_nan() || (sum - 1.0).abs() > PROB_SUM_TOL || row.iter().any(|&p| p < 0.0) {
                return Err(RoutingError::NotNormalized { token, sum });
            }
            for (acc, &p) in prob_sum.iter_mut().zip(row) {
                *acc += p as f64;
            }
            entropy_sum += entropy(row.iter().map(|&p| p as f64));
        }
        for &id in ids {
            self.load[id as usize] += 1;
        }
        self.prob_sum.iter_mut().zip(&prob_sum).for_each(|(a, b)| *a += b);
        self.entropy_sum += entropy_sum;
        self.tokens += t as u64;
        Ok(())
    }

    pub fn merge(&mut self, other: &Self) -> Result<()> {
        if (self.experts, self.top_k) != (other.experts, other.top_k) {
            return Err(RoutingError::Mismatch {
                what: "tally (experts, top_k)",
                a: format!("{:?}", (self.experts, self.top_k)),
                b: format!("{:?}", (other.experts, other.top_k)),
            });
        }
        self.tokens += other.tokens;
        self.load.iter_mut().zip(&other.load).for_each(|(a, b)| *a += b);
        self.prob_sum.iter_mut().zip(&other.prob_sum).for_each(|(a, b)| *a += b);
        self.entropy_sum += other.entropy_sum;
        Ok(())
    }

    /// The batch's metrics; drops are counted at `capacity_factor`.
    pub fn batch_stats(&self, capacity_factor: f64) -> Result<BatchRouting> {
        if !(capacity_factor.is_finite() && capacity_factor > 0.0) {
            return Err(RoutingError::CapacityFactor(capacity_factor));
        }
        if self.tokens == 0 {
            return Err(RoutingError::Empty);
        }
        let (e, t) = (self.experts, self.tokens as f64);
        let slots = self.tokens * self.top_k as u64;
        let load_fraction: Vec<f64> = self.load.iter().map(|&c| c as f64 / slots as f64).collect();
        let mean_prob: Vec<f64> = self.prob_sum.iter().map(|&p| p / t).collect();
        let capacity = capacity(capacity_factor, slots, e);
        let dropped = dropped(&self.load, capacity);
        let router_entropy = self.entropy_sum / t;
        let load_f: Vec<f64> = self.load.iter().map(|&c| c as f64).collect();
        Ok(BatchRouting {
            experts: e,
            top_k: self.top_k,
            tokens: self.tokens,
            capacity_factor,
            gini: gini(&load_f),
            max_mean: max_mean(&load_f),
            load_entropy: normalized_entropy(&load_fraction),
            router_entropy,
            router_entropy_norm: if e > 1 { router_entropy / (e as f64).ln() } else { 1.0 },
            aux_loss: aux_loss(&load_fraction, &mean_prob),
            capacity,
            dropped,
            drop_fraction: dropped as f64 / slots as f64,
            load: self.load.clone(),
            load_fraction,
            mean_prob,
        })
    }
}

/// Metrics of one batch of one MoE layer (formulas in docs/metrics.md).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BatchRouting {
    pub experts: usize,
    pub top_k: usize,
    pub tokens: u64,
    pub capacity_factor: f64,
    pub load: Vec<u64>,
    /// f_i = load_i / (tokens * top_k).
    pub load_fraction: Vec<f64>,
    /// P_i = mean over tokens of p_{t,i}.
    pub mean_prob: Vec<f64>,
    pub gini: f64,
    pub max_mean: f64,
    /// H(f) / ln E.
    pub load_entropy: f64,
    /// Mean per-token router entropy, nats.
    pub router_entropy: f64,
    /// `router_entropy / ln E` (1 for E = 1, like `load_entropy`).
    pub router_entropy_norm: f64,
    /// E * sum_i f_i P_i; exactly 1 for a uniform router.
    pub aux_loss: f64,
    /// ceil(cf * tokens * top_k / E) token-slots per expert.
    pub capacity: u64,
    pub dropped: u64,
    /// dropped / (tokens * top_k).
    pub drop_fraction: f64,
}

/// Convenience: one batch's assignments straight to its metrics.
pub fn batch_routing(
    ids: &[i32],
    probs: &[f32],
    experts: usize,
    top_k: usize,
    capacity_factor: f64,
) -> Result<BatchRouting> {
    RoutingTally::from_assignments(ids, probs, experts, top_k)?.batch_stats(capacity_factor)
}

/// Mean and spread of one scalar over batches; `std` is the population standard deviation.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Spread {
    pub mean: f64,
    pub min: f64,
    pub max: f64,
    pub std: f64,
}

impl Spread {
    /// `None` for no values.
    pub fn of(values: &[f64]) -> Option<Spread> {
        if values.is_empty() {
            return None;
        }
        let n = values.len() as f64;
        let mean = values.iter().sum::<f64>() / n;
        let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
        let min = values.iter().cloned().fold(f64::INFINITY, f64::min);
        let max = values.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        Some(Spread { mean, min, max, std: var.sqrt() })
    }
}

/// Shape of one load vector (used for the load summed over batches).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct LoadShape {
    pub gini: f64,
    pub max_mean: f64,
    pub load_entropy: f64,
}

impl LoadShape {
    pub fn of(load: &[u64]) -> LoadShape {
        let f: Vec<f64> = load.iter().map(|&c| c as f64).collect();
        let total: f64 = f.iter().sum();
        let frac: Vec<f64> = f.iter().map(|&c| if total > 0.0 { c / total } else { 0.0 }).collect();
        LoadShape { gini: gini(&f), max_mean: max_mean(&f), load_entropy: normalized_entropy(&frac) }
    }
}

/// Routing health of one MoE layer over a run: each scalar's spread over batches, and the loads
/// summed over batches with the shape of that sum. The harness writes this to JSON.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RoutingStats {
    pub experts: usize,
    pub top_k: usize,
    pub batches: usize,
    pub tokens: u64,
    pub capacity_factor: f64,
    /// Token-slots per expert, summed over batches.
    pub load: Vec<u64>,
    pub load_fraction: Vec<f64>,
    pub overall: LoadShape,
    /// Per expert, the mean router probability over every judged token: P_i of the whole run.
    pub mean_prob: Vec<f64>,
    /// What each batch's figures are computed from, so that a reader can recompute them
    /// (docs/recompute_routing.py).
    pub per_batch: Vec<BatchInputs>,
    pub gini: Spread,
    pub max_mean: Spread,
    pub load_entropy: Spread,
    pub router_entropy: Spread,
    pub router_entropy_norm: Spread,
    pub aux_loss: Spread,
    pub dropped: Spread,
    pub drop_fraction: Spread,
}

/// One batch's raw figures: its token count, capacity, loads and mean probabilities.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BatchInputs {
    pub tokens: u64,
    /// ceil(cf * tokens * top_k / E) token-slots per expert.
    pub capacity: u64,
    pub load: Vec<u64>,
    /// P_i of this batch.
    pub mean_prob: Vec<f64>,
    /// Mean per-token router entropy of this batch, nats.
    pub router_entropy: f64,
}

impl RoutingStats {
    pub fn from_batches(batches: &[BatchRouting]) -> Result<RoutingStats> {
        let first = batches.first().ok_or(RoutingError::NoBatches)?;
        for b in batches {
            let (a, o) = ((first.experts, first.top_k), (b.experts, b.top_k));
            if a != o {
                let (a, b) = (format!("{a:?}"), format!("{o:?}"));
                return Err(RoutingError::Mismatch { what: "batch (experts, top_k)", a, b });
            }
            if b.capacity_factor != first.capacity_factor {
                let (a, b) = (first.capacity_factor.to_string(), b.capacity_factor.to_string());
                return Err(RoutingError::Mismatch { what: "batch capacity_factor", a, b });
            }
        }
        let mut load = vec![0u64; first.experts];
        for b in batches {
            load.iter_mut().zip(&b.load).for_each(|(a, c)| *a += c);
        }
        let slots: u64 = load.iter().sum();
        let tokens: u64 = batches.iter().map(|b| b.tokens).sum();
        let mut mean_prob = vec![0f64; first.experts];
        for b in batches {
            // Each batch's P_i weighted by its tokens: the mean over every token.
            let w = b.tokens as f64 / tokens as f64;
            mean_prob.iter_mut().zip(&b.mean_prob).for_each(|(a, p)| *a += w * p);
        }
        let per_batch = batches
            .iter()
            .map(|b| BatchInputs {
                tokens: b.tokens,
                capacity: b.capacity,
                load: b.load.clone(),
                mean_prob: b.mean_prob.clone(),
                router_entropy: b.router_entropy,
            })
            .collect();
        let spread = |f: fn(&BatchRouting) -> f64| {
            Spread::of(&batches.iter().map(f).collect::<Vec<_>>()).expect("batches is non-empty")
        };
        Ok(RoutingStats {
            experts: first.experts,
            top_k: first.top_k,
            batches: batches.len(),
            tokens,
            capacity_factor: first.capacity_factor,
            mean_prob,
            per_batch,
            load_fraction: load.iter().map(|&c| c as f64 / slots as f64).collect(),
            overall: LoadShape::of(&load),
            load,
            gini: spread(|b| b.gini),
            max_mean: spread(|b| b.max_mean),
            load_entropy: spread(|b| b.load_entropy),
            router_entropy: spread(|b| b.router_entropy),
            router_entropy_norm: spread(|b| b.router_entropy_norm),
            aux_loss: spread(|b| b.aux_loss),
            dropped: spread(|b| b.dropped as f64),
            drop_fraction: spread(|b| b.drop_fraction),
        })
    }
}

/// Gini coefficient over the sorted values x_(1) <= ... <= x_(n):
/// G = 2 * sum_i i * x_(i) / (n * sum x) - (n + 1) / n. 0 when even (or all zero), (n-1)/n when one
/// value holds everything.
pub fn gini(values: &[f64]) -> f64 {
    let n = values.len();
    let total: f64 = values.iter().sum();
    if n == 0 || total <= 0.0 {
        return 0.0;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let weighted: f64 = sorted.iter().enumerate().map(|(i, x)| (i + 1) as f64 * x).sum();
    let nf = n as f64;
    2.0 * weighted / (nf * total) - (nf + 1.0) / nf
}

/// max / mean; 1 for an all-zero (or empty) vector, which is as even as it gets.
pub fn max_mean(values: &[f64]) -> f64 {
    let total: f64 = values.iter().sum();
    if values.is_empty() || total <= 0.0 {
        return 1.0;
    }
    let max = values.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    max / (total / values.len() as f64)
}

/// -sum p ln p in nats, with 0 ln 0 = 0.
pub fn entropy(p: impl IntoIterator<Item = f64>) -> f64 {
    p.into_iter().filter(|&x| x > 0.0).map(|x| -x * x.ln()).sum()
}

/// H(f) / ln E for a distribution f over E entries; 1 for E = 1 (a single expert is balanced).
pub fn normalized_entropy(fractions: &[f64]) -> f64 {
    if fractions.len() <= 1 {
        return 1.0;
    }
    entropy(fractions.iter().cloned()) / (fractions.len() as f64).ln()
}

/// E * sum_i f_i * P_i (Switch Transformer eq. 4 with alpha dropped; DeepSeek-V2's expert-level
/// balance loss with its f_i = E/(K T) * count_i written as E times our slot fraction).
pub fn aux_loss(load_fraction: &[f64], mean_prob: &[f64]) -> f64 {
    load_fraction.len() as f64 * load_fraction.iter().zip(mean_prob).map(|(f, p)| f * p).sum::<f64>()
}

/// ceil(cf * slots / experts) token-slots per expert.
pub fn capacity(capacity_factor: f64, slots: u64, experts: usize) -> u64 {
    ceil_count(capacity_factor * slots as f64 / experts as f64)
}

/// sum_i max(0, load_i - capacity).
pub fn dropped(load: &[u64], capacity: u64) -> u64 {
    load.iter().map(|&c| c.saturating_sub(capacity)).sum()
}

/// Divides each token's scores by their sum, turning sigmoid gate scores into the per-token
/// distribution the metrics expect. A row summing to zero stays zero.
pub fn normalize_rows(scores: &[f32], experts: usize) -> Vec<f32> {
    let mut out = scores.to_vec();
    for row in out.chunks_mut(experts.max(1)) {
        let s: f32 = row.iter().sum();
        if s > 0.0 {
            row.iter_mut().for_each(|x| *x /= s);
        }
    }
    out
}
