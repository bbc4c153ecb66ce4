//! The binary as a user runs it: listing, a full quick run, the JSON Lines
//! schema, and errors on bad input (exit code 2, naming the key).

use serde_json::Value;
use std::process::{Command, Output};

fn rwm(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rwm-dist"))
        .args(args)
        .env("RUST_LOG", "warn")
        .env_remove("OMPI_COMM_WORLD_SIZE")
        .output()
        .expect("binary runs")
}

fn text(o: &Output) -> (String, String) {
    (String::from_utf8_lossy(&o.stdout).into(), String::from_utf8_lossy(&o.stderr).into())
}

/// The subset of JSON Schema that schema/results-v2.json uses.
fn validate(schema: &Value, v: &Value, path: &str) -> Result<(), String> {
    if let Some(t) = schema.get("type") {
        let types: Vec<&str> = match t {
            Value::String(s) => vec![s.as_str()],
            Value::Array(a) => a.iter().filter_map(|x| x.as_str()).collect(),
            _ => return Err(format!("{path}: bad schema type")),
        };
        let ok = types.iter().any(|t| match *t {
            "object" => v.is_object(),
            "array" => v.is_array(),
            "string" => v.is_string(),
            "integer" => v.is_u64() || v.is_i64(),
            "number" => v.is_number(),
            "null" => v.is_null(),
            "boolean" => v.is_boolean(),
            _ => false,
        });
        if !ok {
            return Err(format!("{path}: {v} is not of type {types:?}"));
        }
    }
    if let Some(Value::Array(allowed)) = schema.get("enum")
        && !allowed.contains(v)
    {
        return Err(format!("{path}: {v} not in {allowed:?}"));
    }
    if let (Some(obj), Some(props)) = (v.as_object(), schema.get("properties").and_then(|p| p.as_object())) {
        for r in schema.get("required").and_then(|r| r.as_array()).into_iter().flatten() {
            let r = r.as_str().unwrap();
            if !obj.contains_key(r) {
                return Err(format!("{path}: missing required `{r}`"));
            }
        }
        for (k, x) in obj {
            match props.get(k) {
                Some(s) => validate(s, x, &format!("{path}.{k}"))?,
                None if schema.get("additionalProperties") == Some(&Value::Bool(false)) => {
                    return Err(format!("{path}: unexpected `{k}`"));
                }
                None => {}
            }
        }
    }
    if let (Some(items), Some(arr)) = (schema.get("items"), v.as_array()) {
        for (i, x) in arr.iter().enumerate() {
            validate(items, x, &format!("{path}[{i}]"))?;
        }
    }
    Ok(())
}

fn schema() -> Value {
    serde_json::from_str(include_str!("../schema/results-v2.json")).unwrap()
}

#[test]
fn validator_rejects_what_the_schema_forbids() {
    let s = schema();
    let bad = serde_json::json!({"schema_version": 1});
    assert!(validate(&s, &bad, "$").unwrap_err().contains("missing required"));
    let t = serde_json::json!({"type": ["number", "null"]});
    assert!(validate(&t, &serde_json::json!("x"), "$").is_err());
    assert!(validate(&t, &Value::Null, "$").is_ok());
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
    let o = rwm(&["run", "--backend", "cpu", "--iters", "2", "--warmup", "0", "--output", path.to_str().unwrap()]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "stdout:\n{out}\nstderr:\n{err}");
    let lines: Vec<Value> =
        std::fs::read_to_string(&path).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    // llama 3 variants, moe 3, gpt4 2
    assert_eq!(lines.len(), 8, "{lines:?}");
    let s = schema();
    for l in &lines {
        validate(&s, l, "$").unwrap();
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
