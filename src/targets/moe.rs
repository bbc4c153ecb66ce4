//! The `moe` target: one DeepSeek MoE layer; with EP > 1, experts spread over ranks.

use crate::backend::Routing;
use crate::harness::{Ctx, Result, VariantSpec, Workload};
use crate::models::Mlp;
use crate::models::moe::{MoeConfig, MoeLayer};
use crate::models::weights::Source;
use crate::rng::child_seed;
use crate::tensor::{DType, Tensor};

pub struct MoeTarget {
    pub cfg: MoeConfig,
    layer: Option<MoeLayer>,
    /// One input batch per `cfg.batches`; steps time batch 0.
    inputs: Vec<Tensor>,
    skew: Option<Tensor>,
    /// Per-expert weights of the baseline loop, held only while it runs.
    per_expert: Option<Vec<Mlp>>,
    /// Selection bias learned by the balanced variant (host copy and device tensor).
    bias: Option<(Vec<f32>, Tensor)>,
}

impl MoeTarget {
    pub fn new(cfg: MoeConfig) -> Self {
        MoeTarget { cfg, layer: None, inputs: vec![], skew: None, per_expert: None, bias: None }
    }

    fn layer(&self) -> &MoeLayer {
        self.layer.as_ref().expect("setup ran")
    }

    fn routing(&self, ctx: &Ctx, batch: usize, biased: bool) -> Result<Routing> {
        let bias = if biased { self.bias.as_ref().map(|b| &b.1) } else { None };
        Ok(self.layer().route(ctx.backend.as_ref(), &self.inputs[batch], self.skew.as_ref(), bias)?)
    }

    /// Auxiliary-loss-free balancing: route every batch, nudge the bias of
    /// over-loaded experts down and under-loaded ones up (DeepSeek-V3).
    fn learn_bias(&mut self, ctx: &Ctx) -> Result<()> {
        let b = ctx.backend.as_ref();
        let e = self.cfg.num_experts;
        self.bias = Some((vec![0.0; e], b.zeros(&[e], DType::F32)?));
        for batch in 0..self.cfg.batches {
            let r = self.routing(ctx, batch, true)?;
            let ids = b.download_i32(&r.ids)?;
            let mut load = vec![0f32; e];
            ids.iter().for_each(|&i| load[i as usize] += 1.0);
            let mean = ids.len() as f32 / e as f32;
            let (host, _) = self.bias.take().expect("set above");
            let host: Vec<f32> =
                host.iter().zip(&load).map(|(bi, l)| bi + self.cfg.bias_update * (mean - l).signum()).collect();
            let dev = b.upload(&host, &[e], DType::F32)?;
            self.bias = Some((host, dev));
        }
        Ok(())
    }
}

impl Workload for MoeTarget {
    fn name(&self) -> &'static str {
        "moe"
    }
    fn config(&self) -> serde_json::Value {
        serde_json::to_value(&self.cfg).expect("config serialises")
    }
    fn variants(&self) -> Vec<VariantSpec> {
        vec![
            VariantSpec { name: "baseline", about: "loop over experts, group sizes read on the host", tolerance: 0.0 },
            VariantSpec {
                name: "optimized",
                about: "grouped GEMMs, routing and permutation on the device",
                tolerance: 0.02,
            },
            VariantSpec {
                name: "balanced",
                about: "optimized with auxiliary-loss-free bias balancing (and EPLB replicas when EP > 1)",
                tolerance: 0.02,
            },
        ]
    }
    fn setup(&mut self, ctx: &Ctx) -> Result<()> {
        let b = ctx.backend.as_ref();
        let c = &self.cfg;
        let src = Source::Random { seed: c.seed };
        self.layer = Some(MoeLayer::new(b, c, &src, "moe", &MoeLayer::all_experts(c), DType::Bf16)?);
        let rank = ctx.world.rank();
        self.inputs = (0..c.batches)
            .map(|i| b.random(&[c.tokens, c.hidden], DType::Bf16, child_seed(c.seed, &format!("x{i}.{rank}")), 1.0))
            .collect::<std::result::Result<_, _>>()?;
        Ok(())
    }
    fn step(&mut self, ctx: &Ctx, variant: &str) -> Result<Tensor> {
        let b = ctx.backend.as_ref();
        if variant != "baseline" {
            self.per_expert = None;
        } else if self.per_expert.is_none() {
            self.per_expert = Some(self.layer().split_experts(b)?);
        }
        if variant == "balanced" && self.bias.is_none() {
            self.learn_bias(ctx)?;
        }
        let r = self.routing(ctx, 0, variant == "balanced")?;
        Ok(self.layer().forward(b, &self.inputs[0], &r, self.per_expert.as_deref())?)
    }
    fn reference(&mut self, ctx: &Ctx, variant: &str) -> Result<Option<Tensor>> {
        if variant != "balanced" {
            return Ok(None);
        }
        let b = ctx.backend.as_ref();
        let per_expert = self.layer().split_experts(b)?;
        let r = self.routing(ctx, 0, true)?;
        Ok(Some(self.layer().forward(b, &self.inputs[0], &r, Some(&per_expert))?))
    }
    fn estimate_bytes(&self, ctx: &Ctx, _variant: &str) -> Option<u64> {
        super::memory::moe(&self.cfg, ctx.layout).estimate().ok().map(|b| b.total)
    }
    fn tokens(&self) -> usize {
        self.cfg.tokens
    }
    fn flops(&self, _variant: &str) -> f64 {
        self.cfg.flops(self.cfg.tokens)
    }
}
