//! Marks for profilers (NVTX). Ranges name what runs (`TARGET VARIANT`, then `warmup` or
//! `step N` inside it), so `nsys` timelines read as the harness does and
//! `ncu --nvtx --nvtx-include` can pick one step; without a profiler attached they cost
//! a branch. `--profile-steps` also brackets the timed steps with cuProfilerStart/Stop,
//! for `ncu --profile-from-start off` and `nsys profile --capture-range=cudaProfilerApi`.
//!
//! Inside a step, `phase` marks what the model and parallel code do (attention, MoE route,
//! dispatch, experts and combine, each CP ring step, each collective). Without a profiler a
//! phase costs one atomic load: NVTX's first push says whether a tool is attached, and later
//! phases neither build their name nor call NVTX.

use std::ffi::{CStr, CString};
use std::sync::atomic::{AtomicU8, Ordering};

/// What NVTX's push returns when no tool is attached (NVTX_NO_PUSH_POP_TRACKING).
const NO_TOOL: i32 = -2;
const UNKNOWN: u8 = 0;
const ABSENT: u8 = 1;
const PRESENT: u8 = 2;
static TOOL: AtomicU8 = AtomicU8::new(UNKNOWN);

/// Pushes `name`; whether a tool took it (a pop is then due).
fn push(name: &CStr) -> bool {
    let attached = nvtx::sys::range_push_ascii(name) != NO_TOOL;
    TOOL.store(if attached { PRESENT } else { ABSENT }, Ordering::Relaxed);
    attached
}

fn c_name(name: &str) -> CString {
    CString::new(name.replace('\0', " ")).expect("NUL bytes were replaced")
}

/// An NVTX push/pop range on this thread, popped when dropped.
#[must_use = "the range ends when this is dropped"]
pub struct Range(bool);

impl Range {
    pub fn push(name: &str) -> Range {
        Range(push(&c_name(name)))
    }
}

impl Drop for Range {
    fn drop(&mut self) {
        if self.0 {
            nvtx::sys::range_pop();
        }
    }
}

/// A phase of a step, ended when dropped (see the module's comment).
pub fn phase(name: &'static CStr) -> Range {
    match TOOL.load(Ordering::Relaxed) {
        ABSENT => Range(false),
        _ => Range(push(name)),
    }
}

/// As `phase`, for a name built only when a profiler is attached (`cp ring step 3`).
pub fn phase_with(name: impl FnOnce() -> String) -> Range {
    match TOOL.load(Ordering::Relaxed) {
        ABSENT => Range(false),
        _ => Range(push(&c_name(&name()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_nest_without_a_profiler() {
        let outer = Range::push("moe optimized");
        {
            let _step = Range::push("step 0");
        }
        drop(outer);
        let _odd = Range::push("a\0b");
        // No profiler here: the first push found none, so phases build no name at all.
        assert_eq!(TOOL.load(Ordering::Relaxed), ABSENT);
        let _p = phase(c"moe dispatch");
        let _q = phase_with(|| unreachable!("named without a profiler"));
    }
}
