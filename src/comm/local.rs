//! Ranks as threads of one process, over host tensors: for tests and CPU runs.
//! Every transfer is a message in a shared mailbox keyed by (source, destination, tag);
//! collectives are built from them. Collective tags come from a per-rank sequence
//! number, so ranks that call collectives in different orders time out instead of
//! silently mixing data. Waits are bounded, and a rank that drops its comm (or
//! unwinds from a panic) makes its peers' waits fail with `PeerLost`.
//! Each rank counts the operations it entered on the group, so an operation the
//! watchdog finds overdue names the ranks that have not reached it.

use super::{Comm, Error, Pending, Result};
use crate::tensor::{DType, Data, Tensor, round_to};
use crate::watchdog::{self, Waiting};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Tag {
    /// n-th collective of the group.
    Coll(u64),
    /// n-th point-to-point message between one ordered pair of ranks.
    P2p(u64),
}

enum Payload {
    F32 { shape: Vec<usize>, dtype: DType, v: Vec<f32> },
    I32 { shape: Vec<usize>, v: Vec<i32> },
    Bytes(Vec<u8>),
    Counts(Vec<usize>),
}

impl Payload {
    fn rows_of(t: &Tensor, start: usize, len: usize, rank: usize, op: &'static str) -> Result<Payload> {
        let mut shape = t.shape().to_vec();
        let width = if shape.is_empty() { 1 } else { t.numel() / shape[0].max(1) };
        if let Some(r) = shape.first_mut() {
            *r = len;
        }
        let range = start * width..(start + len) * width;
        match &t.data {
            Data::Host(v) => Ok(Payload::F32 { shape, dtype: t.dtype(), v: v[range].to_vec() }),
            Data::HostI32(v) => Ok(Payload::I32 { shape, v: v[range].to_vec() }),
            Data::Device(_) => Err(Error::Failed { rank, op, msg: format!("{t:?} is on a device; local needs host") }),
        }
    }
    fn whole(t: &Tensor, rank: usize, op: &'static str) -> Result<Payload> {
        Payload::rows_of(t, 0, t.shape().first().copied().unwrap_or(1), rank, op)
    }
    fn rows(&self) -> usize {
        match self {
            Payload::F32 { shape, .. } | Payload::I32 { shape, .. } => shape.first().copied().unwrap_or(1),
            Payload::Bytes(_) | Payload::Counts(_) => 0,
        }
    }
}

struct State {
    mail: HashMap<(usize, usize, Tag), Payload>,
    alive: Vec<bool>,
}

/// Groups made by `split`, keyed by (split number, color), with how many members have not taken theirs yet.
type Splits = HashMap<(u64, usize), (Arc<Shared>, usize)>;

/// The mailbox of one group, shared by its ranks.
struct Shared {
    size: usize,
    state: Mutex<State>,
    cv: Condvar,
    splits: Mutex<Splits>,
    /// Names the group in watchdog messages: "threads", then "/SPLIT.COLOR" per split.
    label: String,
    /// The world rank (the thread rank of the run) of each member.
    world: Vec<usize>,
    /// Operations each member has entered on this group.
    entered: Vec<AtomicU64>,
}

impl Shared {
    fn new(label: String, world: Vec<usize>) -> Arc<Shared> {
        let size = world.len();
        Arc::new(Shared {
            size,
            state: Mutex::new(State { mail: HashMap::new(), alive: vec![true; size] }),
            cv: Condvar::new(),
            splits: Mutex::new(HashMap::new()),
            label,
            world,
            entered: (0..size).map(|_| AtomicU64::new(0)).collect(),
        })
    }
    fn lock(&self) -> MutexGuard<'_, State> {
        // A rank that panicked while holding the lock left the mailbox consistent (every
        // mutation is one insert or remove), so keep going and let its peers see PeerLost.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

pub struct LocalComm {
    rank: usize,
    shared: Arc<Shared>,
    timeout: Duration,
    coll_seq: AtomicU64,
    /// Next point-to-point sequence number to each peer / from each peer.
    sent: Mutex<Vec<u64>>,
    received: Mutex<Vec<u64>>,
    split_seq: AtomicU64,
}

impl LocalComm {
    /// One communicator per rank of a new group of `n`; move each into its own thread.
    pub fn group(n: usize) -> Vec<LocalComm> {
        Self::group_with_timeout(n, DEFAULT_TIMEOUT)
    }

