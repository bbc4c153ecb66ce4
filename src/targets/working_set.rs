//! What a `gpt4` run holds inside one decoder layer, phase by phase. The generic budget
//! (`budget`) adds the layer's activations, the attention workspace and the MoE dispatch
//! as if all were live at once; in a run they are not: the attention's scores are freed before the
//! experts run, while the layer keeps more of its own tensors alive through the MoE than the
//! generic activation term counts (`models::gpt4::Gpt4::forward` holds the normed input, q and the
//! attention output until the layer ends). The peak is the larger phase.

use crate::budget::{Budget, Checked, MemoryError, Term, n, term};
use crate::layout::ParallelDims;
use crate::models::gpt4::Gpt4Config;

pub const ATTENTION_PHASE: &str = "layer working set (attention phase, the larger; less its workspace)";
pub const MOE_PHASE: &str = "layer working set (moe phase, the larger; less the attention workspace)";

/// The larger phase as a term beside the attention workspace, which stays a term of its own (the
/// fit check names it when it is the largest): `max(attention, other) - workspace`.
fn beside_workspace(
    mut terms: Vec<Term>,
    attention: Checked,
    other: Checked,
    other_name: &'static str,
) -> Result<Budget, MemoryError> {
    let ws = Checked::from(terms.iter().find(|t| t.name == term::ATTENTION).map_or(0, |t| t.bytes));
    let (name, bytes) = if attention.get(ATTENTION_PHASE)? >= other.get(other_name)? {
        (ATTENTION_PHASE, attention.minus(ws))
    } else {
        (other_name, other.minus(ws))
    };
    terms.push(Term { name, bytes: bytes.get(name)? });
    Budget::new(terms)
}

/// `budget` with its activations, attention workspace and MoE dispatch replaced by the larger of
/// the layer's two phases (bytes per activation element `b_a`):
/// - attention: input, residual, normed input, q, attention output, and the workspace;
/// - moe: input, residual, normed input, q, attention output, the residual sum and the normed MoE
///   input, the router's f32 logits and probabilities and its ids and weights, and the experts:
///   grouped (`grouped_bf16`), or rows in, expert output and combined output (`2 R h + T h`),
///   whichever is larger; a loop, rows in, the outputs so far and their concatenation (`3 R h`),
///   or one expert's rows with its gate/up and activation.
pub fn gpt4(
    budget: Budget,
    c: &Gpt4Config,
    layout: &ParallelDims,
    run: MoeRun,
    b_a: usize,
) -> Result<Budget, MemoryError> {
    let t = n(c.seq_len / layout.cp);
    let (h, q, ab) = (n(c.hidden), n(c.q_dim()), n(b_a));
    let rows = t * n(c.top_k);
    let attn_ws = Checked::from(budget.bytes(term::ATTENTION));
    let attention = t * (n(3) * h + n(2) * q) * ab + attn_ws;
    let router = t * n(c.num_experts) * n(2 * 4) + t * n(c.top_k) * n(4 + 4);
    // Under EP the rows received and grouped come on top of the rows sent, and the outputs
    // travel back before the unpermute (`parallel::expert::forward`; see `moe`).
    let ep = layout.ep > 1;
    // One device in FP8: the expert output only (no bf16 permuted rows; `grouped_fp8`).
    let combine = match (ep, run.fp8.is_some() && !run.loops) {
        (true, _) => n(4) * rows * h + t * h,
        (false, false) => n(2) * rows * h + t * h,
        (false, true) => rows * h + t * h,
    } * ab;
    let local = c.num_experts / layout.ep;
    let work = routed_experts(rows, local, c.hidden, c.expert_ffn, ab, ep, run)?;
    let moe = t * (n(5) * h + n(2) * q) * ab + router + work.max(combine);
    let generic = [term::ACTIVATIONS, term::MOE_DISPATCH, term::COMM_EP];
    let terms: Vec<Term> = budget.terms.into_iter().filter(|t| !generic.contains(&t.name)).collect();
    beside_workspace(terms, attention, moe, MOE_PHASE)
}

