//! Before any collective on devices, every rank says what it found (its backend, GPU,
//! or why setup failed) and all of them check the same list: a job whose ranks disagree,
//! or where one rank failed, ends on every rank with one message naming the ranks,
//! instead of one rank exiting while the others wait in NCCL init. Each rank's memory check
//! is part of the list: a plan that does not fit on one rank is refused on every rank before
//! any of them allocates.

use serde::{Deserialize, Serialize};

/// What one rank found at setup.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Found {
    pub rank: usize,
    pub host: String,
    /// "cuda" or "cpu"; None when setup failed.
    pub backend: Option<String>,
    /// The GPU: its name and its index among the host's GPUs (CUDA_VISIBLE_DEVICES undone).
    pub gpu: Option<(String, usize)>,
    pub nccl_hostid: Option<String>,
    /// Why auto fell back to the CPU.
    pub cpu_because: Option<String>,
    pub error: Option<String>,
    /// Why the plan does not fit this rank's device (or host), with the estimate.
    pub memory: Option<String>,
}

/// Checks the plan against this rank's memory: its GPU's (`backend`), or the host's available
/// memory shared by the `ranks_on_host` CPU ranks on it. `RWM_FAULT=nomem@R` gives rank R a
/// host of 1 MiB (tests).
pub fn fits(
    plan: &crate::plan::RunPlan,
    dims: &crate::layout::ParallelDims,
    backend: &dyn crate::backend::Backend,
    rank: usize,
    ranks_on_host: usize,
) -> Option<String> {
    use crate::plan::fit::{Capacity, check_backend, check_plan};
    let checked = match crate::world::fault::memory_at(rank) {
        Some(available) => check_plan(plan, dims, Capacity::Host { available, ranks: 1 }),
        None => check_backend(plan, dims, backend, ranks_on_host),
    };
    checked.err().map(|e| e.to_string())
}

/// The device a rank runs on, for messages.
fn device(f: &Found) -> String {
    match (&f.gpu, f.backend.as_deref()) {
        (Some((name, i)), _) => format!("GPU {i}, {name}"),
        (None, Some(b)) => format!("{b} backend"),
        (None, None) => "no backend".into(),
    }
}

/// The verdict on every rank's memory check: refused on all ranks when the plan does not fit
/// on one, naming the first such rank, its device and its estimate (and the others by number).
pub fn check_memory(all: &[Found]) -> Result<(), String> {
    let refused: Vec<&Found> = all.iter().filter(|f| f.memory.is_some()).collect();
    let Some(first) = refused.first() else { return Ok(()) };
    let why = first.memory.as_deref().unwrap_or_default();
    if all.len() == 1 {
        return Err(why.to_string());
    }
    let others = match &refused[1..] {
        [] => String::new(),
        rest => format!(" (also on ranks {})", list(rest)),
    };
    Err(format!(
        "the plan does not fit on {} of {} ranks, so no rank runs it{others}; rank {} ({}, {}): {why}",
        refused.len(),
        all.len(),
        first.rank,
        first.host,
        device(first)
    ))
}

/// The GPU index on the host of CUDA ordinal `ordinal`, through CUDA_VISIBLE_DEVICES.
pub fn host_gpu(ordinal: usize, visible: Option<&str>) -> usize {
    visible.and_then(|v| v.split(',').nth(ordinal)).and_then(|s| s.trim().parse().ok()).unwrap_or(ordinal)
}

fn list(ranks: &[&Found]) -> String {
    ranks.iter().map(|f| format!("{} ({})", f.rank, f.host)).collect::<Vec<_>>().join(", ")
}

