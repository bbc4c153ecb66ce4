//! Tokens grouped by expert (a stable counting sort) and scattered back.

pub struct Perm {
    pub offsets: Vec<i32>,
    /// Permuted row of each (token, slot).
    pub row_of: Vec<i32>,
    /// Source token of each permuted row.
    pub token_of: Vec<i32>,
}

pub fn plan(ids: &[i32], k: usize, num_experts: usize) -> Perm {
    let mut counts = vec![0i32; num_experts];
    ids.iter().for_each(|&e| counts[e as usize] += 1);
    let mut offsets = vec![0i32; num_experts + 1];
    for e in 0..num_experts {
        offsets[e + 1] = offsets[e] + counts[e];
    }
    let mut next = offsets.clone();
    let mut row_of = vec![0i32; ids.len()];
    let mut token_of = vec![0i32; ids.len()];
    for (slot, &e) in ids.iter().enumerate() {
        let r = next[e as usize];
        next[e as usize] += 1;
        row_of[slot] = r;
        token_of[r as usize] = (slot / k) as i32;
    }
    Perm { offsets, row_of, token_of }
}

pub fn gather_rows(x: &[f32], h: usize, token_of: &[i32]) -> Vec<f32> {
    token_of.iter().flat_map(|&t| x[t as usize * h..][..h].iter().copied()).collect()
}

/// out[t] = sum over slots s of weights[t, s] * y[row_of[t, s]].
pub fn unpermute(y: &[f32], n: usize, row_of: &[i32], weights: &[f32], k: usize) -> Vec<f32> {
    let t = row_of.len() / k;
    let mut out = vec![0f32; t * n];
    for (slot, &r) in row_of.iter().enumerate() {
        let w = weights[slot];
        let o = &mut out[(slot / k) * n..][..n];
        o.iter_mut().zip(&y[r as usize * n..][..n]).for_each(|(a, b)| *a += w * b);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permute_hand_worked() {
        // 3 tokens, k = 2, 3 experts: t0 -> (2, 0), t1 -> (0, 1), t2 -> (2, 1)
        let p = plan(&[2, 0, 0, 1, 2, 1], 2, 3);
        assert_eq!(p.offsets, vec![0, 2, 4, 6]);
        // expert 0 gets (t0,s1), (t1,s0); expert 1 (t1,s1), (t2,s1); expert 2 (t0,s0), (t2,s0)
        assert_eq!(p.token_of, vec![0, 1, 1, 2, 0, 2]);
        assert_eq!(p.row_of, vec![4, 0, 1, 2, 5, 3]);
        let x = [10., 20., 30.];
        let xp = gather_rows(&x, 1, &p.token_of);
        assert_eq!(xp, vec![10., 20., 20., 30., 10., 30.]);
        // identity experts, weights 0.5 each -> every token back to itself
        let y = unpermute(&xp, 1, &p.row_of, &[0.5; 6], 2);
        assert_eq!(y, vec![10., 20., 30.]);
    }
}
