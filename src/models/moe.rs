//! DeepSeek MoE layer (routed experts + shared experts) on one device.
//! Expert parallelism (src/parallel/expert.rs) reuses `route` and `experts_grouped`.

use super::weights::Source;
use super::{Linear, Mlp, gemm_flops};
use crate::backend::{Backend, BlockFp8, Blocks, Error, Gate, Permuted, Result, RouterParams, Routing};
use crate::config::ConfigError;
use crate::marks::phase;
use crate::models::skew::Skew;
use crate::tensor::{DType, Tensor};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MoeConfig {
    pub hidden: usize,
    pub expert_ffn: usize,
    pub num_experts: usize,
    pub top_k: usize,
    pub shared_experts: usize,
    pub gate: Gate,
    pub n_group: usize,
    pub topk_group: usize,
    pub norm_topk: bool,
    pub routed_scaling: f32,
    /// Tokens per batch on each rank.
    pub tokens: usize,
    /// Batches routed for the routing statistics (and bias updates of `balanced`).
    pub batches: usize,
    /// f64 so that 1.1 is recorded as 1.1 and rounds as README "Capacity rounding" says.
    pub capacity_factor: f64,
    /// Router skew of the inputs: none, zipf:S or hot:N:P.
    pub skew: String,
    /// Step of the auxiliary-loss-free bias update (DeepSeek-V3's gamma).
    pub bias_update: f32,
    /// Most bias updates of the balanced variant (cycling over the batches); it stops earlier
    /// once the bias settles (`models::balance::DEFAULT_SETTLE`).
    pub balance_steps: usize,
    /// Extra expert slots for EPLB replicas of hot experts (balanced variant, EP > 1).
    pub redundant_experts: usize,
    /// With FP8 experts (`--dtype fp8`), the shared experts too, as one block-scaled expert of the
    /// grouped FP8 GEMM over every token. Off by default: on the H200 it saved 0.06 of 4.15 ms at
    /// V2-Lite and raised the layer's relative error against bf16 from 1.1e-2 to 6.2e-2.
    pub shared_fp8: bool,
    pub seed: u64,
}

impl MoeConfig {
    /// DeepSeek-V2-Lite: 64 routed experts top-6, 2 shared, softmax gate.
    pub fn deepseek_v2_lite() -> Self {
        MoeConfig {
            hidden: 2048,
            expert_ffn: 1408,
            num_experts: 64,
            top_k: 6,
            shared_experts: 2,
            gate: Gate::Softmax,
            n_group: 1,
            topk_group: 1,
            norm_topk: false,
            routed_scaling: 1.0,
            tokens: 16_384,
            batches: 8,
            capacity_factor: 1.25,
            skew: "none".into(),
            bias_update: 1e-3,
            balance_steps: 10_000,
            redundant_experts: 0,
            shared_fp8: false,
            seed: 0,
        }
    }

    /// DeepSeek-V3: 256 routed experts top-8 from 4 of 8 groups, 1 shared, sigmoid gate with bias.
    pub fn deepseek_v3() -> Self {
        MoeConfig {
            hidden: 7168,
            expert_ffn: 2048,
            num_experts: 256,
            top_k: 8,
            shared_experts: 1,
            gate: Gate::Sigmoid,
            n_group: 8,
            topk_group: 4,
            norm_topk: true,
            routed_scaling: 2.5,
            tokens: 8192,
            ..Self::deepseek_v2_lite()
        }
    }

