//! The `moe` target: one DeepSeek MoE layer. Each rank routes its own tokens; with
//! --ep N the experts are spread over the ranks and tokens travel by all-to-all.
//! Routing health (load, Gini, entropies, aux loss, drops) is measured on every
//! batch; `balanced` learns a selection bias across batches (DeepSeek-V3) and,
//! under EP, replicates hot experts onto ranks (EPLB).

use crate::backend::Routing;
use crate::budget::{Budget, DROPLESS, MemoryError, MemoryInputs, Storage, n};
use crate::config::ConfigError;
use crate::harness::target::{Flag, Preset, Registration, Size, Target, preset_names, set_key};
use crate::harness::variant::{Experts, Gemm, Recipe};
use crate::harness::{Ctx, Error, Result, Variant, VariantSpec, Workload};
use super::routing;
use super::working_set::MoeRun;
use crate::layout::ParallelDims;
use crate::metrics::routing::RoutingStats;
use crate::models::Mlp;
use crate::models::balance::learn_bias;
use crate::models::moe::{MoeConfig, MoeLayer};
use crate::models::skew::Skew;
use crate::models::weights::Source;
use crate::parallel::eplb::plan_placement;
use crate::parallel::expert::{self, EpStats, ExpertPlacement};
use crate::rng::child_seed;
use crate::tensor::{DType, Tensor};
use serde_json::json;

/// Experts laid out over the EP group (one rank: every expert in order).
struct Sharded {
    layer: MoeLayer,
    placement: Option<ExpertPlacement>,
}

pub struct MoeTarget {
    pub cfg: MoeConfig,
    /// Contiguous placement: baseline and optimized.
    plain: Option<Sharded>,
    /// EPLB placement of the balanced variant (EP > 1), built once the bias is learned.
    balanced: Option<Sharded>,
    /// One input batch per `cfg.batches`; steps time batch 0.
    inputs: Vec<Tensor>,
    skew: Option<Tensor>,
    /// Per-slot weights of the baseline loop, held only while it runs.
    per_expert: Option<Vec<Mlp>>,
    /// Selection bias learned by the balanced variant: host values and device copy.
    bias: Option<(Vec<f32>, Tensor)>,
    /// Gini of the summed load, and rank balance of the placement, around balancing.
    balance_report: serde_json::Value,
    ep_stats: Option<EpStats>,
}

pub const REGISTRATION: Registration = Registration {
    name: "moe",
    about: "DeepSeek MoE layer: routing health, grouped experts, expert parallelism",
    config: |size| {
        Box::new(match size {
            Size::Quick => {
                MoeConfig { hidden: 512, expert_ffn: 256, tokens: 512, batches: 4, ..MoeConfig::deepseek_v2_lite() }
            }
            Size::Bench | Size::Long => MoeConfig::deepseek_v2_lite(),
        })
    },
};

/// The grouped experts run in `--dtype` (bf16, or block-scaled FP8); the router stays bf16.
const GROUPED: Recipe = Recipe { experts: Some(Experts::Grouped), gemm: Gemm::Run, ..Recipe::PLAIN };

/// Max error bound (relative to the largest output) of the FP8 experts against the bf16 loop:
/// e4m3 keeps 3 mantissa bits (about 3.6% rms per value), over two GEMMs and SwiGLU.
const FP8_TOLERANCE: f64 = 0.15;

const PRESETS: &[Preset<MoeConfig>] =
    &[("deepseek-v2-lite", MoeConfig::deepseek_v2_lite), ("deepseek-v3", MoeConfig::deepseek_v3)];

pub fn variants() -> Vec<VariantSpec> {
    vec![
        VariantSpec::baseline(
            "loop over experts, group sizes read on the host",
            Recipe { experts: Some(Experts::Loop), ..Recipe::PLAIN },
        ),
        VariantSpec {
            fp8_tolerance: Some(FP8_TOLERANCE),
            ..VariantSpec::candidate("optimized", "grouped GEMMs, routing and permutation on the device", GROUPED, 0.02)
        },
        VariantSpec {
            fp8_tolerance: Some(FP8_TOLERANCE),
            ..VariantSpec::candidate(
                "balanced",
                "optimized with auxiliary-loss-free bias balancing (and EPLB replicas when EP > 1)",
                Recipe { experts: Some(Experts::Balanced), ..GROUPED },
                0.02,
            )
        },
    ]
}