    pub fn group_with_timeout(n: usize, timeout: Duration) -> Vec<LocalComm> {
        Self::labelled(n, "threads", timeout)
    }

    /// A group whose operations the watchdog describes as on comm `label`.
    fn labelled(n: usize, label: &str, timeout: Duration) -> Vec<LocalComm> {
        let shared = Shared::new(label.into(), (0..n).collect());
        (0..n).map(|rank| LocalComm::member(rank, shared.clone(), timeout)).collect()
    }

    fn member(rank: usize, shared: Arc<Shared>, timeout: Duration) -> LocalComm {
        let n = shared.size;
        LocalComm {
            rank,
            shared,
            timeout,
            coll_seq: AtomicU64::new(0),
            sent: Mutex::new(vec![0; n]),
            received: Mutex::new(vec![0; n]),
            split_seq: AtomicU64::new(0),
        }
    }

    /// How long any wait may last before it fails with `Timeout`.
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    fn timeout_secs(&self) -> u64 {
        // The error reports whole seconds; round up so it never claims "0 s".
        self.timeout.as_secs_f64().ceil() as u64
    }

    fn next_coll(&self) -> Tag {
        Tag::Coll(self.coll_seq.fetch_add(1, Ordering::Relaxed))
    }

    fn check_peer(&self, peer: usize, op: &'static str) -> Result<()> {
        if peer >= self.shared.size {
            let msg = format!("peer rank {peer} outside the group of {}", self.shared.size);
            return Err(Error::Failed { rank: self.rank, op, msg });
        }
        Ok(())
    }

    fn post(&self, dst: usize, tag: Tag, p: Payload, op: &'static str) -> Result<()> {
        self.check_peer(dst, op)?;
        let mut st = self.shared.lock();
        if !st.alive[dst] {
            return Err(Error::PeerLost { rank: self.rank, op, peer: dst });
        }
        st.mail.insert((self.rank, dst, tag), p);
        drop(st);
        self.shared.cv.notify_all();
        Ok(())
    }

    fn take(&self, src: usize, tag: Tag, op: &'static str) -> Result<Payload> {
        take(&self.shared, self.rank, src, tag, op, self.timeout, self.timeout_secs())
    }

    /// Send one payload to every rank (built per destination), then receive one from every rank.
    fn exchange(&self, op: &'static str, mut make: impl FnMut(usize) -> Result<Payload>) -> Result<Vec<Payload>> {
        let tag = self.next_coll();
        for dst in 0..self.shared.size {
            self.post(dst, tag, make(dst)?, op)?;
        }
        (0..self.shared.size).map(|src| self.take(src, tag, op)).collect()
    }

    fn fail(&self, op: &'static str, msg: String) -> Error {
        Error::Failed { rank: self.rank, op, msg }
    }