    /// The config's own facts; how they meet the layout is `plan::Plan::dims`'s business.
    pub fn validate(&self) -> std::result::Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        for (k, v) in [("hidden", self.hidden), ("expert_ffn", self.expert_ffn), ("num_experts", self.num_experts)]
            .into_iter()
            .chain([
                ("top_k", self.top_k),
                ("tokens", self.tokens),
                ("batches", self.batches),
                ("n_group", self.n_group),
            ])
        {
            if v == 0 {
                return bad(format!("moe.{k} must be > 0"));
            }
        }
        if self.top_k > self.num_experts {
            return bad(format!("moe.top_k ({}) exceeds moe.num_experts ({})", self.top_k, self.num_experts));
        }
        if !self.num_experts.is_multiple_of(self.n_group) {
            return bad(format!("moe.n_group ({}) must divide moe.num_experts ({})", self.n_group, self.num_experts));
        }
        if self.topk_group == 0 || self.topk_group > self.n_group {
            return bad(format!("moe.topk_group ({}) must be in 1..=moe.n_group ({})", self.topk_group, self.n_group));
        }
        if self.top_k > self.topk_group * (self.num_experts / self.n_group) {
            return bad(format!(
                "moe.top_k ({}) exceeds the experts in moe.topk_group ({}) groups of {}",
                self.top_k,
                self.topk_group,
                self.num_experts / self.n_group
            ));
        }
        self.validate_factors()
    }

    /// The values that setup and the balanced variant would otherwise refuse only after timing.
    fn validate_factors(&self) -> std::result::Result<(), ConfigError> {
        let bad = |key: &str, value: String, reason: String| {
            Err(ConfigError::BadValue { key: format!("moe.{key}"), value, reason })
        };
        let skew: Skew = match self.skew.parse() {
            Ok(s) => s,
            Err(e) => return bad("skew", self.skew.clone(), format!("{e}")),
        };
        if let Err(e) = skew.probabilities(self.num_experts) {
            return bad("skew", self.skew.clone(), format!("{e}"));
        }
        if !(self.capacity_factor.is_finite() && self.capacity_factor > 0.0) {
            return bad("capacity_factor", self.capacity_factor.to_string(), "expected a finite number > 0".into());
        }
        if !(self.bias_update.is_finite() && self.bias_update > 0.0) {
            let why = "expected a finite number > 0 (the balanced variant's bias step gamma)";
            return bad("bias_update", self.bias_update.to_string(), why.into());
        }
        if !(self.routed_scaling.is_finite() && self.routed_scaling > 0.0) {
            return bad("routed_scaling", self.routed_scaling.to_string(), "expected a finite number > 0".into());
        }
        Ok(())
    }

    /// EPLB replicas (balanced variant) fill `redundant_experts` extra slots over the `ep` ranks:
    /// at most E x (ep - 1) of them, E + redundant a multiple of ep; none without EP.
    pub fn check_redundant(&self, ep: usize) -> std::result::Result<(), ConfigError> {
        let (e, r) = (self.num_experts, self.redundant_experts);
        let bad = |why: String| {
            Err(ConfigError::BadValue { key: "moe.redundant_experts".into(), value: r.to_string(), reason: why })
        };
        if ep <= 1 && r > 0 {
            return bad("0 without --ep: replicas are placed over EP ranks".into());
        }
        let max = e * ep.saturating_sub(1);
        if ep > 1 && (r > max || !(e + r).is_multiple_of(ep)) {
            return bad(format!(
                "at most num_experts x (EP - 1) = {e} x {} = {max}, with num_experts + redundant_experts a multiple of the EP size {ep}",
                ep - 1
            ));
        }
        Ok(())
    }

    pub fn router(&self) -> RouterParams {
        RouterParams {
            gate: self.gate,
            top_k: self.top_k,
            n_group: self.n_group,
            topk_group: self.topk_group,
            norm_topk: self.norm_topk,
            scaling: self.routed_scaling,
        }
    }

    /// FLOPs of one layer for `t` tokens: router, routed experts (t*k rows), shared experts.
    pub fn flops(&self, t: usize) -> f64 {
        let (h, f) = (self.hidden, self.expert_ffn);
        gemm_flops(t, self.num_experts, h)
            + gemm_flops(t * self.top_k, 3 * f, h)
            + gemm_flops(t, 3 * f * self.shared_experts, h)
    }
}

pub struct MoeLayer {
    pub cfg: MoeConfig,
    /// [e, h], every expert's row (routing is replicated on every rank).
    pub router: Tensor,
    /// The logical expert of each local slot: all experts on one device, a share under EP.
    pub slots: Vec<usize>,
    /// [slots, 2f, h]: gate then up projection of each local slot's expert.
    pub gate_up: Tensor,
    /// [slots, h, f]
    pub down: Tensor,
    pub shared: Option<Mlp>,
    /// Block-scaled FP8 copies of `gate_up` and `down` (`use_fp8`): the grouped experts run on them.
    pub fp8: Option<ExpertsFp8>,
    /// What rebuilds the bf16 expert stacks after `use_fp8` freed them: the prefix and dtype.
    prefix: String,
    dtype: DType,
    bf16_freed: bool,
}

/// The local experts' weights with 128 x 128 block scales (DeepSeek-V3).
pub struct ExpertsFp8 {
    /// [slots, 2f, h]
    pub gate_up: BlockFp8,
    /// [slots, h, f]
    pub down: BlockFp8,
    /// The shared experts as one more block-scaled expert over every token: ([1, 2fs, h], [1, h, fs]).
    pub shared: Option<(BlockFp8, BlockFp8)>,
    /// That expert's offsets [0, t] on the device, uploaded once per token count t (the first, eager
    /// step makes them; a captured step then only reads them).
    all_rows: std::sync::Mutex<Vec<(usize, Tensor)>>,
}

