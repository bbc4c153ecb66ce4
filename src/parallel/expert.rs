//! Expert parallelism for a MoE layer over an EP group: each rank holds some expert
//! slots; tokens travel to the ranks holding their experts and back.
//!
//! forward: permute by logical expert → one host read of the expert offsets (NCCL
//! needs counts on the host) → send order and per-(rank, slot) counts → all-to-all of
//! the counts → all-to-all-v of the rows → regroup by local slot → the caller's
//! expert function → inverse regroup → all-to-all-v back → undo the send order →
//! unpermute with the routing weights.

use super::{Result, invalid};
use crate::backend::{Backend, Mark, Routing};
use crate::comm::Comm;
use crate::marks::phase;
use crate::tensor::Tensor;
use serde::Serialize;

/// Where each logical expert lives: `replicas[e]` lists the (rank, local slot) pairs
/// holding a copy of expert e. Every slot of every rank holds exactly one expert.
/// Rows of a replicated expert, in token order, are split into contiguous near-equal
/// parts, one per replica in list order (deterministic, and balanced per sender).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ExpertPlacement {
    pub slots_per_rank: usize,
    pub replicas: Vec<Vec<(usize, usize)>>,
}

impl ExpertPlacement {
    /// Expert e on rank e / (num_experts / ep), slot e % (num_experts / ep).
    pub fn contiguous(num_experts: usize, ep: usize) -> Result<Self> {
        Self::replicated(num_experts, ep, &[])
    }

    /// Experts 0..num_experts then one extra replica of each expert in `extra`, laid
    /// out in that order over the global slots (slot g on rank g / slots_per_rank).
    pub fn replicated(num_experts: usize, ep: usize, extra: &[usize]) -> Result<Self> {
        let slots = num_experts + extra.len();
        if ep == 0 || !slots.is_multiple_of(ep) {
            let what = if extra.is_empty() { "num_experts".to_string() } else { "num_experts + replicas".into() };
            return Err(invalid("ep", ep, format!("must be a positive divisor of {what} = {slots}")));
        }
        if let Some(&e) = extra.iter().find(|&&e| e >= num_experts) {
            return Err(invalid("replicated expert", e, format!("must be below num_experts = {num_experts}")));
        }
        let s = slots / ep;
        let mut replicas = vec![Vec::new(); num_experts];
        for (g, e) in (0..num_experts).chain(extra.iter().copied()).enumerate() {
            replicas[e].push((g / s, g % s));
        }
        Ok(ExpertPlacement { slots_per_rank: s, replicas })
    }

    pub fn num_experts(&self) -> usize {
        self.replicas.len()
    }

    /// Checks the table against an EP group of `ep` ranks.
    pub fn validate(&self, ep: usize) -> Result<()> {
        let s = self.slots_per_rank;
        if s == 0 {
            return Err(invalid("slots_per_rank", 0, "must be at least 1"));
        }
        let mut owner = vec![None; ep * s];
        for (e, reps) in self.replicas.iter().enumerate() {
            if reps.is_empty() {
                return Err(invalid("replicas", format!("expert {e}: none"), "every expert needs at least one"));
            }
            for &(r, slot) in reps {
                if r >= ep || slot >= s {
                    let allowed = format!("ranks 0..{ep}, slots 0..{s}");
                    return Err(invalid("replicas", format!("expert {e} at ({r}, {slot})"), allowed));
                }
                if let Some(o) = owner[r * s + slot].replace(e) {
                    let v = format!("experts {o} and {e} both at ({r}, {slot})");
                    return Err(invalid("replicas", v, "one expert per slot"));
                }
            }
        }
        if let Some(g) = owner.iter().position(Option::is_none) {
            let v = format!("slot ({}, {}) empty", g / s, g % s);
            return Err(invalid("replicas", v, format!("all {ep} x {s} slots filled")));
        }
        Ok(())
    }

    /// The logical expert in each slot of `rank` (valid placements only).
    pub fn slot_experts(&self, rank: usize) -> Vec<usize> {
        let mut out = vec![usize::MAX; self.slots_per_rank];
        for (e, reps) in self.replicas.iter().enumerate() {
            reps.iter().filter(|&&(r, _)| r == rank).for_each(|&(_, slot)| out[slot] = e);
        }
        out
    }
}

