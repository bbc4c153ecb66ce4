//! The `gpt4` target: a GPT-4-style MoE block stack. With --cp N every rank holds a
//! zigzag shard of the sequence and attention is context parallel; with --ep N the
//! experts are spread over the ranks and tokens travel by all-to-all.

use crate::backend::{AttnAlgo, AttnParams};
use crate::budget::{Budget, Checked, DROPLESS, MemoryError, MemoryInputs, Storage, n, term};
use crate::config::ConfigError;
use crate::harness::target::{Flag, Preset, Registration, Size, Target, preset_names, set_key};
use crate::harness::variant::{Experts, Gemm, Recipe};
use crate::harness::{Ctx, GateMetric, Result, Variant, VariantSpec, Workload};
use crate::layout::ParallelDims;
use crate::models::Mlp;
use crate::models::gpt4::{Gpt4, Gpt4Config};
use crate::models::moe::MoeLayer;
use super::working_set::MoeRun;
use crate::models::weights::Source;
use crate::parallel::context::{self, CpParams, CpStats};
use crate::parallel::expert::{self, EpStats, ExpertPlacement};
use crate::rng::child_seed;
use crate::tensor::{DType, Tensor};
use crate::metrics::routing::RoutingTally;
use serde_json::json;
use std::ops::Range;

pub struct Gpt4Target {
    pub cfg: Gpt4Config,
    model: Option<Gpt4>,
    /// This rank's rows of the input hidden states and their sequence positions.
    x: Option<Tensor>,
    chunks: Vec<Range<usize>>,
    placement: Option<ExpertPlacement>,
    fp8_ready: bool,
    /// Per-slot weights of the baseline loop (per block), held only while it runs.
    per_expert: Option<Vec<Vec<Mlp>>>,
    /// Stats of the last step, one entry per layer.
    cp_stats: Vec<CpStats>,
    ep_stats: Vec<EpStats>,
    /// Each block's routing tally of a step, collected while Some (`metrics`).
    routing: Option<Vec<RoutingTally>>,
    /// Weights and activations (bf16; f32 in tests that compare layouts exactly).
    dtype: DType,
}

pub const REGISTRATION: Registration = Registration {
    name: "gpt4",
    about: "GPT-4-style MoE stack: context-parallel attention, expert parallelism, FP8",
    config: |size| {
        let scaled = |seq_len| Gpt4Config {
            layers: 2,
            hidden: 4096,
            heads: 32,
            kv_heads: 8,
            expert_ffn: 8192,
            seq_len,
            ..Gpt4Config::full()
        };
        Box::new(match size {
            Size::Quick => Gpt4Config::small(),
            Size::Bench => scaled(8192),
            Size::Long => scaled(32_768),
        })
    },
};

const PRESETS: &[Preset<Gpt4Config>] = &[("full", Gpt4Config::full), ("small", Gpt4Config::small)];

pub fn variants() -> Vec<VariantSpec> {
    let plain = Recipe { attention: Some(AttnAlgo::Naive), experts: Some(Experts::Loop), ..Recipe::PLAIN };
    let optimized =
        Recipe { attention: Some(AttnAlgo::Flash), experts: Some(Experts::Grouped), gemm: Gemm::Run, ..plain };
    vec![
        VariantSpec::baseline("naive attention, loop over experts, bf16", plain),
        // Flash and naive attention round differently in bf16, which can flip a token's
        // top-2 experts: bound the error over all tokens, not the worst element.
        // FP8 everywhere (per-tensor scales, two blocks of random weights): rel ~0.1 seen.
        VariantSpec {
            gate: GateMetric::RelL2,
            fp8_tolerance: Some(0.2),
            ..VariantSpec::candidate(
                "optimized",
                "flash attention, grouped experts; with --dtype fp8 every GEMM in FP8 (experts block-scaled)",
                optimized,
                0.08,
            )
        },
    ]
}

/// The experts run as a loop of per-expert weights (the baseline's, in bf16).
fn loops_experts(v: &Variant) -> bool {
    v.experts() == Experts::Loop
}

