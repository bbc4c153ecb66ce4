//! Runs every selected variant of a workload: warm-up, timed steps, the gate.

use super::record::{Record, RunInfo, SCHEMA_VERSION, Status};
use super::stats::{errors, median, quantile};
use super::{Ctx, GateMetric, Result, Variant, Workload};
use crate::marks::Range;
use crate::tensor::Tensor;
use indicatif::ProgressBar;

pub struct Options {
    pub warmup: usize,
    pub iterations: usize,
    /// Variants to time; None times all. The baseline always runs (untimed if not selected).
    pub variants: Option<Vec<String>>,
    /// In a distributed run, also compare each rank's output with the same variant
    /// computed on one rank alone (`single_rank_output`).
    pub single_rank: bool,
    /// cuProfilerStart/Stop around the timed steps.
    pub profile_steps: bool,
}

/// The single-rank check's bound on ||out - one rank|| / ||one rank||: a distributed run
/// only reorders sums (f32 partials merged by log-sum-exp, the same expert GEMMs), so bf16
/// outputs agree to a few roundings (2.5 units of bf16's 2^-8): on a GPU the flash kernel
/// rounds its probabilities to bf16 against each key block's own running maximum, which
/// moves ring CP outputs by 3-6e-3 after two layers (H200). FP8 variants quantise each
/// rank's shard with its own scales and are bounded by their FP8 tolerance instead.
pub const SINGLE_RANK_TOLERANCE: f64 = 1e-2;

struct Timed {
    samples: Vec<f64>,
    output: Vec<f32>,
    peak: u64,
}

fn time_variant(ctx: &Ctx, w: &mut dyn Workload, v: &Variant, opts: &Options, bar: &ProgressBar) -> Result<Timed> {
    let b = &ctx.backend;
    w.prepare(ctx, v)?;
    b.synchronize()?;
    b.reset_peak();
    let mut last: Option<Tensor> = None;
    crate::world::fault::at_step(ctx.rank(), w.name()).map_err(super::Error::Workload)?;
    let _range = Range::push(&format!("{} {}", w.name(), v.name()));
    for i in 0..opts.warmup {
        let _warmup = Range::push("warmup");
        last = Some(w.step(ctx, v)?);
        sync_watched(ctx, || format!("{} {} warm-up step {i}", w.name(), v.name()))?;
    }
    let mut samples = Vec::with_capacity(opts.iterations);
    let capture = opts.profile_steps && opts.iterations > 0;
    if capture {
        b.profiler_capture(true)?;
    }
    for i in 0..opts.iterations {
        drop(last.take());
        let _step = Range::push(&format!("step {i}"));
        let start = b.mark()?;
        let out = w.step(ctx, v)?;
        let end = b.mark()?;
        sync_watched(ctx, || format!("{} {} step {i}", w.name(), v.name()))?;
        samples.push(b.elapsed_ms(&start, &end)?);
        last = Some(out);
        bar.inc(1);
    }
    if capture {
        b.profiler_capture(false)?;
    }
    let out = match last {
        Some(t) => t,
        None => w.step(ctx, v)?,
    };
    let peak = b.memory().peak as u64;
    Ok(Timed { samples, output: b.download(&out)?, peak })
}

/// The variants of `w` as this run executes them, the reference first.
pub fn resolved(ctx: &Ctx, w: &dyn Workload) -> Vec<Variant> {
    let mut specs = w.variants();
    specs.sort_by_key(|s| !s.is_reference());
    specs.into_iter().map(|s| s.resolve(ctx.gemm_dtype)).collect()
}

/// Waits for the step's device work under the watchdog: a collective that never completes on
/// the device (an NCCL kernel waiting for a stopped peer) ends the job naming the step, as a
/// stuck host collective does; unwatched when the watchdog is off.
fn sync_watched(ctx: &Ctx, what: impl FnOnce() -> String) -> Result<()> {
    let _w = crate::watchdog::armed()
        .then(|| crate::watchdog::watch(format!("{} (rank {}, waiting for the device)", what(), ctx.rank())));
    Ok(ctx.backend.synchronize()?)
}

