//! `rwm-dist run`: the world, the backend and communicators of each rank, the
//! harness over every target, and the records gathered to rank 0.

use super::{Error, Outcome, config_err, io};
use crate::backend::{self, Backend};
use crate::cli::RunArgs;
use crate::comm::{Comm, single::SingleComm};
use crate::harness::record::{Record, RunInfo, Status};
use crate::harness::{Ctx, runner, table};
use crate::layout::ParallelDims;
use crate::plan::RunPlan;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

pub(super) fn run_targets(a: &RunArgs, out: &mut dyn Write) -> Result<Outcome, Error> {
    let plan = RunPlan::resolve(a)?;
    if a.ranks == 0 {
        return Err(config_err("--ranks must be at least 1"));
    }
    if plan.plan.layout.tp > 1 {
        return Err(config_err(format!(
            "--tp {}: runs have no tensor parallelism yet (estimate and topo show model it)",
            plan.plan.layout.tp
        )));
    }
    if a.dry_run {
        let launched = crate::world::detect_launcher(|k| std::env::var(k).ok()).and_then(|l| l.size);
        let world_size = a.world.or(launched).unwrap_or(a.ranks);
        let dims = plan.plan.dims(world_size)?;
        let memory = crate::plan::fit::check_dry_run(&plan, &dims, a.ranks)?;
        let text = serde_json::to_string_pretty(&plan).expect("plan serialises");
        writeln!(out, "{text}\n{memory}").map_err(io("stdout"))?;
        match placement(&plan, &dims)? {
            Some(p) => super::topo::render_map(&p, out).map_err(io("stdout"))?,
            None => render_coords(&dims, out).map_err(io("stdout"))?,
        }
        writeln!(out, "plan is valid for world size {world_size}; nothing was run (--dry-run)")
            .map_err(io("stdout"))?;
        return Ok(Outcome::Ok);
    }
    let world = crate::world::World::init()?;
    if world.size > 1 && a.ranks > 1 {
        return Err(config_err("--ranks runs ranks as threads without a launcher; under mpirun leave it out"));
    }
    let world_size = if world.size > 1 { world.size } else { a.ranks };
    let dims = plan.plan.dims(world_size)?;
    // A topology file is honoured (and checked) however the ranks are started.
    let placed = placement(&plan, &dims)?;
    let path = plan.output.clone();
    let records = if a.ranks > 1 {
        if plan.backend == Some(backend::BackendKind::Cuda) {
            return Err(config_err(
                "--ranks runs ranks as CPU threads; for GPUs launch one process per GPU with mpirun",
            ));
        }
        let backend: Arc<dyn Backend> = Arc::new(backend::cpu::CpuBackend::new());
        crate::plan::fit::check_backend(&plan, &dims, backend.as_ref(), a.ranks)?;
        // Thread ranks are watched as launched ones are; the comm's own waits outlast the limit.
        let limit = crate::world::arm_for_threads()?;
        let wait = limit.map_or(crate::world::NO_LIMIT, |t| t + std::time::Duration::from_secs(30));
        let comms = crate::comm::local::LocalComm::group_with_timeout(a.ranks, wait);
        std::thread::scope(|s| {
            let handles: Vec<_> = comms
                .into_iter()
                .map(|c| {
                    let (b, path) = (backend.clone(), path.clone());
                    let plan = &plan;
                    s.spawn(move || run_rank(plan, dims, b, Arc::new(c), path))
                })
                .collect();
            let mut gathered = None;
            let mut first_err = None;
            for h in handles {
                match h.join().expect("rank thread panicked") {
                    Ok(Some(r)) => gathered = Some(r),
                    Ok(None) => {}
                    Err(e) => first_err = first_err.or(Some(e)),
                }
            }
            match (gathered, first_err) {
                (Some(r), _) => Ok(r),
                (None, Some(e)) => Err(e),
                (None, None) => unreachable!("rank 0 returns the gathered records or an error"),
            }
        })?
    } else {
        let device = placed.as_ref().map_or(world.local_rank, |p| p.slots[world.rank].local_gpu);
        // Refused on every rank (exit 2) when the plan does not fit one of them.
        let (backend, comm) = connect(&plan, &dims, &world, device)?;
        match run_rank(&plan, dims, backend, comm, path) {
            Ok(Some(r)) => r,
            // Ranks other than 0 print nothing: rank 0 prints for the job.
            Ok(None) => return Ok(Outcome::Ok),
            Err(e) if world.size > 1 => world.abort(2, &e.to_string()),
            Err(e) => return Err(e),
        }
    };
    let (records, saved) = records;
    let rank0: Vec<Record> = records.iter().filter(|r| r.rank == 0).cloned().collect();
    table::print(&rank0, out).map_err(io("stdout"))?;
    if records.iter().any(|r| r.rank > 0) {
        table::print_spread(&records, out).map_err(io("stdout"))?;
    }
    if let Some(r) = records.first() {
        let incomplete = if saved.is_ok() { "" } else { " (incomplete: writing failed)" };
        let path = output_path(&plan.output, &r.run_id);
        writeln!(out, "results: {}{incomplete}", path.display()).map_err(io("stdout"))?;
    }
    // The table is out; now say that the file lacks records (exit 2).
    saved?;
    let bad = records.iter().filter(|r| r.status != Status::Ok).count();
    Ok(if bad == 0 { Outcome::Ok } else { Outcome::Failures(bad, "variant(s) FAILED or errored") })
}