/// A [m, k] weight quantised in 128 x 128 blocks, as the one expert of a grouped GEMM ([1, m, k]).
fn one_expert_fp8(b: &dyn Backend, w: &Tensor) -> Result<BlockFp8> {
    let q = b.quantize_blocks(w, Blocks::Tiles)?;
    let shape = [1, w.shape()[0], w.shape()[1]];
    Ok(BlockFp8 { q: q.q.reshape(&shape), ..q })
}

/// Experts of width `f` over rows grouped by `offsets` in block-scaled FP8, on rows quantised per
/// token (1 x 128 blocks; freed after the gate/up GEMM): SwiGLU fused into the gate/up GEMM where
/// the width allows it (f a multiple of 64), its output quantised again for the down GEMM.
fn mlp_fp8(
    b: &dyn Backend,
    (gate_up, down): (&BlockFp8, &BlockFp8),
    f: usize,
    xq: BlockFp8,
    offsets: &Tensor,
) -> Result<Tensor> {
    let a = if f.is_multiple_of(64) {
        b.grouped_matmul_fp8(&xq, gate_up, offsets, true)?
    } else {
        b.swiglu(&b.grouped_matmul_fp8(&xq, gate_up, offsets, false)?, None)?
    };
    drop(xq);
    let aq = b.quantize_blocks(&a, Blocks::Rows)?;
    drop(a);
    b.grouped_matmul_fp8(&aq, down, offsets, false)
}

/// Each local slot's expert weights from its own name, stacked: ([slots, 2f, h], [slots, h, f]).
fn stack_experts(
    b: &dyn Backend,
    cfg: &MoeConfig,
    src: &Source,
    prefix: &str,
    slots: &[usize],
    dt: DType,
) -> Result<(Tensor, Tensor)> {
    let (h, f) = (cfg.hidden, cfg.expert_ffn);
    let stack = |what: &str, shape: [usize; 2], std: f32| -> Result<Tensor> {
        let parts = slots
            .iter()
            .map(|x| src.get(b, &format!("{prefix}.experts.{x}.{what}"), &shape, dt, std))
            .collect::<Result<Vec<_>>>()?;
        Ok(b.concat_rows(&parts.iter().collect::<Vec<_>>())?.reshape(&[slots.len(), shape[0], shape[1]]))
    };
    Ok((stack("gate_up", [2 * f, h], 1.0 / (h as f32).sqrt())?, stack("down", [h, f], 1.0 / (f as f32).sqrt())?))
}

impl MoeLayer {
    /// `prefix` names the tensors (e.g. "layers.3.moe"); `slots` lists the logical expert of
    /// each local slot. Each expert's weights come from its own name, so a rank holding a
    /// subset (or a replica) gets exactly the values a single device would.
    pub fn new(
        b: &dyn Backend,
        cfg: &MoeConfig,
        src: &Source,
        prefix: &str,
        slots: &[usize],
        dt: DType,
    ) -> Result<MoeLayer> {
        let (e, h, f) = (cfg.num_experts, cfg.hidden, cfg.expert_ffn);
        let std_h = 1.0 / (h as f32).sqrt();
        let shared = if cfg.shared_experts > 0 {
            let fs = f * cfg.shared_experts;
            Some(Mlp {
                gate_up: Linear::new(src.get(b, &format!("{prefix}.shared.gate_up"), &[2 * fs, h], dt, std_h)?),
                down: Linear::new(src.get(
                    b,
                    &format!("{prefix}.shared.down"),
                    &[h, fs],
                    dt,
                    1.0 / (fs as f32).sqrt(),
                )?),
            })
        } else {
            None
        };
        let (gate_up, down) = stack_experts(b, cfg, src, prefix, slots, dt)?;
        Ok(MoeLayer {
            cfg: cfg.clone(),
            router: src.get(b, &format!("{prefix}.gate.weight"), &[e, h], dt, std_h)?,
            slots: slots.to_vec(),
            gate_up,
            down,
            shared,
            fp8: None,
            prefix: prefix.to_string(),
            dtype: dt,
            bf16_freed: false,
        })
    }

