//! Each target's forward step as one rank runs it: its kernels (GEMM shapes, attention pairs,
//! bytes of the element-wise ops) and collectives in order, mirroring the code of
//! src/models/{llama,moe,gpt4}.rs, src/parallel/{context,expert}.rs. One function per target,
//! to be folded into the `Target` trait; FLOPs are the records' own (`Workload::flops`).
//! The optimized variants (and llama's fp8, moe's balanced) are modelled; baselines (naive
//! attention, loops over experts) are not.

use super::{CollKind, Collective, MemKind, Op, Phase};
use crate::harness::target::Target;
use crate::harness::variant::{Experts, Variant};
use crate::layout::{CpKind, Dim, ParallelDims};
use crate::models::gpt4::Gpt4Config;
use crate::models::llama::LlamaConfig;
use crate::models::moe::MoeConfig;
use crate::parallel::context::shard;
use crate::tensor::DType;

/// One rank's step.
#[derive(Clone, Debug, PartialEq)]
pub struct Work {
    pub phases: Vec<Phase>,
    /// Tokens this rank processes, and the FLOPs its record counts for them.
    pub tokens: usize,
    pub flops: f64,
    /// Replayed as one CUDA graph (llama's optimized variants).
    pub graph: bool,
}

const BF16: f64 = 2.0;

/// A target's model config, read back from its `config_json` (or a record's `config`).
#[derive(Clone, Debug, PartialEq)]
pub enum Model {
    Llama(LlamaConfig),
    Moe(MoeConfig),
    Gpt4(Gpt4Config),
}

impl Model {
    pub fn from_json(target: &str, config: serde_json::Value) -> Option<Model> {
        match target {
            "llama" => serde_json::from_value(config).ok().map(Model::Llama),
            "moe" => serde_json::from_value(config).ok().map(Model::Moe),
            "gpt4" => serde_json::from_value(config).ok().map(Model::Gpt4),
            _ => None,
        }
    }

    pub fn of(t: &dyn Target) -> Option<Model> {
        Self::from_json(t.name(), t.config_json())
    }

    /// Whether the layout's CP and EP mean anything to the model.
    pub fn has_cp(&self) -> bool {
        matches!(self, Model::Gpt4(_))
    }
    pub fn has_ep(&self) -> bool {
        !matches!(self, Model::Llama(_))
    }
}

/// The step of variant `v` of `m` on one rank of `dims`; None for what the model does not
/// cover: references (naive attention, expert loops) and gpt4 in FP8 (its experts loop).
pub fn for_variant(m: &Model, dims: &ParallelDims, v: &Variant) -> Option<Work> {
    if v.is_reference() || v.recipe().experts == Some(Experts::Loop) {
        return None;
    }
    let fp8 = v.gemm == DType::F8;
    match m {
        Model::Llama(c) => Some(llama(c, fp8)),
        Model::Moe(c) => Some(moe(c, dims)),
        Model::Gpt4(_) if fp8 => None,
        Model::Gpt4(c) => Some(gpt4(c, dims, false)),
    }
}

/// The step of `t`'s variant named `variant` with `--dtype` `run_gemm`.
pub fn for_target(t: &dyn Target, dims: &ParallelDims, variant: &str, run_gemm: DType) -> Option<Work> {
    let spec = t.variants().into_iter().find(|s| s.name == variant)?;
    for_variant(&Model::of(t)?, dims, &spec.resolve(run_gemm))
}

/// The memory-bound kernels, with the bytes each reads and writes; `calibrate` times the same
/// ops to get each kind's bandwidth.
pub mod kernels {
    use super::{BF16, MemKind, Op};

