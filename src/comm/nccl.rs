//! `Comm` over device tensors with NCCL (the only module touching cudarc's nccl).
//!
//! Every NCCL call runs on this comm's own stream. Ordering with the backend's
//! compute stream is explicit: before a transfer the comm stream waits for the work
//! queued so far on the compute stream; after it, the compute stream waits for the
//! transfer (blocking collectives at once, `sendrecv_start` when its `Pending` is
//! waited). Host-side exchanges (counts, bytes, barrier, the NCCL unique id) go
//! through the host `Comm` given at construction (MPI, or a single rank).

use super::{Comm, Error, Pending, Result};
use crate::backend::cuda::{CudaBackend, DeviceData};
use crate::tensor::{DType, Data, Tensor};
use cudarc::driver::{
    CudaContext, CudaEvent, CudaSlice, CudaStream, DevicePtr, DevicePtrMut, DeviceRepr, DriverError, ValidAsZeroBits,
};
use cudarc::nccl::{self, NcclType, ReduceOp, result::NcclError};
use std::ffi::{CStr, c_char};
use std::sync::{Arc, Mutex, MutexGuard};

/// True when libnccl can be loaded (calling NCCL without it panics).
pub fn nccl_present() -> bool {
    // SAFETY: only tries to dlopen the library.
    unsafe { nccl::sys::is_culib_present() }
}

/// An NCCL communicator; the Mutex around it makes calls from several threads take turns.
struct Raw(nccl::Comm);
// SAFETY: an NCCL communicator may be used from any thread as long as calls do not
// overlap, which the Mutex holding `Raw` guarantees.
unsafe impl Send for Raw {}

pub struct NcclComm {
    host: Arc<dyn Comm>,
    ctx: Arc<CudaContext>,
    compute: Arc<CudaStream>,
    comm_stream: Arc<CudaStream>,
    raw: Mutex<Raw>,
    rank: usize,
    size: usize,
}

fn nccl_error(rank: usize, op: &'static str, e: NcclError) -> Error {
    // SAFETY: ncclGetErrorString returns a static NUL-terminated string for any result code.
    let text = unsafe { CStr::from_ptr(nccl::sys::ncclGetErrorString(e.0)) }.to_string_lossy().into_owned();
    Error::Failed { rank, op, msg: format!("NCCL: {text} ({:?})", e.0) }
}

fn cuda_error(rank: usize, op: &'static str, e: DriverError) -> Error {
    Error::Failed { rank, op, msg: format!("CUDA: {e}") }
}

/// Runs `$body` with `$s` bound to the tensor's typed device slice; the body's
/// `CudaSlice` of the same type is wrapped back into `DeviceData`.
macro_rules! typed {
    ($self:ident, $op:expr, $t:expr, |$s:ident| $body:expr) => {
        match &$t.data {
            Data::Device(DeviceData::F32($s)) => DeviceData::F32($body),
            Data::Device(DeviceData::Bf16($s)) => DeviceData::Bf16($body),
            Data::Device(DeviceData::I32($s)) => DeviceData::I32($body),
            _ => return Err($self.fail($op, format!("{:?}: needs a bf16, f32 or i32 device tensor", $t))),
        }
    };
}

/// Runs `$body` on an `Exchange` of any element type, with `$s` the slice sent, `$o` the receiving
/// buffer and `$wrap` the `DeviceData` constructor of that type.
macro_rules! exchange {
    ($p:expr, |$s:ident, $o:ident, $wrap:ident| $body:expr) => {
        match $p {
            Exchange::F32($s, $o) => {
                let $wrap = DeviceData::F32;
                $body
            }
            Exchange::Bf16($s, $o) => {
                let $wrap = DeviceData::Bf16;
                $body
            }
            Exchange::I32($s, $o) => {
                let $wrap = DeviceData::I32;
                $body
            }
        }
    };
}

impl NcclComm {
    /// An NCCL communicator over the ranks of `host`, on the backend's device; the
    /// unique id is made by rank 0 and broadcast through `host`. Collective over `host`.
    pub fn new(host: Arc<dyn Comm>, backend: &CudaBackend, device: usize) -> Result<NcclComm> {
        let ordinal = backend.context().ordinal();
        if ordinal != device {
            let msg = format!("device {device} given, but the backend runs on device {ordinal}");
            return Err(Error::Failed { rank: host.rank(), op: "nccl init", msg });
        }
        Self::with_stream(host, backend.stream().clone())
    }