/// The verdict every rank reaches on the same list.
pub fn check(all: &[Found]) -> Result<(), String> {
    let failed: Vec<String> =
        all.iter().filter_map(|f| f.error.as_ref().map(|e| format!("rank {} ({}): {e}", f.rank, f.host))).collect();
    if !failed.is_empty() {
        return Err(format!("setup failed on {} of {} ranks: {}", failed.len(), all.len(), failed.join("; ")));
    }
    let on = |b: &str| all.iter().filter(|f| f.backend.as_deref() == Some(b)).collect::<Vec<_>>();
    let (cuda, cpu) = (on("cuda"), on("cpu"));
    if !cuda.is_empty() && !cpu.is_empty() {
        let why = cpu.iter().find_map(|f| f.cpu_because.clone()).map(|w| format!(" ({w})")).unwrap_or_default();
        return Err(format!(
            "ranks disagree on the backend: cuda on ranks {}, cpu on ranks {}{why}; every rank of a job must run \
             on the same backend: give each rank a GPU, or pass --backend cpu",
            list(&cuda),
            list(&cpu)
        ));
    }
    for (i, a) in cuda.iter().enumerate() {
        for b in &cuda[i + 1..] {
            let same_host = a.host == b.host && a.nccl_hostid == b.nccl_hostid;
            if same_host && a.gpu.as_ref().map(|g| g.1) == b.gpu.as_ref().map(|g| g.1) {
                let g = a.gpu.as_ref().map_or(0, |g| g.1);
                return Err(format!(
                    "ranks {} and {} both run on GPU {g} of host {}: NCCL refuses two ranks on one device; give \
                     each rank its own GPU (check the ranks per node, CUDA_VISIBLE_DEVICES and --topology), or, \
                     to test on one GPU, give each rank its own NCCL_HOSTID (bench/nccl_one_gpu.sh)",
                    a.rank, b.rank, a.host
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rank(r: usize, host: &str, backend: &str, gpu: usize) -> Found {
        Found {
            rank: r,
            host: host.into(),
            backend: Some(backend.into()),
            gpu: (backend == "cuda").then(|| ("H200".into(), gpu)),
            ..Default::default()
        }
    }

    #[test]
    fn agreeing_ranks_pass() {
        assert_eq!(check(&[rank(0, "a", "cuda", 0), rank(1, "a", "cuda", 1), rank(2, "b", "cuda", 0)]), Ok(()));
        assert_eq!(check(&[rank(0, "a", "cpu", 0), rank(1, "a", "cpu", 0)]), Ok(()));
    }

    #[test]
    fn a_failed_rank_is_named() {
        let mut bad = rank(1, "b", "cuda", 0);
        (bad.backend, bad.error) = (None, Some("CUDA driver not found".into()));
        let e = check(&[rank(0, "a", "cuda", 0), bad]).unwrap_err();
        assert!(e.contains("setup failed on 1 of 2 ranks: rank 1 (b): CUDA driver not found"), "{e}");
    }

    #[test]
    fn no_silent_cpu_fallback() {
        let mut cpu = rank(1, "a", "cpu", 0);
        cpu.cpu_because = Some("no usable GPU: out of devices".into());
        let e = check(&[rank(0, "a", "cuda", 0), cpu]).unwrap_err();
        assert!(e.contains("cuda on ranks 0 (a), cpu on ranks 1 (a) (no usable GPU: out of devices)"), "{e}");
    }

    #[test]
    fn a_plan_that_does_not_fit_one_rank_is_refused_on_all_naming_it() {
        let mut all = [rank(0, "a", "cuda", 0), rank(1, "a", "cuda", 1), rank(2, "b", "cuda", 0)];
        assert_eq!(check_memory(&all), Ok(()));
        all[1].memory = Some("memory: moe optimized needs an estimated 150.00 GiB per rank".into());
        let e = check_memory(&all).unwrap_err();
        assert!(
            e.starts_with("the plan does not fit on 1 of 3 ranks, so no rank runs it; rank 1 (a, GPU 1, H200)"),
            "{e}"
        );
        assert!(e.ends_with("needs an estimated 150.00 GiB per rank"), "{e}");
        all[2].memory = all[1].memory.clone();
        assert!(check_memory(&all).unwrap_err().contains("2 of 3 ranks, so no rank runs it (also on ranks 2 (b))"));
        // One rank alone: the check's own message.
        assert_eq!(
            check_memory(&all[1..2]).unwrap_err(),
            "memory: moe optimized needs an estimated 150.00 GiB per rank"
        );
    }

    #[test]
    fn two_ranks_on_one_gpu_fail_fast_unless_nccl_sees_two_hosts() {
        let e = check(&[rank(0, "a", "cuda", 0), rank(1, "a", "cuda", 0)]).unwrap_err();
        assert!(e.contains("ranks 0 and 1 both run on GPU 0 of host a"), "{e}");
        let mut h = [rank(0, "a", "cuda", 0), rank(1, "a", "cuda", 0)];
        h[0].nccl_hostid = Some("h0".into());
        h[1].nccl_hostid = Some("h1".into());
        assert_eq!(check(&h), Ok(()));
        assert_eq!(host_gpu(1, Some("4,6")), 6);
        assert_eq!(host_gpu(1, None), 1);
    }
}