    /// FP8 experts on (`on`) or off. On: block-scaled copies of the expert stacks, which
    /// `experts_grouped` then runs on; with `free_bf16` the bf16 stacks are freed meanwhile (no
    /// doubled weights). Off: the copies go, and freed bf16 stacks are rebuilt from `src` (the
    /// source the layer was made from).
    pub fn use_fp8(&mut self, b: &dyn Backend, on: bool, free_bf16: bool, src: &Source) -> Result<()> {
        if on {
            if self.fp8.is_none() {
                let gate_up = b.quantize_blocks(&self.gate_up, Blocks::Tiles)?;
                let down = b.quantize_blocks(&self.down, Blocks::Tiles)?;
                let shared = match &self.shared {
                    Some(s) if self.cfg.shared_fp8 => {
                        Some((one_expert_fp8(b, &s.gate_up.w)?, one_expert_fp8(b, &s.down.w)?))
                    }
                    _ => None,
                };
                self.fp8 = Some(ExpertsFp8 { gate_up, down, shared, all_rows: Default::default() });
            }
            if free_bf16 && !self.bf16_freed {
                let (h, f) = (self.cfg.hidden, self.cfg.expert_ffn);
                self.gate_up = b.zeros(&[0, 2 * f, h], self.dtype)?;
                self.down = b.zeros(&[0, h, f], self.dtype)?;
                self.bf16_freed = true;
            }
        } else {
            self.fp8 = None;
            if self.bf16_freed {
                (self.gate_up, self.down) = stack_experts(b, &self.cfg, src, &self.prefix, &self.slots, self.dtype)?;
                self.bf16_freed = false;
            }
        }
        Ok(())
    }

    /// Every expert on this device.
    pub fn all_experts(cfg: &MoeConfig) -> Vec<usize> {
        (0..cfg.num_experts).collect()
    }

    /// Router logits in f32 (plus a per-expert input skew), then top-k.
    pub fn route(&self, b: &dyn Backend, x: &Tensor, skew: Option<&Tensor>, bias: Option<&Tensor>) -> Result<Routing> {
        let _phase = phase(c"moe route");
        let mut logits = b.matmul(x, &self.router, DType::F32)?;
        if let Some(s) = skew {
            logits = b.add(&logits, s)?;
        }
        b.route(&logits, &self.cfg.router(), bias)
    }

    /// Every local slot's MLP over rows grouped by slot, as two grouped GEMMs (no host round trip),
    /// in FP8 when `use_fp8` made the copies.
    pub fn experts_grouped(&self, b: &dyn Backend, xp: &Tensor, offsets: &Tensor) -> Result<Tensor> {
        if let Some(q) = &self.fp8 {
            let xq = b.quantize_blocks(xp, Blocks::Rows)?;
            return mlp_fp8(b, (&q.gate_up, &q.down), self.cfg.expert_ffn, xq, offsets);
        }
        // SwiGLU in the gate/up GEMM's epilogue where the backend fuses it (CUDA on sm_90a): the
        // [rows, 2F] gate/up buffer never exists.
        let a = b.grouped_matmul_swiglu(xp, &self.gate_up, offsets)?;
        b.grouped_matmul(&a, &self.down, offsets)
    }

    /// The routed experts over rows grouped by expert (`offsets`): one GEMM chain per expert from
    /// `per_expert`'s copies when given (in `gemm`), else the grouped GEMMs.
    pub fn experts(
        &self,
        b: &dyn Backend,
        xp: &Tensor,
        offsets: &Tensor,
        per_expert: Option<&[Mlp]>,
        gemm: DType,
    ) -> Result<Tensor> {
        match per_expert {
            Some(m) => self.experts_loop(b, xp, offsets, m, gemm),
            None => self.experts_grouped(b, xp, offsets),
        }
    }

    /// The same with one GEMM pair per expert, reading the group sizes on the host; `gemm`
    /// F8 runs them in FP8 (the per-expert weights must have their FP8 copies).
    pub fn experts_loop(
        &self,
        b: &dyn Backend,
        xp: &Tensor,
        offsets: &Tensor,
        per_expert: &[Mlp],
        gemm: DType,
    ) -> Result<Tensor> {
        let off = b.download_i32(offsets)?;
        let mut parts = Vec::new();
        for (e, mlp) in per_expert.iter().enumerate() {
            let (lo, hi) = (off[e] as usize, off[e + 1] as usize);
            if hi > lo {
                parts.push(mlp.forward(b, &b.rows(xp, lo, hi - lo)?, gemm)?);
            }
        }
        if parts.is_empty() {
            return b.zeros(&[0, self.cfg.hidden], xp.dtype());
        }
        b.concat_rows(&parts.iter().collect::<Vec<_>>())
    }