/// Records for every variant, the reference first. A variant that errors is recorded
/// with status `error`, and the others still run.
pub fn run(ctx: &Ctx, w: &mut dyn Workload, opts: &Options, info: &RunInfo, bar: &ProgressBar) -> Result<Vec<Record>> {
    bar.set_message(format!("{}: setup", w.name()));
    w.setup(ctx)?;
    let variants = resolved(ctx, w);
    let baseline = variants[0].name();
    let selected = |n: &str| opts.variants.as_ref().is_none_or(|v| v.iter().any(|s| s == n));
    // Output and median of the reference; Err(why) once the reference has failed.
    let mut reference: Option<std::result::Result<(Vec<f32>, f64), String>> = None;
    let mut records = Vec::new();
    for v in &variants {
        let spec = &v.spec;
        let timed_run = selected(spec.name);
        if !timed_run && !v.is_reference() {
            continue;
        }
        bar.set_message(format!("{} {}", w.name(), spec.name));
        let run_opts = Options {
            warmup: opts.warmup,
            iterations: if timed_run { opts.iterations } else { 0 },
            variants: None,
            single_rank: opts.single_rank,
            profile_steps: opts.profile_steps,
        };
        let result = time_variant(ctx, w, v, &run_opts, bar);
        let mut rec = blank(ctx, w, info, v, &run_opts);
        match result {
            Err(e) => {
                rec.status = Status::Error;
                rec.error = Some(e.to_string());
                if reference.is_none() {
                    tracing::error!("{} {baseline} failed: {e}; other variants have no reference", w.name());
                    reference = Some(Err(e.to_string()));
                }
            }
            Ok(t) => {
                if !t.samples.is_empty() {
                    let med = median(&t.samples);
                    rec.median_ms = Some(med);
                    rec.p10_ms = Some(quantile(&t.samples, 0.1));
                    rec.p90_ms = Some(quantile(&t.samples, 0.9));
                    rec.min_ms = Some(quantile(&t.samples, 0.0));
                    rec.max_ms = Some(quantile(&t.samples, 1.0));
                    rec.tokens_per_s = Some(w.tokens() as f64 / (med / 1e3));
                    rec.tflops = Some(w.flops(v) / (med / 1e3) / 1e12);
                }
                rec.samples_ms = t.samples;
                rec.peak_mem_bytes = Some(t.peak);
                rec.est_err = est_err(rec.est_mem_bytes, t.peak);
                let bad_output = non_finite(&t.output, &format!("the output of {} {}", w.name(), spec.name));
                match &reference {
                    None if bad_output.is_some() => {
                        rec.status = Status::Error;
                        rec.error = bad_output.clone();
                        reference = Some(Err(bad_output.unwrap_or_default()));
                    }
                    None => {
                        rec.reference = "none".into();
                        reference = Some(Ok((t.output.clone(), rec.median_ms.unwrap_or(f64::NAN))));
                    }
                    Some(Err(why)) => {
                        rec.status = Status::Error;
                        rec.error = Some(format!("no reference: {baseline} failed: {why}"));
                    }
                    Some(Ok(_)) if bad_output.is_some() => {
                        rec.status = Status::Error;
                        rec.error = bad_output;
                    }
                    Some(Ok((base_out, base_ms))) => 'gate: {
                        // A failing reference fails this variant's record, never the records measured.
                        let own = match own_reference(ctx, w, v) {
                            Ok(own) => own,
                            Err(e) => {
                                rec.status = Status::Error;
                                rec.error = Some(format!("reference: {e}"));
                                break 'gate;
                            }
                        };
                        if own.is_some() {
                            rec.reference = format!("{baseline} on the same routing");
                        }
                        let reference = own.as_deref().unwrap_or(base_out);
                        let bad_ref = non_finite(reference, &format!("the reference ({})", rec.reference));
                        let (max_err, rel) = errors(&t.output, reference);
                        rec.max_err = Some(max_err);
                        rec.rel_l2_err = Some(rel);
                        let err = match spec.gate {
                            GateMetric::MaxErr => max_err,
                            GateMetric::RelL2 => rel,
                        };
                        if bad_ref.is_some() {
                            rec.status = Status::Error;
                            rec.error = bad_ref;
                        } else if reference.iter().all(|x| *x == 0.0) {
                            rec.status = Status::Error;
                            rec.error = Some("the reference output is all zeros: the gate cannot check it".into());
                        } else if err <= rec.tolerance {
                            rec.speedup = rec.median_ms.map(|m| base_ms / m).filter(|s| s.is_finite());
                        } else {
                            rec.status = Status::Failed;
                            rec.error = Some(format!(
                                "{} {err:.3e} > {:.1e} against {}",
                                gate_name(spec.gate),
                                rec.tolerance,
                                rec.reference
                            ));
                        }
                    }
                }
                let check = opts.single_rank && ctx.world.size() > 1 && timed_run && rec.status != Status::Error;
                if check && let Err(e) = check_single_rank(ctx, w, v, &t.output, &mut rec) {
                    rec.status = Status::Error;
                    rec.error = Some(format!("single-rank check: {e}"));
                }
                match w.metrics(ctx, v) {
                    Ok(m) => rec.metrics.extend(m),
                    Err(e) => {
                        rec.status = Status::Error;
                        rec.error = Some(format!("metrics: {e}"));
                    }
                }
            }
        }
        if timed_run {
            records.push(rec);
        }
    }
    Ok(records)
}

