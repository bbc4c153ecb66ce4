//! MoE router: softmax (DeepSeek-V2) or sigmoid with selection bias (DeepSeek-V3),
//! optionally group-limited. Ties go to the lower expert index.

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Gate {
    Softmax,
    Sigmoid,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RouterParams {
    pub gate: Gate,
    pub top_k: usize,
    /// Experts are split into `n_group` groups; tokens pick from the best `topk_group` groups.
    pub n_group: usize,
    pub topk_group: usize,
    /// Divide the chosen weights by their sum.
    pub norm_topk: bool,
    pub scaling: f32,
}

pub struct Routed {
    pub ids: Vec<i32>,
    pub weights: Vec<f32>,
    pub probs: Vec<f32>,
}

fn softmax_row(x: &[f32]) -> Vec<f32> {
    let m = x.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
    let e: Vec<f32> = x.iter().map(|v| (v - m).exp()).collect();
    let s: f32 = e.iter().sum();
    e.iter().map(|v| v / s).collect()
}

/// Indices of the `k` largest values, largest first, lower index on ties.
pub fn top_k(v: &[f32], k: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..v.len()).collect();
    idx.sort_by(|&a, &b| v[b].total_cmp(&v[a]).then(a.cmp(&b)));
    idx.truncate(k);
    idx
}

/// logits [t, e] -> top-k ids, weights and the router probabilities.
pub fn route(logits: &[f32], e: usize, p: &RouterParams, bias: Option<&[f32]>) -> Routed {
    let t = logits.len() / e;
    let (mut ids, mut weights, mut probs) =
        (Vec::with_capacity(t * p.top_k), Vec::with_capacity(t * p.top_k), Vec::with_capacity(t * e));
    let gsize = e / p.n_group;
    for row in logits.chunks(e) {
        let pr: Vec<f32> = match p.gate {
            Gate::Softmax => softmax_row(row),
            Gate::Sigmoid => row.iter().map(|x| 1.0 / (1.0 + (-x).exp())).collect(),
        };
        let sel: Vec<f32> = match bias {
            Some(b) => pr.iter().zip(b).map(|(x, y)| x + y).collect(),
            None => pr.clone(),
        };
        let mut masked = sel.clone();
        if p.n_group > 1 {
            let gscore: Vec<f32> = sel
                .chunks(gsize)
                .map(|g| match p.gate {
                    Gate::Softmax => g.iter().cloned().fold(f32::NEG_INFINITY, f32::max),
                    Gate::Sigmoid => top_k(g, 2.min(g.len())).iter().map(|&i| g[i]).sum(),
                })
                .collect();
            let keep = top_k(&gscore, p.topk_group);
            for (g, chunk) in masked.chunks_mut(gsize).enumerate() {
                if !keep.contains(&g) {
                    chunk.iter_mut().for_each(|x| *x = f32::NEG_INFINITY);
                }
            }
        }
        let chosen = top_k(&masked, p.top_k);
        let mut w: Vec<f32> = chosen.iter().map(|&i| pr[i]).collect();
        if p.norm_topk {
            let s: f32 = w.iter().sum::<f32>() + 1e-20;
            w.iter_mut().for_each(|x| *x /= s);
        }
        ids.extend(chosen.iter().map(|&i| i as i32));
        weights.extend(w.iter().map(|x| x * p.scaling));
        probs.extend(pr);
    }
    Routed { ids, weights, probs }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(gate: Gate, k: usize, n_group: usize, topk_group: usize, norm: bool) -> RouterParams {
        RouterParams { gate, top_k: k, n_group, topk_group, norm_topk: norm, scaling: 1.0 }
    }

    #[test]
    fn softmax_top2_hand_worked() {
        // logits ln(1), ln(2), ln(3), ln(4): probs 0.1, 0.2, 0.3, 0.4
        let l: Vec<f32> = [1f32, 2., 3., 4.].iter().map(|x| x.ln()).collect();
        let r = route(&l, 4, &params(Gate::Softmax, 2, 1, 1, false), None);
        assert_eq!(r.ids, vec![3, 2]);
        assert!((r.weights[0] - 0.4).abs() < 1e-6 && (r.weights[1] - 0.3).abs() < 1e-6);
        let r = route(&l, 4, &params(Gate::Softmax, 2, 1, 1, true), None);
        assert!((r.weights[0] - 4.0 / 7.0).abs() < 1e-6);
    }

    #[test]
    fn bias_steers_choice_not_weight() {
        // sigmoid(0) = 0.5 for all; bias favours expert 1.
        let r = route(&[0., 0., 0.], 3, &params(Gate::Sigmoid, 1, 1, 1, false), Some(&[0., 0.1, 0.]));
        assert_eq!(r.ids, vec![1]);
        assert_eq!(r.weights, vec![0.5]);
    }

    #[test]
    fn group_limit_excludes_weak_groups() {
        // 4 experts in 2 groups; group 0 = {0: 0.9, 1: 0.0}, group 1 = {2: 0.5, 3: 0.5}.
        // Sigmoid groups score by top-2 sum: group 1 wins (1.0 > 0.9), so expert 0 is excluded.
        let logit = |p: f32| (p / (1.0 - p)).ln();
        let l = [logit(0.9), logit(0.001), logit(0.5), logit(0.5)];
        let r = route(&l, 4, &params(Gate::Sigmoid, 1, 2, 1, false), None);
        assert_eq!(r.ids, vec![2]);
        let r = route(&l, 4, &params(Gate::Sigmoid, 1, 1, 1, false), None);
        assert_eq!(r.ids, vec![0]);
    }
}
