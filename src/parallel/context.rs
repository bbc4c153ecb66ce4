//! Context-parallel causal attention over a CP group of n ranks.
//!
//! The sequence is cut into 2n near-equal chunks (sizes differ by at most one, so
//! any length works); rank i holds chunks i and 2n-1-i (zigzag), which gives every
//! rank the same number of unmasked (query chunk, key chunk) pairs.
//! - `Ring`: K/V blocks travel around the ring (`sendrecv_all_start`: K and V together, one
//!   NCCL group per step) while the block in hand is attended; partial results merge by
//!   log-sum-exp (`attn_merge`); pairs whose keys all come after their queries are skipped. Blocks are padded to the
//!   longest shard so every transfer has one shape.
//! - `AllGather` (Llama 3): all-gather K/V, reorder to sequence order, and attend each
//!   local query chunk to its causal prefix.

use super::{Result, invalid};
use crate::backend::{AttnAlgo, AttnOut, AttnParams, Backend, Mark};
use crate::comm::{Comm, Pending};
pub use crate::layout::CpKind;
use crate::marks::{phase, phase_with};
use crate::tensor::Tensor;
use serde::Serialize;
use std::ops::Range;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CpParams {
    pub kind: CpKind,
    pub algo: AttnAlgo,
    /// Length of the whole sequence (the positions of the local chunks follow from it).
    pub seq_len: usize,
    /// Ring only: after the attention, replay its transfers without compute to measure
    /// the total communication time (doubles the traffic of the call).
    pub measure_comm: bool,
}

/// How one call spent its time on this rank, from backend marks (device events on a
/// GPU, so stalls of the compute stream count, not host time).
/// - `compute_ms`: attention and merges (and, for all-gather, the K/V reorder).
/// - `exposed_comm_ms`: time the compute timeline waited for transfers: the spans
///   around `Pending::wait` (ring) or the all-gathers (all-gather). It includes
///   waiting for a slower peer.
/// - `comm_ms`: total transfer time. All-gather: the all-gathers themselves. Ring:
///   the replay of the same transfers without compute when `measure_comm`, else None.
/// - `overlap` = 1 - exposed / total, clamped to [0, 1]; None without a total.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct CpStats {
    pub compute_ms: f64,
    pub exposed_comm_ms: f64,
    pub comm_ms: Option<f64>,
    pub overlap: Option<f64>,
    /// K/V bytes this rank received (padding included).
    pub bytes_recv: usize,
    /// Attention calls made, and (ring) block pairs skipped as fully masked.
    pub blocks_computed: usize,
    pub blocks_skipped: usize,
}

/// Start of chunk `c` of `parts` near-equal chunks.
fn chunk_start(seq_len: usize, parts: usize, c: usize) -> usize {
    c * seq_len / parts
}

fn chunk(seq_len: usize, parts: usize, c: usize) -> Range<usize> {
    chunk_start(seq_len, parts, c)..chunk_start(seq_len, parts, c + 1)
}

/// The positions rank `rank` of `cp` holds: chunks rank and 2cp-1-rank of 2cp.
pub fn shard(seq_len: usize, cp: usize, rank: usize) -> Result<Vec<Range<usize>>> {
    if cp == 0 || rank >= cp {
        return Err(invalid("cp rank", format!("{rank} of {cp}"), "cp >= 1 and rank < cp"));
    }
    Ok(vec![chunk(seq_len, 2 * cp, rank), chunk(seq_len, 2 * cp, 2 * cp - 1 - rank)])
}

pub fn shard_len(seq_len: usize, cp: usize, rank: usize) -> Result<usize> {
    Ok(shard(seq_len, cp, rank)?.iter().map(|r| r.len()).sum())
}

/// Rank `rank`'s rows of a full [seq, ...] tensor, in shard order.
pub fn take_shard(b: &dyn Backend, full: &Tensor, cp: usize, rank: usize) -> Result<Tensor> {
    let parts = shard(full.shape()[0], cp, rank)?
        .into_iter()
        .map(|r| b.rows(full, r.start, r.len()))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    Ok(b.concat_rows(&parts.iter().collect::<Vec<_>>())?)
}

/// The full [seq_len, ...] tensor from every rank's shard (`shards[rank]`).
pub fn unshard(b: &dyn Backend, shards: &[Tensor], seq_len: usize) -> Result<Tensor> {
    let cp = shards.len();
    let mut parts = Vec::with_capacity(2 * cp);
    for c in 0..2 * cp {
        let (owner, first) = if c < cp { (c, true) } else { (2 * cp - 1 - c, false) };
        let mine = shard(seq_len, cp, owner)?;
        if shards[owner].shape()[0] != mine[0].len() + mine[1].len() {
            let v = format!("rank {owner}: {:?}", shards[owner].shape());
            return Err(invalid("shard", v, format!("{} rows for seq_len {seq_len}", mine[0].len() + mine[1].len())));
        }
        let (start, len) = if first { (0, mine[0].len()) } else { (mine[0].len(), mine[1].len()) };
        parts.push(b.rows(&shards[owner], start, len)?);
    }
    Ok(b.concat_rows(&parts.iter().collect::<Vec<_>>())?)
}