    fn mem(kind: MemKind, bytes: f64) -> Op {
        Op::Mem { kind, bytes }
    }
    /// RMSNorm of [rows, h] (read, write), or with the residual add fused (two reads, two writes).
    pub fn norm(rows: usize, h: usize, fused_add: bool) -> Op {
        let x = (rows * h) as f64 * BF16;
        if fused_add { mem(MemKind::NormAdd, 4.0 * x) } else { mem(MemKind::Norm, 2.0 * x) }
    }
    /// RoPE over [rows, width] (read, write).
    pub fn rope(rows: usize, width: usize) -> Op {
        mem(MemKind::Rope, (2 * rows * width) as f64 * BF16)
    }
    /// SwiGLU of [rows, 2f] into [rows, f].
    pub fn swiglu(rows: usize, f: usize) -> Op {
        mem(MemKind::Swiglu, (rows * 3 * f) as f64 * BF16)
    }
    /// FP8 quantisation of [m, k] bf16: the absolute maximum (read), then scale and cast
    /// (read, write one byte).
    pub fn quantize(m: usize, k: usize) -> Op {
        mem(MemKind::Quantize, (m * k) as f64 * (2.0 * BF16 + 1.0))
    }
    /// Top-k of [t, e] f32 logits: ids and weights [t, k].
    pub fn route(t: usize, e: usize, k: usize) -> Op {
        mem(MemKind::Route, (t * e * 4 + t * k * 8) as f64)
    }
    /// Rows [t, h] grouped by expert (t*k of them): count, scan, rank and scatter.
    pub fn permute(t: usize, h: usize, k: usize, e: usize) -> Vec<Op> {
        let rows = t * k;
        vec![
            mem(MemKind::Permute, (rows * 4) as f64),
            mem(MemKind::Permute, (e * 4) as f64),
            mem(MemKind::Permute, (t * h) as f64 * BF16 + (rows * h) as f64 * BF16 + (rows * 8) as f64),
        ]
    }
    /// Expert outputs [t*k, h] weighted back into [t, h].
    pub fn unpermute(t: usize, h: usize, k: usize) -> Op {
        mem(MemKind::Unpermute, ((t * k * h + t * h) as f64) * BF16 + (t * k * 8) as f64)
    }
}

/// Ops of a building block, appended in order.
#[derive(Default)]
struct Ops(Vec<Op>);

impl Ops {
    /// A copy, pad, concatenation, gather or add.
    fn mem(&mut self, bytes: f64) {
        self.0.push(Op::Mem { kind: MemKind::Add, bytes });
    }
    fn push(&mut self, op: Op) {
        self.0.push(op);
    }
    /// x [m, k] through a [n, k] weight; FP8 first quantises x.
    fn linear(&mut self, m: usize, n: usize, k: usize, fp8: bool) {
        if fp8 {
            self.push(kernels::quantize(m, k));
        }
        self.0.push(Op::Gemm { m, n, k, fp8, out_bytes: 2 });
    }
    fn norm(&mut self, rows: usize, h: usize, fused_add: bool) {
        self.push(kernels::norm(rows, h, fused_add));
    }
    /// Causal self-attention over `s` positions.
    fn causal(&mut self, s: usize, heads: usize, d: usize) {
        self.0.push(Op::Attn { pairs: s as f64 * (s as f64 + 1.0) / 2.0, heads, head_dim: d });
    }
}

/// Llama prefill (optimized: flash attention, residual adds fused into the norms, one CUDA
/// graph; fp8: every linear in FP8), LM head on the last position.
pub fn llama(c: &LlamaConfig, fp8: bool) -> Work {
    let (s, h, f) = (c.seq_len, c.hidden, c.ffn);
    let mut o = Ops::default();
    o.mem((s * h) as f64 * BF16 + (s * 4) as f64); // embedding gather
    for l in 0..c.layers {
        o.norm(s, h, l > 0);
        o.linear(s, c.q_dim(), h, fp8);
        o.push(kernels::rope(s, c.q_dim()));
        o.linear(s, c.kv_dim(), h, fp8);
        o.push(kernels::rope(s, c.kv_dim()));
        o.linear(s, c.kv_dim(), h, fp8);
        o.causal(s, c.heads, c.head_dim);
        o.linear(s, h, c.q_dim(), fp8);
        o.norm(s, h, true);
        o.linear(s, 2 * f, h, fp8);
        o.push(kernels::swiglu(s, f));
        o.linear(s, h, f, fp8);
    }
    o.norm(s, h, true);
    o.norm(1, h, false);
    if fp8 {
        o.linear(1, c.vocab, h, true);
    } else {
        o.0.push(Op::Gemm { m: 1, n: c.vocab, k: h, fp8: false, out_bytes: 4 });
    }
    Work { phases: vec![Phase::Compute(o.0)], tokens: s, flops: c.prefill_flops(), graph: true }
}

