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