/// `x` with zero rows appended up to `rows`.
fn pad(b: &dyn Backend, x: &Tensor, rows: usize) -> Result<Tensor> {
    let mut shape = x.shape().to_vec();
    let have = shape[0];
    if have == rows {
        return Ok(b.rows(x, 0, rows)?);
    }
    shape[0] = rows - have;
    Ok(b.concat_rows(&[x, &b.zeros(&shape, x.dtype())?])?)
}

/// Causal attention of this rank's shard of q, k, v ([shard_len, heads, d]) over the
/// whole sequence; returns this rank's rows of the output. Collective over `comm`.
pub fn attention(
    b: &dyn Backend,
    comm: &dyn Comm,
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    p: &CpParams,
) -> Result<(Tensor, CpStats)> {
    let (n, me) = (comm.size(), comm.rank());
    let want = shard_len(p.seq_len, n, me)?;
    if q.shape().len() != 3 || q.shape()[0] != want || k.shape()[0] != want || v.shape()[0] != want {
        let v = format!("q {:?} k {:?} v {:?}", q.shape(), k.shape(), v.shape());
        let allowed = format!("[{want}, heads, d]: rank {me}'s shard of {} positions over {n} ranks", p.seq_len);
        return Err(invalid("cp inputs", v, allowed));
    }
    let block = (0..n).map(|j| shard_len(p.seq_len, n, j)).collect::<Result<Vec<_>>>()?.into_iter().max();
    let (kp, vp) = (pad(b, k, block.unwrap_or(0))?, pad(b, v, block.unwrap_or(0))?);
    let bytes_recv = (n - 1) * (kp.bytes() + vp.bytes());
    let mine = shard(p.seq_len, n, me)?;
    let q_chunks = vec![b.rows(q, 0, mine[0].len())?, b.rows(q, mine[0].len(), mine[1].len())?];
    let (outs, mut stats) = match p.kind {
        CpKind::Ring => ring(b, comm, &mine, &q_chunks, kp, vp, p)?,
        CpKind::AllGather => all_gather(b, comm, &mine, &q_chunks, &kp, &vp, p)?,
    };
    stats.bytes_recv = bytes_recv;
    let outs = outs
        .into_iter()
        .zip(&q_chunks)
        .map(|(o, qc)| match o {
            Some(a) if a.out.dtype() == q.dtype() => Ok(a.out),
            Some(a) => b.cast(&a.out, q.dtype()),
            None => b.zeros(qc.shape(), q.dtype()),
        })
        .collect::<std::result::Result<Vec<_>, _>>()?;
    Ok((b.concat_rows(&[&outs[0], &outs[1]])?, stats))
}

/// Sum of the spans between consecutive pairs of marks, after the device caught up.
fn total_ms(b: &dyn Backend, spans: &[(Mark, Mark)]) -> Result<f64> {
    spans.iter().map(|(s, e)| Ok(b.elapsed_ms(s, e)?)).sum()
}

fn finish(b: &dyn Backend, compute: &[(Mark, Mark)], waits: &[(Mark, Mark)], comm: Option<f64>) -> Result<CpStats> {
    b.synchronize()?;
    let exposed = total_ms(b, waits)?;
    let overlap = comm.filter(|&t| t > 0.0).map(|t| (1.0 - exposed / t).clamp(0.0, 1.0));
    Ok(CpStats {
        compute_ms: total_ms(b, compute)?,
        exposed_comm_ms: exposed,
        comm_ms: comm,
        overlap,
        ..Default::default()
    })
}

type Partials = Vec<Option<AttnOut>>;

fn ring(
    b: &dyn Backend,
    comm: &dyn Comm,
    mine: &[Range<usize>],
    q_chunks: &[Tensor],
    mut kb: Tensor,
    mut vb: Tensor,
    p: &CpParams,
) -> Result<(Partials, CpStats)> {
    let (n, me) = (comm.size(), comm.rank());
    let (next, prev) = ((me + 1) % n, (me + n - 1) % n);
    let mut acc: Partials = vec![None, None];
    let (mut compute, mut waits) = (Vec::new(), Vec::new());
    let (mut computed, mut skipped) = (0, 0);
    for step in 0..n {
        let _step = phase_with(|| format!("cp ring step {step}"));
        // Start passing the block on before attending to it; it stays alive until the wait.
        let pending = match step + 1 < n {
            true => {
                let _c = phase(c"sendrecv k/v start");
                Some(comm.sendrecv_all_start(&[&kb, &vb], next, prev)?)
            }
            false => None,
        };
        let c0 = b.mark()?;
        let holder = shard(p.seq_len, n, (me + n - step) % n)?;
        for (qi, qr) in mine.iter().enumerate() {
            let mut offset = 0;
            for kr in &holder {
                let local = offset;
                offset += kr.len();
                if qr.is_empty() || kr.is_empty() {
                    continue;
                }
                if kr.start >= qr.end {
                    skipped += 1;
                    continue;
                }
                let (kt, vt) = (b.rows(&kb, local, kr.len())?, b.rows(&vb, local, kr.len())?);
                // f32 partials: the merge rounds once, at the end, as one rank would.
                let ap = AttnParams { f32_out: true, ..AttnParams::causal(qr.start, kr.start, p.algo) };
                let part = b.attention(&q_chunks[qi], &kt, &vt, &ap)?;
                acc[qi] = Some(match acc[qi].take() {
                    None => part,
                    Some(a) => b.attn_merge(&a, &part)?,
                });
                computed += 1;
            }
        }
        compute.push((c0, b.mark()?));
        if let Some(pending) = pending {
            let _c = phase(c"sendrecv k/v wait");
            let w0 = b.mark()?;
            (kb, vb) = wait_kv(pending)?;
            waits.push((w0, b.mark()?));
        }
    }
    let mut comm_ms = None;
    if p.measure_comm {
        let mut spans = Vec::new();
        for _ in 1..n {
            let m0 = b.mark()?;
            (kb, vb) = wait_kv(comm.sendrecv_all_start(&[&kb, &vb], next, prev)?)?;
            spans.push((m0, b.mark()?));
        }
        b.synchronize()?;
        comm_ms = Some(total_ms(b, &spans)?);
    }
    let stats = finish(b, &compute, &waits, comm_ms)?;
    Ok((acc, CpStats { blocks_computed: computed, blocks_skipped: skipped, ..stats }))
}

