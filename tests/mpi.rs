//! Multi-rank checks in their own processes (MPI starts once per process): `mpirun -np 4`
//! runs examples/mpi_smoke, which `cargo test` builds beside the tests with the same
//! features. Without the `mpi` feature or without mpirun the MPI tests print SKIPPED.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// target/<profile>/examples/mpi_smoke, next to target/<profile>/deps/<this test>.
fn example() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(|d| d.parent()).unwrap();
    let p = profile_dir.join("examples").join("mpi_smoke");
    assert!(
        p.exists(),
        "{} is missing: run the whole `cargo test` (it builds examples) or `cargo build --examples` first",
        p.display()
    );
    let out = Command::new(&p).arg("features").output().unwrap();
    let built_with = String::from_utf8_lossy(&out.stdout).contains("mpi feature: true");
    assert_eq!(
        built_with,
        cfg!(feature = "mpi"),
        "{} is stale (built with mpi = {built_with}); rebuild it with the same --features as this test",
        p.display()
    );
    p
}

/// Written to the stderr handle itself: libtest captures `println!`/`eprintln!`, not this.
fn skipped(why: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "SKIPPED: {why}");
}

/// Run with a deadline; the child is killed if it outlives it.
fn run(mut cmd: Command, limit: Duration) -> (Output, Duration) {
    let start = Instant::now();
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > limit {
            child.kill().unwrap();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    (child.wait_with_output().unwrap(), start.elapsed())
}

fn wrapper() -> Command {
    let mut c = Command::new(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("launch/mpirun.sh"));
    c.env_remove("NCCL_NVLS_ENABLE");
    c
}

#[test]
fn launch_wrapper_builds_the_mpirun_command() {
    let out = wrapper()
        .args(["--print", "-n", "16", "-N", "8", "-H", "hosts.txt", "--", "run", "--dry-run"])
        .env("LD_LIBRARY_PATH", "/opt/nccl/lib")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.starts_with("mpirun -np 16 --map-by ppr:8:node --bind-to numa --hostfile hosts.txt"), "{text}");
    // The library paths reach every node; NCCL keeps its defaults (NVLS is not forced off).
    assert!(text.contains(" -x PATH -x LD_LIBRARY_PATH -x RWM_TIMEOUT_S "), "{text}");
    assert!(text.contains(" -x NCCL_DEBUG ") && !text.contains("NCCL_NVLS_ENABLE"), "{text}");
    assert!(text.trim_end().ends_with("rwm-dist run --dry-run"), "{text}");
    // Ranks per node come from the topology file, never from this host's nvidia-smi.
    let topo = concat!(env!("CARGO_MANIFEST_DIR"), "/topology/gb200-nvl72.toml");
    let out = wrapper().args(["--print", "-n", "72", "-H", "h", "--", "run", "--topology", topo]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("--map-by ppr:4:node"), "{out:?}");
    let out = wrapper().args(["--print", "-n", "72", "-H", "h", "--", "run"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("with -H give -N PER_NODE"), "{out:?}");
    let bad = wrapper().args(["-n", "0", "--", "run"]).output().unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("-n RANKS is required and must be a positive number"));
}

#[cfg(feature = "mpi")]
mod with_mpi {
    use super::*;

    fn mpirun() -> Option<PathBuf> {
        let path = std::env::var_os("PATH")?;
        std::env::split_paths(&path).map(|d| d.join("mpirun")).find(|p| p.is_file())
    }

    /// `mpirun -np N` as root with more ranks than cores; None (SKIPPED) without mpirun.
    fn mpirun_np(n: usize) -> Option<Command> {
        let Some(mpirun) = mpirun() else {
            skipped("mpirun not found on PATH; install openmpi-bin to run the MPI tests");
            return None;
        };
        let mut cmd = Command::new(mpirun);
        cmd.args(["-np", &n.to_string()])
            .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
            .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
            .env("OMPI_MCA_rmaps_base_oversubscribe", "1");
        Some(cmd)
    }

    fn mpirun_np4(mode: &str, timeout_s: &str) -> Option<(Output, Duration, String)> {
        let mut cmd = mpirun_np(4)?;
        cmd.arg(example()).arg(mode).env("RWM_TIMEOUT_S", timeout_s);
        let (out, took) = run(cmd, Duration::from_secs(90));
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        Some((out, took, text))
    }

