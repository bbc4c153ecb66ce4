//! Skewed routing on demand (`--skew`): a target expert popularity p_i turned into a per-expert
//! bias that the MoE model adds to the router logits, so imbalance shows up with random weights.
//!
//! Experts are ranked by index: expert 0 is the most popular. Under the contiguous EP placement
//! the hot experts therefore share the first rank, the worst case that balancing should repair.

use serde::{Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

pub const ALLOWED: &str = "none, zipf:S (S >= 0, e.g. zipf:1.2), hot:N:P (1 <= N < experts hot experts \
                           share fraction 0 < P < 1 of the mass, e.g. hot:2:0.5)";

#[derive(Debug, PartialEq, thiserror::Error)]
pub enum SkewError {
    #[error("--skew: cannot use '{spec}': {why}; allowed: {ALLOWED}")]
    Parse { spec: String, why: String },
    #[error("--skew {spec}: N = {n} hot experts needs 1 <= N < experts = {experts}; allowed: {ALLOWED}")]
    HotCount { spec: String, n: usize, experts: usize },
    #[error("--skew {spec}: experts must be at least 1")]
    NoExperts { spec: String },
}

#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub enum Skew {
    /// Router left as initialised.
    #[default]
    None,
    /// p_i proportional to 1 / (i + 1)^s.
    Zipf { s: f64 },
    /// Experts 0..n share fraction p of the mass equally; the rest share 1 - p equally.
    Hot { n: usize, p: f64 },
}

impl FromStr for Skew {
    type Err = SkewError;

    fn from_str(spec: &str) -> Result<Self, SkewError> {
        let err = |why: &str| SkewError::Parse { spec: spec.to_string(), why: why.to_string() };
        let parts: Vec<&str> = spec.trim().split(':').collect();
        match parts.as_slice() {
            ["none"] => Ok(Skew::None),
            ["zipf", s] => {
                let s: f64 = s.parse().map_err(|_| err("S is not a number"))?;
                if !(s.is_finite() && s >= 0.0) {
                    return Err(err("S must be finite and >= 0"));
                }
                Ok(Skew::Zipf { s })
            }
            ["hot", n, p] => {
                let n: usize = n.parse().map_err(|_| err("N is not a whole number"))?;
                let p: f64 = p.parse().map_err(|_| err("P is not a number"))?;
                if n == 0 {
                    return Err(err("N must be at least 1"));
                }
                if !(p > 0.0 && p < 1.0) {
                    return Err(err("P must lie strictly between 0 and 1"));
                }
                Ok(Skew::Hot { n, p })
            }
            _ => Err(err("unknown form")),
        }
    }
}

impl fmt::Display for Skew {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Skew::None => write!(f, "none"),
            Skew::Zipf { s } => write!(f, "zipf:{s}"),
            Skew::Hot { n, p } => write!(f, "hot:{n}:{p}"),
        }
    }
}

/// Recorded as its spec string, e.g. "zipf:1.2".
impl Serialize for Skew {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl Skew {
    /// Target expert popularity p_i (sums to 1).
    pub fn probabilities(&self, experts: usize) -> Result<Vec<f64>, SkewError> {
        if experts == 0 {
            return Err(SkewError::NoExperts { spec: self.to_string() });
        }
        let w: Vec<f64> = match *self {
            Skew::None => vec![1.0; experts],
            Skew::Zipf { s } => (0..experts).map(|i| ((i + 1) as f64).powf(-s)).collect(),
            Skew::Hot { n, p } => {
                if n >= experts {
                    return Err(SkewError::HotCount { spec: self.to_string(), n, experts });
                }
                let (hot, cold) = (p / n as f64, (1.0 - p) / (experts - n) as f64);
                (0..experts).map(|i| if i < n { hot } else { cold }).collect()
            }
        };
        let total: f64 = w.iter().sum();
        Ok(w.iter().map(|x| x / total).collect())
    }

    /// bias_i = ln p_i - mean_j ln p_j. Added to zero logits, a softmax router gives exactly p; added
    /// to random logits it multiplies each expert's odds by p_i / geometric-mean(p). All zeros for
    /// `none`. For sigmoid gates the shift is the same but the resulting popularity is not exactly p.
    pub fn logit_bias(&self, experts: usize) -> Result<Vec<f32>, SkewError> {
        let p = self.probabilities(experts)?;
        if *self == Skew::None {
            return Ok(vec![0.0; experts]);
        }
        let logp: Vec<f64> = p.iter().map(|p| p.ln()).collect();
        let mean = logp.iter().sum::<f64>() / experts as f64;
        Ok(logp.iter().map(|l| (l - mean) as f32).collect())
    }
}