/// Router GEMM (f32 logits), top-k, the experts as grouped GEMMs over `t * top_k` rows, on
/// one device or through EP all-to-alls, the weighted combine and the shared experts.
fn moe_phases(c: &MoeConfig, t: usize, ep: usize, phases: &mut Vec<Phase>, before: Ops) {
    let (h, f, e, k) = (c.hidden, c.expert_ffn, c.num_experts, c.top_k);
    let rows = t * k;
    let routed = (rows * h) as f64 * BF16;
    let mut o = before;
    o.0.push(Op::Gemm { m: t, n: e, k: h, fp8: false, out_bytes: 4 });
    o.push(kernels::route(t, e, k));
    o.0.extend(kernels::permute(t, h, k, e));
    let local = e / ep.max(1);
    if ep > 1 {
        o.0.push(Op::Sync); // offsets to the host: the send plan, and the counts over MPI
        phases.push(Phase::Compute(std::mem::take(&mut o.0)));
        phases.push(Phase::Comm(Collective { kind: CollKind::AllToAll, dim: Dim::Ep, bytes: routed, calls: 1 }));
        if local > 1 {
            o.mem(2.0 * routed); // regroup received rows by local expert
        }
    }
    // Gate/up with SwiGLU fused into its epilogue (MoeLayer::experts_grouped): no [rows, 2f] pass.
    o.0.push(Op::Grouped { rows, experts: local, n: 2 * f, k: h });
    o.0.push(Op::Grouped { rows, experts: local, n: h, k: f });
    if ep > 1 {
        if local > 1 {
            o.mem(2.0 * routed); // back to the order the rows came in
        }
        phases.push(Phase::Compute(std::mem::take(&mut o.0)));
        phases.push(Phase::Comm(Collective { kind: CollKind::AllToAll, dim: Dim::Ep, bytes: routed, calls: 1 }));
    }
    o.push(kernels::unpermute(t, h, k));
    if c.shared_experts > 0 {
        let fs = f * c.shared_experts;
        o.linear(t, 2 * fs, h, false);
        o.push(kernels::swiglu(t, fs));
        o.linear(t, h, fs, false);
        o.mem((3 * t * h) as f64 * BF16);
    }
    phases.push(Phase::Compute(o.0));
}

/// One DeepSeek MoE layer over this rank's `tokens` (optimized and balanced run the same kernels).
pub fn moe(c: &MoeConfig, dims: &ParallelDims) -> Work {
    let mut phases = Vec::new();
    let mut before = Ops::default();
    if c.skew != "none" {
        before.mem((c.tokens * c.num_experts * 4 * 3) as f64);
    }
    moe_phases(c, c.tokens, dims.ep, &mut phases, before);
    Work { phases, tokens: c.tokens, flops: c.flops(c.tokens), graph: false }
}

/// Visible (query, key) pairs of query positions `q` over key positions `k` under a causal mask.
fn visible(q: &std::ops::Range<usize>, k: &std::ops::Range<usize>) -> f64 {
    q.clone().map(|i| (i + 1).min(k.end).saturating_sub(k.start)).sum::<usize>() as f64
}

