//! `RWM_MEM_TRACE=1`: every device allocation on stderr with the pool's bytes in use after it
//! and the functions that asked for it, the pool's and the graphs' counters where the runner
//! resets and reads the peak, and a captured graph's memory nodes (address, size, order). Off by
//! default; a tool for finding which buffer a measured peak holds that an estimate misses.

use super::driver::{self, GraphMemNode, Usage};
use cudarc::driver::CudaContext;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

pub(crate) fn on() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("RWM_MEM_TRACE").is_some_and(|v| v != "0"))
}

static SEQ: AtomicU64 = AtomicU64::new(0);

/// Set while a stream capture runs: the pool's counters cannot be read then (the query
/// invalidates the capture).
pub(crate) static CAPTURING: AtomicBool = AtomicBool::new(false);

/// The first few callers inside this crate, outside the CUDA backend (function names from the
/// symbol table; inlined frames fold into their callers).
fn site() -> String {
    let bt = std::backtrace::Backtrace::force_capture().to_string();
    let frames = bt.lines().filter_map(|l| {
        let (idx, sym) = l.trim_start().split_once(": ")?;
        idx.parse::<usize>().ok()?;
        let sym = sym.rsplit_once("::h").filter(|(_, h)| h.len() == 16).map_or(sym, |(s, _)| s);
        (sym.contains("rwm_dist::") && !sym.contains("backend::cuda")).then(|| sym.replace("rwm_dist::", ""))
    });
    frames.take(4).collect::<Vec<_>>().join(" < ")
}

fn pid() -> String {
    std::env::var("OMPI_COMM_WORLD_RANK").map_or_else(|_| format!("pid{}", std::process::id()), |r| format!("r{r}"))
}

/// One allocation; `pool` is None while capturing.
pub(crate) fn alloc(bytes: usize, what: &str, ptr: u64, pool: Option<Usage>) {
    let seq = SEQ.fetch_add(1, Ordering::Relaxed);
    let in_use = pool.map_or("capturing".into(), |p| p.current.to_string());
    eprintln!(
        "memtrace {} alloc seq={seq} bytes={bytes} {what} ptr={ptr:#x} pool_in_use={in_use} at={}",
        pid(),
        site()
    );
}

/// The pool's and the graphs' counters at `event` (reset, read).
pub(crate) fn counters(event: &str, ctx: &CudaContext, pool: Usage) {
    let (g, r) = (driver::graph_memory(ctx), driver::graph_reserved(ctx));
    eprintln!(
        "memtrace {} {event} pool_current={} pool_high={} graph_used={} graph_used_high={} graph_reserved={} \
         graph_reserved_high={}",
        pid(),
        pool.current,
        pool.high,
        g.current,
        g.high,
        r.current,
        r.high
    );
}

/// A captured graph's memory nodes, and what they add up to: the most bytes live at once in
/// node order, the span of addresses they use, and the union of their ranges.
pub(crate) fn graph(nodes: &[GraphMemNode]) {
    let (mut live, mut peak, mut sizes) = (0u64, 0u64, std::collections::HashMap::new());
    let mut ranges = vec![];
    for (i, n) in nodes.iter().enumerate() {
        match *n {
            GraphMemNode::Alloc { ptr, bytes } => {
                live += bytes;
                peak = peak.max(live);
                sizes.insert(ptr, bytes);
                ranges.push((ptr, ptr + bytes));
                eprintln!("memtrace {} graph node={i} alloc ptr={ptr:#x} bytes={bytes} live={live}", pid());
            }
            GraphMemNode::Free { ptr } => {
                live -= sizes.get(&ptr).copied().unwrap_or(0);
                eprintln!("memtrace {} graph node={i} free ptr={ptr:#x} live={live}", pid());
            }
        }
    }
    ranges.sort();
    let (mut union, mut end) = (0u64, 0u64);
    for &(a, b) in &ranges {
        let a = a.max(end);
        if b > a {
            union += b - a;
            end = b;
        }
    }
    let span = ranges.iter().map(|r| r.1).max().unwrap_or(0) - ranges.first().map_or(0, |r| r.0);
    eprintln!(
        "memtrace {} graph allocs={} live_peak={peak} union={union} span={span} unfreed={live}",
        pid(),
        ranges.len()
    );
}