/// One rank running `v` with GEMMs in `gemm`: the block stack, the expert loop's per-expert weight
/// copies, and for FP8 copies of the attention projections and block-scaled FP8 experts in place of
/// the bf16 ones.
pub fn run_budget(
    c: &Gpt4Config,
    dims: &ParallelDims,
    v: &Variant,
    gemm: DType,
    at: Storage,
) -> std::result::Result<Budget, MemoryError> {
    let inputs = MemoryInputs { capacity_factor: DROPLESS, ..at.inputs(c.memory_inputs(dims, v.attention(), false)) };
    let fp8 = gemm == DType::F8;
    let (b16, b8) = (n(at.bytes(DType::Bf16)), n(at.bytes(DType::F8)));
    let per_copy = n(c.layers) * n(c.num_experts / dims.ep) * n(3) * n(c.hidden) * n(c.expert_ffn);
    let copies = if loops_experts(v) { per_copy * b16 } else { n(0) };
    let attn_params = n(c.layers) * n(c.hidden) * (n(2) * n(c.q_dim()) + n(2) * n(c.kv_dim()));
    let fp8_bytes = fp8.then_some(at.bytes(DType::F8));
    let run = MoeRun { loops: loops_experts(v), fp8: fp8_bytes, fused: at.fuses_swiglu(), ..MoeRun::default() };
    let mut budget = super::working_set::gpt4(inputs.estimate()?, c, dims, run, at.bytes(DType::Bf16))?;
    // FP8 experts replace the bf16 ones (freed while FP8 runs), plus an f32 scale per 128 x 128 block.
    let fp8_experts = if fp8 && !loops_experts(v) {
        let p = budget.terms.iter_mut().find(|t| t.name == term::PARAMETERS).expect("a parameters term");
        p.bytes = Checked::from(p.bytes).minus(per_copy * b16).get(term::PARAMETERS)?;
        let blocks =
            n(c.layers) * n(c.num_experts / dims.ep) * n(3 * c.hidden.div_ceil(128) * c.expert_ffn.div_ceil(128));
        per_copy * b8 + blocks * n(4)
    } else {
        n(0)
    };
    budget.with_extras(vec![
        ("per-expert weight copies", copies),
        ("fp8 attention weights", if fp8 { attn_params * b8 } else { n(0) }),
        ("fp8 expert weights", fp8_experts),
    ])
}

impl Target for Gpt4Config {
    fn name(&self) -> &'static str {
        REGISTRATION.name
    }
    fn presets(&self) -> Vec<&'static str> {
        preset_names(PRESETS)
    }
    fn flag_key(&self, flag: Flag) -> Option<&'static str> {
        match flag {
            Flag::SeqLen => Some("seq_len"),
            Flag::Layers => Some("layers"),
            Flag::CpKind => Some("cp_kind"),
            Flag::Skew | Flag::Weights | Flag::Prompt => None,
        }
    }
    fn set(&mut self, key: &str, value: &str) -> std::result::Result<(), ConfigError> {
        set_key(self, REGISTRATION.name, key, value, PRESETS)
    }
    fn finish(&mut self, _explicit: &[&str]) -> std::result::Result<(), ConfigError> {
        self.validate()
    }
    fn check_layout(&self, dims: &ParallelDims) -> std::result::Result<(), ConfigError> {
        dims.check_experts(self.num_experts, "gpt4.num_experts").map_err(|e| ConfigError::Invalid(e.to_string()))?;
        if self.seq_len < 2 * dims.cp {
            return Err(ConfigError::Invalid(format!(
                "gpt4.seq_len ({}) must be at least 2 x cp ({}): each CP rank holds two zigzag chunks",
                self.seq_len, dims.cp
            )));
        }
        Ok(())
    }
    fn variants(&self) -> Vec<VariantSpec> {
        variants()
    }
    fn run_budget(&self, dims: &ParallelDims, v: &Variant, at: Storage) -> std::result::Result<Budget, MemoryError> {
        run_budget(self, dims, v, v.gemm, at)
    }
    fn model_inputs(&self, dims: &ParallelDims) -> Option<MemoryInputs> {
        Some(MemoryInputs { tp: dims.tp, ..self.memory_inputs(dims, AttnAlgo::Flash, true) })
    }
    fn workload(&self) -> Box<dyn Workload> {
        Box::new(Gpt4Target::new(self.clone()))
    }
}

impl Gpt4Target {
    pub fn new(cfg: Gpt4Config) -> Self {
        Gpt4Target {
            cfg,
            model: None,
            x: None,
            chunks: vec![],
            placement: None,
            fp8_ready: false,
            per_expert: None,
            cp_stats: vec![],
            ep_stats: vec![],
            routing: None,
            dtype: DType::Bf16,
        }
    }

    pub fn with_dtype(cfg: Gpt4Config, dtype: DType) -> Self {
        Gpt4Target { dtype, ..Self::new(cfg) }
    }