    /// As `new`, ordering transfers after the work on `compute` (the stream the caller computes on).
    pub fn with_stream(host: Arc<dyn Comm>, compute: Arc<CudaStream>) -> Result<NcclComm> {
        const OP: &str = "nccl init";
        let (rank, size) = (host.rank(), host.size());
        if !nccl_present() {
            return Err(Error::Failed { rank, op: OP, msg: "libnccl not found on the library path".into() });
        }
        // Rank 0 broadcasts an empty id when it cannot make one, so the others fail instead of hanging.
        let mine = match rank {
            0 => match nccl::Id::new() {
                Ok(id) => id.internal().iter().map(|&c| c as u8).collect(),
                Err(e) => {
                    host.broadcast_bytes(&[])?;
                    return Err(nccl_error(rank, OP, e));
                }
            },
            _ => Vec::new(),
        };
        let bytes = host.broadcast_bytes(&mine)?;
        let mut internal = [0 as c_char; 128];
        if bytes.len() != internal.len() {
            let msg = format!("rank 0 sent a {}-byte NCCL id (expected 128)", bytes.len());
            return Err(Error::Failed { rank, op: OP, msg });
        }
        internal.iter_mut().zip(&bytes).for_each(|(c, b)| *c = *b as c_char);
        let ctx = compute.context().clone();
        ctx.bind_to_thread().map_err(|e| cuda_error(rank, OP, e))?;
        let comm_stream = ctx.new_stream().map_err(|e| cuda_error(rank, OP, e))?;
        // ncclCommInitRank waits for every rank of the group: setup's limit applies.
        let _w = crate::watchdog::watch_setup(format!("NCCL init (rank {rank} of {size})"));
        let raw = nccl::Comm::from_rank(comm_stream.clone(), rank, size, nccl::Id::uninit(internal))
            .map_err(|e| nccl_error(rank, OP, e))?;
        Ok(NcclComm { host, ctx, compute, comm_stream, raw: Mutex::new(Raw(raw)), rank, size })
    }

    fn fail(&self, op: &'static str, msg: String) -> Error {
        Error::Failed { rank: self.rank, op, msg }
    }

    fn lock(&self) -> MutexGuard<'_, Raw> {
        self.raw.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Output buffers live on the compute stream, where the caller will use and free them.
    fn alloc<T: DeviceRepr + ValidAsZeroBits>(&self, op: &'static str, len: usize) -> Result<CudaSlice<T>> {
        let r = if len == 0 { self.compute.null() } else { self.compute.alloc_zeros(len) };
        r.map_err(|e| cuda_error(self.rank, op, e))
    }

    /// Watches one collective while the host is inside NCCL (a group end or a call can block until
    /// the peers connect); nothing when the watchdog is off. What the device then waits for is
    /// watched where the host waits on the GPU.
    fn watch(&self, op: &'static str) -> Option<crate::watchdog::Guard> {
        self.watch_for(op, String::new())
    }

    /// As `watch`, with what the call waits for (a send/recv names its peers in this group).
    fn watch_for(&self, op: &'static str, waits: String) -> Option<crate::watchdog::Guard> {
        crate::watchdog::armed()
            .then(|| crate::watchdog::watch(format!("{op} through NCCL (rank {} of {}{waits})", self.rank, self.size)))
    }

    /// The comm stream waits for everything queued on the compute stream so far.
    fn after_compute(&self, op: &'static str) -> Result<()> {
        self.ctx.bind_to_thread().map_err(|e| cuda_error(self.rank, op, e))?;
        self.comm_stream.join(&self.compute).map_err(|e| cuda_error(self.rank, op, e))
    }

    /// Ends an NCCL group started by the caller, even when enqueueing inside it failed.
    fn end_group(&self, op: &'static str, enqueued: std::result::Result<(), NcclError>) -> Result<()> {
        let ended = nccl::group_end();
        enqueued.map_err(|e| nccl_error(self.rank, op, e))?;
        ended.map(|_| ()).map_err(|e| nccl_error(self.rank, op, e))
    }

    /// Kernels of a group launch at group end, after cudarc recorded the buffers' access
    /// events; touching the buffers again records them after the launch, so cudarc's
    /// event tracking (when on) does not free or overwrite them too early.
    fn retouch<T>(&self, read: &CudaSlice<T>, written: &mut CudaSlice<T>) {
        let _r = read.device_ptr(&self.comm_stream);
        let _w = written.device_ptr_mut(&self.comm_stream);
    }