    /// `mpirun -np 4 rwm-dist ARGS` (CPU backend) and its output.
    fn rwm_np4(args: &[&str]) -> Option<(Output, String)> {
        rwm_np(4, args)
    }

    /// `mpirun -np N rwm-dist ARGS` (CPU backend) and its output.
    fn rwm_np(n: usize, args: &[&str]) -> Option<(Output, String)> {
        rwm_np_env(n, args, &[]).map(|(o, t, _)| (o, t))
    }

    /// As `rwm_np`, with extra environment variables; also how long it took.
    fn rwm_np_env(n: usize, args: &[&str], env: &[(&str, &str)]) -> Option<(Output, String, Duration)> {
        let mut cmd = mpirun_np(n)?;
        cmd.arg(env!("CARGO_BIN_EXE_rwm-dist"))
            .args(args)
            .env("RWM_TIMEOUT_S", "120")
            .env("RUST_LOG", "warn")
            .envs(env.iter().copied());
        let (out, took) = run(cmd, Duration::from_secs(150));
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        Some((out, text, took))
    }

    /// `mpirun -np 4` of moe then gpt4 (EP 4) with `fault` injected; the records rank 0 wrote.
    fn faulty(fault: &str, env: &[(&str, &str)]) -> Option<(Output, String, Duration, Vec<serde_json::Value>)> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.jsonl");
        let args = ["run", "--backend", "cpu", "--target", "moe,gpt4", "--ep", "4", "--iters", "1", "--warmup", "0"];
        let env = [&[("RWM_FAULT", fault)][..], env].concat();
        let (out, text, took) = rwm_np_env(4, &[&args[..], &["--output", path.to_str().unwrap()]].concat(), &env)?;
        let recs = std::fs::read_to_string(&path)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        Some((out, text, took, recs))
    }

    #[test]
    fn a_rank_failing_at_setup_ends_the_job_naming_it() {
        let Some((out, text, took, _)) = faulty("setup@2", &[]) else { return };
        assert_eq!(out.status.code(), Some(2), "{text}");
        assert!(text.contains("setup failed on 1 of 4 ranks: rank 2") && text.contains("injected"), "{text}");
        assert!(took < Duration::from_secs(60), "{took:?}");
    }

    #[test]
    fn ranks_set_up_one_at_a_time_still_run_and_name_a_failed_one() {
        // RWM_SERIAL_CONTEXTS (bench/nccl_one_gpu.sh): rank r sets up after ranks 0..r; each rank
        // passes as many barriers, so neither a healthy run nor a failed setup waits forever.
        let serial = [("RWM_SERIAL_CONTEXTS", "1")];
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.jsonl");
        let args =
            ["run", "--backend", "cpu", "--target", "moe", "--ep", "4", "--variant", "optimized", "--iters", "1"];
        let out_args = ["--warmup", "0", "--output", path.to_str().unwrap()];
        let Some((out, text, _)) = rwm_np_env(4, &[&args[..], &out_args[..]].concat(), &serial) else { return };
        assert!(out.status.success(), "{text}");
        let recs = std::fs::read_to_string(&path).unwrap();
        assert_eq!(recs.lines().filter(|l| l.contains("\"status\":\"ok\"")).count(), 4, "{text}");
        let Some((out, text, took, _)) = faulty("setup@2", &serial) else { return };
        assert_eq!(out.status.code(), Some(2), "{text}");
        assert!(text.contains("setup failed on 1 of 4 ranks: rank 2"), "{text}");
        assert!(took < Duration::from_secs(60), "{took:?}");
    }

    #[test]
    fn a_rank_stuck_at_setup_ends_the_job_within_the_setup_limit() {
        let Some((out, text, took, _)) = faulty("hang-setup@1", &[("RWM_SETUP_TIMEOUT_S", "5")]) else { return };
        assert!(!out.status.success(), "{text}");
        assert!(text.contains("no progress for") && text.contains("RWM_SETUP_TIMEOUT_S=5"), "{text}");
        assert!(took < Duration::from_secs(60), "{took:?}");
    }

    #[test]
    fn a_rank_that_stops_or_dies_mid_run_ends_the_job_and_keeps_what_was_gathered() {
        for fault in ["hang:gpt4@3", "die:gpt4@3", "fail:gpt4@3"] {
            let Some((out, text, took, recs)) = faulty(fault, &[("RWM_TIMEOUT_S", "10")]) else { return };
            assert!(!out.status.success(), "{fault}: {text}");
            assert!(took < Duration::from_secs(90), "{fault}: {took:?}");
            // moe ran before the fault: every rank's records reached rank 0's file.
            let moe = recs.iter().filter(|r| r["target"] == "moe").count();
            assert_eq!(moe, 4 * 3, "{fault}: {text}");
            if fault.starts_with("hang") || fault.starts_with("fail") {
                assert!(text.contains("no progress for"), "{fault}: {text}");
            }
            if fault.starts_with("hang") {
                // The ranks left waiting name the one that never reached their collective.
                assert!(text.contains("(waiting for ranks 3)"), "{fault}: {text}");
            }
        }
    }

    #[test]
    fn a_plan_that_does_not_fit_one_rank_is_refused_on_every_rank_before_any_allocates() {
        let Some((out, text, took, recs)) = faulty("nomem@2", &[]) else { return };
        assert_eq!(out.status.code(), Some(2), "{text}");
        assert!(text.contains("the plan does not fit on 1 of 4 ranks, so no rank runs it; rank 2 ("), "{text}");
        assert!(text.contains(", cpu backend): memory: ") && text.contains("needs an estimated"), "{text}");
        // Every rank reaches the same verdict and exits 2 (mpirun may end the slower ones before they
        // print it): no MPI_Abort of one rank while the others run, and nothing was written.
        assert!(recs.is_empty() && !text.contains("MPI_ABORT"), "{text}");
        assert!(took < Duration::from_secs(60), "{took:?}");
    }

    #[test]
    fn four_rank_run_gathers_every_record_to_rank_0() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.jsonl");
        let args = ["run", "--backend", "cpu", "--target", "gpt4,moe", "--cp", "4", "--ep", "4", "--iters", "2"];
        let Some((out, text)) = rwm_np4(&[&args[..], &["--warmup", "0", "--output", path.to_str().unwrap()]].concat())
        else {
            return;
        };
        assert!(out.status.success(), "{text}");
        let recs: Vec<serde_json::Value> =
            std::fs::read_to_string(&path).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        // gpt4: 2 variants, moe: 3, on each of 4 ranks; one run id; every rank present.
        assert_eq!(recs.len(), 4 * 5, "{text}");
        let ids: std::collections::HashSet<_> = recs.iter().map(|r| r["run_id"].to_string()).collect();
        assert_eq!(ids.len(), 1);
        for rank in 0..4 {
            assert_eq!(recs.iter().filter(|r| r["rank"] == rank && r["world_size"] == 4).count(), 5, "rank {rank}");
        }
        assert!(recs.iter().all(|r| r["status"] == "ok"), "{text}");
        // CP and EP really ran: per-rank stats of both, and the across-rank table.
        let gpt4 = recs.iter().find(|r| r["target"] == "gpt4" && r["variant"] == "optimized").unwrap();
        assert!(gpt4["metrics"]["cp"]["sum_over_layers"]["bytes_recv"].as_f64().unwrap() > 0.0, "{gpt4}");
        assert!(gpt4["metrics"]["ep"]["sum_over_layers"]["bytes_sent"].as_f64().unwrap() > 0.0, "{gpt4}");
        assert!(text.contains("across ranks") && text.contains("slowest rank"), "{text}");
        // Only rank 0 prints the table.
        assert_eq!(text.matches("target  variant").count(), 1, "{text}");
    }

    #[test]
    fn four_rank_dry_run_validates_against_the_launched_world() {
        let topo = concat!(env!("CARGO_MANIFEST_DIR"), "/topology/dgx-h100.toml");
        let Some((out, text)) = rwm_np4(&["run", "--dry-run", "--target", "gpt4", "--cp", "4", "--topology", topo])
        else {
            return;
        };
        assert!(out.status.success(), "{text}");
        assert!(text.contains("plan is valid for world size 4"), "{text}");
        assert!(text.contains("world 4 = tp 1 x cp 4 x dp 1"), "{text}");
        let Some((out, text)) = rwm_np4(&["run", "--dry-run", "--target", "gpt4", "--cp", "3"]) else { return };
        assert_eq!(out.status.code(), Some(2), "{text}");
        assert!(text.contains("world size 4 is not a multiple of tp 1 x cp 3 = 3"), "{text}");
    }

    #[test]
    fn eight_ranks_cp4_ep2_match_one_rank() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.jsonl");
        let p = path.to_str().unwrap();
        let args = ["run", "--backend", "cpu", "--target", "gpt4", "--cp", "4", "--ep", "2", "--seq-len", "100"];
        let Some((out, text)) = rwm_np(8, &[&args[..], &["--iters", "1", "--warmup", "0", "--output", p]].concat())
        else {
            return;
        };
        assert!(out.status.success(), "{text}");
        let recs: Vec<serde_json::Value> =
            std::fs::read_to_string(&path).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(recs.len(), 8 * 2, "{text}");
        for r in &recs {
            assert_eq!((r["status"].as_str(), r["reference"].as_str()), (Some("ok"), Some("single-rank")), "{r}");
            assert_eq!(
                (r["layout"]["cp"].as_u64(), r["layout"]["ep"].as_u64(), r["layout"]["dp"].as_u64()),
                (Some(4), Some(2), Some(2))
            );
            let rank = r["rank"].as_u64().unwrap();
            assert_eq!(r["layout"]["coords"]["cp"].as_u64(), Some(rank % 4), "{r}");
        }
    }

    #[test]
    fn collectives_splits_and_local_ranks_across_four_ranks() {
        let Some((out, _, text)) = mpirun_np4("smoke", "60") else { return };
        assert!(out.status.success(), "{text}");
        for r in 0..4 {
            assert!(text.contains(&format!("rank {r}: all checks passed")), "{text}");
        }
    }

    #[test]
    fn launch_wrapper_runs_four_ranks_with_nccl_defaults() {
        if mpirun().is_none() {
            return skipped("mpirun not found on PATH; install openmpi-bin to run the MPI tests");
        }
        let mut cmd = wrapper();
        cmd.args(["-n", "4", "--oversubscribe", "--bind", "none", "--", "smoke"]).env("RWM_DIST", example());
        let (out, _) = run(cmd, Duration::from_secs(90));
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "{text}");
        assert_eq!(text.matches("all checks passed").count(), 4, "{text}");
        // Not forced off: NCCL decides, unless the user sets it.
        assert!(text.contains("NCCL_NVLS_ENABLE=\n"), "{text}");
    }

    #[test]
    fn watchdog_ends_a_hung_collective() {
        let Some((out, took, text)) = mpirun_np4("hang", "2") else { return };
        assert!(!out.status.success(), "{text}");
        assert!(took < Duration::from_secs(60), "took {took:?}: {text}");
        assert!(text.contains("barrier on comm world") && text.contains("RWM_TIMEOUT_S=2"), "{text}");
        // Rank 1 sleeps instead of entering the barrier (its watchdog thread still answers); any
        // of the others may be the one to report.
        assert!(text.contains(" of 4) (waiting for ranks 1)"), "{text}");
    }

    #[test]
    fn abort_on_one_rank_ends_the_job() {
        let Some((out, took, text)) = mpirun_np4("fail", "60") else { return };
        assert!(!out.status.success(), "{text}");
        assert!(took < Duration::from_secs(60), "took {took:?}: {text}");
        assert!(text.contains("rank 2 of 4") && text.contains("simulated failure on rank 2"), "{text}");
    }
}

#[cfg(not(feature = "mpi"))]
mod without_mpi {
    use super::*;

    #[test]
    fn mpi_tests_skipped() {
        skipped("multi-rank MPI tests need `cargo test --features mpi`");
    }

    #[test]
    fn launched_without_the_feature_says_rebuild() {
        let mut cmd = Command::new(example());
        cmd.arg("smoke").env("OMPI_COMM_WORLD_SIZE", "4").env("OMPI_COMM_WORLD_RANK", "1");
        let (out, _) = run(cmd, Duration::from_secs(30));
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(
            err.contains("launched by Open MPI mpirun (4 ranks)") && err.contains("rebuild with --features mpi"),
            "{err}"
        );
    }
}