/// Timings (ms between backend marks) and traffic of one EP forward on this rank.
#[derive(Clone, Debug, Default, Serialize)]
pub struct EpStats {
    /// Permute by expert, host read of the offsets, send plan, count exchange.
    pub route_ms: f64,
    /// Send-order gather, all-to-all-v, regroup by local slot.
    pub dispatch_ms: f64,
    /// The caller's expert function.
    pub expert_ms: f64,
    /// Inverse regroup, all-to-all-v back, inverse send order, unpermute.
    pub combine_ms: f64,
    /// The two all-to-all-v calls alone.
    pub a2a_ms: f64,
    /// Bytes this rank sent / received in both all-to-all-v calls, its own block included.
    pub bytes_sent: usize,
    pub bytes_recv: usize,
    /// nccl-tests' alltoall definitions: algbw = bytes_sent / a2a time (GB/s, 1e9 B/s),
    /// busbw = algbw * (n - 1) / n.
    pub algbw_gbps: f64,
    pub busbw_gbps: f64,
    /// Dispatch rows sent to each rank and received from each rank.
    pub rows_sent: Vec<usize>,
    pub rows_recv: Vec<usize>,
    /// Rows each local slot processed (this rank's expert load).
    pub rows_per_slot: Vec<usize>,
}

/// Rows of the expert-grouped buffer in send order (rank, then slot) and the count of
/// each (rank, slot); `None` for the order when it is the identity.
fn send_plan(p: &ExpertPlacement, offsets: &[i32], ep: usize) -> (Option<Vec<i32>>, Vec<usize>) {
    let s = p.slots_per_rank;
    let mut part = vec![0..0; ep * s];
    for (e, reps) in p.replicas.iter().enumerate() {
        let (a, c) = (offsets[e] as usize, (offsets[e + 1] - offsets[e]) as usize);
        let m = reps.len();
        for (i, &(r, slot)) in reps.iter().enumerate() {
            part[r * s + slot] = a + i * c / m..a + (i + 1) * c / m;
        }
    }
    let counts = part.iter().map(|r| r.len()).collect();
    let order: Vec<i32> = part.into_iter().flatten().map(|i| i as i32).collect();
    let identity = order.iter().enumerate().all(|(i, &j)| i as i32 == j);
    ((!identity).then_some(order), counts)
}

/// Received rows come ordered (source rank, slot) with counts `recv[src * s + slot]`;
/// returns the gather that orders them (slot, source rank), and the slot offsets.
fn regroup_plan(recv: &[usize], ep: usize, s: usize) -> (Option<Vec<i32>>, Vec<i32>) {
    let mut start = vec![0; ep * s];
    let mut acc = 0;
    for (g, c) in recv.iter().enumerate() {
        start[g] = acc;
        acc += c;
    }
    let mut order = Vec::with_capacity(acc);
    let mut offsets = vec![0i32];
    for slot in 0..s {
        for src in 0..ep {
            let g = src * s + slot;
            order.extend((start[g]..start[g] + recv[g]).map(|i| i as i32));
        }
        offsets.push(order.len() as i32);
    }
    let identity = order.iter().enumerate().all(|(i, &j)| i as i32 == j);
    ((!identity).then_some(order), offsets)
}

/// inv[order[j]] = j: the gather that undoes gathering by `order`.
fn inverse(order: &[i32]) -> Vec<i32> {
    let mut inv = vec![0i32; order.len()];
    order.iter().enumerate().for_each(|(j, &i)| inv[i as usize] = j as i32);
    inv
}

fn gather(b: &dyn Backend, x: Tensor, order: Option<&[i32]>) -> Result<Tensor> {
    match order {
        None => Ok(x),
        Some(o) => Ok(b.embedding(&x, &b.upload_i32(o, &[o.len()])?)?),
    }
}

fn sums(counts: &[usize], ep: usize, s: usize) -> Vec<usize> {
    (0..ep).map(|r| counts[r * s..(r + 1) * s].iter().sum()).collect()
}