    fn a2a<T: NcclType + DeviceRepr + ValidAsZeroBits>(
        &self,
        src: &CudaSlice<T>,
        width: usize,
        send_rows: &[usize],
        recv_rows: &[usize],
    ) -> Result<CudaSlice<T>> {
        const OP: &str = "all_to_all_v";
        let _w = self.watch(OP);
        let mut out = self.alloc::<T>(OP, recv_rows.iter().sum::<usize>() * width)?;
        self.after_compute(OP)?;
        let raw = self.lock();
        nccl::group_start().map_err(|e| nccl_error(self.rank, OP, e))?;
        let enqueued = (|| {
            let (mut so, mut ro) = (0, 0);
            for peer in 0..self.size {
                // Both sides skip empty blocks: the counts were exchanged beforehand.
                let (s, r) = (send_rows[peer] * width, recv_rows[peer] * width);
                if s > 0 {
                    raw.0.send(&src.slice(so..so + s), peer as i32)?;
                }
                if r > 0 {
                    raw.0.recv(&mut out.slice_mut(ro..ro + r), peer as i32)?;
                }
                (so, ro) = (so + s, ro + r);
            }
            Ok(())
        })();
        self.end_group(OP, enqueued)?;
        self.retouch(src, &mut out);
        drop(raw);
        self.compute.join(&self.comm_stream).map_err(|e| cuda_error(self.rank, OP, e))?;
        Ok(out)
    }

    fn gather<T: NcclType + DeviceRepr + ValidAsZeroBits>(&self, src: &CudaSlice<T>) -> Result<CudaSlice<T>> {
        const OP: &str = "all_gather";
        let _w = self.watch(OP);
        let mut out = self.alloc::<T>(OP, src.len() * self.size)?;
        self.after_compute(OP)?;
        let raw = self.lock();
        raw.0.all_gather(src, &mut out).map_err(|e| nccl_error(self.rank, OP, e))?;
        drop(raw);
        self.compute.join(&self.comm_stream).map_err(|e| cuda_error(self.rank, OP, e))?;
        Ok(out)
    }

    fn reduce<T: NcclType + DeviceRepr + ValidAsZeroBits>(&self, src: &CudaSlice<T>) -> Result<CudaSlice<T>> {
        const OP: &str = "all_reduce_sum";
        let _w = self.watch(OP);
        let mut out = self.alloc::<T>(OP, src.len())?;
        self.after_compute(OP)?;
        let raw = self.lock();
        raw.0.all_reduce(src, &mut out, &ReduceOp::Sum).map_err(|e| nccl_error(self.rank, OP, e))?;
        drop(raw);
        self.compute.join(&self.comm_stream).map_err(|e| cuda_error(self.rank, OP, e))?;
        Ok(out)
    }

