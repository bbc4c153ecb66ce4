//! The binary as a user runs it: listing, a full quick run, the JSON Lines
//! schema, and errors on bad input (exit code 2, naming the key).

mod common;

use common::{rwm, rwm_with, text};
use serde_json::Value;
use std::process::Output;

fn schema() -> Value {
    serde_json::from_str(include_str!("../schema/results-v2.json")).unwrap()
}

/// Every way `v` breaks schema/results-v2.json (a full JSON Schema 2020-12 validator,
/// formats asserted), one line each.
fn validate(v: &Value) -> Result<(), String> {
    let validator = jsonschema::options()
        .should_validate_formats(true)
        .build(&schema())
        .expect("schema/results-v2.json is a valid JSON Schema");
    let errors: Vec<String> = validator.iter_errors(v).map(|e| format!("{}: {e}", e.instance_path())).collect();
    if errors.is_empty() { Ok(()) } else { Err(errors.join("\n")) }
}

#[test]
fn validator_rejects_what_the_schema_forbids() {
    let err = validate(&serde_json::json!({"schema_version": 1})).unwrap_err();
    assert!(err.contains("\"run_id\" is a required property") && err.contains("1 is not one of"), "{err}");
}

#[test]
fn list_names_targets_variants_and_profiles() {
    let o = rwm(&["list"]);
    assert!(o.status.success());
    let (out, _) = text(&o);
    for word in ["llama", "moe", "gpt4", "baseline", "optimized", "balanced", "fp8", "quick", "bench", "long"] {
        assert!(out.contains(word), "`list` lacks {word}:\n{out}");
    }
}

#[test]
fn quick_run_writes_schema_valid_records() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.jsonl");
    let o = rwm_with(
        &["run", "--backend", "cpu", "--iters", "2", "--warmup", "0", "--output", path.to_str().unwrap()],
        &[("NCCL_DEBUG", "WARN"), ("SLURM_JOB_ID", "4242")],
    );
    let (out, err) = text(&o);
    assert!(o.status.success(), "stdout:\n{out}\nstderr:\n{err}");
    let lines: Vec<Value> =
        std::fs::read_to_string(&path).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    // llama 3 variants, moe 3, gpt4 2
    assert_eq!(lines.len(), 8, "{lines:?}");
    for l in &lines {
        if let Err(e) = validate(l) {
            panic!("{e}\nin {l}");
        }
        // The CPU backend: the environment without a GPU.
        let env = &l["env"];
        assert!(env["gpu"].as_object().unwrap().values().all(Value::is_null), "{env}");
        assert!(env["driver_version"].is_null() && env["nccl_version"].is_null(), "{env}");
        assert_eq!(env["nccl_env"]["NCCL_DEBUG"], "WARN", "{env}");
        assert_eq!(env["job_id"], "4242", "{env}");
        assert_eq!(l["status"], "ok", "{l}");
        assert_eq!(l["samples_ms"].as_array().unwrap().len(), 2);
        assert!(l["median_ms"].as_f64().unwrap() > 0.0);
        if l["variant"] != "baseline" {
            assert!(l["max_err"].as_f64().unwrap() <= l["tolerance"].as_f64().unwrap());
            assert!(l["speedup"].as_f64().unwrap() > 0.0);
        }
    }
    for (t, v) in [("llama", "fp8"), ("moe", "balanced"), ("gpt4", "optimized")] {
        assert!(out.lines().any(|l| l.starts_with(t) && l.contains(v)), "table lacks {t} {v}:\n{out}");
    }
    let run_ids: std::collections::HashSet<_> = lines.iter().map(|l| l["run_id"].clone()).collect();
    assert_eq!(run_ids.len(), 1);
}