/// One MoE layer with no attention of its own: the attention fields describe a one-head,
/// one-dimension stub so that only the MoE terms count. `tokens` are this rank's own.
pub fn memory_inputs(c: &MoeConfig, layout: &ParallelDims) -> MemoryInputs {
    MemoryInputs {
        layers: 1,
        hidden: c.hidden,
        heads: 1,
        kv_heads: 1,
        head_dim: 1,
        vocab: 1,
        num_experts: c.num_experts,
        top_k: c.top_k,
        expert_ffn: c.expert_ffn,
        shared_experts: c.shared_experts,
        moe_layer_count: 1,
        seq_len: c.tokens,
        ep: layout.ep,
        capacity_factor: c.capacity_factor,
        ..Default::default()
    }
}

impl Target for MoeConfig {
    fn name(&self) -> &'static str {
        REGISTRATION.name
    }
    fn presets(&self) -> Vec<&'static str> {
        preset_names(PRESETS)
    }
    fn flag_key(&self, flag: Flag) -> Option<&'static str> {
        match flag {
            Flag::SeqLen => Some("tokens"),
            Flag::Skew => Some("skew"),
            Flag::Layers | Flag::CpKind | Flag::Weights | Flag::Prompt => None,
        }
    }
    fn set(&mut self, key: &str, value: &str) -> std::result::Result<(), ConfigError> {
        set_key(self, REGISTRATION.name, key, value, PRESETS)
    }
    fn finish(&mut self, _explicit: &[&str]) -> std::result::Result<(), ConfigError> {
        self.validate()
    }
    fn check_layout(&self, dims: &ParallelDims) -> std::result::Result<(), ConfigError> {
        dims.check_experts(self.num_experts, "moe.num_experts").map_err(|e| ConfigError::Invalid(e.to_string()))?;
        self.check_redundant(dims.ep)
    }
    fn variants(&self) -> Vec<VariantSpec> {
        variants()
    }
    /// Dropless (t*k rows), with the other input batches kept for the routing statistics, the
    /// loop's per-expert weight copies, the balanced variant's second layer on its EPLB placement
    /// and, for FP8, the experts' FP8 copies (beside the bf16 ones, which the baseline and the
    /// balanced reference loop over); the grouped FP8 experts' quantised rows are in the working set.
    fn run_budget(&self, dims: &ParallelDims, v: &Variant, at: Storage) -> std::result::Result<Budget, MemoryError> {
        let c = self;
        let inputs = MemoryInputs { capacity_factor: DROPLESS, ..at.inputs(memory_inputs(c, dims)) };
        let bf16 = n(at.bytes(DType::Bf16));
        let expert = n(3) * n(c.hidden) * n(c.expert_ffn) * bf16;
        let batches = n(c.batches.saturating_sub(1)) * n(c.tokens) * n(c.hidden) * bf16;
        let copies = if v.experts() == Experts::Loop { n(c.num_experts / dims.ep) * expert } else { n(0) };
        let replicas = (c.num_experts + c.redundant_experts) / dims.ep;
        let eplb = v.experts() == Experts::Balanced && dims.ep > 1;
        // The balanced layer is a whole second layer: its replicas, shared experts and router.
        let second = n(replicas) * expert + n(c.shared_experts) * expert + n(c.hidden) * n(c.num_experts) * bf16;
        let balanced = if eplb { second } else { n(0) };
        let (fp8, b8) = (v.gemm == DType::F8 && v.experts() != Experts::Loop, n(at.bytes(DType::F8)));
        let local = n(c.num_experts / dims.ep) + if eplb { n(replicas) } else { n(0) };
        // With shared_fp8 the shared experts' copies too (one block-scaled expert over every token).
        let shared8 = if c.shared_fp8 { n(c.shared_experts) } else { n(0) };
        let fp8_experts = if fp8 { (local + shared8) * n(3) * n(c.hidden) * n(c.expert_ffn) * b8 } else { n(0) };
        let run = MoeRun {
            loops: v.experts() == Experts::Loop,
            fp8: fp8.then_some(at.bytes(DType::F8)),
            reordered: eplb,
            fused: at.fuses_swiglu(),
            fused_add: at.fuses_combine_add(),
        };
        let budget = super::working_set::moe(inputs.estimate()?, c, dims, run, at.bytes(DType::Bf16))?;
        budget.with_extras(vec![
            ("other input batches", batches),
            ("per-expert weight copies", copies),
            ("balanced placement's experts", balanced),
            ("fp8 expert weights", fp8_experts),
        ])
    }
    fn model_inputs(&self, dims: &ParallelDims) -> Option<MemoryInputs> {
        Some(MemoryInputs { tp: dims.tp, ..memory_inputs(self, dims) })
    }
    fn workload(&self) -> Box<dyn Workload> {
        Box::new(MoeTarget::new(self.clone()))
    }
}