/// The MoE experts of one layer over the EP group `comm`: `x` [t, h] local tokens and
/// their `routing` in, [t, h_out] out. `expert(rows, offsets, slot_experts)` computes
/// this rank's slots: `rows` grouped by local slot with `offsets` [slots + 1] i32, and
/// `slot_experts[slot]` the logical expert whose weights that slot applies; it returns
/// one output row per input row. Collective over `comm`.
pub fn forward<F>(
    backend: &dyn Backend,
    comm: &dyn Comm,
    placement: &ExpertPlacement,
    x: &Tensor,
    routing: &Routing,
    mut expert: F,
) -> Result<(Tensor, EpStats)>
where
    F: FnMut(&Tensor, &Tensor, &[usize]) -> Result<Tensor>,
{
    let (ep, me, s) = (comm.size(), comm.rank(), placement.slots_per_rank);
    placement.validate(ep)?;
    let t = routing.ids.shape()[0];
    if x.shape().len() != 2 || x.shape()[0] != t || routing.weights.shape() != routing.ids.shape() {
        let v = format!("x {:?}, ids {:?}, weights {:?}", x.shape(), routing.ids.shape(), routing.weights.shape());
        return Err(invalid("x / routing", v, "x [t, h] with ids and weights [t, k]"));
    }
    let dispatch = phase(c"moe dispatch");
    let m0 = backend.mark()?;
    let perm = backend.permute(x, &routing.ids, placement.num_experts())?;
    let offsets = backend.download_i32(&perm.offsets)?;
    let (order, send_counts) = send_plan(placement, &offsets, ep);
    let recv_counts = {
        let _c = phase(c"all_to_all counts");
        comm.all_to_all_count_blocks(&send_counts, s)?
    };
    let (send_rows, recv_rows) = (sums(&send_counts, ep, s), sums(&recv_counts, ep, s));

    let m1 = backend.mark()?;
    let xs = gather(backend, perm.x, order.as_deref())?;
    let a0 = backend.mark()?;
    let received = {
        let _c = phase(c"all_to_all_v dispatch");
        comm.all_to_all_v(&xs, &send_rows, &recv_rows)?
    };
    let a1 = backend.mark()?;
    let (slot_order, slot_offsets) = regroup_plan(&recv_counts, ep, s);
    let grouped = gather(backend, received, slot_order.as_deref())?;
    let local_offsets = backend.upload_i32(&slot_offsets, &[s + 1])?;
    drop(dispatch);

    let experts = phase(c"moe experts");
    let m2 = backend.mark()?;
    let y = expert(&grouped, &local_offsets, &placement.slot_experts(me))?;
    if y.shape().first() != grouped.shape().first() {
        let v = format!("{:?} for {:?} input rows", y.shape(), grouped.shape());
        return Err(invalid("expert output", v, "one output row per input row"));
    }
    drop(experts);

    let combine = phase(c"moe combine");
    let m3 = backend.mark()?;
    let y_src = gather(backend, y, slot_order.as_deref().map(inverse).as_deref())?;
    let b0 = backend.mark()?;
    let back = {
        let _c = phase(c"all_to_all_v combine");
        comm.all_to_all_v(&y_src, &recv_rows, &send_rows)?
    };
    let b1 = backend.mark()?;
    let y_perm = gather(backend, back, order.as_deref().map(inverse).as_deref())?;
    let out = backend.unpermute(&y_perm, &perm.row_of, &routing.weights)?;
    let m4 = backend.mark()?;
    drop(combine);

    backend.synchronize()?;
    let ms = |a: &Mark, b: &Mark| backend.elapsed_ms(a, b);
    let row_bytes = |t: &Tensor| t.bytes() / t.shape()[0].max(1);
    let (xb, yb) = (row_bytes(&xs), row_bytes(&y_perm));
    let bytes_sent = send_rows.iter().sum::<usize>() * xb + recv_rows.iter().sum::<usize>() * yb;
    let bytes_recv = recv_rows.iter().sum::<usize>() * xb + send_rows.iter().sum::<usize>() * yb;
    let a2a_ms = ms(&a0, &a1)? + ms(&b0, &b1)?;
    let algbw_gbps = if a2a_ms > 0.0 { bytes_sent as f64 / (a2a_ms * 1e-3) / 1e9 } else { 0.0 };
    let stats = EpStats {
        route_ms: ms(&m0, &m1)?,
        dispatch_ms: ms(&m1, &m2)?,
        expert_ms: ms(&m2, &m3)?,
        combine_ms: ms(&m3, &m4)?,
        a2a_ms,
        bytes_sent,
        bytes_recv,
        algbw_gbps,
        busbw_gbps: algbw_gbps * (ep - 1) as f64 / ep as f64,
        rows_sent: send_rows,
        rows_recv: recv_rows,
        rows_per_slot: slot_offsets.windows(2).map(|w| (w[1] - w[0]) as usize).collect(),
    };
    Ok((out, stats))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contiguous_validates_divisibility() {
        let p = ExpertPlacement::contiguous(8, 4).unwrap();
        assert_eq!(p.slots_per_rank, 2);
        assert_eq!(p.replicas[5], vec![(2, 1)]);
        assert_eq!(p.slot_experts(3), vec![6, 7]);
        let e = ExpertPlacement::contiguous(8, 3).unwrap_err().to_string();
        assert!(e.contains("ep = 3") && e.contains("= 8"), "{e}");
    }

    #[test]
    fn validate_rejects_bad_tables() {
        let two = |replicas| ExpertPlacement { slots_per_rank: 1, replicas };
        assert!(two(vec![vec![(0, 0)], vec![(1, 0)]]).validate(2).is_ok());
        let e = two(vec![vec![(0, 0)], vec![(0, 0)]]).validate(2).unwrap_err().to_string();
        assert!(e.contains("both at (0, 0)"), "{e}");
        let e = two(vec![vec![(0, 0)], vec![(2, 0)]]).validate(2).unwrap_err().to_string();
        assert!(e.contains("ranks 0..2"), "{e}");
        let e = two(vec![vec![(0, 0)], vec![]]).validate(2).unwrap_err().to_string();
        assert!(e.contains("expert 1"), "{e}");
        let e = two(vec![vec![(0, 0)]]).validate(2).unwrap_err().to_string();
        assert!(e.contains("slot (1, 0) empty"), "{e}");
    }

    #[test]
    fn send_plan_splits_replicas_hand_worked() {
        // 3 experts on 2 ranks of 2 slots; expert 0 also in global slot 3 (rank 1, slot 1).
        let p = ExpertPlacement::replicated(3, 2, &[0]).unwrap();
        assert_eq!(p.replicas[0], vec![(0, 0), (1, 1)]);
        // expert rows: e0 = 0..5, e1 = 5..6, e2 = 6..8.
        let (order, counts) = send_plan(&p, &[0, 5, 6, 8], 2);
        // e0's 5 rows split 2 + 3: rows 0..2 to (0,0), rows 2..5 to (1,1).
        assert_eq!(counts, vec![2, 1, 2, 3]);
        assert_eq!(order.unwrap(), vec![0, 1, 5, 6, 7, 2, 3, 4]);
        // contiguous placement: the identity, no gather needed.
        let (order, counts) = send_plan(&ExpertPlacement::contiguous(4, 2).unwrap(), &[0, 1, 1, 4, 6], 2);
        assert_eq!((order, counts), (None, vec![1, 0, 3, 2]));
    }

    #[test]
    fn regroup_plan_orders_by_slot_hand_worked() {
        // From rank 0: slot0 2 rows, slot1 1 row; from rank 1: slot0 1 row, slot1 2 rows.
        let (order, offsets) = regroup_plan(&[2, 1, 1, 2], 2, 2);
        let order = order.unwrap();
        assert_eq!(order, vec![0, 1, 3, 2, 4, 5]);
        assert_eq!(offsets, vec![0, 3, 6]);
        let inv = inverse(&order);
        assert!((0..6).all(|j| inv[order[j] as usize] == j as i32));
    }
}