/// Rank -> GPU map of the run's layout on the --topology file, if one was given.
fn placement(plan: &RunPlan, dims: &ParallelDims) -> Result<Option<crate::topology::Placement>, Error> {
    let Some(path) = &plan.plan.topology else { return Ok(None) };
    let topo = crate::topology::Topology::load(path)?;
    Ok(Some(crate::topology::place(&topo, dims.world_size(), *dims)?))
}

/// The layout and every rank's coordinates, when no topology places the ranks.
fn render_coords(dims: &ParallelDims, out: &mut dyn Write) -> std::io::Result<()> {
    let world = dims.world_size();
    let ep_groups = world / (dims.tp * dims.ep);
    writeln!(
        out,
        "world {world} = {dims}; {} data replica(s); {ep_groups} EP group(s), each holding every expert",
        dims.replicas()
    )?;
    writeln!(out, "{:>5} {:>4} {:>4} {:>4} {:>4} {:>8}", "rank", "tp", "cp", "ep", "dp", "replica")?;
    for r in 0..world {
        let c = dims.coords(r);
        writeln!(out, "{r:>5} {:>4} {:>4} {:>4} {:>4} {:>8}", c.tp, c.cp, c.ep, c.dp, dims.replica(r))?;
    }
    Ok(())
}

type Connected = (Arc<dyn Backend>, Arc<dyn Comm>);

/// The backend and the world communicator for device tensors: NCCL over the MPI
/// world on GPUs, the host communicator (MPI or one rank) on the CPU. Under a launcher
/// every rank first agrees with the others on what it found (`preflight`), its memory check
/// included; the whole of setup runs under the setup limit of the watchdog.
fn connect(
    plan: &RunPlan,
    dims: &ParallelDims,
    world: &crate::world::World,
    device: usize,
) -> Result<Connected, Error> {
    use super::preflight::{Found, check, check_memory, fits, host_gpu};
    let _setup = crate::watchdog::watch_setup(format!("setup (backend, devices, NCCL init) on rank {}", world.rank));
    let mut found = Found {
        rank: world.rank,
        host: world.hostname.clone(),
        nccl_hostid: std::env::var("NCCL_HOSTID").ok(),
        ..Default::default()
    };
    // Ranks sharing one GPU (bench/nccl_one_gpu.sh sets RWM_SERIAL_CONTEXTS on every rank) create
    // their contexts one at a time, in rank order: without MPS the driver gives the contexts
    // time slices in turn, and a CP ring's step takes one or two times as long depending on
    // whether that turn follows the ring (BENCHMARKS.md, step-time section). Rank r creates after
    // the first r barriers; every rank passes `size` barriers.
    let serial = world.size > 1 && std::env::var_os("RWM_SERIAL_CONTEXTS").is_some();
    for _ in 0..if serial { world.rank } else { 0 } {
        world.comm().barrier()?;
    }
    let chosen = crate::world::fault::at_setup(world.rank).and_then(|()| match plan.backend {
        Some(backend::BackendKind::Cpu) => Ok(None),
        Some(backend::BackendKind::Cuda) => {
            backend::cuda::CudaBackend::new(device).map(|c| Some(Arc::new(c))).map_err(|e| e.to_string())
        }
        None => match backend::cuda::CudaBackend::new(device) {
            Ok(c) => Ok(Some(Arc::new(c))),
            Err(e) => {
                tracing::info!("no usable GPU ({e}); using the CPU backend");
                found.cpu_because = Some(format!("no usable GPU: {e}"));
                Ok(None)
            }
        },
    });
    if serial {
        if let Ok(Some(c)) = &chosen {
            // The context and its first work exist before the next rank starts. An error here
            // comes back at the context's next use; returning now would leave the others waiting
            // in the barriers below.
            let _ = c.synchronize();
        }
        for _ in world.rank..world.size {
            world.comm().barrier()?;
        }
    }
    match &chosen {
        Ok(Some(c)) => {
            let visible = std::env::var("CUDA_VISIBLE_DEVICES").ok();
            found.backend = Some("cuda".into());
            found.gpu = Some((c.device_name(), host_gpu(c.context().ordinal(), visible.as_deref())));
            found.memory = fits(plan, dims, c.as_ref(), world.rank, world.local_size);
        }
        Ok(None) => {
            found.backend = Some("cpu".into());
            found.memory = fits(plan, dims, &backend::cpu::CpuBackend::new(), world.rank, world.local_size);
        }
        Err(e) => found.error = Some(e.clone()),
    }
    if world.size > 1 {
        let host = world.comm();
        let mine = serde_json::to_vec(&found).expect("serialises");
        let all = match host.gather_bytes(&mine)? {
            Some(parts) => serde_json::to_vec(&parts).expect("serialises"),
            None => vec![],
        };
        let parts: Vec<Vec<u8>> = serde_json::from_slice(&host.broadcast_bytes(&all)?).expect("rank 0's list parses");
        let all: Vec<Found> = parts.iter().map(|p| serde_json::from_slice(p).expect("our own ranks' JSON")).collect();
        check(&all).and_then(|()| check_memory(&all)).map_err(config_err)?;
    }
    let cuda = chosen.map_err(config_err)?;
    check_memory(std::slice::from_ref(&found)).map_err(config_err)?;
    Ok(match cuda {
        Some(c) if world.size > 1 => {
            let nccl = crate::comm::nccl::NcclComm::new(world.comm(), &c, device)?;
            (c as Arc<dyn Backend>, Arc::new(nccl))
        }
        Some(c) => {
            let b = c as Arc<dyn Backend>;
            (b.clone(), Arc::new(SingleComm::new(b)))
        }
        None => {
            let b: Arc<dyn Backend> = Arc::new(backend::cpu::CpuBackend::new());
            let comm = if world.size > 1 { world.comm() } else { Arc::new(SingleComm::new(b.clone())) };
            (b, comm)
        }
    })
}