fn err(e: impl std::fmt::Display) -> Error {
    Error::Workload(e.to_string())
}

impl MoeTarget {
    pub fn new(cfg: MoeConfig) -> Self {
        MoeTarget {
            cfg,
            plain: None,
            balanced: None,
            inputs: vec![],
            skew: None,
            per_expert: None,
            bias: None,
            balance_report: json!(null),
            ep_stats: None,
        }
    }

    /// This rank's input batch `i` ([tokens, hidden]).
    pub fn input(&self, i: usize) -> &Tensor {
        &self.inputs[i]
    }

    /// The selection bias the balanced variant learned (device tensor), once it ran.
    pub fn learned_bias(&self) -> Option<&Tensor> {
        self.bias.as_ref().map(|b| &b.1)
    }

    fn plain(&self) -> &Sharded {
        self.plain.as_ref().expect("setup ran")
    }

    fn routing(&self, ctx: &Ctx, batch: usize, biased: bool) -> Result<Routing> {
        self.route(ctx, &self.inputs[batch], biased)
    }

    fn route(&self, ctx: &Ctx, x: &Tensor, biased: bool) -> Result<Routing> {
        let bias = if biased { self.bias.as_ref().map(|b| &b.1) } else { None };
        Ok(self.plain().layer.route(ctx.backend.as_ref(), x, self.skew.as_ref(), bias)?)
    }

    /// Expert load of one routing, summed over every rank of the layer (all get the same,
    /// so every rank learns the same bias).
    fn group_load(&self, ctx: &Ctx, r: &Routing) -> Result<Vec<u64>> {
        let b = ctx.backend.as_ref();
        let mut load = vec![0f32; self.cfg.num_experts];
        b.download_i32(&r.ids)?.iter().for_each(|&e| load[e as usize] += 1.0);
        if ctx.world.size() > 1 {
            let t = b.upload(&load, &[load.len()], DType::F32)?;
            load = b.download(&ctx.world.all_reduce_sum(&t)?)?;
        }
        Ok(load.iter().map(|&x| x.round() as u64).collect())
    }

    /// Routing health with or without the learned bias, on this rank's tokens and layer-wide
    /// (each batch's tallies summed over every rank of the layer): on the input batches, or on
    /// as many held-out batches drawn from other seeds (made one at a time, after timing).
    fn routing_stats(&self, ctx: &Ctx, biased: bool, held_out: bool) -> Result<(RoutingStats, RoutingStats)> {
        let (e, k) = (self.cfg.num_experts, self.cfg.top_k);
        let mut tallies = vec![];
        for i in 0..self.cfg.batches {
            let fresh = if held_out { Some(held_out_batch(ctx, &self.cfg, i)?) } else { None };
            let r = self.route(ctx, fresh.as_ref().unwrap_or(&self.inputs[i]), biased)?;
            tallies.push(routing::tally(ctx.backend.as_ref(), &r, self.cfg.gate, e, k)?);
        }
        routing::stats(ctx.world.as_ref(), tallies, self.cfg.capacity_factor)
    }

