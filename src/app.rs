//! The commands, between the parsed flags and the harness.

use crate::backend::AttnAlgo;
use crate::backend::{self, Backend};
use crate::cli::{Command, RunArgs};
use crate::comm::{Comm, single::SingleComm};
use crate::harness::record::{Record, RunInfo, Status};
use crate::harness::registry::TargetConfig;
use crate::harness::{self, Ctx, registry, runner, table};
use crate::plan::RunPlan;
use crate::targets;
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
    /// Some variant FAILED its correctness gate or errored, or a layout does not fit: (count, what).
    Failures(usize, &'static str),
}

pub fn run(cmd: &Command, out: &mut dyn Write) -> Result<Outcome, Error> {
    match cmd {
        Command::List => list(out).map(|_| Outcome::Ok),
        Command::Run(a) => run_targets(a, out),
        Command::Estimate(a) => estimate(a, out),
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
    w(out, "presets (--set TARGET.preset=NAME, applied before other keys):".into())?;
    w(out, "  llama: llama3.1-8b, small   moe: deepseek-v2-lite, deepseek-v3   gpt4: full, small".into())?;
    w(out, "profiles:".into())?;
    for p in registry::PROFILES {
        w(out, format!("  {:<6} {} (warm-up {}, steps {})", p.name, p.about, p.warmup, p.iterations))?;
    }
    Ok(())
}

/// Per-rank budgets of the selected targets at the optimized variant's attention.
fn estimate(a: &crate::cli::EstimateArgs, out: &mut dyn Write) -> Result<Outcome, Error> {
    use crate::metrics::memory::parse_device_memory;
    let plan = crate::plan::Plan::resolve(&a.config)?;
    let world = a.world.unwrap_or(plan.world_size() * a.tp);
    plan.check_world(world)?;
    if a.tp == 0 || world % a.tp != 0 {
        return Err(config_err(format!("--tp {} does not divide the world size {world}", a.tp)));
    }
    let device = a.device_memory.as_deref().map(parse_device_memory).transpose().map_err(config_err)?;
    let mut overflows = 0;
    for t in &plan.targets {
        let mut inputs = match t {
            TargetConfig::Llama(c) => targets::memory::llama(c, AttnAlgo::Flash),
            TargetConfig::Moe(c) => targets::memory::moe(c, plan.layout),
            TargetConfig::Gpt4(c) => targets::memory::gpt4(c, plan.layout, AttnAlgo::Flash, true),
        };
        inputs.tp = a.tp;
        let budget = inputs.estimate().map_err(config_err)?;
        let params = inputs.param_count().map_err(config_err)?;
        writeln!(
            out,
            "{}: {:.3}B parameters; world {world} (tp {}, cp {}, ep {}); flash attention",
            t.name(),
            params as f64 / 1e9,
            a.tp,
            plan.layout.cp,
            plan.layout.ep
        )
        .map_err(io("stdout"))?;
        budget.render(device, out).map_err(io("stdout"))?;
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

fn config_err(e: impl std::fmt::Display) -> Error {
    crate::config::ConfigError::Invalid(e.to_string()).into()
}

fn run_targets(a: &RunArgs, out: &mut dyn Write) -> Result<Outcome, Error> {
    let plan = RunPlan::resolve(a)?;
    if a.ranks == 0 {
        return Err(crate::config::ConfigError::Invalid("--ranks must be at least 1".into()).into());
    }
    let world_size = a.world.unwrap_or(a.ranks);
    plan.plan.check_run_world(world_size)?;
    if a.dry_run {
        let text = serde_json::to_string_pretty(&plan).expect("plan serialises");
        writeln!(out, "{text}\nplan is valid for world size {world_size}; nothing was run (--dry-run)")
            .map_err(io("stdout"))?;
        return Ok(Outcome::Ok);
    }
    let records = if a.ranks > 1 {
        if plan.backend == Some(backend::BackendKind::Cuda) {
            return Err(crate::config::ConfigError::Invalid(
                "--ranks runs ranks as CPU threads; for GPUs launch one process per GPU with mpirun".into(),
            )
            .into());
        }
        run_thread_ranks(&plan, a.ranks)?
    } else {
        let backend: Arc<dyn Backend> = match plan.backend {
            Some(kind) => backend::create(kind, 0)?,
            None => backend::best(0),
        };
        let world: Arc<dyn Comm> = Arc::new(SingleComm::new(backend.clone()));
        run_rank(&plan, backend, world)?.expect("rank 0 gathers")
    };
    let info_run = records.first().map(|r| r.run_id.clone()).unwrap_or_default();
    let path = plan.output.clone().unwrap_or_else(|| PathBuf::from(format!("results/{info_run}.jsonl")));
    write_jsonl(&path, &records)?;
    let rank0: Vec<Record> = records.iter().filter(|r| r.rank == 0).cloned().collect();
    table::print(&rank0, out).map_err(io("stdout"))?;
    if records.iter().any(|r| r.rank > 0) {
        table::print_spread(&records, out).map_err(io("stdout"))?;
    }
    writeln!(out, "results: {}", path.display()).map_err(io("stdout"))?;
    let bad = records.iter().filter(|r| r.status != Status::Ok).count();
    Ok(if bad == 0 { Outcome::Ok } else { Outcome::Failures(bad, "variant(s) FAILED or errored") })
}

/// `n` ranks as threads sharing one CPU backend, joined by in-process communicators.
fn run_thread_ranks(plan: &RunPlan, n: usize) -> Result<Vec<Record>, Error> {
    let backend: Arc<dyn Backend> = Arc::new(backend::cpu::CpuBackend::new());
    let comms = crate::comm::local::LocalComm::group(n);
    let results: Vec<Result<Option<Vec<Record>>, Error>> = std::thread::scope(|s| {
        let handles: Vec<_> = comms
            .into_iter()
            .map(|c| {
                let b = backend.clone();
                s.spawn(move || run_rank(plan, b, Arc::new(c)))
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("rank thread panicked")).collect()
    });
    let mut gathered = None;
    for r in results {
        if let Some(recs) = r? {
            gathered = Some(recs);
        }
    }
    Ok(gathered.expect("rank 0 returns the gathered records"))
}

/// One rank's whole run; rank 0 returns every rank's records.
fn run_rank(plan: &RunPlan, backend: Arc<dyn Backend>, world: Arc<dyn Comm>) -> Result<Option<Vec<Record>>, Error> {
    let rank = world.rank();
    if rank == 0 {
        tracing::info!("backend: {}; {} rank(s)", backend.device_name(), world.size());
    }
    let ctx = Ctx {
        backend: backend.clone(),
        world: world.clone(),
        gemm_dtype: plan.plan.gemm_dtype,
        layout: plan.plan.layout,
    };
    let info = RunInfo::new(backend.as_ref(), plan.plan.profile, rank, world.size());
    // Every rank must name the run alike: rank 0's id wins.
    let run_id = String::from_utf8_lossy(&world.broadcast_bytes(info.run_id.as_bytes())?).into_owned();
    let info = RunInfo { run_id, ..info };
    let opts = runner::Options { warmup: plan.warmup, iterations: plan.iterations, variants: plan.variants.clone() };
    let total_steps: usize = plan.plan.targets.iter().map(|t| t.workload().variants().len() * opts.iterations).sum();
    let target =
        if rank == 0 { indicatif::ProgressDrawTarget::stderr() } else { indicatif::ProgressDrawTarget::hidden() };
    let bar = indicatif::ProgressBar::with_draw_target(Some(total_steps as u64), target);
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
                tracing::error!("rank {rank}: {}: {e}", t.name());
                for v in w.variants() {
                    if opts.variants.as_ref().is_none_or(|s| s.iter().any(|x| x == v.name)) {
                        records.push(runner::error_record(&ctx, w.as_ref(), &info, v.name, v.tolerance, &opts, &e));
                    }
                }
            }
        }
    }
    bar.finish_and_clear();
    let mine = serde_json::to_vec(&records).expect("records serialise");
    Ok(match world.gather_bytes(&mine)? {
        None => None,
        Some(all) => Some(
            all.iter()
                .map(|b| serde_json::from_slice::<Vec<Record>>(b).expect("records from our own ranks parse"))
                .collect::<Vec<_>>()
                .concat(),
        ),
    })
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
