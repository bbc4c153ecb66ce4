//! Events and memory accounting of the device backends, in a process of their own
//! so that no other test allocates while the pool's counters are read.

use rwm_dist::backend::cuda::CudaBackend;
use rwm_dist::backend::*;
use rwm_dist::tensor::DType;

#[test]
fn timing_and_memory() {
    let b = match CudaBackend::new(0) {
        Ok(b) => b,
        Err(e) => {
            use std::io::Write;
            let _ = writeln!(std::io::stderr(), "SKIPPED: no CUDA device ({e})");
            return;
        }
    };
    {
        b.synchronize().unwrap();
        let before = b.memory();
        b.reset_peak();
        let t0 = b.mark().unwrap();
        let big = b.random(&[16 << 20], DType::F32, 3, 1.0).unwrap();
        let t1 = b.mark().unwrap();
        let ms = b.elapsed_ms(&t0, &t1).unwrap();
        assert!(ms > 0.0 && ms < 1000.0, "{ms} ms for a 64 MiB fill");
        let during = b.memory();
        assert!(during.in_use >= before.in_use + (64 << 20), "{before:?} -> {during:?}");
        assert!(during.peak >= during.in_use);
        drop(big);
        b.synchronize().unwrap();
        let after = b.memory();
        assert!(after.in_use + (64 << 20) <= during.in_use, "{during:?} -> {after:?}");
        assert!(after.peak >= during.in_use, "peak kept after free");
        b.reset_peak();
        assert!(b.memory().peak < during.in_use, "reset_peak");
    }
}