    /// DeepSeek-V3's auxiliary-loss-free balancing, learned on the input batches (cycling) until
    /// the bias settles or `balance_steps` updates; then (EP > 1) an EPLB placement of the load
    /// routed while learning, with `redundant_experts` extra slots. Judged on held-out batches.
    fn balance(&mut self, ctx: &Ctx) -> Result<()> {
        let b = ctx.backend.as_ref();
        let e = self.cfg.num_experts;
        let rule = crate::models::balance::DEFAULT_SETTLE;
        self.bias = Some((vec![0.0; e], b.zeros(&[e], DType::F32)?));
        let learned = learn_bias(e, self.cfg.bias_update, rule, self.cfg.balance_steps, |step, bias| {
            self.bias = Some((bias.to_vec(), b.upload(bias, &[e], DType::F32)?));
            let r = self.routing(ctx, step % self.cfg.batches, true)?;
            self.group_load(ctx, &r)
        })?;
        self.bias = Some((learned.bias.clone(), b.upload(&learned.bias, &[e], DType::F32)?));
        if learned.settled_at.is_none() {
            tracing::warn!(
                "moe balanced: the bias had not settled after moe.balance_steps = {} updates (drift {:.2} of the \
                 window's steady walk; settled means <= {})",
                learned.steps,
                learned.drift.unwrap_or(f64::NAN),
                rule.fraction
            );
        }
        let loads: Vec<f64> = learned.load.iter().map(|&x| x as f64).collect();
        let mut report = serde_json::to_value(&learned).expect("serialises");
        if ctx.dims.ep > 1 {
            let p = plan_placement(&loads, ctx.dims.ep, self.cfg.redundant_experts).map_err(err)?;
            report["placement"] = serde_json::to_value(p.report(&loads).map_err(err)?).expect("serialises");
            let placement = p.placement;
            placement.validate(ctx.dims.ep)?;
            let slots = placement.slot_experts(ctx.groups.ep.rank());
            let layer =
                MoeLayer::new(b, &self.cfg, &Source::Random { seed: self.cfg.seed }, "moe", &slots, DType::Bf16)?;
            self.balanced = Some(Sharded { layer, placement: Some(placement) });
        }
        self.balance_report = report;
        Ok(())
    }
}

/// This rank's held-out batch `i`: drawn like the input batches, from seeds they do not use.
fn held_out_batch(ctx: &Ctx, c: &MoeConfig, i: usize) -> Result<Tensor> {
    let seed = child_seed(c.seed, &format!("heldout{i}.{}", ctx.data.rank));
    Ok(ctx.backend.random(&[c.tokens, c.hidden], DType::Bf16, seed, 1.0)?)
}

/// The layer over `x` with routing `r`, on the experts of `s`; the loop over experts
/// when `per_expert` is given. Also returns the EP stats when the experts are sharded.
fn forward(
    ctx: &Ctx,
    s: &Sharded,
    x: &Tensor,
    r: &Routing,
    per_expert: Option<&[Mlp]>,
) -> Result<(Tensor, Option<EpStats>)> {
    let b = ctx.backend.as_ref();
    let Some(p) = &s.placement else {
        return Ok((s.layer.forward(b, x, r, per_expert, x.dtype())?, None));
    };
    let run = |rows: &Tensor, offsets: &Tensor, _slots: &[usize]| -> crate::parallel::Result<Tensor> {
        Ok(s.layer.experts(b, rows, offsets, per_expert, x.dtype())?)
    };
    let (routed, st) = expert::forward(b, ctx.groups.ep.as_ref(), p, x, r, run)?;
    let out = match s.layer.shared_experts(b, x, per_expert.is_none())? {
        Some(shared) => b.add(&routed, &shared)?,
        None => routed,
    };
    Ok((out, Some(st)))
}