    /// Counts `op` as entered and watches it until the guard drops; `from` is the one peer a
    /// receive waits for (every other member for a collective).
    fn watch(&self, op: &str, from: Option<usize>) -> watchdog::Guard {
        let seq = self.shared.entered[self.rank].fetch_add(1, Ordering::Relaxed);
        watch_op(&self.shared, self.rank, op, seq, from)
    }
}

/// Watches operation `seq` of `rank` on the group; overdue, it names the peers behind it.
fn watch_op(shared: &Arc<Shared>, rank: usize, op: &str, seq: u64, from: Option<usize>) -> watchdog::Guard {
    let what = format!("{op} on comm {} (rank {rank} of {})", shared.label, shared.size);
    let peers: Vec<usize> = match from {
        Some(p) => vec![p],
        None => (0..shared.size).filter(|&p| p != rank).collect(),
    };
    let sh = shared.clone();
    let ask: watchdog::AskFn = Box::new(move |_| {
        let counts: Vec<(usize, Option<u64>)> =
            peers.iter().map(|&p| (sh.world[p], Some(sh.entered[p].load(Ordering::Relaxed)))).collect();
        Waiting::from_counts(seq, &counts)
    });
    watchdog::watch_waiting(what, Some(shared.world[rank]), ask)
}

fn take(
    shared: &Shared,
    rank: usize,
    src: usize,
    tag: Tag,
    op: &'static str,
    timeout: Duration,
    secs: u64,
) -> Result<Payload> {
    let deadline = Instant::now() + timeout;
    let mut st = shared.lock();
    loop {
        if let Some(p) = st.mail.remove(&(src, rank, tag)) {
            return Ok(p);
        }
        if !st.alive[src] {
            return Err(Error::PeerLost { rank, op, peer: src });
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(Error::Timeout { rank, op, secs });
        }
        st = shared.cv.wait_timeout(st, deadline - now).unwrap_or_else(|e| e.into_inner()).0;
    }
}

/// Rows of several payloads of one kind concatenated (all f32 or all i32).
fn concat(parts: Vec<Payload>, rank: usize, op: &'static str) -> Result<Tensor> {
    let mismatch = |what: String| Error::Failed { rank, op, msg: what };
    let mut rows = 0;
    let (mut f, mut i) = (Vec::new(), Vec::new());
    let mut head: Option<(Vec<usize>, Option<DType>)> = None;
    for p in parts {
        rows += p.rows();
        let (tail, dtype) = match &p {
            Payload::F32 { shape, dtype, .. } => (shape[1..].to_vec(), Some(*dtype)),
            Payload::I32 { shape, .. } => (shape[1..].to_vec(), None),
            _ => return Err(mismatch("expected a tensor message".into())),
        };
        match &head {
            None => head = Some((tail, dtype)),
            Some(h) if *h != (tail.clone(), dtype) => {
                return Err(mismatch(format!("ranks sent rows {tail:?} of {dtype:?} and {:?} of {:?}", h.0, h.1)));
            }
            Some(_) => {}
        }
        match p {
            Payload::F32 { v, .. } => f.extend(v),
            Payload::I32 { v, .. } => i.extend(v),
            _ => unreachable!("checked above"),
        }
    }
    let (tail, dtype) = head.ok_or_else(|| mismatch("no parts".into()))?;
    let shape: Vec<usize> = std::iter::once(rows).chain(tail).collect();
    Ok(match dtype {
        Some(dt) => Tensor::host(&shape, dt, f),
        None => Tensor::host_i32(&shape, i),
    })
}

fn counts_of(p: Payload, rank: usize, op: &'static str) -> Result<Vec<usize>> {
    match p {
        Payload::Counts(c) => Ok(c),
        _ => Err(Error::Failed { rank, op, msg: "expected a counts message".into() }),
    }
}

fn bytes_of(p: Payload, rank: usize, op: &'static str) -> Result<Vec<u8>> {
    match p {
        Payload::Bytes(b) => Ok(b),
        _ => Err(Error::Failed { rank, op, msg: "expected a bytes message".into() }),
    }
}

impl Drop for LocalComm {
    fn drop(&mut self) {
        let mut st = self.shared.lock();
        st.alive[self.rank] = false;
        let me = self.rank;
        st.mail.retain(|(_, dst, _), _| *dst != me);
        drop(st);
        self.shared.cv.notify_all();
    }
}

struct LocalPending {
    shared: Arc<Shared>,
    rank: usize,
    from: usize,
    tag: Tag,
    timeout: Duration,
    secs: u64,
    /// The sendrecv's number among the operations this rank entered on the group.
    seq: u64,
}

impl Pending for LocalPending {
    fn wait(self: Box<Self>) -> Result<Tensor> {
        const OP: &str = "sendrecv wait";
        let _w =
            watch_op(&self.shared, self.rank, &format!("sendrecv from rank {}", self.from), self.seq, Some(self.from));
        let p = take(&self.shared, self.rank, self.from, self.tag, OP, self.timeout, self.secs)?;
        concat(vec![p], self.rank, OP)
    }
}

impl Comm for LocalComm {
    fn rank(&self) -> usize {
        self.rank
    }
    fn size(&self) -> usize {
        self.shared.size
    }
    fn name(&self) -> &'static str {
        "local"
    }

