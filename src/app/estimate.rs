//! `rwm-dist estimate`: per-rank memory budgets before anything is allocated.

use super::{Error, Outcome, config_err, io};
use crate::backend::AttnAlgo;
use crate::budget::{Storage, gib, parse_device_memory, term};
use crate::harness::variant;
use std::io::Write;

/// Per-rank budgets of the selected targets at the optimized variant's attention.
pub(super) fn estimate(a: &crate::cli::EstimateArgs, out: &mut dyn Write) -> Result<Outcome, Error> {
    let plan = crate::plan::Plan::resolve(&a.config)?;
    let world = a.world.unwrap_or(plan.smallest_world());
    let dims = plan.dims(world)?;
    let mut device = a.device_memory.as_deref().map(parse_device_memory).transpose().map_err(config_err)?;
    // The GPU's kernels decide some buffers (`Storage::Device`): a topology names the GPU.
    let mut at = Storage::device_named("");
    if let Some(path) = &a.config.topology {
        let topo = crate::topology::Topology::load(path)?;
        at = Storage::device_named(&topo.gpu_model);
        // GB of 1e9 bytes, as NVML reports (and `topo discover` writes) it.
        device = device.or(Some((topo.memory_gb * 1e9) as u64));
    }
    let mut overflows = 0;
    for t in &plan.targets {
        let Some(inputs) = t.model_inputs(&dims) else {
            // Not a model: the largest budget of the variants a run executes.
            let variants = t.variants().into_iter().map(|v| v.resolve(plan.gemm_dtype));
            let (_, budget) =
                crate::plan::fit::largest(t.as_ref(), variants, &dims, at)?.expect("a target has variants");
            writeln!(out, "{}: world {world} = {dims}; its runs' largest variant", t.name()).map_err(io("stdout"))?;
            budget.render(device, out).map_err(io("stdout"))?;
            writeln!(out).map_err(io("stdout"))?;
            overflows += usize::from(device.is_some_and(|d| budget.check_fit(d).is_err()));
            continue;
        };
        let budget = inputs.estimate().map_err(config_err)?;
        let params = inputs.param_count().map_err(config_err)?;
        writeln!(out, "{}: {:.3}B parameters; world {world} = {dims}; flash attention", t.name(), params as f64 / 1e9,)
            .map_err(io("stdout"))?;
        budget.render(device, out).map_err(io("stdout"))?;
        let specs = t.variants();
        let reference = variant::reference(&specs).resolve(plan.gemm_dtype);
        if dims.tp == 1 && reference.recipe().attention == Some(AttnAlgo::Naive) {
            // `run` times the naive baseline as the reference: its score matrix can dwarf the rest.
            let base = t.run_budget(&dims, &reference, at);
            let base = base.map_err(|e| config_err(format!("{} {}: {e}", t.name(), reference.name())))?;
            writeln!(
                out,
                "run's baseline (naive attention, the reference): {:.3} GiB per rank, attention workspace {:.3} GiB",
                gib(base.total),
                gib(base.bytes(term::ATTENTION))
            )
            .map_err(io("stdout"))?;
        }
        if a.time {
            super::estimate_time::report(a, t.as_ref(), plan.gemm_dtype, world, &dims, device, out)?;
        }
        writeln!(out).map_err(io("stdout"))?;
        if device.is_some_and(|d| budget.check_fit(d).is_err()) {
            overflows += 1;
        }
    }
    Ok(if overflows == 0 {
        Outcome::Ok
    } else {
        Outcome::Failures(overflows, "layout(s) do not fit the device memory")
    })
}
