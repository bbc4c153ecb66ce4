//! DeepSeek-V3's auxiliary-loss-free balancing, the `balanced` variant's first remedy for skewed
//! expert load: a per-expert selection bias nudged after each batch toward the mean load. (The
//! second, EPLB placement of expert replicas over EP ranks, is `parallel::eplb`.)

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

#[cfg(test)]
mod tests {
    use super::*;

    /// Loads of a softmax router over `logits + bias` on `tokens` tokens, as integers.
    fn loads(logits: &[f32], bias: &[f32], tokens: f64) -> Vec<u64> {
        let z: Vec<f64> = logits.iter().zip(bias).map(|(l, b)| (*l + *b) as f64).collect();
        let m = z.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let e: Vec<f64> = z.iter().map(|x| (x - m).exp()).collect();
        let s: f64 = e.iter().sum();
        e.iter().map(|x| (tokens * x / s).round() as u64).collect()
    }

    #[test]
    fn learning_stops_once_the_bias_settles_and_evens_the_load() {
        let logits = [0.3f32, 0.1, 0.0, -0.4];
        let rule = SettleRule { window: 20, fraction: 0.5 };
        let l = learn_bias::<BalanceError>(4, 0.01, rule, 10_000, |_, b| Ok(loads(&logits, b, 1000.0))).unwrap();
        let settled = l.settled_at.expect("a deterministic router settles");
        assert_eq!(l.steps, settled);
        assert!(settled > rule.window && settled < 500, "{settled}");
        assert!(l.drift.unwrap() <= 0.5);
        // The hot expert's bias went down, the cold one's up, and the loads are now close to even.
        assert!(l.bias[0] < 0.0 && l.bias[3] > 0.0, "{:?}", l.bias);
        let after = loads(&logits, &l.bias, 1000.0);
        assert!(after.iter().all(|&c| c.abs_diff(250) <= 5), "{after:?}");
        // The load routed while learning, summed over every step.
        assert!(l.load.iter().sum::<u64>() >= 995 * settled as u64, "{:?}", l.load);
    }

    #[test]
    fn the_step_limit_stops_an_unsettled_bias_and_says_so() {
        let logits = [3.0f32, 0.0, 0.0, 0.0];
        let rule = SettleRule { window: 20, fraction: 0.5 };
        let l = learn_bias::<BalanceError>(4, 1e-3, rule, 100, |_, b| Ok(loads(&logits, b, 1000.0))).unwrap();
        assert_eq!((l.steps, l.settled_at), (100, None));
        // Still walking: the hot expert moved by gamma at every step of the last window.
        assert!((l.drift.unwrap() - 1.0).abs() < 1e-3, "{:?}", l.drift);
        assert!((l.bias_abs_max - 0.1).abs() < 1e-4);
    }
}