    fn all_to_all_v(&self, send: &Tensor, send_rows: &[usize], recv_rows: &[usize]) -> Result<Tensor> {
        const OP: &str = "all_to_all_v";
        let n = self.size();
        let total: usize = send_rows.iter().sum();
        if send_rows.len() != n || recv_rows.len() != n || send.shape().first() != Some(&total) {
            let msg = format!("send {send:?}, send_rows {send_rows:?}, recv_rows {recv_rows:?} for {n} ranks");
            return Err(self.fail(OP, msg));
        }
        let _w = self.watch(OP, None);
        let starts: Vec<usize> = send_rows.iter().scan(0, |acc, r| Some(std::mem::replace(acc, *acc + r))).collect();
        let parts = self.exchange(OP, |dst| Payload::rows_of(send, starts[dst], send_rows[dst], self.rank, OP))?;
        for (src, p) in parts.iter().enumerate() {
            if p.rows() != recv_rows[src] {
                let msg = format!("expected {} rows from rank {src}, it sent {}", recv_rows[src], p.rows());
                return Err(self.fail(OP, msg));
            }
        }
        concat(parts, self.rank, OP)
    }

    fn all_gather(&self, x: &Tensor) -> Result<Tensor> {
        const OP: &str = "all_gather";
        let _w = self.watch(OP, None);
        let parts = self.exchange(OP, |_| Payload::whole(x, self.rank, OP))?;
        concat(parts, self.rank, OP)
    }

    fn all_reduce_sum(&self, x: &Tensor) -> Result<Tensor> {
        const OP: &str = "all_reduce_sum";
        let _w = self.watch(OP, None);
        let parts = self.exchange(OP, |_| Payload::whole(x, self.rank, OP))?;
        // Summed in rank order on every rank, so all ranks get bitwise equal results.
        let mut acc: Option<Vec<f32>> = None;
        for p in parts {
            let v = match p {
                Payload::F32 { v, shape, .. } if shape == x.shape() => v,
                Payload::I32 { .. } => return Err(self.fail(OP, "i32 tensors are not summed".into())),
                _ => return Err(self.fail(OP, format!("ranks passed different shapes (mine {:?})", x.shape()))),
            };
            match &mut acc {
                None => acc = Some(v),
                Some(a) => a.iter_mut().zip(&v).for_each(|(s, b)| *s += b),
            }
        }
        let mut v = acc.unwrap_or_default();
        round_to(x.dtype(), &mut v);
        Ok(Tensor::host(x.shape(), x.dtype(), v))
    }

    fn sendrecv_start(&self, x: &Tensor, to: usize, from: usize) -> Result<Box<dyn Pending>> {
        const OP: &str = "sendrecv_start";
        self.check_peer(to, OP)?;
        self.check_peer(from, OP)?;
        let seq = self.shared.entered[self.rank].fetch_add(1, Ordering::Relaxed);
        let send_tag = {
            let mut s = self.sent.lock().unwrap_or_else(|e| e.into_inner());
            s[to] += 1;
            Tag::P2p(s[to] - 1)
        };
        self.post(to, send_tag, Payload::whole(x, self.rank, OP)?, OP)?;
        let recv_tag = {
            let mut r = self.received.lock().unwrap_or_else(|e| e.into_inner());
            r[from] += 1;
            Tag::P2p(r[from] - 1)
        };
        Ok(Box::new(LocalPending {
            shared: self.shared.clone(),
            rank: self.rank,
            from,
            tag: recv_tag,
            timeout: self.timeout,
            secs: self.timeout_secs(),
            seq,
        }))
    }

    fn all_to_all_counts(&self, counts: &[usize]) -> Result<Vec<usize>> {
        self.all_to_all_count_blocks(counts, 1)
    }

    fn all_to_all_count_blocks(&self, counts: &[usize], block: usize) -> Result<Vec<usize>> {
        const OP: &str = "all_to_all_counts";
        let n = self.size();
        if counts.len() != n * block {
            return Err(self.fail(OP, format!("{} counts for {n} ranks of {block}", counts.len())));
        }
        let _w = self.watch(OP, None);
        let parts = self.exchange(OP, |dst| Ok(Payload::Counts(counts[dst * block..(dst + 1) * block].to_vec())))?;
        let mut out = Vec::with_capacity(n * block);
        for p in parts {
            out.extend(counts_of(p, self.rank, OP)?);
        }
        Ok(out)
    }