    fn forward(&mut self, ctx: &Ctx, v: &Variant, measure_comm: bool) -> Result<Tensor> {
        let b = ctx.backend.as_ref();
        let gemm = self.gemm_dtype(v);
        let model = self.model.as_ref().expect("setup ran");
        let algo = v.attention();
        let (cp_group, ep_group) = (ctx.groups.cp.as_ref(), ctx.groups.ep.as_ref());
        let seq_len = self.cfg.seq_len;
        let cp = CpParams { kind: self.cfg.cp_kind, algo, seq_len, measure_comm };
        let (cp_stats, ep_stats, routing) = (&mut self.cp_stats, &mut self.ep_stats, &mut self.routing);
        cp_stats.clear();
        ep_stats.clear();
        let mut attn = |q: &Tensor, k: &Tensor, v: &Tensor| -> Result<Tensor> {
            if ctx.dims.cp > 1 {
                let (o, st) = context::attention(b, cp_group, q, k, v, &cp)?;
                cp_stats.push(st);
                Ok(o)
            } else {
                Ok(b.attention(q, k, v, &AttnParams::causal(0, 0, algo))?.out)
            }
        };
        let per_expert = self.per_expert.as_deref();
        let placement = self.placement.as_ref();
        let mut layer = 0;
        let mut moe = |m: &MoeLayer, x: &Tensor| -> Result<Tensor> {
            let pe = per_expert.map(|p| p[layer].as_slice());
            layer += 1;
            let r = m.route(b, x, None, None)?;
            if let Some(tallies) = routing.as_mut() {
                tallies.push(super::routing::tally(b, &r, m.cfg.gate, m.cfg.num_experts, m.cfg.top_k)?);
            }
            match placement {
                None => Ok(m.forward(b, x, &r, pe, gemm)?),
                Some(p) => {
                    let run = |rows: &Tensor, offsets: &Tensor, _slots: &[usize]| -> crate::parallel::Result<Tensor> {
                        Ok(m.experts(b, rows, offsets, pe, gemm)?)
                    };
                    let (y, st) = expert::forward(b, ep_group, p, x, &r, run)?;
                    ep_stats.push(st);
                    Ok(y)
                }
            }
        };
        let x = b.concat_rows(&[self.x.as_ref().expect("setup ran")])?;
        model.forward(b, x, &self.chunks, gemm, &mut attn, &mut moe)
    }

    /// Each block's routing records, as the `moe` target's (`routing`, and `routing_layer` with
    /// several ranks): one batch, the step's tokens.
    fn routing_by_block(&self, ctx: &Ctx, tallies: Vec<RoutingTally>) -> Result<Vec<serde_json::Value>> {
        let multi = ctx.world.size() > 1;
        let mut blocks = vec![];
        for (i, t) in tallies.into_iter().enumerate() {
            let (mine, world) = super::routing::stats(ctx.world.as_ref(), vec![t], self.cfg.capacity_factor)?;
            let mut o = json!({"block": i, "routing": mine});
            if multi {
                o["routing_layer"] = json!(world);
            }
            blocks.push(o);
        }
        Ok(blocks)
    }
}

/// Seed of replica `r`'s input sequence (replica 0 keeps the one-rank seed).
fn input_seed(seed: u64, replica: usize) -> u64 {
    match replica {
        0 => child_seed(seed, "x"),
        r => child_seed(seed, &format!("x.replica{r}")),
    }
}

/// Per-layer stats summed over layers, as JSON.
fn sum_stats<T: serde::Serialize>(stats: &[T]) -> serde_json::Value {
    let mut total = serde_json::Map::new();
    for s in stats {
        if let serde_json::Value::Object(m) = serde_json::to_value(s).expect("stats serialise") {
            for (k, v) in m {
                if let Some(x) = v.as_f64() {
                    let acc = total.get(&k).and_then(|a| a.as_f64()).unwrap_or(0.0);
                    total.insert(k, json!(acc + x));
                }
            }
        }
    }
    serde_json::Value::Object(total)
}

