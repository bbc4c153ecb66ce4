//! Hugging Face checkpoints end to end against transformers: config.json, sharded or
//! single safetensors, tied embeddings, tokenizer.json, and what the model says about a
//! prompt (tests/fixtures/hf_tiny, made by make_checkpoints.py there).

mod common;

use common::errors as err;
use rwm_dist::backend::{AttnAlgo, Backend, cpu::CpuBackend, cuda::CudaBackend};
use rwm_dist::models::checkpoint::resolve;
use rwm_dist::models::llama::{Llama, LlamaConfig, Mode};
use rwm_dist::models::next_token::Verdict;
use rwm_dist::models::tokenizer::prompt_ids;
use rwm_dist::models::weights::{Checkpoint, Source};
use rwm_dist::tensor::DType;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

const NAMES: [&str; 2] = ["llama31", "llama32"];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hf_tiny")
}

/// What transformers said: expected.json's entry and the prompt's logits [n, vocab].
struct Expected {
    dir: PathBuf,
    prompt: String,
    ids: Vec<u32>,
    top5: Vec<(u32, f64)>,
    perplexity: f64,
    logits: Vec<f32>,
}

fn expected(name: &str) -> Expected {
    let all: Value = serde_json::from_str(&std::fs::read_to_string(root().join("expected.json")).unwrap()).unwrap();
    let e = &all[name];
    let dir = root().join(name);
    let bytes = std::fs::read(dir.join("expected.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let f32s = |t: &str| -> Vec<f32> {
        st.tensor(t).unwrap().data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
    };
    let ids: Vec<u32> = e["ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
    let st_ids: Vec<u32> = f32s("input_ids").iter().map(|x| x.to_bits()).collect();
    assert_eq!(ids, st_ids, "expected.json and expected.safetensors disagree");
    Expected {
        prompt: e["prompt"].as_str().unwrap().into(),
        top5: e["top5"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| (t["id"].as_u64().unwrap() as u32, t["p"].as_f64().unwrap()))
            .collect(),
        perplexity: e["perplexity"].as_f64().unwrap(),
        logits: f32s("logits"),
        ids,
        dir,
    }
}

/// The config `run --weights DIR --prompt P` resolves to (no `--set`).
fn config(e: &Expected) -> LlamaConfig {
    let asked = LlamaConfig { weights: e.dir.display().to_string(), prompt: e.prompt.clone(), ..LlamaConfig::small() };
    resolve(&asked, &["weights", "prompt"]).unwrap()
}

fn model(b: &dyn Backend, cfg: &LlamaConfig, dt: DType) -> Llama {
    Llama::new(b, cfg, &Source::load(Path::new(&cfg.weights)).unwrap(), dt).unwrap()
}

/// Softmax of expected row `row`.
fn probs(e: &Expected, row: usize, vocab: usize) -> Vec<f64> {
    let r = &e.logits[row * vocab..(row + 1) * vocab];
    let max = r.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let sum: f64 = r.iter().map(|&x| (x as f64 - max).exp()).sum();
    r.iter().map(|&x| (x as f64 - max).exp() / sum).collect()
}

/// Our verdict against transformers' within `tol` (probabilities absolute, perplexity
/// relative). Ranks may swap only between tokens whose expected probabilities are within tol.
fn assert_verdict(v: &Verdict, e: &Expected, vocab: usize, tol: f64, what: &str) {
    assert_eq!(v.tokens, e.ids.len(), "{what}");
    let ppl = v.perplexity.unwrap();
    assert!((ppl / e.perplexity - 1.0).abs() < tol, "{what}: perplexity {ppl} vs transformers {}", e.perplexity);
    let want = probs(e, e.ids.len() - 1, vocab);
    let fifth = e.top5[4].1;
    for &(id, p) in &v.top {
        let w = want[id as usize];
        assert!((p - w).abs() < tol, "{what}: token {id} p {p} vs transformers {w}");
        assert!(w >= fifth - tol, "{what}: token {id} (p {w} in transformers) is not in its top 5 {:?}", e.top5);
    }
}

#[test]
fn config_json_decides_the_architecture() {
    for name in NAMES {
        let e = expected(name);
        let c = config(&e);
        let all: Value = serde_json::from_str(&std::fs::read_to_string(root().join("expected.json")).unwrap()).unwrap();
        let hf = &all[name]["config"];
        let rope = &hf["rope_parameters"];
        assert_eq!(c.vocab as u64, hf["vocab_size"].as_u64().unwrap());
        assert_eq!((c.hidden as u64, c.layers as u64), (hf["hidden_size"].as_u64().unwrap(), 2));
        assert_eq!((c.heads as u64, c.kv_heads as u64), (4, hf["num_key_value_heads"].as_u64().unwrap()));
        assert_eq!(c.head_dim as u64, hf["head_dim"].as_u64().unwrap(), "{name}");
        assert_eq!(c.ffn as u64, hf["intermediate_size"].as_u64().unwrap());
        assert_eq!(c.rope_factor as f64, rope["factor"].as_f64().unwrap());
        assert_eq!(c.rope_original_max_position as u64, rope["original_max_position_embeddings"].as_u64().unwrap());
        assert_eq!(c.tie_embeddings, hf["tie_word_embeddings"].as_bool().unwrap());
        assert_eq!(c.eps as f64, hf["rms_norm_eps"].as_f64().unwrap() as f32 as f64);
        // Run keys are the user's: the profile's sequence length stays.
        assert_eq!(c.seq_len, LlamaConfig::small().seq_len);
        // The parameter count the record reports is the checkpoint's element count.
        let elements: usize = c.tensors().iter().map(|(_, s)| s.iter().product::<usize>()).sum();
        assert_eq!(c.params(), elements as u64, "{name}");
        // So is the memory estimate's (the tied LM head counted once).
        let est = c.memory_inputs(AttnAlgo::Flash).param_count().unwrap();
        assert_eq!(est, elements as u64, "{name}");
    }
}

#[test]
fn tokenizer_matches_transformers() {
    for name in NAMES {
        let e = expected(name);
        let (ids, tok) = prompt_ids(&e.prompt, Some(&e.dir), 512).unwrap();
        assert_eq!(ids, e.ids, "{name}");
        let tok = tok.expect("fixture has tokenizer.json");
        let all: Value = serde_json::from_str(&std::fs::read_to_string(root().join("expected.json")).unwrap()).unwrap();
        for t in all[name]["top5"].as_array().unwrap() {
            assert_eq!(tok.token_text(t["id"].as_u64().unwrap() as u32), t["token"].as_str().unwrap());
        }
    }
}

#[test]
fn cpu_f32_says_what_transformers_says() {
    let b = CpuBackend::new();
    for name in NAMES {
        let e = expected(name);
        let c = config(&e);
        let m = model(&b, &c, DType::F32);
        for (attn, fused) in [(AttnAlgo::Naive, false), (AttnAlgo::Flash, true)] {
            let mode = Mode { attn, fused_norm: fused, gemm: DType::F32, fused_swiglu: false };
            let ids: Vec<i32> = e.ids.iter().map(|&i| i as i32).collect();
            let x = m.hidden(&b, &b.upload_i32(&ids, &[ids.len()]).unwrap(), mode).unwrap();
            let got = b.download(&m.logits(&b, &x, mode).unwrap()).unwrap();
            let (max, rel) = err(&got, &e.logits);
            assert!(max < 1e-4 && rel < 1e-5, "{name} {attn:?}: max {max:.2e} rel {rel:.2e}");
            let v = m.score(&b, &e.ids, mode, 5).unwrap();
            assert_verdict(&v, &e, c.vocab, 1e-5, &format!("{name} f32 {attn:?}"));
            assert_eq!(v.top.iter().map(|t| t.0).collect::<Vec<_>>(), e.top5.iter().map(|t| t.0).collect::<Vec<_>>());
        }
    }
}

#[test]
fn cpu_bf16_stays_close_to_transformers() {
    let b = CpuBackend::new();
    for name in NAMES {
        let e = expected(name);
        let c = config(&e);
        let m = model(&b, &c, DType::Bf16);
        let v = m
            .score(
                &b,
                &e.ids,
                Mode { attn: AttnAlgo::Flash, fused_norm: true, gemm: DType::Bf16, fused_swiglu: false },
                5,
            )
            .unwrap();
        assert_verdict(&v, &e, c.vocab, 2e-2, &format!("{name} bf16"));
    }
}

#[test]
fn a_wrong_load_shows_in_the_perplexity() {
    // Dropping the llama3 RoPE scaling is a silent mistake a user could make by hand:
    // the model still runs, but reads the prompt worse.
    let b = CpuBackend::new();
    let e = expected("llama31");
    let c = LlamaConfig { rope_factor: 1.0, ..config(&e) };
    let mode = Mode { attn: AttnAlgo::Flash, fused_norm: true, gemm: DType::F32, fused_swiglu: false };
    let v = model(&b, &c, DType::F32).score(&b, &e.ids, mode, 5).unwrap();
    assert!(v.perplexity.unwrap() > 1.05 * e.perplexity, "{:?} vs {}", v.perplexity, e.perplexity);
}

#[test]
fn cuda_bf16_says_what_transformers_says() {
    let b = match CudaBackend::new(0) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("SKIPPED: no CUDA device ({e})");
            return;
        }
    };
    for name in NAMES {
        let e = expected(name);
        let c = config(&e);
        let m = model(&b, &c, DType::Bf16);
        for (attn, fused) in [(AttnAlgo::Naive, false), (AttnAlgo::Flash, true)] {
            let v = m
                .score(&b, &e.ids, Mode { attn, fused_norm: fused, gemm: DType::Bf16, fused_swiglu: false }, 5)
                .unwrap();
            assert_verdict(&v, &e, c.vocab, 2e-2, &format!("{name} cuda {attn:?}"));
        }
    }
}