    fn gather_bytes(&self, bytes: &[u8]) -> Result<Option<Vec<Vec<u8>>>> {
        const OP: &str = "gather_bytes";
        let _w = self.watch(OP, None);
        let tag = self.next_coll();
        self.post(0, tag, Payload::Bytes(bytes.to_vec()), OP)?;
        if self.rank != 0 {
            return Ok(None);
        }
        let all = (0..self.size()).map(|src| bytes_of(self.take(src, tag, OP)?, self.rank, OP));
        Ok(Some(all.collect::<Result<_>>()?))
    }

    fn broadcast_bytes(&self, bytes: &[u8]) -> Result<Vec<u8>> {
        const OP: &str = "broadcast_bytes";
        let _w = self.watch(OP, Some(0));
        let tag = self.next_coll();
        if self.rank == 0 {
            for dst in 0..self.size() {
                self.post(dst, tag, Payload::Bytes(bytes.to_vec()), OP)?;
            }
        }
        bytes_of(self.take(0, tag, OP)?, self.rank, OP)
    }

    fn barrier(&self) -> Result<()> {
        let _w = self.watch("barrier", None);
        self.exchange("barrier", |_| Ok(Payload::Counts(Vec::new()))).map(|_| ())
    }

    fn split(&self, color: usize, key: usize) -> Result<Box<dyn Comm>> {
        const OP: &str = "split";
        let n = self.size();
        let all = self.all_to_all_count_blocks(&[color, key].repeat(n), 2)?;
        let mut members: Vec<(usize, usize)> =
            (0..n).filter(|&r| all[2 * r] == color).map(|r| (all[2 * r + 1], r)).collect();
        members.sort_unstable();
        let new_rank = members.iter().position(|&(_, r)| r == self.rank).expect("a rank is in its own color");
        let seq = self.split_seq.fetch_add(1, Ordering::Relaxed);
        let shared = {
            let mut splits = self.shared.splits.lock().unwrap_or_else(|e| e.into_inner());
            let entry = splits.entry((seq, color)).or_insert_with(|| {
                let label = format!("{}/{seq}.{color}", self.shared.label);
                let world = members.iter().map(|&(_, r)| self.shared.world[r]).collect();
                (Shared::new(label, world), members.len())
            });
            let shared = entry.0.clone();
            entry.1 -= 1;
            if entry.1 == 0 {
                splits.remove(&(seq, color));
            }
            shared
        };
        if shared.size != members.len() {
            return Err(
                self.fail(OP, format!("color {color}: group sizes {} and {} disagree", shared.size, members.len()))
            );
        }
        Ok(Box::new(LocalComm::member(new_rank, shared, self.timeout)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{Backend, cpu::CpuBackend};
    use std::thread;

    /// Run `f` on every rank of a local group of `n`, each in its own thread.
    fn on_ranks<T: Send + 'static>(
        n: usize,
        f: impl Fn(LocalComm) -> Result<T> + Send + Sync + 'static,
    ) -> Vec<Result<T>> {
        let f = Arc::new(f);
        let hs: Vec<_> = LocalComm::group(n)
            .into_iter()
            .map(|c| {
                let f = f.clone();
                thread::spawn(move || f(c))
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    }

    #[test]
    fn all_to_all_v_moves_row_blocks() {
        // Rank r sends (r + d) rows to rank d, each row holding [100 r + d, row index].
        let out = on_ranks(3, |c| {
            let b = CpuBackend::new();
            let r = c.rank();
            let send_rows: Vec<usize> = (0..3).map(|d| r + d).collect();
            let v: Vec<f32> =
                (0..3).flat_map(|d| (0..r + d).flat_map(move |i| [(100 * r + d) as f32, i as f32])).collect();
            let x = b.upload(&v, &[v.len() / 2, 2], DType::F32)?;
            let recv_rows: Vec<usize> = (0..3).map(|s| s + r).collect();
            Ok(b.download(&c.all_to_all_v(&x, &send_rows, &recv_rows)?)?)
        });
        for (r, got) in out.into_iter().enumerate() {
            let want: Vec<f32> =
                (0..3).flat_map(|s| (0..s + r).flat_map(move |i| [(100 * s + r) as f32, i as f32])).collect();
            assert_eq!(got.unwrap(), want, "rank {r}");
        }
    }

    #[test]
    fn gather_reduce_counts_bytes() {
        let out = on_ranks(4, |c| {
            let b = CpuBackend::new();
            let r = c.rank() as f32;
            let x = b.upload(&[r, 2.0 * r], &[1, 2], DType::F32)?;
            let g = b.download(&c.all_gather(&x)?)?;
            let s = b.download(&c.all_reduce_sum(&x)?)?;
            let counts: Vec<usize> = (0..4).map(|d| 10 * c.rank() + d).collect();
            let got = c.all_to_all_counts(&counts)?;
            let gb = c.gather_bytes(&[c.rank() as u8])?;
            let bb = c.broadcast_bytes(&[c.rank() as u8 + 7])?;
            c.barrier()?;
            Ok((g, s, got, gb, bb))
        });
        for (r, o) in out.into_iter().enumerate() {
            let (g, s, got, gb, bb) = o.unwrap();
            assert_eq!(g, vec![0., 0., 1., 2., 2., 4., 3., 6.]);
            assert_eq!(s, vec![6., 12.]);
            assert_eq!(got, (0..4).map(|s| 10 * s + r).collect::<Vec<_>>());
            assert_eq!(gb, (r == 0).then(|| vec![vec![0], vec![1], vec![2], vec![3]]));
            assert_eq!(bb, vec![7]);
        }
    }

    #[test]
    fn split_groups_by_color_and_orders_by_key() {
        // 4 ranks, color = rank % 2, key reverses the order: {0, 2} -> ranks (1, 0), {1, 3} -> (1, 0).
        let out = on_ranks(4, |c| {
            let sub = c.split(c.rank() % 2, 10 - c.rank())?;
            let b = CpuBackend::new();
            let x = b.upload(&[c.rank() as f32], &[1], DType::F32)?;
            Ok((sub.rank(), sub.size(), b.download(&sub.all_gather(&x)?)?))
        });
        let out: Vec<_> = out.into_iter().map(|o| o.unwrap()).collect();
        assert_eq!(out[0], (1, 2, vec![2., 0.]));
        assert_eq!(out[2], (0, 2, vec![2., 0.]));
        assert_eq!(out[1], (1, 2, vec![3., 1.]));
        assert_eq!(out[3], (0, 2, vec![3., 1.]));
    }

    #[test]
    fn an_operation_in_flight_names_the_ranks_that_have_not_reached_it() {
        // A label of its own: other tests' groups run operations in this process meanwhile.
        let mut comms = LocalComm::labelled(3, "in-flight-test", DEFAULT_TIMEOUT);
        let late = comms.pop().unwrap();
        let early: Vec<_> = comms
            .into_iter()
            .map(|c| {
                thread::spawn(move || {
                    c.barrier()?;
                    c.barrier()
                })
            })
            .collect();
        late.barrier().unwrap();
        // Ranks 0 and 1 wait in their second barrier; rank 2 has entered one operation only.
        let what = "barrier on comm in-flight-test (rank 0 of 3)";
        let start = Instant::now();
        let expected = vec![Waiting { behind: vec![2], silent: vec![] }];
        let asked = loop {
            let a = crate::watchdog::ask_in_flight(what);
            // Until ranks 0 and 1 have both left the first barrier and entered the second, the answer
            // can name the first, or rank 1 as behind in the second (under load, CI): wait, within
            // bounds, for the state the late rank leaves; a wrong answer stays wrong and fails.
            if a == expected || start.elapsed() > Duration::from_secs(10) {
                break a;
            }
            thread::sleep(Duration::from_millis(10));
        };
        assert_eq!(asked, expected);
        late.barrier().unwrap();
        early.into_iter().for_each(|h| h.join().unwrap().unwrap());
    }

    #[test]
    fn dropped_peer_is_reported_not_waited_for() {
        let mut comms = LocalComm::group(2);
        let c1 = comms.pop().unwrap();
        drop(c1);
        let start = Instant::now();
        match comms[0].barrier() {
            Err(Error::PeerLost { rank: 0, peer: 1, .. }) => {}
            other => panic!("expected PeerLost, got {other:?}"),
        }
        assert!(start.elapsed() < Duration::from_secs(5));
    }
}
