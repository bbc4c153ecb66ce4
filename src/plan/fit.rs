//! Does the plan fit? The largest per-rank estimate over every target and variant the run will
//! execute, against the device's memory or, on the CPU, the memory the host has available.
//! `run --dry-run` and the run itself call `check_plan` before anything is allocated.

use super::RunPlan;
use crate::budget::{Budget, Storage, gib};
use crate::config::ConfigError;
use crate::harness::Variant;
use crate::harness::target::Target;
use crate::layout::ParallelDims;

/// The memory the run's ranks share.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Capacity {
    /// One GPU per rank, of this many bytes, its tensors held as `at` counts them.
    Device { bytes: u64, at: Storage },
    /// `ranks` ranks on the CPU backend of one host (threads of `--ranks`, or MPI ranks on the
    /// node) share `available` bytes (MemAvailable, or a cgroup's limit if lower).
    Host { available: u64, ranks: usize },
}

impl Capacity {
    /// The host's available memory shared by `ranks` ranks; None where it cannot be read.
    pub fn host(ranks: usize) -> Option<Capacity> {
        crate::tensor::ledger::host_available().map(|available| Capacity::Host { available, ranks })
    }

    fn storage(self) -> Storage {
        match self {
            Capacity::Device { at, .. } => at,
            Capacity::Host { .. } => Storage::Host,
        }
    }
}

/// Checks the plan against the memory of `backend`'s device or, on the CPU, the host's available
/// memory shared by `ranks_on_host` ranks. Nothing to check where neither can be read.
pub fn check_backend(
    plan: &RunPlan,
    dims: &ParallelDims,
    backend: &dyn crate::backend::Backend,
    ranks_on_host: usize,
) -> Result<(), ConfigError> {
    let cap = match backend.total_memory() {
        Some(bytes) => Some(Capacity::Device { bytes, at: Storage::measured_on(backend) }),
        None => Capacity::host(ranks_on_host),
    };
    match cap {
        Some(cap) => check_plan(plan, dims, cap),
        None => {
            tracing::warn!("memory not checked: the available memory cannot be read");
            Ok(())
        }
    }
}

/// What `--dry-run` can check without touching a device: the host for the CPU backend and for
/// `--ranks` threads, a topology file's GPU memory otherwise. Returns the line to print.
pub fn check_dry_run(plan: &RunPlan, dims: &ParallelDims, ranks: usize) -> Result<String, ConfigError> {
    let cpu = ranks > 1 || plan.backend == Some(crate::backend::BackendKind::Cpu);
    // An unreadable file is reported by the placement that follows.
    let gpu = plan.plan.topology.as_deref().and_then(|p| crate::topology::Topology::load(p).ok());
    let cap = match (cpu, gpu) {
        (true, _) => Capacity::host(ranks),
        // GB of 1e9 bytes, as NVML reports (and `topo discover` writes) it.
        (false, Some(t)) => {
            Some(Capacity::Device { bytes: (t.memory_gb * 1e9) as u64, at: Storage::device_named(&t.gpu_model) })
        }
        (false, None) => None,
    };
    let Some(cap) = cap else {
        return Ok("memory: not checked here: the backend is chosen at run time (give --backend cpu, or \
                   --topology for the GPU's memory); the run checks it before allocating"
            .into());
    };
    check_plan(plan, dims, cap)?;
    let (target, variant, b) = peak(plan, dims, cap.storage())?;
    Ok(format!("memory: fits; the largest per-rank estimate is {target} {variant}, {:.2} GiB", gib(b.total)))
}

/// The variants `plan` runs of `t`: the selected ones, and the reference.
fn variants_run(plan: &RunPlan, t: &dyn Target) -> Vec<Variant> {
    t.variants()
        .into_iter()
        .filter(|s| s.is_reference() || plan.variants.as_ref().is_none_or(|sel| sel.iter().any(|n| n == s.name)))
        .map(|s| s.resolve(plan.plan.gemm_dtype))
        .collect()
}

/// The largest per-rank budget of the run: (target, variant, budget). Targets run one after
/// another and free their tensors in between, so the peak is the largest single variant.
pub fn peak(
    plan: &RunPlan,
    dims: &ParallelDims,
    at: Storage,
) -> Result<(&'static str, &'static str, Budget), ConfigError> {
    let mut worst: Option<(&'static str, &'static str, Budget)> = None;
    for t in &plan.plan.targets {
        if let Some((v, b)) = largest(t.as_ref(), variants_run(plan, t.as_ref()), dims, at)?
            && worst.as_ref().is_none_or(|(_, _, w)| b.total > w.total)
        {
            worst = Some((t.name(), v, b));
        }
    }
    Ok(worst.expect("a plan has at least one target"))
}