/// The routed experts' working set over `rows` rows in (bytes per element `ab`), `local` experts a
/// rank. One device: a loop holds rows in, the outputs so far and their concatenation (`3 R h`),
/// or one expert's rows with its gate/up and activation; grouped, `grouped_bf16` or `grouped_fp8`.
/// Under EP (`ep`) the rows sent stay beside them (`R h` more).
fn routed_experts(
    rows: Checked,
    local: usize,
    h: usize,
    fe: usize,
    ab: Checked,
    ep: bool,
    run: MoeRun,
) -> Result<Checked, MemoryError> {
    let per = Checked::from(rows.get("moe rows")?.div_ceil(local.max(1) as u64));
    let (hn, fen) = (n(h), n(fe));
    let one = match (run.loops, run.fp8) {
        (true, _) => (n(3) * rows * hn).max(n(2) * rows * hn + per * (hn + n(3) * fen)) * ab,
        (false, None) => grouped_bf16(rows, h, fe, ab, run.fused),
        (false, Some(b8)) => grouped_fp8(rows, h, fe, ab, n(b8), !ep),
    };
    Ok(if ep { rows * hn * ab + one } else { one })
}

/// Grouped bf16 experts (`MoeLayer::experts_grouped`) over `rows` rows in: where the gate/up GEMM
/// fuses SwiGLU (`fused`, sm_90a), rows in, the activation (F) and the output rows; otherwise the
/// larger of rows in beside gate/up (2F) and the activation, and rows in, activation and output.
pub fn grouped_bf16(rows: Checked, h: usize, fe: usize, ab: Checked, fused: bool) -> Checked {
    let (h, fe) = (n(h), n(fe));
    let down = rows * (n(2) * h + fe) * ab;
    if fused { down } else { (rows * (h + n(3) * fe) * ab).max(down) }
}

/// Grouped FP8 experts (`models::moe::mlp_fp8`) over `rows` rows in (`b_a` bytes per
/// activation element, `b8` per FP8 one, an f32 scale per 128): the larger of its three steps,
/// (1) the quantised rows and the SwiGLU activation (fused into the gate/up GEMM: no [rows, 2F]
/// buffer), (2) the activation and its quantised copy (the quantised rows freed), (3) that copy
/// and the output rows. Under EP (`quantised` false) the bf16 rows in are held beside them
/// throughout (`experts_grouped` quantises them); on one device (`MoeLayer::forward`) the rows
/// arrive quantised, gathered from the quantised tokens, and no bf16 copy of them exists.
pub fn grouped_fp8(rows: Checked, h: usize, fe: usize, ab: Checked, b8: Checked, quantised: bool) -> Checked {
    let q = |d: usize| rows * (n(d) * b8 + n(d.div_ceil(128) * 4));
    let (x, a) = (rows * n(h) * ab, rows * n(fe) * ab);
    let held = if quantised { n(0) } else { x };
    (held + q(h) + a).max(held + a + q(fe)).max(held + q(fe) + x)
}

/// The same for a `llama` run (`models::llama::Llama::hidden`): attention, the residual, q, the
/// attention output and the workspace (the normed input is dropped before); MLP, the residual,
/// the attention output and its projection (both held to the layer's end), the normed MLP input,
/// and the fused gate/up output (2F) beside the activation (F).
pub fn llama(
    budget: Budget,
    c: &crate::models::llama::LlamaConfig,
    b_a: usize,
    fused_swiglu: bool,
) -> Result<Budget, MemoryError> {
    let t = n(c.seq_len);
    let (h, q, f, ab) = (n(c.hidden), n(c.q_dim()), n(c.ffn), n(b_a));
    let attention = t * (h + n(2) * q) * ab + Checked::from(budget.bytes(term::ATTENTION));
    // Gate/up [t, 2f] and the activation [t, f]; fused into the GEMM, the activation alone.
    let mlp = t * (n(3) * h + q + n(if fused_swiglu { 1 } else { 3 }) * f) * ab;
    let terms: Vec<Term> = budget.terms.into_iter().filter(|t| t.name != term::ACTIVATIONS).collect();
    beside_workspace(terms, attention, mlp, MLP_PHASE)
}

pub const MLP_PHASE: &str = "layer working set (mlp phase, the larger; less the attention workspace)";