#[test]
fn set_overrides_reach_the_config() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.jsonl");
    let o = rwm(&[
        "run",
        "--backend",
        "cpu",
        "--target",
        "moe",
        "--variant",
        "optimized",
        "--iters",
        "1",
        "--warmup",
        "0",
        "--set",
        "moe.num_experts=16",
        "--set",
        "moe.top_k=2",
        "--seq-len",
        "64",
        "--output",
        path.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{:?}", text(&o));
    let rec: Value = serde_json::from_str(std::fs::read_to_string(&path).unwrap().lines().next().unwrap()).unwrap();
    assert_eq!(rec["variant"], "optimized");
    assert_eq!(rec["config"]["num_experts"], 16);
    assert_eq!(rec["config"]["top_k"], 2);
    assert_eq!(rec["config"]["tokens"], 64);
}

fn fails_with(args: &[&str], needles: &[&str]) {
    let o = rwm(args);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{args:?} should exit 2; stderr:\n{err}");
    for n in needles {
        assert!(err.contains(n), "{args:?}: stderr lacks `{n}`:\n{err}");
    }
}

#[test]
fn bad_input_exits_2_naming_the_field() {
    fails_with(&["run", "--set", "moe.num_expert=8", "--dry-run"], &["moe.num_expert", "moe.num_experts"]);
    fails_with(&["run", "--set", "moe.gate=relu", "--dry-run"], &["moe.gate", "softmax", "sigmoid"]);
    fails_with(&["run", "--set", "moe.top_k=-1", "--dry-run"], &["moe.top_k", "non-negative integer"]);
    fails_with(&["run", "--set", "mlp.top_k=2", "--dry-run"], &["mlp", "llama, moe, gpt4"]);
    fails_with(&["run", "--set", "moe.top_k=99", "--dry-run"], &["moe.top_k", "moe.num_experts"]);
    fails_with(
        &["run", "--set", "moe.preset=deepseek-v9", "--dry-run"],
        &["deepseek-v9", "deepseek-v2-lite, deepseek-v3"],
    );
    fails_with(&["run", "--variant", "turbo", "--dry-run"], &["turbo", "balanced", "optimized"]);
    fails_with(&["run", "--profile", "huge", "--dry-run"], &["huge", "quick, bench, long"]);
    fails_with(&["run", "--dtype", "int4", "--dry-run"], &["int4", "bf16", "fp8"]);
    fails_with(&["run", "--set", "llama.heads=7", "--dry-run"], &["llama.heads", "llama.kv_heads"]);
    fails_with(&["run", "--gate", "moe.gin<=0.2", "--dry-run"], &["--gate `moe.gin<=0.2`", "moe.gini"]);
    fails_with(&["run", "--gate", "moe.gini=0.2", "--dry-run"], &["--gate `moe.gini=0.2`", "METRIC OP NUMBER"]);
    fails_with(&["run", "--gate", "speedup>=1@turbo", "--dry-run"], &["unknown variant `turbo`"]);
}

#[test]
fn dry_run_validates_without_running() {
    let o = rwm(&["run", "--profile", "bench", "--set", "moe.preset=deepseek-v3", "--dry-run"]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(out.contains("\"num_experts\": 256") && out.contains("nothing was run"), "{out}");
}

#[test]
fn fp8_runs_every_gpt4_gemm_in_fp8_and_reports_its_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.jsonl");
    let o = rwm(&["run", "--backend", "cpu", "--target", "gpt4", "--dtype", "fp8", "--iters", "1", "--warmup", "0"]
        .into_iter()
        .chain(["--output", path.to_str().unwrap()])
        .collect::<Vec<_>>());
    assert!(o.status.success(), "{:?}", text(&o));
    let recs: Vec<Value> =
        std::fs::read_to_string(&path).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let (base, opt) = (&recs[0], &recs[1]);
    assert_eq!((base["variant"].as_str(), base["gemm_dtype"].as_str()), (Some("baseline"), Some("bf16")));
    assert_eq!((opt["variant"].as_str(), opt["gemm_dtype"].as_str()), (Some("optimized"), Some("fp8")));
    assert_eq!((opt["gate"].as_str(), opt["tolerance"].as_f64()), (Some("rel_l2"), Some(0.2)));
    // FP8 really changes the numbers: a visible error against the bf16 baseline, inside the bound.
    let rel = opt["rel_l2_err"].as_f64().unwrap();
    assert!(rel > 1e-3 && rel <= 0.2, "{rel}");
}

#[test]
fn layouts_and_topology_files_are_checked_before_anything_runs() {
    fails_with(&["run", "--target", "moe", "--ranks", "3", "--ep", "3"], &["ep 3 must divide moe.num_experts = 64"]);
    fails_with(&["run", "--target", "gpt4", "--ranks", "6", "--cp", "4"], &["world size 6", "tp 1 x cp 4 = 4"]);
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    let good = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/topology/dgx-h100.toml")).unwrap();
    std::fs::write(&bad, good.replace("nvlink_gb_per_s = 450", "nvlink_gb_per_s = 0")).unwrap();
    let o = rwm(&["topo", "show", "--topology", bad.to_str().unwrap(), "--world", "8"]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    let line = good.lines().position(|l| l.starts_with("nvlink_gb_per_s")).unwrap() + 1;
    assert!(err.contains(&format!("bad.toml:{line}")) && err.contains("nvlink_gb_per_s"), "{err}");
    let o = rwm(&["topo", "show", "--topology", concat!(env!("CARGO_MANIFEST_DIR"), "/topology/dgx-h100-x3.toml")]
        .into_iter()
        .chain(["--world", "24", "--cp", "4", "--ep", "8"])
        .collect::<Vec<_>>());
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(out.contains("world 24 = tp 1 x cp 4 x dp 6") && out.contains("naive round-robin"), "{out}");
}

/// A moe run's records with their times set to `ms` (p10/p90 at +-1%) and rates to match.
fn with_times(records: &str, ms: f64) -> String {
    records
        .lines()
        .map(|l| {
            let mut r: Value = serde_json::from_str(l).unwrap();
            let tokens = r["tokens"].as_f64().unwrap();
            for (k, x) in [("median_ms", ms), ("p10_ms", ms * 0.99), ("p90_ms", ms * 1.01)] {
                r[k] = x.into();
            }
            r["samples_ms"] = serde_json::json!([ms * 0.99, ms, ms * 1.01]);
            r["tokens_per_s"] = (tokens / (ms / 1e3)).into();
            r.to_string() + "\n"
        })
        .collect()
}

#[test]
fn compare_exits_1_on_a_slower_file_and_0_on_itself() {
    let dir = tempfile::tempdir().unwrap();
    let path = |n: &str| dir.path().join(n).to_str().unwrap().to_string();
    let o = rwm(&["run", "--backend", "cpu", "--target", "moe", "--seq-len", "64", "--iters", "3", "--warmup", "0"]
        .into_iter()
        .chain(["--output", &path("run.jsonl")])
        .collect::<Vec<_>>());
    assert!(o.status.success(), "{:?}", text(&o));
    let run = std::fs::read_to_string(path("run.jsonl")).unwrap();
    std::fs::write(path("base.jsonl"), with_times(&run, 10.0)).unwrap();
    std::fs::write(path("slow.jsonl"), with_times(&run, 11.0)).unwrap();
    std::fs::write(path("bad.jsonl"), format!("{}\n{{\"target\": \"moe\"}}\n", run.lines().next().unwrap())).unwrap();

    let o = rwm(&["compare", &path("run.jsonl"), &path("run.jsonl")]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}{err}");
    assert_eq!(out.lines().filter(|l| l.starts_with("moe ") && l.ends_with("same")).count(), 3, "{out}");

    let o = rwm(&["compare", &path("base.jsonl"), &path("slow.jsonl")]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}{err}");
    assert_eq!(out.matches("REGRESSION: SLOWER +10.0%").count(), 3, "{out}");
    assert!(err.contains("3 regression(s)"), "{err}");
    // 10% is within a 15% threshold; faster is never a regression.
    assert_eq!(
        rwm(&["compare", &path("base.jsonl"), &path("slow.jsonl"), "--threshold", "15%"]).status.code(),
        Some(0)
    );
    assert_eq!(rwm(&["compare", &path("slow.jsonl"), &path("base.jsonl")]).status.code(), Some(0));

    let o = rwm(&["compare", &path("base.jsonl"), &path("bad.jsonl")]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("bad.jsonl:2: missing field `variant`"), "{err}");
}

#[test]
fn report_writes_one_self_contained_html_file_with_every_chart() {
    let dir = tempfile::tempdir().unwrap();
    let path = |n: &str| dir.path().join(n).to_str().unwrap().to_string();
    let args = ["run", "--backend", "cpu", "--target", "moe", "--seq-len", "64", "--ranks", "2", "--ep", "2"];
    let o = rwm_with(
        &args.into_iter().chain(["--iters", "2", "--warmup", "0", "--output", &path("moe.jsonl")]).collect::<Vec<_>>(),
        &[("RUST_LOG", "rwm_dist=info")],
    );
    let (_, err) = text(&o);
    assert!(o.status.success(), "{err}");
    // Logs into a pipe carry no colour.
    assert!(err.contains("backend: ") && !err.contains('\x1b'), "{err:?}");
    let o = rwm(&["report", &path("moe.jsonl"), "-o", &path("report.html")]);
    assert!(o.status.success(), "{:?}", text(&o));
    let html = std::fs::read_to_string(path("report.html")).unwrap();
    let xml = roxmltree::ParsingOptions { allow_dtd: true, ..Default::default() };
    let doc = roxmltree::Document::parse_with_options(&html, xml).expect("the report is well-formed XHTML");
    let sections: Vec<roxmltree::Node> = doc.descendants().filter(|n| n.has_tag_name("section")).collect();
    let section = |title: &str| {
        *sections
            .iter()
            .find(|s| s.descendants().any(|n| n.has_tag_name("h2") && n.text() == Some(title)))
            .unwrap_or_else(|| panic!("no section `{title}`"))
    };
    let count = |s: roxmltree::Node, tag: &str| s.descendants().filter(|n| n.has_tag_name(tag)).count();
    // Three variants: a bar each (plus the background and legend rectangles).
    assert!(count(section("Tokens per second"), "rect") >= 3);
    // Two ranks of three variants: six dots.
    assert_eq!(count(section("Per-rank spread"), "circle"), 6);
    assert!(count(section("Memory: estimate and measured peak"), "rect") >= 6);
    // A line of 64 experts per variant.
    assert!(count(section("Per-expert load"), "polyline") >= 3);
    assert!(count(section("Gini and router entropy"), "rect") >= 6);
    // Every record in the table: 3 variants x 2 ranks, plus the header row.
    assert_eq!(count(section("Records"), "tr"), 7);
    // Self-contained: no scripts, nothing loaded from elsewhere.
    assert!(doc.descendants().all(|n| !n.has_tag_name("script") && n.attribute("src").is_none()));
    assert!(!html.contains("href=\"http") && !html.contains("url("), "nothing fetched");

    let o = rwm(&["report", &path("missing.jsonl"), "-o", &path("x.html")]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert_eq!(err.matches("os error 2").count(), 1, "an OS error said once: {err}");
}

#[test]
fn json_logs_are_json_to_the_last_line() {
    let lines = |o: &Output| -> Vec<Value> {
        let (_, err) = text(o);
        err.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect()
    };
    let o = rwm(&["--log-format", "json", "compare", "/nonexistent/a.jsonl", "/nonexistent/b.jsonl"]);
    assert_eq!(o.status.code(), Some(2));
    let last = lines(&o).pop().unwrap();
    let msg = last["fields"]["message"].as_str().unwrap();
    assert_eq!(last["level"], "ERROR");
    assert!(msg.contains("/nonexistent/a.jsonl") && msg.matches("os error 2").count() == 1, "{msg}");
    // Flags that do not parse, too.
    let o = rwm(&["run", "--log-format=json", "--no-such-flag"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(lines(&o).pop().unwrap()["fields"]["message"].as_str().unwrap().contains("--no-such-flag"));
}

/// Validates results written elsewhere (a GPU run) against the schema:
/// `RWM_VALIDATE=results/gpu.jsonl cargo test --test cli validate_files -- --nocapture`.
/// With RWM_VALIDATE_GPU=1 every record must also have its GPU environment filled.
#[test]
fn validate_files_named_in_rwm_validate() {
    let Ok(files) = std::env::var("RWM_VALIDATE") else {
        println!("SKIPPED: RWM_VALIDATE names no results file");
        return;
    };
    let gpu = std::env::var("RWM_VALIDATE_GPU").is_ok_and(|v| v == "1");
    for f in files.split(',') {
        for (i, l) in std::fs::read_to_string(f).unwrap().lines().enumerate() {
            let r: Value = serde_json::from_str(l).unwrap();
            validate(&r).unwrap_or_else(|e| panic!("{f}:{}: {e}", i + 1));
            let env = &r["env"];
            if gpu {
                for k in
                    ["ordinal", "uuid", "pci_bus_id", "sm_clock_mhz", "mem_clock_mhz", "power_limit_w", "ecc", "mig"]
                {
                    assert!(!env["gpu"][k].is_null(), "{f}:{}: env.gpu.{k} is null", i + 1);
                }
                assert!(!env["driver_version"].is_null() && !env["cuda_version"].is_null(), "{f}:{}: {env}", i + 1);
            }
            println!("{f}:{}: valid; env {env}", i + 1);
        }
    }
}

/// One moe variant under zipf:1.2 with a Gini gate: (exit code, stdout, records file).
fn gated_moe(variant: &str, dir: &std::path::Path) -> (Option<i32>, String, std::path::PathBuf) {
    let path = dir.join(format!("{variant}.jsonl"));
    let o = rwm(&[
        "run",
        "--backend",
        "cpu",
        "--target",
        "moe",
        "--skew",
        "zipf:1.2",
        "--variant",
        variant,
        "--gate",
        "moe.gini<=0.2",
        "--seq-len",
        "256",
        "--iters",
        "1",
        "--warmup",
        "0",
        "--output",
        path.to_str().unwrap(),
    ]);
    (o.status.code(), text(&o).0, path)
}

fn recompute(path: &std::path::Path) -> Output {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/recompute_routing.py");
    std::process::Command::new("python3").arg(script).arg(path).output().expect("python3 runs (CI has it)")
}

/// Issue 16's done-when: the skewed baseline fails the Gini gate (exit 1, the gate named in the
/// table and the record), the balanced variant passes it; the records carry what
/// docs/recompute_routing.py needs, and the script agrees with them (and notices a changed figure).
#[test]
fn a_gini_gate_fails_the_skewed_baseline_and_passes_balanced_and_records_recompute() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out, base) = gated_moe("baseline", dir.path());
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("FAILED (gate moe.gini<=0.2)"), "{out}");
    let rec: Value = serde_json::from_str(std::fs::read_to_string(&base).unwrap().lines().next().unwrap()).unwrap();
    validate(&rec).unwrap();
    assert_eq!(rec["status"], "failed");
    assert!(rec["error"].as_str().unwrap().contains("gate moe.gini<=0.2 failed"), "{}", rec["error"]);
    let g = &rec["gates"][0];
    assert_eq!((g["gate"].as_str(), g["pass"].as_bool()), (Some("moe.gini<=0.2"), Some(false)));
    assert!(g["value"].as_f64().unwrap() > 0.5, "{g}");

    let (code, out, bal) = gated_moe("balanced", dir.path());
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("settled after") && out.contains("held-out"), "{out}");
    let rec: Value = serde_json::from_str(std::fs::read_to_string(&bal).unwrap().lines().next().unwrap()).unwrap();
    validate(&rec).unwrap();
    assert_eq!(rec["status"], "ok");
    // The user's gate and the profile's default, both on the held-out Gini.
    let gates: Vec<(&str, bool)> =
        rec["gates"].as_array().unwrap().iter().map(|g| (g["gate"].as_str().unwrap(), g["pass"] == true)).collect();
    assert_eq!(gates, [("moe.gini<0.2@balanced", true), ("moe.gini<=0.2", true)]);
    let r = &rec["metrics"]["routing"];
    let e = r["experts"].as_u64().unwrap() as usize;
    assert_eq!(r["mean_prob"].as_array().unwrap().len(), e);
    let b0 = &r["per_batch"][0];
    assert_eq!((b0["load"].as_array().unwrap().len(), b0["mean_prob"].as_array().unwrap().len()), (e, e));
    // ceil(1.25 * 256 * 6 / 64) = 30
    assert_eq!(b0["capacity"], 30);
    let bal_m = &rec["metrics"]["balance"];
    assert_eq!(bal_m["bias"].as_array().unwrap().len(), e);
    assert!(bal_m["settled_at"].as_u64().is_some(), "{bal_m}");
    assert!(bal_m["learning"]["per_batch"].as_array().is_some());

    for path in [&base, &bal] {
        let o = recompute(path);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
    }
    // A record whose Gini no longer matches its loads is caught.
    let mut bad = rec.clone();
    bad["metrics"]["routing"]["gini"]["mean"] = serde_json::json!(0.01);
    let bad_path = dir.path().join("bad.jsonl");
    std::fs::write(&bad_path, format!("{bad}\n")).unwrap();
    let o = recompute(&bad_path);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("gini.mean: recomputed"),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
}

/// gpt4 records carry each block's routing under the moe target's names (this rank's `routing`,
/// every rank's `routing_layer`), and docs/recompute_routing.py recomputes them (and notices a
/// changed figure).
#[test]
fn gpt4_records_carry_each_blocks_routing_and_it_recomputes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gpt4.jsonl");
    let o = rwm(&[
        "run",
        "--backend",
        "cpu",
        "--target",
        "gpt4",
        "--ranks",
        "2",
        "--ep",
        "2",
        "--seq-len",
        "64",
        "--variant",
        "optimized",
        "--iters",
        "1",
        "--warmup",
        "0",
        "--output",
        path.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o).0);
    let recs: Vec<Value> =
        std::fs::read_to_string(&path).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(!recs.is_empty());
    for rec in &recs {
        validate(rec).unwrap();
        let c = &rec["config"];
        let (layers, e, k) =
            (c["layers"].as_u64().unwrap(), c["num_experts"].as_u64().unwrap(), c["top_k"].as_u64().unwrap());
        let blocks = rec["metrics"]["routing_by_block"].as_array().unwrap();
        assert_eq!(blocks.len() as u64, layers, "{rec}");
        for (i, b) in blocks.iter().enumerate() {
            assert_eq!(b["block"], i);
            for key in ["routing", "routing_layer"] {
                let r = &b[key];
                assert_eq!(r["mean_prob"].as_array().unwrap().len() as u64, e, "{key}");
                let b0 = &r["per_batch"][0];
                assert_eq!(b0["load"].as_array().unwrap().len() as u64, e);
                let tokens = b0["tokens"].as_u64().unwrap();
                // This rank's 64 tokens, or both ranks' 128; the capacity is ceil(1.25 t k / E).
                assert_eq!(tokens, if key == "routing" { 64 } else { 128 });
                assert_eq!(b0["capacity"].as_u64().unwrap(), (1.25 * (tokens * k) as f64 / e as f64).ceil() as u64);
            }
        }
    }
    let o = recompute(&path);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{out}");
    assert!(out.contains(&format!("{} routing object(s) recomputed", 2 * 2 * recs.len())), "{out}");
    let mut bad = recs[0].clone();
    bad["metrics"]["routing_by_block"][1]["routing_layer"]["aux_loss"]["mean"] = serde_json::json!(3.0);
    let bad_path = dir.path().join("bad.jsonl");
    std::fs::write(&bad_path, format!("{bad}\n")).unwrap();
    let o = recompute(&bad_path);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stdout).contains("block 1 routing_layer aux_loss.mean: recomputed"));
}
