//! Marks for profilers. NVTX ranges name what runs (`TARGET VARIANT`, then `warmup` or
//! `step N` inside it), so `nsys` timelines read as the harness does and
//! `ncu --nvtx --nvtx-include` can pick one step; without a profiler attached they cost
//! a branch. `--profile-steps` also brackets the timed steps with cuProfilerStart/Stop,
//! for `ncu --profile-from-start off` and `nsys profile --capture-range=cudaProfilerApi`.

use std::ffi::CString;

/// An NVTX push/pop range on this thread, popped when dropped.
#[must_use = "the range ends when this is dropped"]
pub struct Range(());

impl Range {
    pub fn push(name: &str) -> Range {
        let name = CString::new(name.replace('\0', " ")).expect("NUL bytes were replaced");
        nvtx::sys::range_push_ascii(&name);
        Range(())
    }
}

impl Drop for Range {
    fn drop(&mut self) {
        nvtx::sys::range_pop();
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
    }
}
