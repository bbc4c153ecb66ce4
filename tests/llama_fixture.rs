//! Llama checked against Hugging Face transformers (LlamaForCausalLM, eager attention)
//! on fixed weights and inputs: tests/fixtures/llama_tiny (made by make_fixture.py there).

mod common;

use common::errors as err;
use rwm_dist::backend::{AttnAlgo, Backend, cpu::CpuBackend, cuda::CudaBackend};
use rwm_dist::models::llama::{Llama, LlamaConfig, Mode};
use rwm_dist::models::weights::{Checkpoint, Source};
use rwm_dist::tensor::DType;
use std::path::PathBuf;

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/llama_tiny")
}

struct Expected {
    cfg: LlamaConfig,
    ids: Vec<i32>,
    /// [s, vocab]
    logits: Vec<f32>,
}

fn expected() -> Expected {
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture().join("fixture.json")).unwrap()).unwrap();
    let cfg: LlamaConfig = serde_json::from_value(meta["config"].clone()).unwrap();
    let bytes = std::fs::read(fixture().join("expected.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let ids = st.tensor("input_ids").unwrap();
    let ids = ids.data().chunks_exact(4).map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    let l = st.tensor("logits").unwrap();
    let logits = l.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    Expected { cfg, ids, logits }
}

/// Logits of every position on backend `b` with weights in `dt`; `fused`: residual adds in the norms
/// and SwiGLU in the gate/up GEMM (`matmul_swiglu`: on sm_90a the fused TMA kernel).
fn all_logits(b: &dyn Backend, e: &Expected, dt: DType, attn: AttnAlgo, fused: bool) -> Vec<f32> {
    let src = Source::load(&fixture().join("model")).unwrap();
    let model = Llama::new(b, &e.cfg, &src, dt).unwrap();
    let ids = b.upload_i32(&e.ids, &[e.ids.len()]).unwrap();
    let mode = Mode { attn, fused_norm: fused, gemm: dt, fused_swiglu: fused };
    let x = model.hidden(b, &ids, mode).unwrap();
    b.download(&model.logits(b, &x, mode).unwrap()).unwrap()
}

#[test]
fn cpu_f32_matches_transformers() {
    let e = expected();
    for (attn, fused) in [(AttnAlgo::Naive, false), (AttnAlgo::Flash, true)] {
        let got = all_logits(&CpuBackend::new(), &e, DType::F32, attn, fused);
        let (max, rel) = err(&got, &e.logits);
        assert!(max < 1e-4 && rel < 1e-5, "{attn:?}: max {max:.2e} rel {rel:.2e}");
    }
}

#[test]
fn cpu_bf16_stays_close_to_transformers() {
    let e = expected();
    let got = all_logits(&CpuBackend::new(), &e, DType::Bf16, AttnAlgo::Flash, true);
    let (max, rel) = err(&got, &e.logits);
    assert!(rel < 3e-2 && max < 6e-2, "bf16 max {max:.2e} rel {rel:.2e}");
}

#[test]
fn wrong_rope_scaling_is_caught() {
    // The fixture puts all three llama3 frequency bands inside its 48 positions:
    // dropping the scaling must move the logits well beyond the f32 tolerance.
    let mut e = expected();
    e.cfg.rope_factor = 1.0;
    let got = all_logits(&CpuBackend::new(), &e, DType::F32, AttnAlgo::Flash, true);
    assert!(err(&got, &e.logits).1 > 1e-3);
}

#[test]
fn cuda_bf16_matches_transformers() {
    let b = match CudaBackend::new(0) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("SKIPPED: no CUDA device ({e})");
            return;
        }
    };
    let e = expected();
    for (attn, fused) in [(AttnAlgo::Naive, false), (AttnAlgo::Flash, true)] {
        let got = all_logits(&b, &e, DType::Bf16, attn, fused);
        let (max, rel) = err(&got, &e.logits);
        assert!(rel < 3e-2 && max < 6e-2, "cuda {attn:?}: max {max:.2e} rel {rel:.2e}");
    }
}

#[test]
fn checkpoint_shape_mismatch_names_the_tensor() {
    let mut e = expected();
    e.cfg.ffn = 256;
    let src = Source::load(&fixture().join("model")).unwrap();
    let err = Llama::new(&CpuBackend::new(), &e.cfg, &src, DType::F32).err().expect("shape mismatch").to_string();
    assert!(err.contains("model.layers.0.mlp.gate_proj.weight") && err.contains("[512, 256]"), "{err}");
    // The fixture root holds only expected.safetensors: the first weight asked for is named.
    let src = Source::load(&fixture()).unwrap();
    let err = Llama::new(&CpuBackend::new(), &e.cfg, &src, DType::F32).err().unwrap().to_string();
    assert!(err.contains("no tensor `model.layers.0.mlp.gate_proj.weight`"), "{err}");
}

#[test]
fn every_checkpoint_tensor_is_read_with_its_shape() {
    let e = expected();
    let ck = Checkpoint::open(&fixture().join("model")).unwrap();
    ck.check(&e.cfg.tensors()).unwrap();
    assert!(ck.unused(&e.cfg.tensors()).is_empty(), "{:?}", ck.unused(&e.cfg.tensors()));
    // Tied, the model reads no LM head: the fixture's own is left over.
    let tied = LlamaConfig { tie_embeddings: true, ..e.cfg };
    assert_eq!(ck.unused(&tied.tensors()), vec!["lm_head.weight"]);
}
