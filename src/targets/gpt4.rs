//! The `gpt4` target: a GPT-4-style MoE block stack over the whole world as one
//! context-parallel group (attention) and one expert-parallel group (MoE).

use crate::backend::{AttnAlgo, AttnParams};
use crate::harness::{Ctx, Result, VariantSpec, Workload};
use crate::models::Mlp;
use crate::models::gpt4::{Gpt4, Gpt4Config};
use crate::models::moe::MoeLayer;
use crate::models::weights::Source;
use crate::rng::child_seed;
use crate::tensor::{DType, Tensor};
use std::ops::Range;

pub struct Gpt4Target {
    pub cfg: Gpt4Config,
    model: Option<Gpt4>,
    x: Option<Tensor>,
    chunks: Vec<Range<usize>>,
    fp8_ready: bool,
    /// Per-expert weights of the baseline loop (per block), held only while it runs.
    per_expert: Option<Vec<Vec<Mlp>>>,
}

impl Gpt4Target {
    pub fn new(cfg: Gpt4Config) -> Self {
        Gpt4Target { cfg, model: None, x: None, chunks: vec![], fp8_ready: false, per_expert: None }
    }
}

impl Workload for Gpt4Target {
    fn name(&self) -> &'static str {
        "gpt4"
    }
    fn config(&self) -> serde_json::Value {
        serde_json::to_value(&self.cfg).expect("config serialises")
    }
    fn variants(&self) -> Vec<VariantSpec> {
        vec![
            VariantSpec { name: "baseline", about: "naive attention, loop over experts, bf16", tolerance: 0.0 },
            VariantSpec {
                name: "optimized",
                about: "flash attention, grouped experts, GEMMs in --dtype (bf16 or fp8)",
                tolerance: 0.05,
            },
        ]
    }
    fn setup(&mut self, ctx: &Ctx) -> Result<()> {
        let b = ctx.backend.as_ref();
        let c = &self.cfg;
        self.model = Some(Gpt4::new(b, c, &Source::Random { seed: c.seed })?);
        self.chunks = [0..c.seq_len].to_vec();
        let rows = self.chunks.iter().map(|r| r.len()).sum();
        self.x = Some(b.random(&[rows, c.hidden], DType::Bf16, child_seed(c.seed, "x"), 1.0)?);
        Ok(())
    }
    fn step(&mut self, ctx: &Ctx, variant: &str) -> Result<Tensor> {
        let b = ctx.backend.as_ref();
        let base = variant == "baseline";
        let gemm = if base { DType::Bf16 } else { ctx.gemm_dtype };
        let model = self.model.as_mut().expect("setup ran");
        if (gemm == DType::F8) != self.fp8_ready {
            self.fp8_ready = gemm == DType::F8;
            model.set_fp8(b, self.fp8_ready)?;
        }
        let algo = if base { AttnAlgo::Naive } else { AttnAlgo::Flash };
        let mut attn = |q: &Tensor, k: &Tensor, v: &Tensor| {
            b.attention(q, k, v, &AttnParams { causal: true, q_offset: 0, k_offset: 0, algo }).map(|o| o.out)
        };
        if !base {
            self.per_expert = None;
        } else if self.per_expert.is_none() {
            self.per_expert =
                Some(model.blocks.iter().map(|blk| blk.moe.split_experts(b)).collect::<std::result::Result<_, _>>()?);
        }
        let per_expert = self.per_expert.as_deref();
        let mut layer = 0;
        let mut moe = |m: &MoeLayer, x: &Tensor| {
            let r = m.route(b, x, None, None)?;
            let pe = per_expert.map(|p| p[layer].as_slice());
            layer += 1;
            m.forward(b, x, &r, pe)
        };
        let x = b.concat_rows(&[self.x.as_ref().expect("setup ran")])?;
        Ok(model.forward(b, x, &self.chunks, gemm, &mut attn, &mut moe)?)
    }
    fn tokens(&self) -> usize {
        self.chunks.iter().map(|r| r.len()).sum()
    }
    fn flops(&self, _variant: &str) -> f64 {
        self.cfg.flops()
    }
}
