//! Bad input and faults, through the binary as a user meets them: each is refused by `--dry-run`
//! and before anything is timed (exit 2, naming the key), or handled as docs/faults.md says.

mod common;

use common::{rwm, rwm_with, text};
use std::process::Output;

/// Exit 2 with every needle in stderr; returns stderr.
fn refused(args: &[&str], needles: &[&str]) -> String {
    let o = rwm(args);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{args:?} should exit 2; stderr:\n{err}");
    for n in needles {
        assert!(err.contains(n), "{args:?}: stderr lacks `{n}`:\n{err}");
    }
    err
}

/// Refused by `--dry-run`, and by the run itself before anything is timed or written.
fn refused_before_timing(args: &[&str], needles: &[&str]) {
    let dry: Vec<&str> = ["run", "--dry-run", "--backend", "cpu"].iter().chain(args).copied().collect();
    refused(&dry, needles);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("r.jsonl");
    let run: Vec<&str> =
        ["run", "--backend", "cpu", "--output", out.to_str().unwrap()].iter().chain(args).copied().collect();
    refused(&run, needles);
    assert!(!out.exists(), "{args:?}: nothing may be written when the plan is refused");
}

#[test]
fn skew_specs_are_refused_naming_the_key() {
    refused_before_timing(&["--target", "moe", "--skew", "bogus"], &["moe.skew", "bogus", "unknown form", "zipf:S"]);
    refused_before_timing(&["--skew", "zipf:-1"], &["moe.skew", "S must be finite and >= 0"]);
    refused_before_timing(&["--skew", "zipf:NaN"], &["moe.skew", "S must be finite and >= 0"]);
    refused_before_timing(&["--skew", "hot:100:2"], &["moe.skew", "P must lie strictly between 0 and 1"]);
    refused_before_timing(&["--skew", "hot:0:0.5"], &["moe.skew", "N must be at least 1"]);
    // N must leave cold experts: 64 experts in the quick profile.
    refused_before_timing(&["--skew", "hot:64:0.5"], &["moe.skew", "experts = 64"]);
    refused_before_timing(&["--set", "moe.skew=bogus"], &["moe.skew", "bogus"]);
}

#[test]
fn moe_factors_are_refused_naming_the_key() {
    for v in ["0", "-1"] {
        refused_before_timing(&["--set", &format!("moe.capacity_factor={v}")], &["moe.capacity_factor", "> 0"]);
    }
    refused_before_timing(&["--set", "moe.capacity_factor=NaN"], &["moe.capacity_factor", "finite"]);
    refused_before_timing(&["--set", "gpt4.capacity_factor=0"], &["gpt4.capacity_factor", "> 0"]);
    refused_before_timing(&["--set", "moe.bias_update=-0.5"], &["moe.bias_update", "> 0"]);
    refused_before_timing(
        &["--target", "moe", "--ep", "2", "--ranks", "2", "--set", "moe.redundant_experts=1000"],
        &["moe.redundant_experts", "1000", "at most num_experts x (EP - 1) = 64 x 1 = 64"],
    );
    refused_before_timing(&["--set", "moe.redundant_experts=4"], &["moe.redundant_experts", "--ep"]);
}

#[test]
fn llama_rope_values_and_iteration_counts_are_refused() {
    refused_before_timing(&["--set", "llama.rope_factor=0"], &["llama.rope_factor", "finite number > 0"]);
    refused_before_timing(&["--set", "llama.rope_factor=NaN"], &["llama.rope_factor", "finite number"]);
    refused_before_timing(&["--set", "llama.rope_theta=-1"], &["llama.rope_theta", "> 0"]);
    refused_before_timing(&["--set", "llama.vocab=4000000000"], &["llama.vocab", "token ids are i32"]);
    refused_before_timing(&["--iters", "0"], &["--iters must be at least 1"]);
    refused_before_timing(&["--iters", "18446744073709551615"], &["--iters must be at most 1000000"]);
    refused_before_timing(&["--warmup", "10000000"], &["--warmup must be at most 1000000"]);
    refused(&["run", "--dry-run", "--world", "0"], &["--world must be at least 1"]);
}

