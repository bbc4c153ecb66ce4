//! Bytes held by host tensors, counted at their dtype's size (what a device would
//! hold, though the host keeps f32), and their high-water mark: the CPU backend's
//! "measured" memory. Process-wide, like a device's memory.

use std::sync::atomic::{AtomicUsize, Ordering};

static IN_USE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

pub(crate) fn host_alloc(bytes: usize) {
    let now = IN_USE.fetch_add(bytes, Ordering::Relaxed) + bytes;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

pub(crate) fn host_free(bytes: usize) {
    IN_USE.fetch_sub(bytes, Ordering::Relaxed);
}

pub fn host_stats() -> super::MemStats {
    super::MemStats { in_use: IN_USE.load(Ordering::Relaxed), peak: PEAK.load(Ordering::Relaxed) }
}

pub fn reset_host_peak() {
    PEAK.store(IN_USE.load(Ordering::Relaxed), Ordering::Relaxed);
}
