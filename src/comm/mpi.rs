//! `Comm` over MPI on host tensors (the CPU backend's storage), through rsmpi. This and
//! `mpi_progress` (the watchdog's channel) are the only modules that touch rsmpi: `world.rs`
//! reaches MPI through `runtime`, `processor_name` and `abort` here.
//!
//! Errors inside MPI itself end the job (MPI's default handler, MPI_ERRORS_ARE_FATAL);
//! argument errors found here are returned. Every call is registered with the watchdog.

use super::{Comm, Error, Pending, Result};
use crate::tensor::{DType, Data, Tensor, round_to};
use crate::watchdog;
use mpi::collective::SystemOperation;
use mpi::datatype::{Equivalence, Partition, PartitionMut};
use mpi::environment::{Threading, Universe};
use mpi::ffi;
use mpi::raw::AsRaw;
use mpi::topology::{Color, SimpleCommunicator};
use mpi::traits::*;
use std::os::raw::{c_int, c_void};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

/// Keeps MPI initialised; MPI_Finalize runs when the last holder (world, communicators,
/// pending transfers) drops.
pub struct Runtime {
    _universe: Universe,
    pub threading: Threading,
}

impl Drop for Runtime {
    fn drop(&mut self) {
        // Before the universe's MPI_Finalize: the watchdog's channel is a communicator too.
        super::mpi_progress::close();
    }
}

enum InitState {
    Never,
    Live(Weak<Runtime>),
}

static STATE: Mutex<InitState> = Mutex::new(InitState::Never);

/// MPI for this process, initialised on first use with MPI_THREAD_MULTIPLE required
/// (the watchdog aborts from its own thread; requests complete on other threads). MPI
/// allows one initialisation per process.
pub fn runtime() -> std::result::Result<Arc<Runtime>, String> {
    let mut s = STATE.lock().unwrap_or_else(|e| e.into_inner());
    if let InitState::Live(w) = &*s {
        return w.upgrade().ok_or_else(|| "MPI was already finalised in this process and cannot start again".into());
    }
    let (universe, threading) = mpi::initialize_with_threading(Threading::Multiple)
        .ok_or("MPI was initialised outside rwm-dist; it can be initialised only once per process")?;
    // Communicators and pending requests move between threads (SAFETY notes below): without
    // MPI_THREAD_MULTIPLE that is undefined, so refuse rather than warn.
    if threading < Threading::Multiple {
        return Err(format!(
            "this MPI library provides {threading:?} threading, not MPI_THREAD_MULTIPLE, which rwm-dist needs \
             (use an Open MPI or MPICH built with thread support)"
        ));
    }
    let rt = Arc::new(Runtime { _universe: universe, threading });
    *s = InitState::Live(Arc::downgrade(&rt));
    Ok(rt)
}

/// The host name as MPI reports it (MPI_Get_processor_name).
pub fn processor_name() -> std::result::Result<String, String> {
    mpi::environment::processor_name().map_err(|e| format!("MPI_Get_processor_name: {e}"))
}

/// End every rank of the job (MPI_Abort on the world); exit this process if MPI is not running.
pub fn abort(code: i32) -> ! {
    if mpi::environment::is_initialized() && !mpi::environment::is_finalized() {
        SimpleCommunicator::world().abort(code)
    }
    std::process::exit(code)
}

pub struct MpiComm {
    // Declared before `rt` so the communicator is freed before MPI_Finalize.
    comm: SimpleCommunicator,
    rank: usize,
    size: usize,
    /// Alike on every member: "world", then "/SPLIT.COLOR" per split (counts progress by it).
    label: String,
    /// The world rank of each member.
    world_ranks: Vec<usize>,
    splits: AtomicU64,
    rt: Arc<Runtime>,
}

// SAFETY: an MPI communicator handle may be used from any thread once MPI runs with
// MPI_THREAD_MULTIPLE, which `runtime` requests; rsmpi marks it !Send only because the
// handle is a raw pointer in Open MPI.
unsafe impl Send for MpiComm {}
unsafe impl Sync for MpiComm {}

const SENDRECV_TAG: c_int = 0x5257;

fn dtype_code(d: DType) -> u64 {
    match d {
        DType::F32 => 0,
        DType::Bf16 => 1,
        DType::F8 => 2,
        DType::I32 => 3,
    }
}

