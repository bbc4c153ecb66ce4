//! The `gpt4` target: a GPT-4-style MoE block stack. With --cp N every rank holds a
//! zigzag shard of the sequence and attention is context parallel; with --ep N the
//! experts are spread over the ranks and tokens travel by all-to-all.

use crate::backend::{AttnAlgo, AttnParams};
use crate::harness::{Ctx, GateMetric, Result, VariantSpec, Workload};
use crate::models::Mlp;
use crate::models::gpt4::{Gpt4, Gpt4Config};
use crate::models::moe::MoeLayer;
use crate::models::weights::Source;
use crate::parallel::context::{self, CpParams, CpStats};
use crate::parallel::expert::{self, EpStats, ExpertPlacement};
use crate::rng::child_seed;
use crate::tensor::{DType, Tensor};
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
    /// Weights and activations (bf16; f32 in tests that compare layouts exactly).
    dtype: DType,
}

/// The GEMM element type of `variant`: bf16 for the baseline, `--dtype` otherwise; everything in
/// the model's type when it is built in f32 (tests that compare layouts exactly).
pub(crate) fn variant_gemm(model: DType, gemm_dtype: DType, variant: &str) -> DType {
    if variant == "baseline" || model == DType::F32 { model } else { gemm_dtype }
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
            dtype: DType::Bf16,
        }
    }

    pub fn with_dtype(cfg: Gpt4Config, dtype: DType) -> Self {
        Gpt4Target { dtype, ..Self::new(cfg) }
    }

    fn forward(&mut self, ctx: &Ctx, variant: &str, measure_comm: bool) -> Result<Tensor> {
        let b = ctx.backend.as_ref();
        let base = variant == "baseline";
        let gemm = self.gemm_dtype(ctx, variant);
        let model = self.model.as_ref().expect("setup ran");
        let algo = if base { AttnAlgo::Naive } else { AttnAlgo::Flash };
        let (cp_group, ep_group) = (ctx.groups.cp.as_ref(), ctx.groups.ep.as_ref());
        let seq_len = self.cfg.seq_len;
        let cp = CpParams { kind: self.cfg.cp_kind, algo, seq_len, measure_comm };
        let (cp_stats, ep_stats) = (&mut self.cp_stats, &mut self.ep_stats);
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
            match placement {
                None => Ok(m.forward(b, x, &r, pe, gemm)?),
                Some(p) => {
                    let run = |rows: &Tensor, offsets: &Tensor, _slots: &[usize]| -> crate::parallel::Result<Tensor> {
                        Ok(match pe {
                            Some(per_slot) => m.experts_loop(b, rows, offsets, per_slot, gemm)?,
                            None => m.experts_grouped(b, rows, offsets)?,
                        })
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
        vec![
            VariantSpec::new("baseline", "naive attention, loop over experts, bf16", 0.0),
            // Flash and naive attention round differently in bf16, which can flip a token's
            // top-2 experts: bound the error over all tokens, not the worst element.
            // FP8 everywhere (per-tensor scales, two blocks of random weights): rel ~0.1 seen.
            VariantSpec {
                gate: GateMetric::RelL2,
                fp8_tolerance: Some(0.2),
                ..VariantSpec::new(
                    "optimized",
                    "flash attention, grouped experts; with --dtype fp8 every GEMM in FP8 (experts as a loop)",
                    0.08,
                )
            },
        ]
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
    /// bf16 for the baseline, `--dtype` otherwise; everything in f32 when built `with_dtype(F32)`.
    fn gemm_dtype(&self, ctx: &Ctx, variant: &str) -> DType {
        variant_gemm(self.dtype, ctx.gemm_dtype, variant)
    }
    fn prepare(&mut self, ctx: &Ctx, variant: &str) -> Result<()> {
        let b = ctx.backend.as_ref();
        let base = variant == "baseline";
        let fp8 = self.gemm_dtype(ctx, variant) == DType::F8;
        let model = self.model.as_mut().expect("setup ran");
        if fp8 != self.fp8_ready {
            model.set_fp8(b, fp8)?;
            self.fp8_ready = fp8;
        }
        self.per_expert = None;
        // The baseline loops over experts in bf16; FP8 loops over per-expert FP8 GEMMs (there
        // is no FP8 grouped kernel), reading the group sizes on the host once per layer.
        if base || fp8 {
            let mut split = Vec::with_capacity(model.blocks.len());
            for blk in &model.blocks {
                let mut mlps = blk.moe.split_experts(b)?;
                if fp8 {
                    for l in mlps.iter_mut().flat_map(|m| m.linears()) {
                        l.prepare_fp8(b)?;
                    }
                }
                split.push(mlps);
            }
            self.per_expert = Some(split);
        }
        Ok(())
    }
    fn step(&mut self, ctx: &Ctx, variant: &str) -> Result<Tensor> {
        self.forward(ctx, variant, false)
    }
    fn single_rank_output(&mut self, ctx: &Ctx, variant: &str) -> Result<Option<Tensor>> {
        let one = ctx.single_rank();
        let mut w = Gpt4Target::with_dtype(self.cfg.clone(), self.dtype);
        w.setup(&one)?;
        w.prepare(&one, variant)?;
        let full = w.step(&one, variant)?;
        let cp = &ctx.groups.cp;
        Ok(Some(context::take_shard(ctx.backend.as_ref(), &full, cp.size(), cp.rank())?))
    }
    fn estimate_bytes(&self, ctx: &Ctx, variant: &str) -> Option<u64> {
        let (gemm, at) = (self.gemm_dtype(ctx, variant), super::memory::Storage::measured_on(ctx.backend.kind()));
        Some(super::memory::gpt4_run(&self.cfg, &ctx.dims, variant, gemm, at).ok()?.total)
    }
    fn tokens(&self) -> usize {
        self.chunks.iter().map(|r| r.len()).sum()
    }
    fn flops(&self, _variant: &str) -> f64 {
        // The whole model's work split evenly (zigzag balances causal attention).
        self.cfg.flops() * self.tokens() as f64 / self.cfg.seq_len as f64
    }
    fn metrics(&mut self, ctx: &Ctx, variant: &str) -> Result<serde_json::Map<String, serde_json::Value>> {
        let mut m = serde_json::Map::new();
        m.insert("params".into(), json!(self.cfg.params()));
        if ctx.dims.cp > 1 {
            // One more step that also replays the ring's transfers alone, to measure overlap.
            self.forward(ctx, variant, true)?;
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
