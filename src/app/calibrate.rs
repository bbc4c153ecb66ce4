//! `rwm-dist calibrate`: measure the step-time model's rates on this device and write them
//! (src/step_time/calibrate.rs); or add the loopback link fitted to a multi-rank run.

use super::{Error, Outcome, io};
use crate::backend::{self, Backend, BackendKind};
use crate::step_time::{Rates, calibrate};
use std::io::Write;

pub(super) fn calibrate(a: &crate::cli::CalibrateArgs, out: &mut dyn Write) -> Result<Outcome, Error> {
    if !a.link_from.is_empty() {
        let mut rates = Rates::load(&a.output)?;
        let runs = calibrate::measured(&a.link_from)?;
        let from: Vec<String> = a.link_from.iter().map(|f| f.display().to_string()).collect();
        let link = calibrate::fit_loopback(&runs, &rates, from.join(", "))?;
        let s = link.slice_ms;
        writeln!(
            out,
            "loopback link (fitted to the steps of {} run(s)): per call, a slice for each rank that waits \
             (ring exchange {:.3} ms, all-gather {:.3}, all-to-all {:.3}) plus {:.3} ms per rank on the GPU; \
             {:.3} GB/s shared",
            runs.len(),
            s.send_recv,
            s.all_gather,
            s.all_to_all,
            link.visit_ms,
            link.gb_per_s
        )
        .map_err(io("stdout"))?;
        rates.loopback = Some(link);
        rates.save(&a.output)?;
        writeln!(out, "wrote {}", a.output.display()).map_err(io("stdout"))?;
        return Ok(Outcome::Ok);
    }
    let b: Box<dyn Backend> = match a.backend {
        Some(BackendKind::Cpu) => Box::new(backend::cpu::CpuBackend::new()),
        Some(BackendKind::Cuda) => Box::new(backend::cuda::CudaBackend::new(0)?),
        None => match backend::cuda::CudaBackend::new(0) {
            Ok(c) => Box::new(c),
            Err(e) => {
                tracing::info!("no usable GPU ({e}); calibrating the CPU backend");
                Box::new(backend::cpu::CpuBackend::new())
            }
        },
    };
    let cuda = b.kind() == BackendKind::Cuda;
    let profiles: Vec<&str> = match (a.profile.is_empty(), cuda) {
        (false, _) => a.profile.iter().map(String::as_str).collect(),
        (true, true) => vec!["quick", "bench"],
        (true, false) => vec!["quick"],
    };
    for p in &profiles {
        crate::harness::target::profile(p)?;
    }
    let kind = if cuda { "cuda" } else { "cpu" };
    writeln!(out, "calibrating {} ({kind}) on the shapes of profile(s) {}", b.device_name(), profiles.join(", "))
        .map_err(io("stdout"))?;
    let t0 = std::time::Instant::now();
    let rates = calibrate::measure(b.as_ref(), &profiles, cuda, &mut |l| {
        let _ = writeln!(out, "  {l}");
    })?;
    rates.save(&a.output)?;
    writeln!(out, "wrote {} in {:.1} s", a.output.display(), t0.elapsed().as_secs_f64()).map_err(io("stdout"))?;
    Ok(Outcome::Ok)
}