/// `Some(why)` when `v` holds a NaN or an infinity: the gate's errors would be NaN and compare false.
fn non_finite(v: &[f32], what: &str) -> Option<String> {
    let (i, x) = v.iter().enumerate().find(|(_, x)| !x.is_finite())?;
    let n = v.iter().filter(|x| !x.is_finite()).count();
    Some(format!("{what} holds {n} non-finite value(s): element {i} is {x}"))
}

/// The workload's own reference output for `v`, on the host.
fn own_reference(ctx: &Ctx, w: &mut dyn Workload, v: &Variant) -> Result<Option<Vec<f32>>> {
    Ok(w.reference(ctx, v)?.map(|r| ctx.backend.download(&r)).transpose()?)
}

fn gate_name(g: GateMetric) -> &'static str {
    match g {
        GateMetric::MaxErr => "max_err",
        GateMetric::RelL2 => "rel_l2",
    }
}

/// A row (token) whose own rel-L2 error against one rank exceeds this is "off".
const ROW_OFF: f64 = 0.1;

/// The single-rank comparison, row by row (one row per token).
#[derive(Debug, serde::Serialize)]
struct RowCheck {
    rows: usize,
    /// Rows off by more than `ROW_OFF`, and how many may be.
    rows_off: usize,
    allowed_off: usize,
    /// ||out - ref|| / ||ref|| over the rows that are not off.
    rel_l2_rest: f64,
}

/// Off rows allowed: none in f32, where only summation order differs; in bf16 and FP8 one
/// in fifty (at least two), since a last-bit difference can flip a near-tied top-k expert
/// choice and move that one token a lot (H200, quick gpt4 over ring CP: 0-2 of 128 rows;
/// 11-26 of 4096 at 8K). A wrong shard or expert is off nearly everywhere.
fn row_check(out: &[f32], one: &[f32], rows: usize, exact: bool) -> RowCheck {
    let width = one.len() / rows.max(1);
    let (mut rows_off, mut num, mut den) = (0, 0.0f64, 0.0f64);
    for (o, r) in out.chunks(width.max(1)).zip(one.chunks(width.max(1))) {
        let d: f64 = o.iter().zip(r).map(|(x, y)| ((x - y) as f64).powi(2)).sum();
        let n: f64 = r.iter().map(|y| (*y as f64).powi(2)).sum();
        if d > ROW_OFF * ROW_OFF * n || !d.is_finite() {
            rows_off += 1;
        } else {
            (num, den) = (num + d, den + n);
        }
    }
    let rel_l2_rest = if den > 0.0 { (num / den).sqrt() } else { 0.0 };
    RowCheck { rows, rows_off, allowed_off: if exact { 0 } else { (rows / 50).max(2) }, rel_l2_rest }
}

