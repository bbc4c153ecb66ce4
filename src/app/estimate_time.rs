//! `estimate --time`: the step-time model's prediction for the layout asked for, and every
//! layout of the world ranked (src/step_time/sweep.rs), under the rates of the GPU it runs on.

use super::{Error, config_err, io};
use crate::harness::target::Target;
use crate::layout::ParallelDims;
use crate::step_time::{Rates, rates, sweep};
use crate::tensor::DType;
use std::io::Write;

/// The rates for the machine: the file's, carried to the topology's GPU; else the datasheet's.
fn rates_for(a: &crate::cli::EstimateArgs, gpu: Option<&str>) -> Result<(Rates, String), Error> {
    match (&a.rates, gpu) {
        (Some(path), Some(gpu)) => Ok(Rates::load(path)?.for_gpu(gpu)),
        (Some(path), None) => Ok(Rates::load(path)?.for_gpu("")).map(|(r, _)| {
            let note = format!("{} rates of {} (git {})", r.source, r.gpu, r.git_rev);
            (r, note)
        }),
        (None, gpu) => {
            let gpu = gpu.unwrap_or("NVIDIA H100");
            let d = rates::datasheet(gpu)
                .ok_or_else(|| config_err(format!("no datasheet for GPU `{gpu}`: give --rates FILE (calibrate)")))?;
            let note = format!(
                "no rates file: {gpu} datasheet peaks x the fractions seen on Hopper (GEMM 70%, attention 32%, \
                 grouped 45%, HBM 85%)"
            );
            Ok((Rates::from_datasheet(d, gpu), note))
        }
    }
}

pub(super) fn report(
    a: &crate::cli::EstimateArgs,
    t: &dyn Target,
    gemm: DType,
    world: usize,
    dims: &ParallelDims,
    device: Option<u64>,
    out: &mut dyn Write,
) -> Result<(), Error> {
    let topo = a.config.topology.as_ref().map(crate::topology::Topology::load).transpose()?;
    let gpu = topo.as_ref().map(|t| t.gpu_model.as_str());
    let (rates, note) = rates_for(a, gpu)?;
    let machine = match (&topo, a.one_gpu) {
        (_, true) => sweep::Machine::OneGpu,
        (Some(t), false) => sweep::Machine::Topology(t),
        (None, false) if world == 1 => sweep::Machine::OneGpu,
        (None, false) => return Err(config_err("estimate --time over several ranks needs --topology (or --one-gpu)")),
    };
    let w = io("stdout");
    writeln!(out, "step time (optimized variant, forward): {note}").map_err(w)?;
    match sweep::predict(t, *dims, world, gemm, &rates, &machine) {
        Ok(p) => writeln!(
            out,
            "  {dims}: {:.3} ms per step (compute {:.3}, communication {:.3} of which exposed {:.3}: {:.0}%), \
             {:.0} tokens/s per rank, {:.0} for the job, {:.0} TFLOP/s{}",
            p.step_s * 1e3,
            p.compute_s * 1e3,
            p.comm_s * 1e3,
            p.exposed_comm_s * 1e3,
            100.0 * p.comm_fraction(),
            p.tokens_per_rank as f64 / p.step_s,
            p.job_tokens_per_s,
            p.tflops,
            p.mfu.map_or(String::new(), |m| format!(", MFU {:.0}%", 100.0 * m)),
        )
        .map_err(io("stdout"))?,
        Err(e) => writeln!(out, "  {dims}: not predicted: {e}").map_err(io("stdout"))?,
    }
    if world > 1 {
        let rows = sweep::rank(t, world, gemm, &rates, &machine, device);
        writeln!(out, "every layout of {world} ranks, fitting ones first, by tokens/s (* = the one asked for):")
            .map_err(io("stdout"))?;
        sweep::render(&rows, dims, out).map_err(io("stdout"))?;
    }
    Ok(())
}
