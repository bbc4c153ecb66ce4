//! The launch scripts run here, on CPU ranks: launch/mpirun.sh, the sbatch scripts' command
//! lines with a stand-in `srun` (and `nvidia-smi` and IMEX channel for the NVL72 preflight) on
//! PATH, and launch/profile-rank.sh with a stand-in `ncu`. Each checks that the ranks start,
//! are bound as the script asks, and write their records. Needs `--features mpi` and mpirun
//! (SKIPPED otherwise).

#[cfg(feature = "mpi")]
mod with_mpi {
    use std::path::{Path, PathBuf};
    use std::process::{Command, Output, Stdio};
    use std::time::{Duration, Instant};

    fn repo() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
    }

    /// Written to the stderr handle itself: libtest captures `eprintln!`, not this.
    fn skipped(why: &str) -> bool {
        use std::io::Write;
        let _ = writeln!(std::io::stderr(), "SKIPPED: {why}");
        true
    }

    fn no_mpirun() -> bool {
        let found =
            std::env::var_os("PATH").is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("mpirun").is_file()));
        !found && skipped("mpirun not found on PATH; install openmpi-bin to run the launch tests")
    }

    /// Stand-ins on PATH for a machine without Slurm or GPUs; each logs its arguments to `log`.
    const SRUN: &str = r#"#!/usr/bin/env bash
# srun: a per-node step (--ntasks-per-node=1) runs once per tray of FAKE_TRAY_CLIQUES (one
# tray, clique 32766, by default), the tray's clique in FAKE_CLIQUE; any other step runs
# SLURM_NTASKS ranks under mpirun, bound to cores when asked (--cpu-bind=cores).
echo "srun $*" >> "$FAKE_LOG"
per_node=""; bind=none
while [ "$#" -gt 0 ]; do
    case "$1" in
        --ntasks-per-node=*) per_node="${1#*=}"; shift ;;
        --cpu-bind=cores) bind="core:overload-allowed"; shift ;;
        --*) shift ;;
        *) break ;;
    esac
done
if [ "$per_node" = 1 ]; then
    for clique in ${FAKE_TRAY_CLIQUES:-32766}; do FAKE_CLIQUE=$clique "$@" || exit $?; done
    exit 0
fi
exec mpirun -np "$SLURM_NTASKS" --bind-to "$bind" --report-bindings --oversubscribe "$@"
"#;
    const NVIDIA_SMI: &str = r#"#!/usr/bin/env bash
echo "nvidia-smi $*" >> "$FAKE_LOG"
for gpu in 0 1 2 3; do
    printf '    Fabric\n        State : Completed\n        CliqueId : %s\n        ClusterUUID : 5e1f0c2a-0000-4000-8000-00000000nvl7\n' "$FAKE_CLIQUE"
done
"#;
    /// ncu: logs which rank it wraps, then runs the application (the first executable file).
    const NCU: &str = r#"#!/usr/bin/env bash