/// Compare this rank's output with the same variant run on one rank alone. The record's
/// error fields then describe that comparison (`reference: "single-rank"`, details in
/// `metrics.single_rank`); the gate against the baseline of the same layout moves to
/// `vs_baseline` and still counts.
fn check_single_rank(ctx: &Ctx, w: &mut dyn Workload, v: &Variant, output: &[f32], rec: &mut Record) -> Result<()> {
    let Some(one_t) = w.single_rank_output(ctx, v)? else { return Ok(()) };
    let one = ctx.backend.download(&one_t)?;
    if one.len() != output.len() {
        let msg = format!("single-rank output has {} values, this rank's {}", one.len(), output.len());
        return Err(super::Error::Workload(msg));
    }
    rec.vs_baseline = Some(super::record::Check {
        reference: rec.reference.clone(),
        max_err: rec.max_err,
        rel_l2_err: rec.rel_l2_err,
        tolerance: rec.tolerance,
        gate: rec.gate,
    });
    let (max_err, rel) = errors(output, &one);
    let fp8 = w.gemm_dtype(v) == crate::tensor::DType::F8;
    let tolerance = if fp8 { v.spec.tolerance_for(crate::tensor::DType::F8) } else { SINGLE_RANK_TOLERANCE };
    let rows = row_check(
        output,
        &one,
        one_t.shape().first().copied().unwrap_or(1),
        one_t.dtype() == crate::tensor::DType::F32,
    );
    (rec.reference, rec.max_err, rec.rel_l2_err, rec.tolerance, rec.gate) =
        ("single-rank".into(), Some(max_err), Some(rel), tolerance, GateMetric::RelL2);
    let pass = rel <= tolerance || (rows.rows_off <= rows.allowed_off && rows.rel_l2_rest <= tolerance);
    let detail = format!(
        "single-rank check: rel_l2 {rel:.3e} (bound {tolerance:.1e}); {} of {} rows off by > {ROW_OFF} \
         ({} allowed), the rest rel_l2 {:.3e}",
        rows.rows_off, rows.rows, rows.allowed_off, rows.rel_l2_rest
    );
    rec.metrics.insert("single_rank".into(), serde_json::to_value(&rows).expect("serialises"));
    if one.iter().all(|x| *x == 0.0) {
        rec.status = Status::Error;
        rec.error = Some("the single-rank output is all zeros: the check cannot fail".into());
    } else if !pass {
        rec.status = Status::Failed;
        rec.speedup = None;
        rec.error = Some(match rec.error.take() {
            Some(e) => format!("{e}; {detail}"),
            None => detail,
        });
    }
    Ok(())
}

/// The record of a variant that never ran because its target failed to set up.
pub fn error_record(ctx: &Ctx, w: &dyn Workload, info: &RunInfo, v: &Variant, o: &Options, e: &super::Error) -> Record {
    let mut r = blank(ctx, w, info, v, o);
    r.status = Status::Error;
    r.error = Some(format!("setup: {e}"));
    r
}

fn blank(ctx: &Ctx, w: &dyn Workload, info: &RunInfo, v: &Variant, o: &Options) -> Record {
    let gemm = w.gemm_dtype(v);
    let (tolerance, gate) = (v.spec.tolerance_for(gemm), v.spec.gate);
    Record {
        schema_version: SCHEMA_VERSION,
        run_id: info.run_id.clone(),
        timestamp: info.timestamp.clone(),
        git_rev: super::record::git_rev().into(),
        rwm_version: env!("CARGO_PKG_VERSION").into(),
        machine: info.machine.clone(),
        rank: info.rank,
        world_size: info.world_size,
        target: w.name().into(),
        variant: v.name().into(),
        profile: info.profile.clone(),
        gemm_dtype: gemm.name().into(),
        config: w.config(),
        status: Status::Ok,
        error: None,
        warmup: o.warmup,
        iterations: o.iterations,
        samples_ms: vec![],
        median_ms: None,
        p10_ms: None,
        p90_ms: None,
        min_ms: None,
        max_ms: None,
        tokens: w.tokens(),
        tokens_per_s: None,
        tflops: None,
        speedup: None,
        max_err: None,
        rel_l2_err: None,
        tolerance,
        gate,
        reference: super::variant::BASELINE.into(),
        vs_baseline: None,
        layout: Some(super::record::LayoutRecord { dims: ctx.dims, coords: ctx.coords() }),
        peak_mem_bytes: None,
        est_mem_bytes: w.estimate_bytes(ctx, v),
        est_err: None,
        metrics: Default::default(),
        env: info.env.clone(),
        gates: vec![],
    }
}