fn output_path(output: &Option<PathBuf>, run_id: &str) -> PathBuf {
    output.clone().unwrap_or_else(|| PathBuf::from(format!("results/{run_id}.jsonl")))
}

/// One rank's whole run. After each target every rank's records are gathered to
/// rank 0, which appends them to the results file (a later failure loses nothing
/// already measured) and finally returns them all.
fn run_rank(
    plan: &RunPlan,
    dims: ParallelDims,
    backend: Arc<dyn Backend>,
    world: Arc<dyn Comm>,
    output: Option<PathBuf>,
) -> Result<Option<super::output::Gathered>, Error> {
    let rank = world.rank();
    if rank == 0 {
        tracing::info!("backend: {}; {} rank(s): {dims}", backend.device_name(), world.size());
    }
    // Thread ranks share one process: each counts its own host bytes.
    crate::tensor::ledger::track_this_thread();
    let ctx = Ctx::new(backend.clone(), world.clone(), dims, plan.plan.gemm_dtype)?;
    let info = RunInfo::new(backend.as_ref(), plan.plan.profile, rank, world.size());
    // Every rank must name the run alike: rank 0's id wins.
    let run_id = String::from_utf8_lossy(&world.broadcast_bytes(info.run_id.as_bytes())?).into_owned();
    let info = RunInfo { run_id, ..info };
    let path = output_path(&output, &info.run_id);
    let mut results = if rank == 0 { Some(super::output::Results::open(&path)?) } else { None };
    let opts = runner::Options {
        warmup: plan.warmup,
        iterations: plan.iterations,
        variants: plan.variants.clone(),
        single_rank: plan.single_rank_check,
        profile_steps: plan.profile_steps,
    };
    let total_steps: usize = plan.plan.targets.iter().map(|t| t.variants().len() * opts.iterations).sum();
    let target =
        if rank == 0 { indicatif::ProgressDrawTarget::stderr() } else { indicatif::ProgressDrawTarget::hidden() };
    let bar = indicatif::ProgressBar::with_draw_target(Some(total_steps as u64), target);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} {msg}")
            .expect("template is valid")
            .progress_chars("=> "),
    );
    let mut all: Vec<Record> = vec![];
    for t in &plan.plan.targets {
        let mut w = t.workload();
        let mut mine = match runner::run(&ctx, w.as_mut(), &opts, &info, &bar) {
            Ok(r) => r,
            Err(e) => {
                // Setup failed: record it for every selected variant so nothing is silently lost.
                tracing::error!("rank {rank}: {}: {e}", t.name());
                runner::resolved(&ctx, w.as_ref())
                    .iter()
                    .filter(|v| opts.variants.as_ref().is_none_or(|s| s.iter().any(|x| x == v.name())))
                    .map(|v| runner::error_record(&ctx, w.as_ref(), &info, v, &opts, &e))
                    .collect()
            }
        };
        mine.iter_mut().for_each(|r| crate::harness::gates::apply(&plan.gates, r));
        let bytes = serde_json::to_vec(&mine).expect("records serialise");
        if let Some(ranks) = world.gather_bytes(&bytes)? {
            let recs: Vec<Record> = ranks
                .iter()
                .map(|b| serde_json::from_slice::<Vec<Record>>(b).expect("records from our own ranks parse"))
                .collect::<Vec<_>>()
                .concat();
            results.as_mut().expect("rank 0 holds the results file").append(&recs);
            all.extend(recs);
        }
    }
    bar.finish_and_clear();
    Ok(results.map(|r| (all, r.finish())))
}