impl MpiComm {
    /// MPI_COMM_WORLD.
    /// MPI_COMM_WORLD. Collective: also opens the watchdog's channel (`mpi_progress`).
    pub fn world(rt: Arc<Runtime>) -> MpiComm {
        let comm = SimpleCommunicator::world();
        let (rank, size) = (comm.rank() as usize, comm.size() as usize);
        super::mpi_progress::open(&comm);
        MpiComm { comm, rank, size, label: "world".into(), world_ranks: (0..size).collect(), splits: 0.into(), rt }
    }

    /// Names the communicator in errors and watchdog messages.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Collective over this communicator: ranks with equal `color` form a new communicator,
    /// ordered by `key`.
    pub fn split_labeled(&self, color: usize, key: usize, label: &str) -> Result<MpiComm> {
        let _w = self.watch("split");
        let c = c_int::try_from(color).map_err(|_| self.err("split", format!("color {color} exceeds a C int")))?;
        let k = c_int::try_from(key).map_err(|_| self.err("split", format!("key {key} exceeds a C int")))?;
        let comm = self
            .comm
            .split_by_color_with_key(Color::with_value(c), k)
            .ok_or_else(|| self.err("split", "MPI returned no communicator".into()))?;
        let (rank, size) = (comm.rank() as usize, comm.size() as usize);
        let members: Vec<mpi::Rank> = (0..size as mpi::Rank).collect();
        let world_ranks = comm
            .group()
            .translate_ranks(&members, &SimpleCommunicator::world().group())
            .into_iter()
            .map(|r| r.map_or(usize::MAX, |r| r as usize))
            .collect();
        Ok(MpiComm { comm, rank, size, label: label.to_string(), world_ranks, splits: 0.into(), rt: self.rt.clone() })
    }

    /// Every rank's bytes, in rank order, on every rank.
    pub fn all_gather_bytes(&self, bytes: &[u8]) -> Result<Vec<Vec<u8>>> {
        let _w = self.watch("all_gather_bytes");
        let mut lens = vec![0u64; self.size];
        self.comm.all_gather_into(&(bytes.len() as u64), &mut lens[..]);
        let counts = self.counts("all_gather_bytes", lens.iter().map(|&l| l as usize))?;
        let displs = self.displs("all_gather_bytes", &counts)?;
        let mut buf = vec![0u8; lens.iter().sum::<u64>() as usize];
        {
            let mut p = PartitionMut::new(&mut buf[..], &counts[..], &displs[..]);
            self.comm.all_gather_varcount_into(bytes, &mut p);
        }
        Ok(split_at(&buf, &counts))
    }

    fn err(&self, op: &'static str, msg: String) -> Error {
        Error::Failed { rank: self.rank, op, msg: format!("comm {}: {msg}", self.label) }
    }

    /// Counts `op` as entered on this communicator and watches it; overdue, it asks the peers
    /// (every other member, or the one it receives `from`) whether they reached it.
    fn watch_from(&self, op: &str, from: Option<usize>) -> watchdog::Guard {
        let seq = super::mpi_progress::enter(&self.label);
        let peers: Vec<usize> = match from {
            Some(p) => vec![self.world_ranks[p]],
            None => (0..self.size).filter(|&p| p != self.rank).map(|p| self.world_ranks[p]).collect(),
        };
        let label = self.label.clone();
        let ask: watchdog::AskFn = Box::new(move |budget| super::mpi_progress::ask(&label, seq, &peers, budget));
        let what = format!("{op} on comm {} (rank {} of {})", self.label, self.rank, self.size);
        watchdog::watch_waiting(what, None, ask)
    }

    fn watch(&self, op: &str) -> watchdog::Guard {
        self.watch_from(op, None)
    }

    fn counts(&self, op: &'static str, v: impl Iterator<Item = usize>) -> Result<Vec<c_int>> {
        v.map(|n| {
            c_int::try_from(n)
                .map_err(|_| self.err(op, format!("{n} elements exceed MPI's int count; split the message")))
        })
        .collect()
    }

    fn displs(&self, op: &'static str, counts: &[c_int]) -> Result<Vec<c_int>> {
        let mut at: i64 = 0;
        let mut out = Vec::with_capacity(counts.len());
        for &c in counts {
            out.push(c_int::try_from(at).map_err(|_| self.err(op, format!("offset {at} exceeds MPI's int range")))?);
            at += c as i64;
        }
        Ok(out)
    }

    fn alltoallv<T: Equivalence + Copy + Default>(
        &self,
        op: &'static str,
        send: &[T],
        sc: &[c_int],
        rc: &[c_int],
    ) -> Result<Vec<T>> {
        let (sd, rd) = (self.displs(op, sc)?, self.displs(op, rc)?);
        let mut recv = vec![T::default(); rc.iter().map(|&c| c as usize).sum()];
        {
            let sp = Partition::new(send, sc, &sd[..]);
            let mut rp = PartitionMut::new(&mut recv[..], rc, &rd[..]);
            self.comm.all_to_all_varcount_into(&sp, &mut rp);
        }
        Ok(recv)
    }

