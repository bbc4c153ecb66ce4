//! `estimate --time`: the predicted step of the layout asked for, and every layout of the
//! world (tp 1; cp, ep folded over cp x dp, dp what is left) ranked by tokens/s, with its
//! per-rank memory estimate next to it.

use super::work::Model;
use super::{Links, Prediction, Rates, Work};
use crate::budget::gib;
use crate::harness::target::Target;
use crate::layout::{LayoutArgs, ParallelDims};
use crate::tensor::DType;
use crate::topology::Topology;
use std::io::Write;

/// Where the ranks run: on a topology's GPUs, or all on one GPU through loopback sockets.
pub enum Machine<'a> {
    Topology(&'a Topology),
    /// `bench/nccl_one_gpu.sh`: every rank on one GPU, NCCL over loopback sockets.
    OneGpu,
}

/// One layout's row.
pub struct Row {
    pub dims: ParallelDims,
    pub memory: Option<u64>,
    pub fits: bool,
    pub p: Prediction,
}

fn divisors(n: usize) -> impl Iterator<Item = usize> {
    (1..=n).filter(move |d| n.is_multiple_of(*d))
}

/// Per-rank memory estimate of `t` on `dims`, as `estimate` prints it (flash attention).
fn memory(t: &dyn Target, dims: &ParallelDims) -> Option<u64> {
    t.model_inputs(dims)?.estimate().ok().map(|b| b.total)
}

/// The links of `dims` on `m`, or why none.
fn links(m: &Machine, rates: &Rates, world: usize, dims: ParallelDims) -> Result<Links, String> {
    match m {
        Machine::Topology(t) => Links::on_topology(t, world, dims).map_err(|e| e.to_string()),
        Machine::OneGpu => match &rates.loopback {
            Some(l) => Ok(Links::loopback(l, world, dims)),
            None if world == 1 => Ok(Links::uniform(super::Link::new("none", 1.0, 0.0), 1)),
            None => Err("the rates file has no `loopback` link (calibrate --link-from RESULTS.jsonl)".into()),
        },
    }
}

/// The prediction of `t`'s optimized variant on `dims`, or why none.
pub fn predict(
    t: &dyn Target,
    dims: ParallelDims,
    world: usize,
    gemm: DType,
    rates: &Rates,
    m: &Machine,
) -> Result<Prediction, String> {
    let w: Work = super::work::for_target(t, &dims, "optimized", gemm)
        .ok_or("not modelled (gpt4's FP8 variant runs its experts as a loop)")?;
    Ok(super::predict(&w, rates, &links(m, rates, world, dims)?, world))
}

/// Every layout of `world` that `t` can run (its own layout checks: EP dividing the experts,
/// two zigzag chunks per CP rank), CP and EP only where the model has them, EP folded.
pub fn layouts(t: &dyn Target, world: usize) -> Vec<ParallelDims> {
    let Some(m) = Model::of(t) else { return vec![] };
    let mut out = Vec::new();
    for cp in divisors(world).filter(|&cp| cp == 1 || m.has_cp()) {
        for ep in divisors(world).filter(|&ep| ep == 1 || m.has_ep()) {
            let a = LayoutArgs { tp: 1, cp, ep, dp: None, ep_layout: crate::layout::EpLayout::Folded };
            if let Ok(d) = ParallelDims::resolve(world, &a)
                && t.check_layout(&d).is_ok()
            {
                out.push(d);
            }
        }
    }
    out
}

/// Rows of every layout, fitting ones first, each group by job tokens/s.
pub fn rank(t: &dyn Target, world: usize, gemm: DType, rates: &Rates, m: &Machine, device: Option<u64>) -> Vec<Row> {
    let mut rows: Vec<Row> = layouts(t, world)
        .into_iter()
        .filter_map(|dims| {
            let p = predict(t, dims, world, gemm, rates, m).ok()?;
            let memory = memory(t, &dims);
            let fits = match (memory, device) {
                (Some(b), Some(d)) => b <= d,
                (Some(_), None) => true,
                (None, _) => false,
            };
            Some(Row { dims, memory, fits, p })
        })
        .collect();
    rows.sort_by(|a, b| b.fits.cmp(&a.fits).then(b.p.job_tokens_per_s.total_cmp(&a.p.job_tokens_per_s)));
    rows
}

fn layout_name(d: &ParallelDims) -> String {
    format!("cp {} ep {} dp {}", d.cp, d.ep, d.dp)
}

/// The table of `rows`, the layout asked for marked.
pub fn render(rows: &[Row], chosen: &ParallelDims, out: &mut dyn Write) -> std::io::Result<()> {
    writeln!(
        out,
        "  {:<20} {:>9} {:>5} {:>10} {:>10} {:>10} {:>6} {:>12} {:>6}",
        "layout", "GiB/rank", "fits", "step ms", "compute", "comm", "comm%", "tokens/s", "MFU"
    )?;
    for r in rows {
        let mark = if r.dims == *chosen { "*" } else { " " };
        let mem = r.memory.map_or("overflow".into(), |b| format!("{:.1}", gib(b)));
        let mfu = r.p.mfu.map_or("-".into(), |m| format!("{:.0}%", 100.0 * m));
        writeln!(
            out,
            "{mark} {:<20} {:>9} {:>5} {:>10.2} {:>10.2} {:>10.2} {:>5.0}% {:>12.0} {:>6}",
            layout_name(&r.dims),
            mem,
            if r.fits { "yes" } else { "NO" },
            r.p.step_s * 1e3,
            r.p.compute_s * 1e3,
            r.p.comm_s * 1e3,
            100.0 * r.p.comm_fraction(),
            r.p.job_tokens_per_s,
            mfu
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpt4_on_24_ranks_has_every_cp_and_ep_that_divides() {
        let cfg = crate::models::gpt4::Gpt4Config::full();
        let l = layouts(&cfg, 24);
        // cp in {1,2,3,4,6,8,12,24}; ep in {1,2,4,8} (divides 16 experts and 24 ranks).
        assert_eq!(l.len(), 8 * 4, "{l:?}");
        assert!(l.iter().all(|d| d.cp * d.dp == 24 && 16 % d.ep == 0));
    }
}