/// A `moe` run: the routed experts, then the outputs combined and the shared experts added. One
/// rank (`MoeLayer::forward`): the permuted rows (`R h`) stay until the layer returns; grouped,
/// gate/up (2F) with the activation (F); a loop, the outputs so far and their concatenation; then
/// rows, outputs, combined output and the shared experts' gate/up and activation (`3 N_s F` per
/// token). Under EP (`parallel::expert::forward`) the rows received and grouped come on top of the
/// rows sent, the outputs travel back (`4 R h + T h` at the unpermute), and the shared experts run
/// once the routed rows are gone. The generic budget adds the shared experts' buffers to the
/// dispatch, which never coexist.
pub fn moe(
    budget: Budget,
    c: &crate::models::moe::MoeConfig,
    layout: &ParallelDims,
    moe: MoeRun,
    b_a: usize,
) -> Result<Budget, MemoryError> {
    let MoeRun { loops, fp8, reordered, fused_add, .. } = moe;
    let t = n(c.tokens);
    let (h, fe, ab) = (n(c.hidden), n(c.expert_ffn), n(b_a));
    let rows = t * n(c.top_k);
    let shared = t * n(c.shared_experts) * n(3) * fe;
    let ep = layout.ep > 1;
    let experts = routed_experts(rows, c.num_experts / layout.ep, c.hidden, c.expert_ffn, ab, ep, moe)?;
    let combine = if ep {
        // A placement whose slots are not in expert order (EPLB's) puts the returned rows back in
        // order with a gather while they are still held: a fifth [rows, h] buffer.
        let back = if reordered { (n(5) * rows * h).max(n(4) * rows * h + t * h) } else { n(4) * rows * h + t * h };
        back.max(t * h + shared) * ab
    } else {
        // The expert output and (bf16) the permuted rows; FP8 has no bf16 permuted rows. Where the
        // shared experts' add is not fused into the unpermute, the unpermuted rows are one more [t, h].
        let held = if fp8.is_some() && !loops { rows * h } else { n(2) * rows * h };
        let unpermuted = if fused_add && c.shared_experts > 0 { n(0) } else { t * h };
        (held + unpermuted + shared) * ab
    };
    let router = t * n(c.num_experts) * n(2 * 4);
    let bytes = n(2) * t * h * ab + experts.max(combine) + router;
    let generic = [term::ACTIVATIONS, term::MOE_DISPATCH, term::COMM_EP];
    let mut terms: Vec<Term> = budget.terms.into_iter().filter(|t| !generic.contains(&t.name)).collect();
    terms.push(Term { name: MOE_WORKING_SET, bytes: bytes.get(MOE_WORKING_SET)? });
    Budget::new(terms)
}

/// How a `moe` or `gpt4` variant runs its routed experts: a loop over per-expert copies, grouped
/// FP8 (the FP8 element's bytes), whether grouped bf16 experts fuse SwiGLU into the gate/up GEMM
/// (`grouped_bf16`); for `moe` also whether its placement's slots are out of expert order (EPLB),
/// and whether the one-rank combine adds the shared experts in the unpermute pass
/// (`Backend::unpermute_add`).
#[derive(Clone, Copy, Debug, Default)]
pub struct MoeRun {
    pub loops: bool,
    pub fp8: Option<usize>,
    pub reordered: bool,
    pub fused: bool,
    pub fused_add: bool,
}

pub const MOE_WORKING_SET: &str = "layer working set (routed experts, combine, shared experts: the larger)";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::budget::Storage;

    #[test]
    fn hopper_fuses_the_grouped_swiglu_and_holds_no_gate_up_buffer() {
        for (model, fused) in
            [("NVIDIA H200", true), ("H100 80GB HBM3", true), ("GB200", false), ("B200", false), ("", false)]
        {
            assert_eq!(Storage::device_named(model).fuses_swiglu(), fused, "{model}");
        }
        // gpt4's expert shapes at 32K, E=8 (H200 trace, BENCHMARKS.md): 65,536 rows, h 4096, F 8192.
        let (rows, h, f) = (65_536u64, 4096, 8192);
        let ab = n(2);
        let fused = grouped_bf16(n(rows as usize), h, f, ab, true).get("x").unwrap();
        let unfused = grouped_bf16(n(rows as usize), h, f, ab, false).get("x").unwrap();
        assert_eq!(fused, rows * (2 * 4096 + 8192) * 2, "rows in, activation, output");
        assert_eq!(unfused - fused, rows * 2 * 8192 * 2 - rows * 4096 * 2, "the [rows, 2F] buffer, less the output");
    }
}
