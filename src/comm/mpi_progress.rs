//! How far each MPI rank got, for the watchdog: every rank counts the operations it entered on
//! each communicator (by label, alike on every member), and an overdue operation asks its peers
//! for their count over a duplicate of MPI_COMM_WORLD, so it can name the ranks that have not
//! reached it. Both sides run on the watchdog thread only (MPI_THREAD_MULTIPLE): the main
//! thread may be blocked in the very collective that is late. Asking is bounded: a peer that
//! does not answer in time is named as silent, never waited for.

use crate::watchdog::{self, Waiting};
use mpi::ffi;
use mpi::raw::AsRaw;
use mpi::topology::SimpleCommunicator;
use mpi::traits::*;
use std::collections::HashMap;
use std::os::raw::{c_int, c_void};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const TAG_ASK: c_int = 0x5258;
const TAG_ANSWER: c_int = 0x5259;

struct Channel {
    comm: SimpleCommunicator,
    /// Answers on their way, each with the buffer MPI reads until the send completes.
    answers: Vec<(ffi::MPI_Request, Box<u64>)>,
}

// SAFETY: the communicator and requests are used under the CHANNEL lock only, with
// MPI_THREAD_MULTIPLE (required by `super::mpi::runtime`).
unsafe impl Send for Channel {}

static CHANNEL: Mutex<Option<Channel>> = Mutex::new(None);
static ENTERED: Mutex<Option<HashMap<String, u64>>> = Mutex::new(None);

/// Opens the channel (collective over the world: it duplicates MPI_COMM_WORLD) and has the
/// watchdog thread answer peers' questions. Once per process; later calls do nothing on every rank.
pub fn open(world: &SimpleCommunicator) {
    let mut ch = CHANNEL.lock().unwrap_or_else(|e| e.into_inner());
    if ch.is_none() {
        *ch = Some(Channel { comm: world.duplicate(), answers: Vec::new() });
        watchdog::serve_with(serve);
    }
}

/// Frees the channel before MPI_Finalize (`Runtime`'s drop); answers still in flight complete
/// on their own.
pub fn close() {
    let taken = CHANNEL.lock().unwrap_or_else(|e| e.into_inner()).take();
    if let Some(mut ch) = taken {
        for (mut req, buf) in ch.answers.drain(..) {
            // SAFETY: an active send request may be freed; its 8-byte buffer is leaked so MPI
            // can still read it.
            unsafe { ffi::MPI_Request_free(&mut req) };
            std::mem::forget(buf);
        }
    }
}

/// Counts one more operation entered on the communicator `label`; returns its number (from 0).
pub fn enter(label: &str) -> u64 {
    let mut m = ENTERED.lock().unwrap_or_else(|e| e.into_inner());
    let n = m.get_or_insert_with(HashMap::new).entry(label.to_string()).or_insert(0);
    *n += 1;
    *n - 1
}

fn entered(label: &str) -> u64 {
    ENTERED.lock().unwrap_or_else(|e| e.into_inner()).as_ref().and_then(|m| m.get(label).copied()).unwrap_or(0)
}

/// Answers every question waiting: a peer sends a communicator's label, this rank its count.
fn serve() {
    let mut ch = CHANNEL.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(ch) = ch.as_mut() {
        answer(ch);
    }
}