echo "ncu rank=${OMPI_COMM_WORLD_RANK:-?} $*" >> "$FAKE_LOG"
while [ "$#" -gt 0 ] && ! { [ -f "$1" ] && [ -x "$1" ]; }; do shift; done
exec "$@"
"#;

    struct Fakes {
        dir: tempfile::TempDir,
    }

    impl Fakes {
        fn new() -> Fakes {
            use std::os::unix::fs::PermissionsExt;
            let dir = tempfile::tempdir().unwrap();
            std::fs::create_dir(dir.path().join("bin")).unwrap();
            for (name, text) in [("srun", SRUN), ("nvidia-smi", NVIDIA_SMI), ("ncu", NCU)] {
                let p = dir.path().join("bin").join(name);
                std::fs::write(&p, text).unwrap();
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
            }
            std::fs::create_dir(dir.path().join("imex")).unwrap();
            Fakes { dir }
        }
        fn path(&self, name: &str) -> PathBuf {
            self.dir.path().join(name)
        }
        fn log(&self) -> String {
            std::fs::read_to_string(self.path("log")).unwrap_or_default()
        }
        /// `script ARGS` with the stand-ins first on PATH, as root may run mpirun, killed after 150 s.
        fn run(&self, script: &str, args: &[String], env: &[(&str, &str)]) -> (Output, String) {
            let path = format!("{}:{}", self.path("bin").display(), std::env::var("PATH").unwrap_or_default());
            let mut cmd = Command::new(repo().join(script));
            cmd.args(args)
                .current_dir(repo())
                .env("PATH", path)
                .env("FAKE_LOG", self.path("log"))
                .env("RWM_DIST", env!("CARGO_BIN_EXE_rwm-dist"))
                .env("RUST_LOG", "warn")
                .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
                .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
                .envs(env.iter().copied())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            let start = Instant::now();
            let mut child = cmd.spawn().unwrap();
            while child.try_wait().unwrap().is_none() && start.elapsed() < Duration::from_secs(150) {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
            (out, text)
        }
    }

    /// A quick two-rank EP run on the CPU writing to `out`.
    fn moe_args(out: &Path) -> Vec<String> {
        let args = ["run", "--backend", "cpu", "--target", "moe", "--ep", "2", "--seq-len", "64", "--iters", "1"];
        let tail = ["--warmup", "0", "--output", out.to_str().unwrap()];
        args.iter().chain(&tail).map(|s| s.to_string()).collect()
    }

    /// launch/mpirun.sh's arguments: two ranks bound as `bind`, then the quick EP run.
    fn mpirun_args(bind: &str, out: &Path) -> Vec<String> {
        let head = ["-n", "2", "--oversubscribe", "--bind", bind, "--"];
        head.iter().map(|s| s.to_string()).chain(moe_args(out)).collect()
    }

    /// A two-rank, one-node Slurm allocation submitted from the repository.
    fn slurm_env(repo: &Path) -> Vec<(&'static str, &str)> {
        let dir = repo.to_str().unwrap();
        vec![
            ("SLURM_CPUS_ON_NODE", "2"),
            ("SLURM_NTASKS_PER_NODE", "2"),
            ("SLURM_NTASKS", "2"),
            ("SLURM_SUBMIT_DIR", dir),
        ]
    }

    /// Every rank 0..n wrote ok records of one run of world size n.
    fn records_of_every_rank(out: &Path, n: u64, text: &str) -> Vec<serde_json::Value> {
        let recs: Vec<serde_json::Value> = std::fs::read_to_string(out)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        for rank in 0..n {
            let mine: Vec<_> = recs.iter().filter(|r| r["rank"] == rank).collect();
            assert!(!mine.is_empty(), "no records of rank {rank}: {text}");
            assert!(mine.iter().all(|r| r["world_size"] == n && r["status"] == "ok"), "{mine:?}");
        }
        recs
    }

    fn bound(text: &str, n: usize) {
        for r in 0..n {
            assert!(text.contains(&format!("MCW rank {r} bound to")), "rank {r} not bound: {text}");
        }
    }

    #[test]
    fn mpirun_wrapper_starts_binds_and_gathers_two_ranks() {
        if no_mpirun() {
            return;
        }
        let f = Fakes::new();
        let out = f.path("r.jsonl");
        let (o, text) =
            f.run("launch/mpirun.sh", &mpirun_args("core", &out), &[("RWM_MPIRUN_ARGS", "--report-bindings")]);
        assert!(o.status.success(), "{text}");
        bound(&text, 2);
        records_of_every_rank(&out, 2, &text);
    }

    #[test]
    fn dgx_sbatch_command_line_runs_under_a_stand_in_srun() {
        if no_mpirun() {
            return;
        }
        let f = Fakes::new();
        let out = f.path("r.jsonl");
        let repo = repo();
        let (o, text) = f.run("launch/slurm-dgx-h100-24.sbatch", &moe_args(&out), &slurm_env(&repo));
        assert!(o.status.success(), "{text}");
        let log = f.log();
        // One task per GPU's share of the cores, handed out socket by socket, bound to cores.
        assert!(
            log.contains(
                "srun --mpi=pmix --cpus-per-task=1 --distribution=block:block --cpu-bind=cores --kill-on-bad-exit=1"
            ),
            "{log}"
        );
        bound(&text, 2);
        records_of_every_rank(&out, 2, &text);
    }

    #[test]
    fn nvl72_sbatch_checks_the_trays_then_runs_and_refuses_no_imex_or_two_cliques() {
        if no_mpirun() {
            return;
        }
        let f = Fakes::new();
        let out = f.path("r.jsonl");
        let args = moe_args(&out);
        let (repo, imex) = (repo(), f.path("imex"));
        let mut env = slurm_env(&repo);
        env.push(("RWM_IMEX_CHANNELS_DIR", imex.to_str().unwrap()));
        // No IMEX channel: the preflight ends the job before any rank starts.
        let (o, text) = f.run("launch/slurm-nvl72-24.sbatch", &args, &env);
        assert!(!o.status.success(), "{text}");
        assert!(text.contains("no IMEX channel in") && !out.exists(), "{text}");
        std::fs::write(imex.join("channel0"), "").unwrap();
        let (o, text) = f.run("launch/slurm-nvl72-24.sbatch", &args, &env);
        assert!(o.status.success(), "{text}");
        assert!(text.contains(" 5e1f0c2a-0000-4000-8000-00000000nvl7 32766"), "the tray's clique line: {text}");
        assert!(f.log().contains("srun --ntasks-per-node=1 --kill-on-bad-exit=1 launch/nvl72-preflight.sh"));
        bound(&text, 2);
        let recs = records_of_every_rank(&out, 2, &text);
        // Two trays in different cliques (not one rack): refused before any rank starts.
        std::fs::remove_file(&out).unwrap();
        env.push(("FAKE_TRAY_CLIQUES", "32766 32767"));
        let (o, text) = f.run("launch/slurm-nvl72-24.sbatch", &args, &env);
        assert_eq!(o.status.code(), Some(2), "{text}");
        assert!(text.contains("the trays are not in one NVLink clique") && !out.exists(), "{text}");
        // Off-rack NCCL fails at init instead of using the network: the records say so.
        assert!(recs.iter().all(|r| r["machine"]["nccl_env"]["NCCL_MNNVL_ENABLE"] == "1"), "{:?}", recs[0]);
    }

    #[test]
    fn profile_rank_wraps_only_the_chosen_rank() {
        if no_mpirun() {
            return;
        }
        let f = Fakes::new();
        let out = f.path("r.jsonl");
        let args = mpirun_args("none", &out);
        let prefix = f.path("prof/rank");
        let env = [
            ("RWM_DIST", "launch/profile-rank.sh"),
            ("RWM_PROFILE_BIN", env!("CARGO_BIN_EXE_rwm-dist")),
            ("RANK_TO_PROFILE", "1"),
            ("RWM_NVTX_INCLUDE", "moe optimized/step 0/"),
            ("RWM_PROFILE_OUT", prefix.to_str().unwrap()),
        ];
        let (o, text) = f.run("launch/mpirun.sh", &args, &env);
        assert!(o.status.success(), "{text}");
        let log = f.log();
        assert_eq!(log.lines().count(), 1, "one rank profiled: {log}");
        assert!(log.starts_with("ncu rank=1 --nvtx --profile-from-start off -k regex:^(?!nccl) -f -o "), "{log}");
        assert!(log.contains("prof/rank1 --nvtx-include moe optimized/step 0/ "), "{log}");
        records_of_every_rank(&out, 2, &text);
        // A rank it cannot tell, or no rank chosen: refused.
        let bad = Command::new(repo().join("launch/profile-rank.sh")).arg("run").env_remove("RANK_TO_PROFILE").output();
        assert_eq!(bad.unwrap().status.code(), Some(1));
    }
}

#[cfg(not(feature = "mpi"))]
#[test]
fn launch_tests_skipped() {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "SKIPPED: the launch tests run ranks through MPI: `cargo test --features mpi`");
}