impl Workload for Gpt4Target {
    fn name(&self) -> &'static str {
        "gpt4"
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
        let (ep, cp) = (&ctx.groups.ep, &ctx.groups.cp);
        let experts: Vec<usize> = if ep.size() > 1 {
            let p = ExpertPlacement::contiguous(c.num_experts, ep.size())?;
            let mine = p.slot_experts(ep.rank());
            self.placement = Some(p);
            mine
        } else {
            (0..c.num_experts).collect()
        };
        self.model = Some(Gpt4::new(b, c, &Source::Random { seed: c.seed }, &experts, self.dtype)?);
        // The ranks of a CP group draw their replica's whole sequence and keep their shard of it.
        let full = b.random(&[c.seq_len, c.hidden], self.dtype, input_seed(c.seed, ctx.data.replica), 1.0)?;
        if cp.size() > 1 {
            self.chunks = context::shard(c.seq_len, cp.size(), cp.rank())?;
            self.x = Some(context::take_shard(b, &full, cp.size(), cp.rank())?);
        } else {
            self.chunks = std::iter::once(0..c.seq_len).collect();
            self.x = Some(full);
        }
        Ok(())
    }
    /// The recipe's; everything in f32 when built `with_dtype(F32)` (tests that compare layouts exactly).
    fn gemm_dtype(&self, v: &Variant) -> DType {
        if self.dtype == DType::F32 { DType::F32 } else { v.gemm }
    }
    fn prepare(&mut self, ctx: &Ctx, v: &Variant) -> Result<()> {
        let b = ctx.backend.as_ref();
        let gemm = self.gemm_dtype(v);
        let fp8 = gemm == DType::F8;
        self.per_expert = None;
        let model = self.model.as_mut().expect("setup ran");
        if fp8 != self.fp8_ready {
            model.set_fp8(b, fp8)?;
            // The experts in block-scaled FP8 for the grouped FP8 GEMMs, their bf16 stacks freed
            // meanwhile (rebuilt from the same source when bf16 runs again).
            let src = Source::Random { seed: self.cfg.seed };
            for blk in &mut model.blocks {
                blk.moe.use_fp8(b, fp8, true, &src)?;
            }
            self.fp8_ready = fp8;
        }
        // The baseline loops over experts in bf16, reading the group sizes on the host once per layer.
        if loops_experts(v) {
            let split =
                model.blocks.iter().map(|blk| blk.moe.split_experts(b)).collect::<std::result::Result<_, _>>()?;
            self.per_expert = Some(split);
        }
        Ok(())
    }
    fn step(&mut self, ctx: &Ctx, v: &Variant) -> Result<Tensor> {
        self.forward(ctx, v, false)
    }
    fn single_rank_output(&mut self, ctx: &Ctx, v: &Variant) -> Result<Option<Tensor>> {
        let one = ctx.single_rank();
        let mut w = Gpt4Target::with_dtype(self.cfg.clone(), self.dtype);
        w.setup(&one)?;
        w.prepare(&one, v)?;
        let full = w.step(&one, v)?;
        let cp = &ctx.groups.cp;
        Ok(Some(context::take_shard(ctx.backend.as_ref(), &full, cp.size(), cp.rank())?))
    }
    fn estimate_bytes(&self, ctx: &Ctx, v: &Variant) -> Option<u64> {
        let at = Storage::measured_on(ctx.backend.as_ref());
        Some(run_budget(&self.cfg, &ctx.dims, v, self.gemm_dtype(v), at).ok()?.total)
    }
    fn tokens(&self) -> usize {
        self.chunks.iter().map(|r| r.len()).sum()
    }
    fn flops(&self, _v: &Variant) -> f64 {
        // The whole model's work split evenly (zigzag balances causal attention).
        self.cfg.flops() * self.tokens() as f64 / self.cfg.seq_len as f64
    }
    fn metrics(&mut self, ctx: &Ctx, v: &Variant) -> Result<serde_json::Map<String, serde_json::Value>> {
        let mut m = serde_json::Map::new();
        m.insert("params".into(), json!(self.cfg.params()));
        // One more step, untimed, that reads each block's routing back (and, under CP, replays
        // the ring's transfers alone, to measure overlap).
        self.routing = Some(vec![]);
        let step = self.forward(ctx, v, ctx.dims.cp > 1);
        let tallies = self.routing.take().unwrap_or_default();
        step?;
        m.insert("routing_by_block".into(), json!(self.routing_by_block(ctx, tallies)?));
        if ctx.dims.cp > 1 {
            let mut cp = sum_stats(&self.cp_stats);
            cp.as_object_mut().expect("an object").remove("overlap");
            let (exposed, total) = (cp["exposed_comm_ms"].as_f64(), cp["comm_ms"].as_f64());
            let overlap = match (exposed, total) {
                (Some(e), Some(t)) if t > 0.0 => Some((1.0 - e / t).clamp(0.0, 1.0)),
                _ => None,
            };
            m.insert("cp".into(), json!({"kind": self.cfg.cp_kind, "sum_over_layers": cp, "overlap": overlap}));
        }
        if ctx.dims.ep > 1 {
            m.insert("ep".into(), json!({"sum_over_layers": sum_stats(&self.ep_stats)}));
        }
        Ok(m)
    }
}