/// The K and V blocks of one ring step's transfer.
fn wait_kv(pending: Vec<Box<dyn Pending>>) -> Result<(Tensor, Tensor)> {
    let n = pending.len();
    let [k, v]: [Box<dyn Pending>; 2] =
        pending.try_into().map_err(|_| invalid("sendrecv_all_start", format!("{n} pendings"), "2 (K and V)"))?;
    Ok((k.wait()?, v.wait()?))
}

fn all_gather(
    b: &dyn Backend,
    comm: &dyn Comm,
    mine: &[Range<usize>],
    q_chunks: &[Tensor],
    kp: &Tensor,
    vp: &Tensor,
    p: &CpParams,
) -> Result<(Partials, CpStats)> {
    let n = comm.size();
    let block = kp.shape()[0];
    let a0 = b.mark()?;
    let (kg, vg) = {
        let _c = phase(c"all_gather k/v");
        (comm.all_gather(kp)?, comm.all_gather(vp)?)
    };
    let a1 = b.mark()?;
    let c0 = b.mark()?;
    // Reorder the gathered blocks into sequence order, up to the last position queried here.
    let need = mine.iter().filter(|r| !r.is_empty()).map(|r| r.end).max().unwrap_or(0);
    let (mut ks, mut vs) = (Vec::new(), Vec::new());
    for c in 0..2 * n {
        let r = chunk(p.seq_len, 2 * n, c);
        if r.start >= need || r.is_empty() {
            continue;
        }
        let owner = if c < n { c } else { 2 * n - 1 - c };
        let within = if c < n { 0 } else { chunk(p.seq_len, 2 * n, owner).len() };
        ks.push(b.rows(&kg, owner * block + within, r.len())?);
        vs.push(b.rows(&vg, owner * block + within, r.len())?);
    }
    let mut acc: Partials = vec![None, None];
    let mut computed = 0;
    if need > 0 {
        let k_full = b.concat_rows(&ks.iter().collect::<Vec<_>>())?;
        let v_full = b.concat_rows(&vs.iter().collect::<Vec<_>>())?;
        for (qi, qr) in mine.iter().enumerate().filter(|(_, r)| !r.is_empty()) {
            let (kt, vt) = (b.rows(&k_full, 0, qr.end)?, b.rows(&v_full, 0, qr.end)?);
            let ap = AttnParams::causal(qr.start, 0, p.algo);
            acc[qi] = Some(b.attention(&q_chunks[qi], &kt, &vt, &ap)?);
            computed += 1;
        }
    }
    let c1 = b.mark()?;
    b.synchronize()?;
    // A blocking collective: all of it is exposed.
    let comm_ms = b.elapsed_ms(&a0, &a1)?;
    let stats = finish(b, &[(c0, c1)], &[(a0, a1)], Some(comm_ms))?;
    Ok((acc, CpStats { blocks_computed: computed, ..stats }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_are_zigzag_and_cover_uneven_lengths() {
        // 37 over 2 ranks: 4 chunks starting at 0, 9, 18, 27.
        assert_eq!(shard(37, 2, 0).unwrap(), vec![0..9, 27..37]);
        assert_eq!(shard(37, 2, 1).unwrap(), vec![9..18, 18..27]);
        for (len, cp) in [(37, 2), (100, 4), (129, 4), (3, 4), (8, 1)] {
            let mut seen = vec![0; len];
            for r in 0..cp {
                shard(len, cp, r).unwrap().into_iter().flatten().for_each(|i| seen[i] += 1);
            }
            assert!(seen.iter().all(|&c| c == 1), "len {len} cp {cp}");
        }
        assert!(shard(10, 2, 2).unwrap_err().to_string().contains("rank < cp"));
    }
}