fn answer(ch: &mut Channel) {
    let comm = ch.comm.as_raw();
    ch.answers.retain_mut(|(req, _)| {
        let mut done: c_int = 0;
        // SAFETY: `req` is an active request started below; MPI_Test frees it once complete.
        unsafe { ffi::MPI_Test(req, &mut done, ffi::RSMPI_STATUS_IGNORE) };
        done == 0
    });
    loop {
        let mut flag: c_int = 0;
        // SAFETY: a zeroed MPI_Status is a valid output buffer.
        let mut st: ffi::MPI_Status = unsafe { std::mem::zeroed() };
        // SAFETY: probing our own duplicate communicator; outputs are local.
        unsafe { ffi::MPI_Iprobe(ffi::RSMPI_ANY_SOURCE, TAG_ASK, comm, &mut flag, &mut st) };
        if flag == 0 {
            return;
        }
        let mut len: c_int = 0;
        // SAFETY: `st` describes the probed message.
        unsafe { ffi::MPI_Get_count(&st, ffi::RSMPI_UINT8_T, &mut len) };
        let mut buf = vec![0u8; len.max(0) as usize];
        // SAFETY: receives the probed message (already arrived) into a buffer of its length.
        unsafe {
            ffi::MPI_Recv(
                buf.as_mut_ptr() as *mut c_void,
                len,
                ffi::RSMPI_UINT8_T,
                st.MPI_SOURCE,
                TAG_ASK,
                comm,
                ffi::RSMPI_STATUS_IGNORE,
            )
        };
        let count = Box::new(entered(&String::from_utf8_lossy(&buf)));
        let mut req = unsafe { ffi::RSMPI_REQUEST_NULL };
        // SAFETY: the boxed count lives in `answers` until the send completes (or is leaked).
        unsafe {
            ffi::MPI_Isend(
                &*count as *const u64 as *const c_void,
                1,
                ffi::RSMPI_UINT64_T,
                st.MPI_SOURCE,
                TAG_ANSWER,
                comm,
                &mut req,
            )
        };
        ch.answers.push((req, count));
    }
}

/// Asks `peers` (world ranks) how many operations they entered on `label`, for `budget` at most,
/// and names those that have not reached operation `seq` or did not answer.
pub fn ask(label: &str, seq: u64, peers: &[usize], budget: Duration) -> Waiting {
    let mut guard = CHANNEL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(ch) = guard.as_mut() else {
        return Waiting { behind: vec![], silent: peers.to_vec() };
    };
    let comm = ch.comm.as_raw();
    // Leaked: a peer that never answers leaves its requests pending until the job ends.
    let question: &'static [u8] = Box::leak(label.as_bytes().to_vec().into_boxed_slice());
    let counts: &'static mut [u64] = Box::leak(vec![0u64; peers.len()].into_boxed_slice());
    let mut recvs = Vec::with_capacity(peers.len());
    for (i, &p) in peers.iter().enumerate() {
        let (mut send, mut recv) = unsafe { (ffi::RSMPI_REQUEST_NULL, ffi::RSMPI_REQUEST_NULL) };
        // SAFETY: both buffers are leaked ('static); the send request is freed at once (it
        // completes on its own), the receive is tested below.
        unsafe {
            ffi::MPI_Isend(
                question.as_ptr() as *const c_void,
                question.len() as c_int,
                ffi::RSMPI_UINT8_T,
                p as c_int,
                TAG_ASK,
                comm,
                &mut send,
            );
            ffi::MPI_Request_free(&mut send);
            ffi::MPI_Irecv(
                &mut counts[i] as *mut u64 as *mut c_void,
                1,
                ffi::RSMPI_UINT64_T,
                p as c_int,
                TAG_ANSWER,
                comm,
                &mut recv,
            );
        }
        recvs.push(Some(recv));
    }
    let deadline = Instant::now() + budget;
    let mut got: Vec<Option<u64>> = vec![None; peers.len()];
    loop {
        // Peers stuck alike ask this rank at the same time: keep answering them meanwhile.
        answer(ch);
        for (i, r) in recvs.iter_mut().enumerate() {
            if let Some(req) = r {
                let mut done: c_int = 0;
                // SAFETY: an active receive request into the leaked `counts`.
                unsafe { ffi::MPI_Test(req, &mut done, ffi::RSMPI_STATUS_IGNORE) };
                if done != 0 {
                    got[i] = Some(counts[i]);
                    *r = None;
                }
            }
        }
        if recvs.iter().all(Option::is_none) || Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let answered: Vec<(usize, Option<u64>)> = peers.iter().copied().zip(got).collect();
    Waiting::from_counts(seq, &answered)
}