/// A copy of fixture `name` in a temporary directory, to break.
fn copy(name: &str) -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    for f in std::fs::read_dir(root().join(name)).unwrap() {
        let p = f.unwrap().path();
        std::fs::copy(&p, t.path().join(p.file_name().unwrap())).unwrap();
    }
    t
}

#[test]
fn duplicate_tensors_across_shards_are_refused_naming_both_files() {
    let t = copy("llama31");
    std::fs::remove_file(t.path().join("model.safetensors.index.json")).unwrap();
    let (a, b) = (t.path().join("model-00001-of-00002.safetensors"), t.path().join("extra.safetensors"));
    std::fs::copy(&a, &b).unwrap();
    let e = Checkpoint::open(t.path()).err().expect("duplicates").to_string();
    assert!(e.starts_with("weights: tensor `") && e.contains(&a.display().to_string()), "{e}");
    assert!(e.contains(&b.display().to_string()), "{e}");
}

#[test]
fn the_index_must_tell_the_truth() {
    let t = copy("llama31");
    let path = t.path().join("model.safetensors.index.json");
    let mut index: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let map = index["weight_map"].as_object_mut().unwrap();
    let name = "model.norm.weight";
    let other = if map[name] == "model-00001-of-00002.safetensors" {
        "model-00002-of-00002.safetensors"
    } else {
        "model-00001-of-00002.safetensors"
    };
    map.insert(name.into(), other.into());
    std::fs::write(&path, index.to_string()).unwrap();
    let e = Checkpoint::open(t.path()).err().expect("lying index").to_string();
    assert!(e.contains(name) && e.contains(other) && e.starts_with("weights: "), "{e}");
}