    /// Per-slot weight copies for `experts_loop` (the baseline keeps them while it runs).
    pub fn split_experts(&self, b: &dyn Backend) -> Result<Vec<Mlp>> {
        if self.bf16_freed {
            let what = "per-expert weights while the bf16 experts are freed for FP8 (use_fp8 off first)".into();
            return Err(Error::Unsupported { op: "split_experts", what });
        }
        let (e, h, f) = (self.slots.len(), self.cfg.hidden, self.cfg.expert_ffn);
        let gu = |x: usize| -> Result<Tensor> { Ok(b.rows(&self.gate_up, x, 1)?.reshape(&[2 * f, h])) };
        let dn = |x: usize| -> Result<Tensor> { Ok(b.rows(&self.down, x, 1)?.reshape(&[h, f])) };
        (0..e).map(|x| Ok(Mlp { gate_up: Linear::new(gu(x)?), down: Linear::new(dn(x)?) })).collect()
    }

    /// The shared experts over every token: in FP8 (one block-scaled expert of a grouped GEMM) when
    /// the routed experts run grouped (`grouped`) and `use_fp8` made the copies (`shared_fp8`), else
    /// in bf16 (the per-expert loop, the reference, keeps bf16 throughout). In bf16 through cuBLAS
    /// and the SwiGLU kernel: the grouped kernel with SwiGLU fused, as one expert, was slower on the
    /// H200 (0.688 vs 0.649 ms at V2-Lite, BENCHMARKS.md session 5).
    pub fn shared_experts(&self, b: &dyn Backend, x: &Tensor, grouped: bool) -> Result<Option<Tensor>> {
        let Some(s) = &self.shared else { return Ok(None) };
        match self.fp8.as_ref().and_then(|q| q.shared.as_ref().map(|s| (s, &q.all_rows))) {
            Some(((gu, dn), all_rows)) if grouped => {
                let t = x.shape()[0];
                let mut rows = all_rows.lock().unwrap();
                let at = match rows.iter().position(|(n, _)| *n == t) {
                    Some(at) => at,
                    None => {
                        let end = i32::try_from(t).map_err(|_| Error::Shape {
                            op: "shared experts",
                            detail: format!("{t} tokens, over i32"),
                        })?;
                        rows.push((t, b.upload_i32(&[0, end], &[2])?));
                        rows.len() - 1
                    }
                };
                let all = &rows[at].1;
                let xq = b.quantize_blocks(x, Blocks::Rows)?;
                Ok(Some(mlp_fp8(b, (gu, dn), self.cfg.expert_ffn * self.cfg.shared_experts, xq, all)?))
            }
            _ => Ok(Some(s.forward(b, x, x.dtype())?)),
        }
    }

    /// Combine the expert outputs with the routing weights and add the shared experts (in one pass
    /// where the backend fuses it).
    pub fn combine(
        &self,
        b: &dyn Backend,
        x: &Tensor,
        y: &Tensor,
        row_of: &Tensor,
        r: &Routing,
        grouped: bool,
    ) -> Result<Tensor> {
        match self.shared_experts(b, x, grouped)? {
            Some(s) => b.unpermute_add(y, row_of, &r.weights, &s),
            None => b.unpermute(y, row_of, &r.weights),
        }
    }

    /// The whole layer on one device (all experts local): grouped experts, or the
    /// per-expert loop (GEMMs in `gemm`) when `per_expert` is given.
    pub fn forward(
        &self,
        b: &dyn Backend,
        x: &Tensor,
        r: &Routing,
        per_expert: Option<&[Mlp]>,
        gemm: DType,
    ) -> Result<Tensor> {
        debug_assert_eq!(self.slots.len(), self.cfg.num_experts, "single-device forward needs every expert");
        if let (Some(q), None) = (&self.fp8, per_expert) {
            // FP8 experts: the t tokens quantised, then their e4m3 rows gathered (t*k rows never
            // exist in bf16, nor quantised one by one).
            let Permuted { x: xq, offsets, row_of } = {
                let _phase = phase(c"moe dispatch");
                b.permute_fp8(&b.quantize_blocks(x, Blocks::Rows)?, &r.ids, self.cfg.num_experts)?
            };
            let y = {
                let _phase = phase(c"moe experts");
                mlp_fp8(b, (&q.gate_up, &q.down), self.cfg.expert_ffn, xq, &offsets)?
            };
            let _phase = phase(c"moe combine");
            return self.combine(b, x, &y, &row_of, r, true);
        }
        let p = {
            let _phase = phase(c"moe dispatch");
            b.permute(x, &r.ids, self.cfg.num_experts)?
        };
        let y = {
            let _phase = phase(c"moe experts");
            self.experts(b, &p.x, &p.offsets, per_expert, gemm)?
        };
        let _phase = phase(c"moe combine");
        self.combine(b, x, &y, &p.row_of, r, per_expert.is_none())
    }
}
