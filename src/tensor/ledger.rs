//! Bytes held by host tensors, counted at their dtype's size (what a device would
//! hold, though the host keeps f32), and their high-water mark: the CPU backend's
//! "measured" memory. Process-wide, like a device's memory; a thread that runs one rank
//! of a `--ranks N` world also keeps its own count (`track_this_thread`), so each rank
//! reports its own peak rather than the process's.

use std::cell::RefCell;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Bytes in use and their high-water mark.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct MemStats {
    pub in_use: usize,
    pub peak: usize,
}

/// Bytes in use and their high-water mark.
#[derive(Debug, Default)]
pub struct Ledger {
    in_use: AtomicUsize,
    peak: AtomicUsize,
}

impl Ledger {
    fn add(&self, bytes: usize) {
        let now = self.in_use.fetch_add(bytes, Ordering::Relaxed) + bytes;
        self.peak.fetch_max(now, Ordering::Relaxed);
    }
    fn sub(&self, bytes: usize) {
        self.in_use.fetch_sub(bytes, Ordering::Relaxed);
    }
    fn stats(&self) -> MemStats {
        MemStats { in_use: self.in_use.load(Ordering::Relaxed), peak: self.peak.load(Ordering::Relaxed) }
    }
    fn reset_peak(&self) {
        self.peak.store(self.in_use.load(Ordering::Relaxed), Ordering::Relaxed);
    }
}

static PROCESS: Ledger = Ledger { in_use: AtomicUsize::new(0), peak: AtomicUsize::new(0) };

thread_local! {
    static THREAD: RefCell<Option<Arc<Ledger>>> = const { RefCell::new(None) };
}

/// From now on this thread's tensors are also counted on a ledger of its own, which
/// `host_stats` and `reset_host_peak` then read on this thread.
pub fn track_this_thread() {
    THREAD.with(|t| *t.borrow_mut() = Some(Arc::new(Ledger::default())));
}

/// Charge `bytes` to the process and to this thread's ledger, if any; the tensor keeps the
/// ledger so that its bytes are returned there whichever thread drops it.
pub(crate) fn host_alloc(bytes: usize) -> Option<Arc<Ledger>> {
    PROCESS.add(bytes);
    THREAD.with(|t| t.borrow().clone()).inspect(|l| l.add(bytes))
}

pub(crate) fn host_free(bytes: usize, ledger: Option<&Ledger>) {
    PROCESS.sub(bytes);
    if let Some(l) = ledger {
        l.sub(bytes);
    }
}

/// Bytes a CPU op holds outside any tensor (the naive attention's score matrix), charged to the
/// counter while the guard lives, so the counter sees what the host really holds.
pub(crate) struct Charge {
    bytes: usize,
    ledger: Option<Arc<Ledger>>,
}

impl Charge {
    pub(crate) fn new(bytes: usize) -> Charge {
        Charge { bytes, ledger: host_alloc(bytes) }
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        host_free(self.bytes, self.ledger.as_deref());
    }
}

/// This thread's ledger when it tracks one, else the process's.
pub fn host_stats() -> MemStats {
    THREAD.with(|t| t.borrow().as_ref().map(|l| l.stats())).unwrap_or_else(|| PROCESS.stats())
}

pub fn reset_host_peak() {
    THREAD.with(|t| match t.borrow().as_ref() {
        Some(l) => l.reset_peak(),
        None => PROCESS.reset_peak(),
    })
}

/// Bytes the host can still give this process: MemAvailable from /proc/meminfo, or the cgroup's
/// limit less its usage when that is lower (containers see the host's MemAvailable). None where
/// neither can be read.
pub fn host_available() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok().and_then(|t| mem_available(&t));
    let cgroup = std::fs::read_to_string("/sys/fs/cgroup/memory.max").ok().and_then(|max| {
        let current = std::fs::read_to_string("/sys/fs/cgroup/memory.current").ok()?;
        cgroup_room(&max, &current)
    });
    match (meminfo, cgroup) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// `MemAvailable:   22958512 kB` as bytes.
fn mem_available(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kb.checked_mul(1024)
}

/// cgroup v2 memory.max ("max" when unlimited) less memory.current.
fn cgroup_room(max: &str, current: &str) -> Option<u64> {
    let max: u64 = max.trim().parse().ok()?;
    Some(max.saturating_sub(current.trim().parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tracked_thread_counts_its_own_tensors_wherever_they_are_dropped() {
        let (peak, passed) = std::thread::scope(|s| {
            s.spawn(|| {
                track_this_thread();
                let l = host_alloc(1000).expect("tracked");
                let peak = host_stats().peak;
                // Dropped elsewhere (another rank received it): returned to this ledger.
                std::thread::scope(|s2| {
                    s2.spawn(|| host_free(1000, Some(&l)));
                });
                (peak, host_stats().in_use)
            })
            .join()
            .unwrap()
        });
        assert_eq!((peak, passed), (1000, 0));
        assert!(host_alloc(1).is_none(), "an untracked thread has no ledger of its own");
        host_free(1, None);
    }

    #[test]
    fn reads_mem_available_and_cgroup_room() {
        let meminfo = "MemTotal:       24576000 kB\nMemFree:        1000 kB\nMemAvailable:   22958512 kB\n";
        assert_eq!(mem_available(meminfo), Some(22_958_512 * 1024));
        assert_eq!(mem_available("MemTotal: 1 kB\n"), None);
        assert_eq!(cgroup_room("max\n", "123\n"), None);
        assert_eq!(cgroup_room("1000\n", "300\n"), Some(700));
        assert_eq!(cgroup_room("1000\n", "3000\n"), Some(0));
        assert!(host_available().is_some_and(|b| b > 0), "this test runs on Linux");
    }
}