    fn allgatherv<T: Equivalence + Copy + Default>(
        &self,
        op: &'static str,
        send: &[T],
        rc: &[c_int],
    ) -> Result<Vec<T>> {
        let rd = self.displs(op, rc)?;
        let mut recv = vec![T::default(); rc.iter().map(|&c| c as usize).sum()];
        {
            let mut rp = PartitionMut::new(&mut recv[..], rc, &rd[..]);
            self.comm.all_gather_varcount_into(send, &mut rp);
        }
        Ok(recv)
    }
}

/// Borrowed host storage of a tensor.
enum Host<'a> {
    F32(&'a [f32]),
    I32(&'a [i32]),
}

fn host<'a>(t: &'a Tensor, rank: usize, op: &'static str) -> Result<Host<'a>> {
    match &t.data {
        Data::Host(v) => Ok(Host::F32(v)),
        Data::HostI32(v) => Ok(Host::I32(v)),
        Data::Device(_) => Err(Error::Failed {
            rank,
            op,
            msg: format!("{t:?} is in GPU memory; the MPI communicator moves host tensors (use NCCL for GPU tensors)"),
        }),
    }
}

/// (rows, elements per row) of a tensor seen as rows along its first dimension.
fn rows(t: &Tensor, rank: usize, op: &'static str) -> Result<(usize, usize)> {
    match t.shape.split_first() {
        Some((&r, rest)) => Ok((r, rest.iter().product())),
        None => {
            Err(Error::Failed { rank, op, msg: "a scalar has no rows; give the tensor at least one dimension".into() })
        }
    }
}

/// A host tensor of `rows` rows shaped like `like` after its first dimension.
fn with_rows_f32(like: &Tensor, rows: usize, dtype: DType, v: Vec<f32>) -> Tensor {
    let mut shape = like.shape.clone();
    shape[0] = rows;
    Tensor::host(&shape, dtype, v)
}

fn with_rows_i32(like: &Tensor, rows: usize, v: Vec<i32>) -> Tensor {
    let mut shape = like.shape.clone();
    shape[0] = rows;
    Tensor::host_i32(&shape, v)
}

fn split_at(buf: &[u8], counts: &[c_int]) -> Vec<Vec<u8>> {
    let mut at = 0;
    counts
        .iter()
        .map(|&c| {
            let part = buf[at..at + c as usize].to_vec();
            at += c as usize;
            part
        })
        .collect()
}

enum RecvBuf {
    F32(Vec<f32>),
    I32(Vec<i32>),
}

/// An Isend/Irecv pair whose buffers live here until both complete.
struct MpiPending {
    reqs: [ffi::MPI_Request; 2],
    // Read by MPI through a raw pointer until the send completes.
    _send: RecvBuf,
    recv: Option<RecvBuf>,
    shape: Vec<usize>,
    dtype: DType,
    _watch: watchdog::Guard,
    _rt: Arc<Runtime>,
}

// SAFETY: the requests and buffers are owned here and completed by whichever thread
// calls `wait` (or drop); MPI runs with MPI_THREAD_MULTIPLE.
unsafe impl Send for MpiPending {}

impl MpiPending {
    fn complete(&mut self) {
        if self.reqs.iter().any(|r| *r != unsafe { ffi::RSMPI_REQUEST_NULL }) {
            // SAFETY: both requests were started by MPI_Isend/MPI_Irecv on buffers owned by self.
            unsafe { ffi::MPI_Waitall(2, self.reqs.as_mut_ptr(), ffi::RSMPI_STATUSES_IGNORE) };
        }
    }
}

impl Pending for MpiPending {
    fn wait(mut self: Box<Self>) -> Result<Tensor> {
        self.complete();
        Ok(match self.recv.take().expect("waited once") {
            RecvBuf::F32(v) => Tensor::host(&self.shape, self.dtype, v),
            RecvBuf::I32(v) => Tensor::host_i32(&self.shape, v),
        })
    }
}

impl Drop for MpiPending {
    fn drop(&mut self) {
        // Never free a buffer MPI may still write into.
        self.complete();
    }
}

impl Comm for MpiComm {
    fn rank(&self) -> usize {
        self.rank
    }
    fn size(&self) -> usize {
        self.size
    }
    fn name(&self) -> &'static str {
        "mpi"
    }

    fn all_to_all_v(&self, send: &Tensor, send_rows: &[usize], recv_rows: &[usize]) -> Result<Tensor> {
        const OP: &str = "all_to_all_v";
        let _w = self.watch(OP);
        let (n, row) = rows(send, self.rank, OP)?;
        if send_rows.len() != self.size || recv_rows.len() != self.size {
            return Err(self.err(
                OP,
                format!(
                    "send_rows has {} and recv_rows {} entries for {} ranks",
                    send_rows.len(),
                    recv_rows.len(),
                    self.size
                ),
            ));
        }
        if send_rows.iter().sum::<usize>() != n {
            return Err(self.err(
                OP,
                format!(
                    "send_rows {send_rows:?} add up to {}, the tensor has {n} rows",
                    send_rows.iter().sum::<usize>()
                ),
            ));
        }
        let sc = self.counts(OP, send_rows.iter().map(|r| r * row))?;
        let rc = self.counts(OP, recv_rows.iter().map(|r| r * row))?;
        let total: usize = recv_rows.iter().sum();
        Ok(match host(send, self.rank, OP)? {
            Host::F32(v) => with_rows_f32(send, total, send.dtype, self.alltoallv(OP, v, &sc, &rc)?),
            Host::I32(v) => with_rows_i32(send, total, self.alltoallv(OP, v, &sc, &rc)?),
        })
    }

    fn all_gather(&self, x: &Tensor) -> Result<Tensor> {
        const OP: &str = "all_gather";
        let _w = self.watch(OP);
        let (n, row) = rows(x, self.rank, OP)?;
        let data = host(x, self.rank, OP)?;
        // Rows may differ per rank; row length and dtype must not.
        let mine = [n as u64, row as u64, dtype_code(x.dtype)];
        let mut meta = vec![0u64; 3 * self.size];
        self.comm.all_gather_into(&mine[..], &mut meta[..]);
        let of = |r: usize| &meta[3 * r..3 * r + 3];
        if let Some(bad) = (0..self.size).find(|&r| of(r)[1..] != of(0)[1..]) {
            return Err(self.err(
                OP,
                format!(
                    "rank {bad} gives rows of {} elements (dtype code {}), rank 0 rows of {} (dtype code {})",
                    of(bad)[1],
                    of(bad)[2],
                    of(0)[1],
                    of(0)[2]
                ),
            ));
        }
        let rc = self.counts(OP, (0..self.size).map(|r| of(r)[0] as usize * row))?;
        let total = (0..self.size).map(|r| of(r)[0] as usize).sum();
        Ok(match data {
            Host::F32(v) => with_rows_f32(x, total, x.dtype, self.allgatherv(OP, v, &rc)?),
            Host::I32(v) => with_rows_i32(x, total, self.allgatherv(OP, v, &rc)?),
        })
    }

    /// Every rank must pass the same shape and dtype (MPI ends the job otherwise).
    fn all_reduce_sum(&self, x: &Tensor) -> Result<Tensor> {
        const OP: &str = "all_reduce_sum";
        let _w = self.watch(OP);
        Ok(match host(x, self.rank, OP)? {
            Host::F32(v) => {
                let mut out = vec![0f32; v.len()];
                self.comm.all_reduce_into(v, &mut out[..], SystemOperation::sum());
                round_to(x.dtype, &mut out);
                Tensor::host(&x.shape, x.dtype, out)
            }
            Host::I32(v) => {
                let mut out = vec![0i32; v.len()];
                self.comm.all_reduce_into(v, &mut out[..], SystemOperation::sum());
                Tensor::host_i32(&x.shape, out)
            }
        })
    }

    fn sendrecv_start(&self, x: &Tensor, to: usize, from: usize) -> Result<Box<dyn Pending>> {
        const OP: &str = "sendrecv_start";
        if to >= self.size || from >= self.size {
            return Err(self.err(OP, format!("to {to} and from {from} must be below the size {}", self.size)));
        }
        let watch = self.watch_from(&format!("sendrecv to rank {to} from rank {from}"), Some(from));
        let (send, recv, n, dt) = match host(x, self.rank, OP)? {
            Host::F32(v) => (
                RecvBuf::F32(v.to_vec()),
                RecvBuf::F32(vec![0.0; v.len()]),
                v.len(),
                f32::equivalent_datatype().as_raw(),
            ),
            Host::I32(v) => {
                (RecvBuf::I32(v.to_vec()), RecvBuf::I32(vec![0; v.len()]), v.len(), i32::equivalent_datatype().as_raw())
            }
        };
        let count = self.counts(OP, std::iter::once(n))?[0];
        let mut p = MpiPending {
            reqs: unsafe { [ffi::RSMPI_REQUEST_NULL; 2] },
            _send: send,
            recv: Some(recv),
            shape: x.shape.clone(),
            dtype: x.dtype,
            _watch: watch,
            _rt: self.rt.clone(),
        };
        let send_ptr = match &p._send {
            RecvBuf::F32(v) => v.as_ptr() as *const c_void,
            RecvBuf::I32(v) => v.as_ptr() as *const c_void,
        };
        let recv_ptr = match p.recv.as_mut().expect("just set") {
            RecvBuf::F32(v) => v.as_mut_ptr() as *mut c_void,
            RecvBuf::I32(v) => v.as_mut_ptr() as *mut c_void,
        };
        let comm = self.comm.as_raw();
        // SAFETY: the buffers are heap allocations owned by `p`, which completes both
        // requests before they are read or freed (`wait` or drop); counts fit their length.
        unsafe {
            ffi::MPI_Irecv(recv_ptr, count, dt, from as c_int, SENDRECV_TAG, comm, &mut p.reqs[0]);
            ffi::MPI_Isend(send_ptr, count, dt, to as c_int, SENDRECV_TAG, comm, &mut p.reqs[1]);
        }
        Ok(Box::new(p))
    }

    fn all_to_all_counts(&self, counts: &[usize]) -> Result<Vec<usize>> {
        const OP: &str = "all_to_all_counts";
        let _w = self.watch(OP);
        if counts.len() != self.size {
            return Err(self.err(OP, format!("{} counts for {} ranks", counts.len(), self.size)));
        }
        let send: Vec<u64> = counts.iter().map(|&c| c as u64).collect();
        let mut recv = vec![0u64; self.size];
        self.comm.all_to_all_into(&send[..], &mut recv[..]);
        Ok(recv.into_iter().map(|c| c as usize).collect())
    }

    fn gather_bytes(&self, bytes: &[u8]) -> Result<Option<Vec<Vec<u8>>>> {
        const OP: &str = "gather_bytes";
        let _w = self.watch(OP);
        let root = self.comm.process_at_rank(0);
        let len = bytes.len() as u64;
        if self.rank != 0 {
            root.gather_into(&len);
            root.gather_varcount_into(bytes);
            return Ok(None);
        }
        let mut lens = vec![0u64; self.size];
        root.gather_into_root(&len, &mut lens[..]);
        let counts = self.counts(OP, lens.iter().map(|&l| l as usize))?;
        let displs = self.displs(OP, &counts)?;
        let mut buf = vec![0u8; lens.iter().sum::<u64>() as usize];
        {
            let mut p = PartitionMut::new(&mut buf[..], &counts[..], &displs[..]);
            root.gather_varcount_into_root(bytes, &mut p);
        }
        Ok(Some(split_at(&buf, &counts)))
    }

    fn broadcast_bytes(&self, bytes: &[u8]) -> Result<Vec<u8>> {
        let _w = self.watch("broadcast_bytes");
        let root = self.comm.process_at_rank(0);
        let mut len = bytes.len() as u64;
        root.broadcast_into(&mut len);
        let mut buf = if self.rank == 0 { bytes.to_vec() } else { vec![0u8; len as usize] };
        root.broadcast_into(&mut buf[..]);
        Ok(buf)
    }

    fn barrier(&self) -> Result<()> {
        let _w = self.watch("barrier");
        self.comm.barrier();
        Ok(())
    }

    fn all_to_all_count_blocks(&self, counts: &[usize], block: usize) -> Result<Vec<usize>> {
        const OP: &str = "all_to_all_count_blocks";
        let _w = self.watch(OP);
        if counts.len() != self.size * block {
            return Err(self.err(OP, format!("{} counts for {} ranks of {block}", counts.len(), self.size)));
        }
        let send: Vec<u64> = counts.iter().map(|&c| c as u64).collect();
        let mut recv = vec![0u64; self.size * block];
        self.comm.all_to_all_into(&send[..], &mut recv[..]);
        Ok(recv.into_iter().map(|c| c as usize).collect())
    }

    fn split(&self, color: usize, key: usize) -> Result<Box<dyn Comm>> {
        // The split's number keeps labels of sibling splits apart (cp and ep may share a color).
        let label = format!("{}/{}.{color}", self.label, self.splits.fetch_add(1, Ordering::Relaxed));
        Ok(Box::new(self.split_labeled(color, key, &label)?))
    }
}