#[test]
fn zero_degrees_get_plain_messages() {
    refused(&["estimate", "--world", "0"], &["world size must be at least 1"]);
    refused(&["estimate", "--tp", "0"], &["--tp must be at least 1"]);
    let topo = concat!(env!("CARGO_MANIFEST_DIR"), "/topology/dgx-h100-x3.toml");
    let err = refused(&["topo", "show", "--topology", topo, "--tp", "0", "--cp", "4"], &["--tp must be at least 1"]);
    assert!(!err.contains("= 0"), "{err}");
}

#[test]
fn plans_that_exceed_memory_are_refused_showing_the_estimate() {
    // The naive baseline's score matrix: 10^6 x 10^6 f32 for one head.
    refused_before_timing(
        &["--target", "llama", "--seq-len", "1000000"],
        &["memory: llama baseline", "attention workspace", "DOES NOT FIT", "host has available"],
    );
    // 1.8T parameters held as f32 on the host.
    refused_before_timing(&["--target", "gpt4", "--set", "gpt4.preset=full"], &["memory: gpt4", "parameters"]);
    refused_before_timing(&["--target", "llama", "--set", "llama.vocab=2000000000"], &["memory: llama", "logits"]);
    // Each thread-rank holds its own copy of the model: the host is shared.
    refused(&["run", "--dry-run", "--ranks", "100000"], &["memory:", "shared by 100000 ranks"]);
    // With a GPU topology the check uses its memory: 10^6 tokens do not fit 80 GB either.
    let topo = concat!(env!("CARGO_MANIFEST_DIR"), "/topology/dgx-h100.toml");
    refused(
        &["run", "--dry-run", "--target", "llama", "--seq-len", "1000000", "--topology", topo],
        &["memory: llama baseline", "the device's"],
    );
}

#[test]
fn a_plan_that_fits_says_so_and_one_that_cannot_be_checked_says_why() {
    let o = rwm(&["run", "--dry-run", "--backend", "cpu"]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(out.contains("memory: fits; the largest per-rank estimate is"), "{out}");
    let o = rwm(&["run", "--dry-run"]);
    assert!(text(&o).0.contains("memory: not checked here"), "{:?}", text(&o));
}

#[test]
fn sizes_that_overflow_are_refused() {
    refused(&["estimate", "--seq-len", "18446744073709551615"], &["overflows 64-bit"]);
    refused(&["run", "--dry-run", "--backend", "cpu", "--seq-len", "18446744073709551615"], &["overflows 64-bit"]);
}

#[test]
fn absurd_topologies_are_refused_at_load() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("huge.toml");
    let good = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/topology/dgx-h100.toml")).unwrap();
    let huge = good.replace("gpus_per_node = 8", "gpus_per_node = 100000000").replace("gpus = 8\n", "");
    assert_ne!(huge, good);
    std::fs::write(&bad, huge).unwrap();
    let started = std::time::Instant::now();
    refused(&["topo", "show", "--topology", bad.to_str().unwrap()], &["huge.toml", "gpus_per_node", "at most 1024"]);
    refused(&["run", "--dry-run", "--topology", bad.to_str().unwrap()], &["gpus_per_node", "at most 1024"]);
    assert!(started.elapsed().as_secs() < 20, "refused at once, not after building tables");
}

fn quick_moe(output: &str) -> Output {
    quick_moe_env(output, &[])
}

fn quick_moe_env(output: &str, env: &[(&str, &str)]) -> Output {
    let args = ["run", "--backend", "cpu", "--target", "moe", "--variant", "optimized", "--seq-len", "64"];
    rwm_with(&[&args[..], &["--iters", "1", "--warmup", "0", "--output", output]].concat(), env)
}

#[test]
fn records_state_the_nccl_settings() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.jsonl");
    let o = quick_moe_env(path.to_str().unwrap(), &[("NCCL_NVLS_ENABLE", "0"), ("NCCL_MNNVL_ENABLE", "1")]);
    assert!(o.status.success(), "{:?}", text(&o));
    let rec: serde_json::Value = serde_json::from_str(std::fs::read_to_string(&path).unwrap().trim()).unwrap();
    let env = &rec["machine"]["nccl_env"];
    assert_eq!((env["NCCL_NVLS_ENABLE"].as_str(), env["NCCL_MNNVL_ENABLE"].as_str()), (Some("0"), Some("1")), "{rec}");
}

