//! Helpers shared by the integration tests.
#![allow(dead_code)]

use rwm_dist::backend::{Backend, cpu::CpuBackend};
use rwm_dist::comm::{Comm, local::LocalComm, single::SingleComm};
use rwm_dist::harness::Ctx;
use rwm_dist::layout::ParallelDims;
use rwm_dist::tensor::DType;
use std::process::{Command, Output};
use std::sync::Arc;

/// The rwm-dist binary with `args`, as one process (no launcher), warnings only on stderr.
pub fn rwm(args: &[&str]) -> Output {
    rwm_with(args, &[])
}

/// As `rwm`, with extra environment variables.
pub fn rwm_with(args: &[&str], vars: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rwm-dist"))
        .args(args)
        .env("RUST_LOG", "warn")
        .env_remove("OMPI_COMM_WORLD_SIZE")
        .envs(vars.iter().copied())
        .output()
        .expect("binary runs")
}

/// (stdout, stderr) as text.
pub fn text(o: &Output) -> (String, String) {
    (String::from_utf8_lossy(&o.stdout).into(), String::from_utf8_lossy(&o.stderr).into())
}

/// Run `f` on every rank of `dims` (threads sharing one CPU backend, each with its layout
/// groups) and collect each rank's result.
pub fn on_ranks<T: Send>(dims: ParallelDims, f: impl Fn(&Ctx) -> T + Sync) -> Vec<T> {
    let n = dims.world_size();
    let b: Arc<dyn Backend> = Arc::new(CpuBackend::new());
    let comms: Vec<Arc<dyn Comm>> = if n == 1 {
        vec![Arc::new(SingleComm::new(b.clone()))]
    } else {
        LocalComm::group(n).into_iter().map(|c| Arc::new(c) as Arc<dyn Comm>).collect()
    };
    std::thread::scope(|s| {
        let hs: Vec<_> = comms
            .into_iter()
            .map(|world| {
                let (b, f) = (b.clone(), &f);
                s.spawn(move || f(&Ctx::new(b, world, dims, DType::Bf16).unwrap()))
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

/// (max |a - r| / max |r|, ||a - r|| / ||r||): the harness's gate metrics, on outputs that
/// must be finite and of the reference's length.
pub fn errors(a: &[f32], r: &[f32]) -> (f64, f64) {
    assert_eq!(a.len(), r.len());
    assert!(a.iter().all(|x| x.is_finite()), "non-finite output");
    rwm_dist::harness::stats::errors(a, r)
}

/// `w`'s variant `name` as a run on `ctx` executes it.
#[allow(dead_code)]
pub fn variant(w: &dyn rwm_dist::harness::Workload, ctx: &Ctx, name: &str) -> rwm_dist::harness::Variant {
    let spec = w.variants().into_iter().find(|v| v.name == name).unwrap_or_else(|| panic!("no variant {name}"));
    spec.resolve(ctx.gemm_dtype)
}