impl Workload for MoeTarget {
    fn name(&self) -> &'static str {
        "moe"
    }
    fn config(&self) -> serde_json::Value {
        serde_json::to_value(&self.cfg).expect("config serialises")
    }
    fn variants(&self) -> Vec<VariantSpec> {
        variants()
    }
    fn setup(&mut self, ctx: &Ctx) -> Result<()> {
        let b = ctx.backend.as_ref();
        let c = &self.cfg;
        let src = Source::Random { seed: c.seed };
        let ep = &ctx.groups.ep;
        let (slots, placement) = if ep.size() > 1 {
            let p = ExpertPlacement::contiguous(c.num_experts, ep.size())?;
            (p.slot_experts(ep.rank()), Some(p))
        } else {
            (MoeLayer::all_experts(c), None)
        };
        self.plain = Some(Sharded { layer: MoeLayer::new(b, c, &src, "moe", &slots, DType::Bf16)?, placement });
        // Every rank routes tokens of its own.
        let rank = ctx.data.rank;
        self.inputs = (0..c.batches)
            .map(|i| b.random(&[c.tokens, c.hidden], DType::Bf16, child_seed(c.seed, &format!("x{i}.{rank}")), 1.0))
            .collect::<std::result::Result<_, _>>()?;
        let skew: Skew = c.skew.parse().map_err(err)?;
        if skew != Skew::None {
            let bias = skew.logit_bias(c.num_experts).map_err(err)?;
            self.skew = Some(b.upload(&bias, &[bias.len()], DType::F32)?);
        }
        Ok(())
    }
    fn prepare(&mut self, ctx: &Ctx, v: &Variant) -> Result<()> {
        self.per_expert = None;
        if v.experts() == Experts::Loop {
            self.per_expert = Some(self.plain().layer.split_experts(ctx.backend.as_ref())?);
        }
        if v.experts() == Experts::Balanced && self.bias.is_none() {
            self.balance(ctx)?;
        }
        // FP8 copies of the experts beside the bf16 ones (the baseline and the balanced
        // reference loop over the bf16 experts).
        let (fp8, src) = (v.gemm == DType::F8, Source::Random { seed: self.cfg.seed });
        for s in [&mut self.plain, &mut self.balanced].into_iter().flatten() {
            s.layer.use_fp8(ctx.backend.as_ref(), fp8, false, &src)?;
        }
        Ok(())
    }
    fn step(&mut self, ctx: &Ctx, v: &Variant) -> Result<Tensor> {
        let balanced = v.experts() == Experts::Balanced;
        let r = self.routing(ctx, 0, balanced)?;
        let s = match (balanced, &self.balanced) {
            (true, Some(s)) => s,
            _ => self.plain(),
        };
        let (out, st) = forward(ctx, s, &self.inputs[0], &r, self.per_expert.as_deref())?;
        self.ep_stats = st;
        Ok(out)
    }
    /// Baseline and optimized only: a one-rank balanced run would learn its bias from one
    /// rank's load, not the layer's (balanced is checked against `reference` instead).
    fn single_rank_output(&mut self, ctx: &Ctx, v: &Variant) -> Result<Option<Tensor>> {
        if v.experts() == Experts::Balanced {
            return Ok(None);
        }
        let one = ctx.single_rank();
        let mut w = MoeTarget::new(self.cfg.clone());
        w.setup(&one)?;
        w.prepare(&one, v)?;
        Ok(Some(w.step(&one, v)?))
    }
    fn reference(&mut self, ctx: &Ctx, v: &Variant) -> Result<Option<Tensor>> {
        if v.experts() != Experts::Balanced {
            return Ok(None);
        }
        // The baseline loop on the contiguous placement, with the same biased routing.
        let per_expert = self.plain().layer.split_experts(ctx.backend.as_ref())?;
        let r = self.routing(ctx, 0, true)?;
        Ok(Some(forward(ctx, self.plain(), &self.inputs[0], &r, Some(&per_expert))?.0))
    }
    fn estimate_bytes(&self, ctx: &Ctx, v: &Variant) -> Option<u64> {
        Some(self.cfg.run_budget(&ctx.dims, v, Storage::measured_on(ctx.backend.as_ref())).ok()?.total)
    }
    fn tokens(&self) -> usize {
        self.cfg.tokens
    }
    fn flops(&self, _v: &Variant) -> f64 {
        self.cfg.flops(self.cfg.tokens)
    }
    fn metrics(&mut self, ctx: &Ctx, v: &Variant) -> Result<serde_json::Map<String, serde_json::Value>> {
        let mut m = serde_json::Map::new();
        let balanced = v.experts() == Experts::Balanced;
        // The balanced variant is judged on batches it did not learn from.
        let (mine, layer) = self.routing_stats(ctx, balanced, balanced)?;
        let multi = ctx.world.size() > 1;
        m.insert("routing".into(), serde_json::to_value(mine).expect("serialises"));
        if multi {
            m.insert("routing_layer".into(), serde_json::to_value(layer).expect("serialises"));
        }
        if balanced {
            // Layer-wide: the learning batches with the learned bias, the held-out ones without it.
            let learning = self.routing_stats(ctx, true, false)?.1;
            let before = self.routing_stats(ctx, false, true)?.1;
            let mut report = self.balance_report.clone();
            report["gini_before"] = json!(before.overall.gini);
            report["max_mean_before"] = json!(before.overall.max_mean);
            report["learning"] = serde_json::to_value(learning).expect("serialises");
            m.insert("balance".into(), report);
        }
        if let Some(st) = self.ep_stats.take() {
            m.insert("ep".into(), serde_json::to_value(st).expect("serialises"));
        }
        Ok(m)
    }
}