/// The largest run budget of `t` over `variants` (the first of equals): (variant, budget); None
/// without variants.
pub fn largest(
    t: &dyn Target,
    variants: impl IntoIterator<Item = Variant>,
    dims: &ParallelDims,
    at: Storage,
) -> Result<Option<(&'static str, Budget)>, ConfigError> {
    let mut worst: Option<(&'static str, Budget)> = None;
    for v in variants {
        let b =
            t.run_budget(dims, &v, at).map_err(|e| ConfigError::Invalid(format!("{} {}: {e}", t.name(), v.name())))?;
        if worst.as_ref().is_none_or(|(_, w)| b.total > w.total) {
            worst = Some((v.name(), b));
        }
    }
    Ok(worst)
}

/// Refuses a plan whose largest per-rank estimate exceeds what each rank has, with the estimate
/// in the message. Sizes that overflow 64 bits are refused as well.
pub fn check_plan(plan: &RunPlan, dims: &ParallelDims, cap: Capacity) -> Result<(), ConfigError> {
    let (target, variant, budget) = peak(plan, dims, cap.storage())?;
    let (per_rank, whose, label) = match cap {
        Capacity::Device { bytes, .. } => (bytes, format!("the device's {:.2} GiB", gib(bytes)), "device memory"),
        Capacity::Host { available, ranks } => (
            available / ranks.max(1) as u64,
            format!(
                "the {:.2} GiB the host has available{} (the CPU backend holds every element as an f32)",
                gib(available),
                if ranks > 1 { format!(", shared by {ranks} ranks") } else { String::new() }
            ),
            "host memory per rank",
        ),
    };
    if budget.check_fit(per_rank).is_ok() {
        return Ok(());
    }
    let mut table = Vec::new();
    budget.render_against(Some((label, per_rank)), &mut table).expect("writing to a Vec cannot fail");
    Err(ConfigError::Invalid(format!(
        "memory: {target} {variant} needs an estimated {:.2} GiB per rank, more than {whose}; \
         use a smaller --seq-len, --layers, profile or preset, fewer --ranks, or more devices:\n{}",
        gib(budget.total),
        String::from_utf8_lossy(&table).trim_end()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Cli;
    use clap::Parser;

    const UNFUSED: Storage = Storage::Device { fused_swiglu: false };

    fn plan(args: &[&str]) -> (RunPlan, ParallelDims) {
        let cli = Cli::try_parse_from(["rwm-dist", "run"].iter().chain(args)).expect("flags parse");
        let crate::cli::Command::Run(a) = cli.command else { unreachable!() };
        let p = RunPlan::resolve(&a).expect("plan resolves");
        let dims = p.plan.dims(1).expect("one rank fits");
        (p, dims)
    }

    const GIB: u64 = 1 << 30;

    #[test]
    fn the_bench_profile_does_not_fit_a_small_host_and_fits_a_large_one() {
        let (p, d) = plan(&["--profile", "bench"]);
        // Llama 3.1 8B in f32 on the host: 32 GB of parameters alone.
        let (target, _, b) = peak(&p, &d, Storage::Host).unwrap();
        assert_eq!(target, "llama");
        assert!(b.total > 32_000_000_000, "{}", b.total);
        let e = check_plan(&p, &d, Capacity::Host { available: 16 * GIB, ranks: 1 }).unwrap_err().to_string();
        assert!(e.contains("memory: llama") && e.contains("16.00 GiB the host has available"), "{e}");
        assert!(e.contains("parameters") && e.contains("DOES NOT FIT"), "the estimate is shown: {e}");
        check_plan(&p, &d, Capacity::Host { available: 1024 * GIB, ranks: 1 }).unwrap();
        // On an 80 GiB GPU the bf16 model fits.
        check_plan(&p, &d, Capacity::Device { bytes: 80 * GIB, at: UNFUSED }).unwrap();
    }

    #[test]
    fn the_naive_baseline_counts_its_score_matrix() {
        let (p, d) = plan(&["--target", "llama", "--seq-len", "1000000"]);
        let (_, variant, b) = peak(&p, &d, UNFUSED).unwrap();
        assert_eq!(variant, crate::harness::variant::BASELINE);
        // One head's 10^6 x 10^6 scores in f32 and probabilities in bf16.
        assert_eq!(b.bytes(crate::budget::term::ATTENTION), 1_000_000u64 * 1_000_000 * 6);
        let e = check_plan(&p, &d, Capacity::Device { bytes: 141 * GIB, at: UNFUSED }).unwrap_err().to_string();
        assert!(e.contains("llama baseline") && e.contains("attention workspace"), "{e}");
        // Without the baseline's variant selected it still runs as the reference.
        let (p, d) = plan(&["--target", "llama", "--seq-len", "1000000", "--variant", "optimized"]);
        assert_eq!(peak(&p, &d, UNFUSED).unwrap().1, crate::harness::variant::BASELINE);
    }

    #[test]
    fn ranks_on_one_host_share_it() {
        let (p, d) = plan(&["--target", "moe"]);
        let one = peak(&p, &d, Storage::Host).unwrap().2.total;
        check_plan(&p, &d, Capacity::Host { available: one, ranks: 1 }).unwrap();
        let e = check_plan(&p, &d, Capacity::Host { available: one, ranks: 2 }).unwrap_err().to_string();
        assert!(e.contains("shared by 2 ranks"), "{e}");
    }

    #[test]
    fn sizes_beyond_64_bits_are_refused() {
        let (p, d) = plan(&["--target", "llama", "--seq-len", "18446744073709551615"]);
        let e = check_plan(&p, &d, Capacity::Device { bytes: 80 * GIB, at: UNFUSED }).unwrap_err().to_string();
        assert!(e.contains("llama baseline") && e.contains("overflows 64-bit"), "{e}");
    }
}