    /// Sends every tensor of `xs` to `to` and receives as many, shaped alike, from `from`, in ONE
    /// NCCL group: one kernel and one latency for all of them.
    fn sendrecv_group(&self, xs: &[&Tensor], to: usize, from: usize) -> Result<Vec<DeviceData>> {
        const OP: &str = "sendrecv_start";
        let _w = self.watch_for(OP, format!("; receiving from rank {from}, sending to rank {to}"));
        let mut pairs = xs
            .iter()
            .map(|x| {
                Ok(match &x.data {
                    Data::Device(DeviceData::F32(s)) => Exchange::F32(s, self.alloc(OP, s.len())?),
                    Data::Device(DeviceData::Bf16(s)) => Exchange::Bf16(s, self.alloc(OP, s.len())?),
                    Data::Device(DeviceData::I32(s)) => Exchange::I32(s, self.alloc(OP, s.len())?),
                    _ => return Err(self.fail(OP, format!("{x:?}: needs a bf16, f32 or i32 device tensor"))),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        self.after_compute(OP)?;
        let raw = self.lock();
        nccl::group_start().map_err(|e| nccl_error(self.rank, OP, e))?;
        let enqueued = pairs.iter_mut().try_for_each(|p| {
            exchange!(p, |s, o, _wrap| raw.0.send(*s, to as i32).and_then(|_| raw.0.recv(o, from as i32)).map(|_| ()))
        });
        self.end_group(OP, enqueued)?;
        Ok(pairs
            .into_iter()
            .map(|p| {
                exchange!(p, |s, o, wrap| {
                    let mut o = o;
                    self.retouch(s, &mut o);
                    wrap(o)
                })
            })
            .collect())
    }

    /// Device tensors of equal shape on every rank (NCCL's all-gather needs equal counts).
    fn check_same_rows(&self, op: &'static str, rows: usize) -> Result<()> {
        let all = self.host.all_to_all_counts(&vec![rows; self.size])?;
        if all.iter().any(|&r| r != rows) {
            return Err(self.fail(op, format!("ranks passed different row counts {all:?}")));
        }
        Ok(())
    }
}

fn device_tensor(shape: Vec<usize>, dtype: DType, data: DeviceData) -> Tensor {
    Tensor { shape, dtype, data: Data::Device(data), ledger: None }
}

/// A tensor to send and the buffer that receives its peer's, of one element type.
enum Exchange<'a> {
    F32(&'a CudaSlice<f32>, CudaSlice<f32>),
    Bf16(&'a CudaSlice<half::bf16>, CudaSlice<half::bf16>),
    I32(&'a CudaSlice<i32>, CudaSlice<i32>),
}

struct NcclPending {
    out: Tensor,
    done: Arc<CudaEvent>,
    compute: Arc<CudaStream>,
    rank: usize,
}

impl Pending for NcclPending {
    fn wait(self: Box<Self>) -> Result<Tensor> {
        // Only the compute stream waits; the host carries on queueing work.
        self.compute.wait(&self.done).map_err(|e| cuda_error(self.rank, "sendrecv wait", e))?;
        Ok(self.out)
    }
}

impl Comm for NcclComm {
    fn rank(&self) -> usize {
        self.rank
    }
    fn size(&self) -> usize {
        self.size
    }
    fn name(&self) -> &'static str {
        "nccl"
    }

    fn all_to_all_v(&self, send: &Tensor, send_rows: &[usize], recv_rows: &[usize]) -> Result<Tensor> {
        const OP: &str = "all_to_all_v";
        let n = self.size;
        let rows = send.shape().first().copied().unwrap_or(0);
        if send_rows.len() != n || recv_rows.len() != n || send_rows.iter().sum::<usize>() != rows {
            let msg = format!("send {send:?}, send_rows {send_rows:?}, recv_rows {recv_rows:?} for {n} ranks");
            return Err(self.fail(OP, msg));
        }
        let width = send.numel() / rows.max(1);
        let data = typed!(self, OP, send, |s| self.a2a(s, width, send_rows, recv_rows)?);
        let mut shape = send.shape().to_vec();
        shape[0] = recv_rows.iter().sum();
        Ok(device_tensor(shape, send.dtype(), data))
    }

    fn all_gather(&self, x: &Tensor) -> Result<Tensor> {
        const OP: &str = "all_gather";
        let rows = x.shape().first().copied().unwrap_or(1);
        if cfg!(debug_assertions) {
            self.check_same_rows(OP, rows)?;
        }
        let data = typed!(self, OP, x, |s| self.gather(s)?);
        let mut shape = x.shape().to_vec();
        match shape.first_mut() {
            Some(r) => *r *= self.size,
            None => shape.push(self.size),
        }
        Ok(device_tensor(shape, x.dtype(), data))
    }

    fn all_reduce_sum(&self, x: &Tensor) -> Result<Tensor> {
        let data = typed!(self, "all_reduce_sum", x, |s| self.reduce(s)?);
        Ok(device_tensor(x.shape().to_vec(), x.dtype(), data))
    }

    fn sendrecv_start(&self, x: &Tensor, to: usize, from: usize) -> Result<Box<dyn Pending>> {
        let mut one = self.sendrecv_all_start(&[x], to, from)?;
        Ok(one.pop().expect("one pending per tensor"))
    }

    fn sendrecv_all_start(&self, xs: &[&Tensor], to: usize, from: usize) -> Result<Vec<Box<dyn Pending>>> {
        const OP: &str = "sendrecv_start";
        if to >= self.size || from >= self.size {
            return Err(self.fail(OP, format!("peers to {to}, from {from} outside the group of {}", self.size)));
        }
        let outs = self.sendrecv_group(xs, to, from)?;
        // One event marks the end of the group's kernel: every transfer of it is done then.
        let done = Arc::new(self.comm_stream.record_event(None).map_err(|e| cuda_error(self.rank, OP, e))?);
        Ok(xs
            .iter()
            .zip(outs)
            .map(|(x, data)| {
                let out = device_tensor(x.shape().to_vec(), x.dtype(), data);
                Box::new(NcclPending { out, done: done.clone(), compute: self.compute.clone(), rank: self.rank })
                    as Box<dyn Pending>
            })
            .collect())
    }

    fn all_to_all_counts(&self, counts: &[usize]) -> Result<Vec<usize>> {
        self.host.all_to_all_counts(counts)
    }
    fn all_to_all_count_blocks(&self, counts: &[usize], block: usize) -> Result<Vec<usize>> {
        self.host.all_to_all_count_blocks(counts, block)
    }
    fn gather_bytes(&self, bytes: &[u8]) -> Result<Option<Vec<Vec<u8>>>> {
        self.host.gather_bytes(bytes)
    }
    fn broadcast_bytes(&self, bytes: &[u8]) -> Result<Vec<u8>> {
        self.host.broadcast_bytes(bytes)
    }
    fn barrier(&self) -> Result<()> {
        // Device work queued so far must finish too, or a barrier would not order timings.
        self.compute.synchronize().map_err(|e| cuda_error(self.rank, "barrier", e))?;
        self.host.barrier()
    }

    fn split(&self, color: usize, key: usize) -> Result<Box<dyn Comm>> {
        let sub: Arc<dyn Comm> = Arc::from(self.host.split(color, key)?);
        Ok(Box::new(NcclComm::with_stream(sub, self.compute.clone())?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::comm::local::LocalComm;

    fn upload(stream: &Arc<CudaStream>, v: &[f32], shape: &[usize]) -> Tensor {
        let s = stream.clone_htod(v).unwrap();
        device_tensor(shape.to_vec(), DType::F32, DeviceData::F32(s))
    }

    fn download(stream: &Arc<CudaStream>, t: &Tensor) -> Vec<f32> {
        match &t.data {
            Data::Device(DeviceData::F32(s)) => stream.clone_dtoh(s).unwrap(),
            _ => panic!("{t:?} is not a device f32 tensor"),
        }
    }

    /// Written straight to stderr: the test harness captures `println!`, and a skip must be seen.
    fn skipped(line: &str) {
        use std::io::Write;
        let _ = writeln!(std::io::stderr(), "{line}");
    }

    /// Runs on 2 GPUs with libnccl, one thread per rank, without the CUDA backend:
    /// each rank's data is a function of (rank, index), so each checks its own output.
    #[test]
    fn nccl_collectives_on_two_gpus() {
        let gpus = if crate::backend::cuda::driver_present() { CudaContext::device_count().unwrap_or(0) } else { 0 };
        if gpus < 2 || !nccl_present() {
            skipped(&format!("SKIPPED nccl_collectives_on_two_gpus: needs 2 GPUs and libnccl (found {gpus} GPUs)"));
            return;
        }
        let handles: Vec<_> = LocalComm::group(2)
            .into_iter()
            .enumerate()
            .map(|(r, host)| {
                std::thread::spawn(move || {
                    let ctx = CudaContext::new(r).unwrap();
                    let stream = ctx.default_stream();
                    let c = NcclComm::with_stream(Arc::new(host), stream.clone()).unwrap();
                    let rf = r as f32;
                    // all_to_all_v: rank r sends r+1+d rows of width 2 to rank d, rows filled with 10 r + d.
                    let send_rows: Vec<usize> = (0..2).map(|d| r + 1 + d).collect();
                    let v: Vec<f32> = (0..2).flat_map(|d| vec![(10 * r + d) as f32; 2 * (r + 1 + d)]).collect();
                    let x = upload(&stream, &v, &[v.len() / 2, 2]);
                    let recv_rows: Vec<usize> = (0..2).map(|s| s + 1 + r).collect();
                    let y = c.all_to_all_v(&x, &send_rows, &recv_rows).unwrap();
                    let want: Vec<f32> = (0..2).flat_map(|s| vec![(10 * s + r) as f32; 2 * (s + 1 + r)]).collect();
                    assert_eq!(download(&stream, &y), want, "all_to_all_v rank {r}");
                    let x = upload(&stream, &[rf, rf + 0.5], &[1, 2]);
                    assert_eq!(download(&stream, &c.all_gather(&x).unwrap()), vec![0., 0.5, 1., 1.5]);
                    assert_eq!(download(&stream, &c.all_reduce_sum(&x).unwrap()), vec![1., 2.]);
                    let p = c.sendrecv_start(&x, 1 - r, 1 - r).unwrap();
                    let got = p.wait().unwrap();
                    let other = (1 - r) as f32;
                    assert_eq!(download(&stream, &got), vec![other, other + 0.5], "sendrecv rank {r}");
                    // Two tensors of different lengths in one group come back in order.
                    let y = upload(&stream, &[rf * 2.0], &[1, 1]);
                    let ps = c.sendrecv_all_start(&[&x, &y], 1 - r, 1 - r).unwrap();
                    let got: Vec<Vec<f32>> = ps.into_iter().map(|p| download(&stream, &p.wait().unwrap())).collect();
                    assert_eq!(got, vec![vec![other, other + 0.5], vec![other * 2.0]], "sendrecv_all rank {r}");
                    let sub = c.split(0, r).unwrap();
                    assert_eq!(download(&stream, &sub.all_reduce_sum(&x).unwrap()), vec![1., 2.]);
                })
            })
            .collect();
        handles.into_iter().for_each(|h| h.join().unwrap());
    }
}