#[test]
fn an_existing_results_file_is_appended_to() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.jsonl");
    std::fs::write(&path, "{\"earlier\":true}\n").unwrap();
    for _ in 0..2 {
        let o = quick_moe(path.to_str().unwrap());
        assert!(o.status.success(), "{:?}", text(&o));
    }
    let lines: Vec<serde_json::Value> =
        std::fs::read_to_string(&path).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert_eq!(lines[0]["earlier"], true);
    assert_ne!(lines[1]["run_id"], lines[2]["run_id"], "two runs, one record each");
}

#[test]
fn a_full_disk_still_prints_the_table_and_names_the_error_once() {
    if !std::path::Path::new("/dev/full").exists() {
        return eprintln!("SKIPPED: no /dev/full");
    }
    let o = quick_moe("/dev/full");
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{out}\n{err}");
    assert!(out.lines().any(|l| l.starts_with("moe") && l.contains("optimized")), "table:\n{out}");
    assert!(out.contains("results: /dev/full (incomplete: writing failed)"), "{out}");
    assert!(err.contains("rwm-dist: error: /dev/full: No space left on device"), "{err}");
    assert_eq!(err.matches("No space left").count(), 1, "the OS error is printed once:\n{err}");
}

#[test]
fn an_unwritable_output_is_refused_before_timing_with_the_os_error_once() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("file");
    std::fs::write(&file, "").unwrap();
    let out = file.join("r.jsonl");
    let err = refused(&["run", "--backend", "cpu", "--target", "moe", "--output", out.to_str().unwrap()], &["r.jsonl"]);
    let os = err.lines().last().unwrap().rsplit(": ").next().unwrap().to_string();
    assert!(os.contains("os error"), "{err}");
    assert_eq!(err.matches(&os).count(), 1, "{err}");
}

#[test]
fn capacity_factor_is_f64_with_the_documented_rounding() {
    use rwm_dist::config::apply;
    use rwm_dist::metrics::routing::capacity;
    use rwm_dist::models::moe::MoeConfig;
    let c = apply(&MoeConfig::deepseek_v2_lite(), "moe", "capacity_factor", "1.1").unwrap();
    assert_eq!(serde_json::to_value(&c).unwrap()["capacity_factor"], serde_json::json!(1.1));
    assert_eq!(capacity(c.capacity_factor, 100, 10), 11);
}

/// `rwm-dist ARGS` with `vars`, killed if it outlives `limit`; also how long it ran.
fn rwm_deadline(args: &[&str], vars: &[(&str, &str)], limit: std::time::Duration) -> (Output, std::time::Duration) {
    use std::process::{Command, Stdio};
    let start = std::time::Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_rwm-dist"))
        .args(args)
        .env("RUST_LOG", "warn")
        .env_remove("OMPI_COMM_WORLD_SIZE")
        .envs(vars.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("binary runs");
    while child.try_wait().unwrap().is_none() && start.elapsed() < limit {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let _ = child.kill();
    (child.wait_with_output().unwrap(), start.elapsed())
}

#[test]
fn a_hung_thread_rank_ends_the_run_naming_it_among_those_waited_for() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.jsonl");
    let args = ["run", "--ranks", "4", "--backend", "cpu", "--target", "moe,gpt4", "--ep", "4", "--seq-len", "64"];
    let args = [&args[..], &["--iters", "1", "--warmup", "0", "--output", path.to_str().unwrap()]].concat();
    let vars = [("RWM_FAULT", "hang:gpt4@2"), ("RWM_TIMEOUT_S", "3")];
    let (o, took) = rwm_deadline(&args, &vars, std::time::Duration::from_secs(120));
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(124), "{err}");
    assert!(took.as_secs() < 60, "{took:?}: {err}");
    // Ranks 0, 1 and 3 wait in gpt4's first collective for rank 2, which never reaches it.
    assert!(err.contains("no progress for 3 s in ") && err.contains("(waiting for ranks 2)"), "{err}");
    assert!(err.contains("limit RWM_TIMEOUT_S=3"), "{err}");
    // moe ran before: every rank's records reached rank 0's file.
    let recs = std::fs::read_to_string(&path).unwrap_or_default();
    let moe =
        recs.lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()).filter(|r| r["target"] == "moe");
    assert_eq!(moe.count(), 4 * 3, "{err}");
}