/// `rwm-dist ARGS` -> (exit code, stdout, stderr).
fn rwm(args: &[&str]) -> (i32, String, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_rwm-dist")).args(args).env("RUST_LOG", "off").output().unwrap();
    (o.status.code().unwrap(), String::from_utf8_lossy(&o.stdout).into(), String::from_utf8_lossy(&o.stderr).into())
}

#[test]
fn run_with_a_prompt_prints_and_records_what_the_model_says() {
    let e = expected("llama31");
    let out = tempfile::tempdir().unwrap();
    let jsonl = out.path().join("r.jsonl");
    let dir = e.dir.display().to_string();
    let args = ["run", "--target", "llama", "--weights", &dir, "--prompt", &e.prompt, "--backend", "cpu"];
    let (code, stdout, stderr) = rwm(&[
        &args[..],
        &["--variant", "baseline,optimized", "--iters", "1", "--warmup", "0", "--output", jsonl.to_str().unwrap()],
    ]
    .concat());
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let all: Value = serde_json::from_str(&std::fs::read_to_string(root().join("expected.json")).unwrap()).unwrap();
    let first = all["llama31"]["top5"][0]["token"].as_str().unwrap();
    for variant in ["baseline", "optimized"] {
        let line = stdout.lines().find(|l| l.starts_with(&format!("llama {variant}: prompt of "))).expect(&stdout);
        assert!(line.contains(&format!("next token: {first:?}")) && line.contains("perplexity"), "{line}");
    }
    for rec in std::fs::read_to_string(&jsonl).unwrap().lines() {
        let r: Value = serde_json::from_str(rec).unwrap();
        assert_eq!(r["config"]["heads"], 4);
        let p = &r["metrics"]["prompt"];
        let v = Verdict {
            tokens: p["tokens"].as_u64().unwrap() as usize,
            perplexity: p["perplexity"].as_f64(),
            top: p["next"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| (t["id"].as_u64().unwrap() as u32, t["p"].as_f64().unwrap()))
                .collect(),
        };
        assert_verdict(&v, &e, 512, 2e-2, &format!("record {}", r["variant"]));
        assert_eq!(r["metrics"]["checkpoint_dtype"], "bfloat16");
    }
    // The same prompt from a file.
    let file = out.path().join("prompt.txt");
    std::fs::write(&file, &e.prompt).unwrap();
    let from_file = ["run", "--target", "llama", "--weights", &dir, "--prompt-file", file.to_str().unwrap()];
    let (code, stdout, stderr) = rwm(&[
        &from_file[..],
        &["--backend", "cpu", "--variant", "baseline", "--iters", "1", "--output", jsonl.to_str().unwrap()],
    ]
    .concat());
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains(&format!("prompt of {} tokens", e.ids.len())), "{stdout}");
    // A `--set` that contradicts the checkpoint is bad input naming both values.
    let (code, _, stderr) = rwm(&[&args[..], &["--set", "llama.heads=8", "--dry-run"]].concat());
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("weights: ")
            && stderr.contains("llama.heads = 8")
            && stderr.contains("num_attention_heads = 4"),
        "{stderr}"
    );
    // Agreeing is fine.
    assert_eq!(rwm(&[&args[..], &["--set", "llama.heads=4", "--dry-run"]].concat()).0, 0);
}