/// Context-parallel attention of one layer, for the slowest rank of each ring step (every rank
/// waits for its neighbour each step); `mine` are the rows of rank `r`'s zigzag shard.
fn cp_attention(c: &Gpt4Config, cp: usize, kind: CpKind, phases: &mut Vec<Phase>, before: Ops) {
    let (s, hq, d) = (c.seq_len, c.heads, c.head_dim);
    let shards: Vec<_> = (0..cp).map(|r| shard(s, cp, r).expect("cp >= 1")).collect();
    let block = shards.iter().map(|x| x.iter().map(|r| r.len()).sum::<usize>()).max().unwrap_or(0);
    let kv_bytes = (block * c.kv_dim()) as f64 * BF16;
    let rows = block;
    // A partial's f32 output and log-sum-exp, merged into the running one (read both, write one).
    let merge = (rows / 2 * hq * d * 4 * 3) as f64;
    let mut o = before;
    o.mem(4.0 * kv_bytes); // pad K and V to the block (copies)
    match kind {
        CpKind::Ring => {
            phases.push(Phase::Compute(std::mem::take(&mut o.0)));
            for step in 0..cp {
                // The slowest rank this step: the most visible pairs.
                let per_rank = (0..cp).map(|me| {
                    let holder = &shards[(me + cp - step) % cp];
                    let mut ops = Ops::default();
                    for q in &shards[me] {
                        for k in holder {
                            if q.is_empty() || k.is_empty() || k.start >= q.end {
                                continue;
                            }
                            ops.0.push(Op::Attn { pairs: visible(q, k), heads: hq, head_dim: d });
                            ops.mem(merge);
                        }
                    }
                    ops.0
                });
                let ops = per_rank
                    .max_by(|a, b| {
                        let f = |v: &Vec<Op>| v.iter().map(Op::flops).sum::<f64>();
                        f(a).total_cmp(&f(b))
                    })
                    .unwrap_or_default();
                phases.push(match step + 1 < cp {
                    true => Phase::Overlapped {
                        compute: ops,
                        // K and V in one NCCL group (`sendrecv_all_start`): one call per step.
                        comm: Collective { kind: CollKind::SendRecv, dim: Dim::Cp, bytes: 2.0 * kv_bytes, calls: 1 },
                    },
                    false => Phase::Compute(ops),
                });
            }
        }
        CpKind::AllGather => {
            phases.push(Phase::Compute(std::mem::take(&mut o.0)));
            phases.push(Phase::Comm(Collective { kind: CollKind::AllGather, dim: Dim::Cp, bytes: kv_bytes, calls: 2 }));
            // The slowest rank: its two chunks against every key up to each chunk's end.
            let worst =
                shards.iter().map(|mine| mine.iter().map(|q| visible(q, &(0..q.end))).sum::<f64>()).fold(0.0, f64::max);
            let need = shards.iter().map(|m| m.iter().map(|r| r.end).max().unwrap_or(0)).max().unwrap_or(0);
            o.mem(4.0 * (need * c.kv_dim()) as f64 * BF16); // concatenate K and V
            o.0.push(Op::Attn { pairs: worst, heads: hq, head_dim: d });
        }
    }
    o.mem((rows * hq * d) as f64 * (4.0 + BF16) * 2.0); // cast both chunks, concatenate
    phases.push(Phase::Compute(o.0));
}

/// RoPE of [rows, width]: with CP each of the two zigzag chunks apart (copied out, roped),
/// then concatenated.
fn rope_chunks(o: &mut Ops, rows: usize, width: usize, chunked: bool) {
    if chunked {
        o.mem((2 * rows * width) as f64 * BF16);
        o.push(kernels::rope(rows / 2, width));
        o.push(kernels::rope(rows - rows / 2, width));
        o.mem((2 * rows * width) as f64 * BF16);
    } else {
        o.push(kernels::rope(rows, width));
    }
}