/// (est - peak) / peak; None without an estimate or with nothing measured.
pub fn est_err(est: Option<u64>, peak: u64) -> Option<f64> {
    est.filter(|_| peak > 0).map(|e| (e as f64 - peak as f64) / peak as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{Backend, cpu::CpuBackend};
    use crate::harness::variant::{BASELINE, Recipe};
    use crate::harness::{Error, VariantSpec};
    use crate::tensor::DType;
    use std::sync::Arc;

    /// Outputs fixed vectors per variant; "broken" errors; "own" has its own reference.
    struct Fake {
        /// The baseline's output holds an infinity.
        bad_baseline: bool,
    }

    impl Workload for Fake {
        fn name(&self) -> &'static str {
            "fake"
        }
        fn config(&self) -> serde_json::Value {
            serde_json::json!({})
        }
        fn variants(&self) -> Vec<VariantSpec> {
            let candidates = ["close", "far", "broken", "own", "nan", "bad_ref"];
            let mut v: Vec<_> =
                candidates.into_iter().map(|name| VariantSpec::candidate(name, "", Recipe::PLAIN, 0.01)).collect();
            // Declared last: the runner finds the reference by its role.
            v.push(VariantSpec::baseline("", Recipe::PLAIN));
            v
        }
        fn setup(&mut self, _: &Ctx) -> Result<()> {
            Ok(())
        }
        fn step(&mut self, ctx: &Ctx, v: &Variant) -> Result<Tensor> {
            let v = match v.name() {
                BASELINE if self.bad_baseline => vec![1.0, f32::INFINITY, 4.0],
                BASELINE => vec![1.0, 2.0, 4.0],
                "nan" => vec![1.0, f32::NAN, 4.0],
                "close" => vec![1.0, 2.0, 4.02],
                "far" | "own" | "bad_ref" => vec![1.0, 2.0, 4.2],
                _ => return Err(Error::Workload("kernel exploded".into())),
            };
            Ok(ctx.backend.upload(&v, &[3], DType::F32)?)
        }
        fn reference(&mut self, ctx: &Ctx, v: &Variant) -> Result<Option<Tensor>> {
            Ok(match v.name() {
                "own" => Some(ctx.backend.upload(&[1.0, 2.0, 4.2], &[3], DType::F32)?),
                "bad_ref" => return Err(Error::Workload("reference exploded".into())),
                _ => None,
            })
        }
        fn tokens(&self) -> usize {
            3
        }
        fn flops(&self, _: &Variant) -> f64 {
            1.0
        }
    }

    fn one_rank() -> (Ctx, RunInfo) {
        let backend: Arc<dyn Backend> = Arc::new(CpuBackend::new());
        let info = RunInfo::new(backend.as_ref(), "quick", 0, 1);
        (Ctx::single(backend, DType::Bf16), info)
    }

    #[test]
    fn gate_fails_variants_beyond_tolerance_and_gives_them_no_speedup() {
        let (ctx, info) = one_rank();
        let opts = Options { warmup: 1, iterations: 3, variants: None, single_rank: false, profile_steps: false };
        let recs = run(&ctx, &mut Fake { bad_baseline: false }, &opts, &info, &ProgressBar::hidden()).unwrap();
        let by = |v: &str| recs.iter().find(|r| r.variant == v).unwrap();
        assert_eq!(recs[0].variant, BASELINE, "the reference runs first");
        assert_eq!(by(BASELINE).status, Status::Ok);
        assert_eq!(by(BASELINE).samples_ms.len(), 3);
        // 0.02 / 4 = 0.005 <= 0.01
        assert_eq!(by("close").status, Status::Ok);
        assert!((by("close").max_err.unwrap() - 0.005).abs() < 1e-6);
        assert!(by("close").speedup.is_some());
        // 0.2 / 4 = 0.05 > 0.01
        assert_eq!(by("far").status, Status::Failed);
        assert_eq!(by("far").speedup, None);
        let far = by("far").error.clone().unwrap();
        assert!(far.contains(&format!("max_err 5.000e-2 > 1.0e-2 against {BASELINE}")), "{far}");
        assert_eq!(by("broken").status, Status::Error);
        assert!(by("broken").error.as_deref().unwrap().contains("kernel exploded"));
        // Same output as "far", but compared with its own reference: passes.
        assert_eq!(by("own").status, Status::Ok);
        assert_eq!(by("own").max_err, Some(0.0));
        // A reference that fails errors its own record; every other record is still there.
        assert_eq!(recs.len(), 7);
        assert_eq!(by("bad_ref").status, Status::Error);
        assert!(by("bad_ref").error.as_deref().unwrap().contains("reference: reference exploded"));
    }

    #[test]
    fn row_check_allows_a_few_flipped_tokens_only_outside_f32() {
        // 200 rows of 4: two rows far off, the rest within 1e-4.
        let one: Vec<f32> = (0..800).map(|i| 1.0 + (i % 7) as f32).collect();
        let mut out: Vec<f32> = one.iter().map(|x| x * (1.0 + 1e-4)).collect();
        out[8..16].iter_mut().for_each(|x| *x *= 2.0);
        let c = row_check(&out, &one, 200, false);
        assert_eq!((c.rows, c.rows_off, c.allowed_off), (200, 2, 4));
        assert!((c.rel_l2_rest - 1e-4).abs() < 1e-6, "{}", c.rel_l2_rest);
        assert_eq!(row_check(&out, &one, 200, true).allowed_off, 0);
        // A wrong shard is off everywhere.
        let shifted: Vec<f32> = one.iter().rev().copied().collect();
        assert!(row_check(&shifted, &one, 200, false).rows_off > 100);
    }

    #[test]
    fn unselected_baseline_still_runs_as_reference() {
        let (ctx, info) = one_rank();
        let opts = Options {
            warmup: 0,
            iterations: 2,
            variants: Some(vec!["far".into()]),
            single_rank: false,
            profile_steps: false,
        };
        let recs = run(&ctx, &mut Fake { bad_baseline: false }, &opts, &info, &ProgressBar::hidden()).unwrap();
        assert_eq!(recs.len(), 1);
        assert_eq!(recs[0].status, Status::Failed);
    }

    #[test]
    fn non_finite_outputs_are_errors_naming_the_tensor() {
        let (ctx, info) = one_rank();
        let opts = Options { warmup: 0, iterations: 1, variants: None, single_rank: false, profile_steps: false };
        let recs = run(&ctx, &mut Fake { bad_baseline: false }, &opts, &info, &ProgressBar::hidden()).unwrap();
        let nan = recs.iter().find(|r| r.variant == "nan").unwrap();
        assert_eq!(nan.status, Status::Error);
        assert!(
            nan.error
                .as_deref()
                .unwrap()
                .contains("the output of fake nan holds 1 non-finite value(s): element 1 is NaN")
        );
        assert_eq!(nan.speedup, None);

        let recs = run(&ctx, &mut Fake { bad_baseline: true }, &opts, &info, &ProgressBar::hidden()).unwrap();
        let base = recs.iter().find(|r| r.variant == BASELINE).unwrap();
        assert_eq!(base.status, Status::Error);
        let e = base.error.clone().unwrap();
        assert!(e.contains(&format!("the output of fake {BASELINE}")), "{e}");
        // Every other variant is an error that says why there is no reference, never ok.
        for r in recs.iter().filter(|r| ![BASELINE, "broken"].contains(&r.variant.as_str())) {
            assert_eq!(r.status, Status::Error, "{}", r.variant);
            assert!(r.error.as_deref().unwrap().contains("element 1 is inf"), "{}: {:?}", r.variant, r.error);
        }
    }
}
