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
