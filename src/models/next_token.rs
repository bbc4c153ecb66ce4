//! What a language model says about a prompt: the next-token distribution after
//! its last token and its perplexity, from logits rows (f64 accumulation).

use serde::Serialize;

/// The prompt's verdict: `top` next tokens (id, probability), most likely first, and
/// exp(mean negative log-likelihood of each token given those before it).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Verdict {
    pub tokens: usize,
    /// None for a one-token prompt (nothing is predicted).
    pub perplexity: Option<f64>,
    pub top: Vec<(u32, f64)>,
}

/// log softmax(row)[target], stable (max subtracted).
pub fn log_prob(row: &[f32], target: usize) -> f64 {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let sum: f64 = row.iter().map(|&x| (x as f64 - max).exp()).sum();
    row[target] as f64 - max - sum.ln()
}

/// The `k` most likely ids of softmax(row) with their probabilities (ties: lower id first).
pub fn top_k(row: &[f32], k: usize) -> Vec<(u32, f64)> {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let sum: f64 = row.iter().map(|&x| (x as f64 - max).exp()).sum();
    let mut idx: Vec<usize> = (0..row.len()).collect();
    idx.sort_by(|&a, &b| row[b].total_cmp(&row[a]).then(a.cmp(&b)));
    idx.into_iter().take(k).map(|i| (i as u32, (row[i] as f64 - max).exp() / sum)).collect()
}

/// Accumulates the negative log-likelihood over logits rows fed in order.
pub struct Scorer<'a> {
    ids: &'a [u32],
    next_row: usize,
    nll: f64,
    last: Vec<f32>,
}

impl<'a> Scorer<'a> {
    pub fn new(ids: &'a [u32]) -> Self {
        Scorer { ids, next_row: 0, nll: 0.0, last: vec![] }
    }

    /// Rows `next_row..` of the prompt's logits, `vocab` wide: row i predicts ids[i + 1].
    pub fn feed(&mut self, rows: &[f32], vocab: usize) {
        for row in rows.chunks_exact(vocab) {
            let i = self.next_row;
            if let Some(&target) = self.ids.get(i + 1) {
                self.nll -= log_prob(row, target as usize);
            } else {
                self.last = row.to_vec();
            }
            self.next_row += 1;
        }
    }

    pub fn finish(self, k: usize) -> Verdict {
        assert_eq!(self.next_row, self.ids.len(), "one logits row per prompt token");
        let n = self.ids.len();
        let perplexity = (n > 1).then(|| (self.nll / (n - 1) as f64).exp());
        Verdict { tokens: n, perplexity, top: top_k(&self.last, k) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniform_logits_give_vocab_perplexity() {
        let ids = [0u32, 3, 1, 2];
        let mut s = Scorer::new(&ids);
        s.feed(&[0.5; 8], 4);
        s.feed(&[0.5; 8], 4);
        let v = s.finish(2);
        assert!((v.perplexity.unwrap() - 4.0).abs() < 1e-12);
        assert_eq!(v.top, vec![(0, 0.25), (1, 0.25)]);
    }

    #[test]
    fn perplexity_is_exp_mean_nll() {
        // Row 0 predicts id 1 with p = e^2 / (e^2 + 2); row 1 is the last row.
        let ids = [0u32, 1];
        let mut s = Scorer::new(&ids);
        s.feed(&[0.0, 2.0, 0.0, 1000.0, 0.0, 999.0], 3);
        let v = s.finish(3);
        let p = 2f64.exp() / (2f64.exp() + 2.0);
        assert!((v.perplexity.unwrap() - 1.0 / p).abs() < 1e-12);
        assert_eq!(v.top.iter().map(|t| t.0).collect::<Vec<_>>(), vec![0, 2, 1]);
        let e = 1f64.exp();
        assert!((v.top[0].1 - e / (e + 1.0)).abs() < 1e-12 && (v.top[1].1 - 1.0 / (e + 1.0)).abs() < 1e-12);
        // One token: nothing predicted, the next-token distribution still comes.
        let mut s = Scorer::new(&[5]);
        s.feed(&[0.0, 0.0], 2);
        assert_eq!(s.finish(1), Verdict { tokens: 1, perplexity: None, top: vec![(0, 0.5)] });
    }
}
