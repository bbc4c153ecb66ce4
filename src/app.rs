//! The commands, between the parsed flags and the harness.

use crate::backend::{self, Backend};
use crate::cli::{Command, RunArgs};
use crate::comm::{Comm, single::SingleComm};
use crate::harness::record::{Record, RunInfo, Status};
use crate::harness::{self, Ctx, registry, runner, table};
use crate::plan::RunPlan;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Harness(#[from] harness::Error),
    #[error(transparent)]
    Backend(#[from] backend::Error),
    #[error(transparent)]
    Comm(#[from] crate::comm::Error),
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
}

/// What the process should exit with when no error escaped.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    /// Some variant FAILED its correctness gate or errored.
    Failures(usize),
}

pub fn run(cmd: &Command, out: &mut dyn Write) -> Result<Outcome, Error> {
    match cmd {
        Command::List => list(out).map(|_| Outcome::Ok),
        Command::Run(a) => run_targets(a, out),
        Command::Estimate(_) => Ok(Outcome::Ok),
    }
}

fn io(path: &str) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io { path: path.into(), source }
}

fn list(out: &mut dyn Write) -> Result<(), Error> {
    let w = |out: &mut dyn Write, s: String| writeln!(out, "{s}").map_err(io("stdout"));
    w(out, "targets:".into())?;
    for (name, about) in registry::TARGETS {
        let cfg = registry::TargetConfig::for_profile(name, "quick")?;
        w(out, format!("  {name:<6} {about}"))?;
        for v in cfg.workload().variants() {
            w(out, format!("         {:<10} {}", v.name, v.about))?;
        }
        let keys = serde_json::to_value(&cfg).expect("configs serialise");
        let keys: Vec<String> = keys.as_object().map(|m| m.keys().cloned().collect()).unwrap_or_default();
        w(out, format!("         keys (--set {name}.KEY=VALUE): {}", keys.join(", ")))?;
    }
    w(out, "  moe presets (--set moe.preset=NAME): deepseek-v2-lite, deepseek-v3".into())?;
    w(out, "profiles:".into())?;
    for p in registry::PROFILES {
        w(out, format!("  {:<6} {} (warm-up {}, steps {})", p.name, p.about, p.warmup, p.iterations))?;
    }
    Ok(())
}

fn run_targets(a: &RunArgs, out: &mut dyn Write) -> Result<Outcome, Error> {
    let plan = RunPlan::resolve(a)?;
    let world_size = a.world.unwrap_or(1);
    plan.plan.check_world(world_size)?;
    if a.dry_run {
        let text = serde_json::to_string_pretty(&plan).expect("plan serialises");
        writeln!(out, "{text}\nplan is valid for world size {world_size}; nothing was run (--dry-run)")
            .map_err(io("stdout"))?;
        return Ok(Outcome::Ok);
    }
    let backend: Arc<dyn Backend> = match plan.backend {
        Some(kind) => backend::create(kind, 0)?,
        None => backend::best(0),
    };
    tracing::info!("backend: {}", backend.device_name());
    let world: Arc<dyn Comm> = Arc::new(SingleComm::new(backend.clone()));
    let ctx = Ctx { backend: backend.clone(), world: world.clone(), gemm_dtype: plan.plan.gemm_dtype };
    let info = RunInfo::new(backend.as_ref(), plan.plan.profile, world.rank(), world.size());
    let opts = runner::Options { warmup: plan.warmup, iterations: plan.iterations, variants: plan.variants.clone() };
    let total_steps: usize = plan.plan.targets.iter().map(|t| t.workload().variants().len() * opts.iterations).sum();
    let bar =
        indicatif::ProgressBar::with_draw_target(Some(total_steps as u64), indicatif::ProgressDrawTarget::stderr());
    bar.set_style(
        indicatif::ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} {msg}")
            .expect("template is valid")
            .progress_chars("=> "),
    );
    let mut records: Vec<Record> = vec![];
    for t in &plan.plan.targets {
        let mut w = t.workload();
        match runner::run(&ctx, w.as_mut(), &opts, &info, &bar) {
            Ok(r) => records.extend(r),
            Err(e) => {
                // Setup failed: record it for every selected variant so nothing is silently lost.
                tracing::error!("{}: {e}", t.name());
                for v in w.variants() {
                    if opts.variants.as_ref().is_none_or(|s| s.iter().any(|x| x == v.name)) {
                        records.push(runner::error_record(&ctx, w.as_ref(), &info, v.name, v.tolerance, &opts, &e));
                    }
                }
            }
        }
    }
    bar.finish_and_clear();
    let path = plan.output.clone().unwrap_or_else(|| PathBuf::from(format!("results/{}.jsonl", info.run_id)));
    write_jsonl(&path, &records)?;
    table::print(&records, out).map_err(io("stdout"))?;
    writeln!(out, "results: {}", path.display()).map_err(io("stdout"))?;
    let bad = records.iter().filter(|r| r.status != Status::Ok).count();
    Ok(if bad == 0 { Outcome::Ok } else { Outcome::Failures(bad) })
}

fn write_jsonl(path: &std::path::Path, records: &[Record]) -> Result<(), Error> {
    let p = path.display().to_string();
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io(&p))?;
    }
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).map_err(io(&p))?);
    for r in records {
        serde_json::to_writer(&mut f, r).map_err(|e| Error::Io { path: p.clone(), source: e.into() })?;
        f.write_all(b"\n").map_err(io(&p))?;
    }
    f.flush().map_err(io(&p))
}