/// The GPT-4-style block stack on this rank's shard: attention projections (FP8 with --dtype
/// fp8), attention (context parallel over `dims.cp`), MoE (expert parallel over `dims.ep`).
pub fn gpt4(c: &Gpt4Config, dims: &ParallelDims, fp8: bool) -> Work {
    let (h, cp) = (c.hidden, dims.cp.max(1));
    let rows = if cp > 1 { crate::parallel::context::shard_len(c.seq_len, cp, 0).expect("cp >= 1") } else { c.seq_len };
    let mut phases = Vec::new();
    let mut o = Ops::default();
    o.mem((rows * h) as f64 * BF16 * 2.0); // the input copied
    for _ in 0..c.layers {
        o.norm(rows, h, false);
        o.linear(rows, c.q_dim(), h, fp8);
        rope_chunks(&mut o, rows, c.q_dim(), cp > 1);
        o.linear(rows, c.kv_dim(), h, fp8);
        rope_chunks(&mut o, rows, c.kv_dim(), cp > 1);
        o.linear(rows, c.kv_dim(), h, fp8);
        if cp > 1 {
            cp_attention(c, cp, c.cp_kind, &mut phases, std::mem::take(&mut o));
        } else {
            o.causal(c.seq_len, c.heads, c.head_dim);
        }
        o.linear(rows, h, c.q_dim(), fp8);
        o.norm(rows, h, true);
        moe_phases(&c.moe(), rows, dims.ep, &mut phases, std::mem::take(&mut o));
        o.mem((3 * rows * h) as f64 * BF16); // residual add
    }
    phases.push(Phase::Compute(o.0));
    let tokens: usize = if cp > 1 { rows } else { c.seq_len };
    Work { phases, tokens, flops: c.flops() * tokens as f64 / c.seq_len as f64, graph: false }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ops(w: &Work) -> Vec<&Op> {
        w.phases
            .iter()
            .flat_map(|p| match p {
                Phase::Compute(o) | Phase::Overlapped { compute: o, .. } => o.iter().collect(),
                Phase::Comm(_) => vec![],
            })
            .collect()
    }

    #[test]
    fn the_ops_add_up_to_the_records_flops() {
        // The records' FLOPs count GEMMs and causal attention (not the router's or norms):
        // the op lists must carry the same GEMM and attention work.
        let l = LlamaConfig::small();
        let w = llama(&l, false);
        let f: f64 = ops(&w).iter().map(|o| o.flops()).sum();
        assert!((f - w.flops).abs() / w.flops < 1e-9, "{f} vs {}", w.flops);
        let g = Gpt4Config::small();
        for (cp, ep) in [(1, 1), (2, 1), (4, 2)] {
            let dims = ParallelDims::folded(1, cp, ep, 8 / cp);
            let w = gpt4(&g, &dims, false);
            let router = (g.layers * 2 * w.tokens * g.num_experts * g.hidden) as f64;
            let f: f64 = ops(&w).iter().map(|o| o.flops()).sum();
            if cp == 1 {
                // The moe FLOPs count the router GEMM too; nothing else is left out.
                assert!((f - w.flops).abs() / w.flops < 1e-9, "cp {cp}: {f} vs {}", w.flops);
            } else {
                // The slowest rank per ring step does at least its even share.
                assert!(f >= w.flops * 0.999 && f < w.flops * 1.2 + router, "cp {cp}: {f} vs {}", w.flops);
            }
        }
    }

    #[test]
    fn a_zigzag_ring_of_two_overlaps_one_transfer_per_layer() {
        let g = Gpt4Config { seq_len: 8, ..Gpt4Config::small() };
        let w = gpt4(&g, &ParallelDims::folded(1, 2, 1, 1), false);
        let rings: Vec<_> = w.phases.iter().filter(|p| matches!(p, Phase::Overlapped { .. })).collect();
        assert_eq!(rings.len(), g.layers);
        let Phase::Overlapped { comm, compute } = rings[0] else { unreachable!() };
        // Block of 4 rows x kv_dim 128 x bf16, K and V.
        assert_eq!((comm.kind, comm.bytes, comm.calls), (CollKind::SendRecv, 2.0 * 4.0 * 128.0 * 2.0, 1));
        // Step 0, rank 0 holds positions {0,1} and {6,7}: 0..2 x 0..2 is causal (3 pairs),
        // 6..8 x 0..2 full (4), 6..8 x 6..8 causal (3); 0..2 x 6..8 is masked out.
        let pairs: Vec<f64> =
            compute.iter().filter_map(|o| if let Op::Attn { pairs, .. } = o { Some(*pairs) } else { None }).collect();
        assert_eq!(pairs, vec![3.0, 4.0, 3.0]);
    }

    #[test]
    fn expert_parallel_moe_sends_its_routed_rows_twice() {
        let c = MoeConfig { tokens: 100, ..MoeConfig::deepseek_v2_lite() };
        let w = moe(&c, &ParallelDims::folded(1, 1, 4, 4));
        let a2a: Vec<f64> =
            w.phases.iter().filter_map(|p| if let Phase::Comm(c) = p { Some(c.bytes) } else { None }).collect();
        assert_eq!(a2a, vec![100.0 * 6.0 * 2048.0 * 2.0; 2]);
        assert!(moe(&c, &ParallelDims::single()).phases.iter().all(|p| matches!(p, Phase::Compute(_))));
    }
}