#[test]
fn bad_checkpoints_exit_2_saying_what_failed() {
    let t = copy("llama32");
    let cfg = t.path().join("config.json");
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, text.replace("LlamaForCausalLM", "MistralForCausalLM")).unwrap();
    let dir = t.path().display().to_string();
    let (code, _, stderr) = rwm(&["run", "--target", "llama", "--weights", &dir, "--dry-run"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("weights: ") && stderr.contains("architecture MistralForCausalLM is not supported"),
        "{stderr}"
    );
    // Tied in config.json but the file has no such tensor layout: a shape error names the tensor.
    std::fs::write(&cfg, text.replace("\"intermediate_size\": 128", "\"intermediate_size\": 96")).unwrap();
    let (code, _, stderr) = rwm(&["run", "--target", "llama", "--weights", &dir, "--dry-run"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("weights: `model.layers.0.mlp.gate_proj.weight` is [128, 64], the model needs [96, 64]"),
        "{stderr}"
    );
    // No tokenizer.json: the prompt must be ids.
    std::fs::write(&cfg, &text).unwrap();
    std::fs::remove_file(t.path().join("tokenizer.json")).unwrap();
    let (code, _, stderr) = rwm(&["run", "--target", "llama", "--weights", &dir, "--prompt", "Run", "--dry-run"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("has no tokenizer.json, so the prompt must be token ids"), "{stderr}");
    let (code, stdout, stderr) = rwm(&[
        "run",
        "--target",
        "llama",
        "--weights",
        &dir,
        "--prompt",
        "0 51 323",
        "--backend",
        "cpu",
        "--variant",
        "baseline",
        "--iters",
        "1",
        "--warmup",
        "0",
        "--output",
        t.path().join("r.jsonl").to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("llama baseline: prompt of 3 tokens") && stdout.contains("next token: #"), "{stdout}");
}
