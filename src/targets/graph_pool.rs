//! What a CUDA graph's memory pool holds for a captured pass (llama's `optimized` and `fp8`
//! variants replay their prefill as one graph).
//!
//! Why a term of its own: on the H200 (2026-12-01, `RWM_MEM_TRACE=1`, records in
//! bench/results/2026-12-01-h200/s4-est/) the graph variants peaked 288.5 MiB above the eager
//! pass at 8B L=2 S=8K, and on the H100 (2026-11-24, `llama-graph.jsonl` against `llama.jsonl`)
//! 224.5 MiB above it at L=32 S=8K. The eager pool's counter counts live bytes only: a freed
//! buffer's range goes back to the pool. A captured buffer instead gets its address once, at
//! capture, packed in capture order among the ranges freed earlier in the pass, and the graph
//! maps every range that packing used, holes included (CUDA's graph allocator reuses addresses
//! only between buffers whose lifetimes do not overlap). So the estimate replays the pass's
//! buffers, in the order `models::llama::Llama::prefill` makes and frees them, through the same
//! kind of packing (best fit, lowest address, freed neighbours merged, nothing moved) and adds
//! what the packed span exceeds the live peak by: 288.0 MiB at L=2 and 224.0 MiB at L=32 for the
//! bf16 pass (the other 0.5 MiB is the graph's output, the logits). Not reproduced: the FP8
//! pass measured 288 MiB at both layer counts where this packing gives 96 (L=2) and 256 (L=32).

use crate::budget::Checked;
use crate::models::llama::LlamaConfig;

/// One buffer made or freed, in the order the pass does it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Event {
    Alloc { id: usize },
    Free { id: usize },
}

/// The buffers of one pass, in order.
#[derive(Debug, Default)]
pub struct Pass {
    events: Vec<Event>,
    sizes: Vec<u64>,
}

/// The allocator's alignment of each buffer (CUDA's stream-ordered pools hand out 512-byte
/// multiples at least).
const ALIGN: u64 = 512;

impl Pass {
    pub fn alloc(&mut self, bytes: u64) -> usize {
        let id = self.sizes.len();
        let bytes = bytes.max(1).div_ceil(ALIGN) * ALIGN;
        self.sizes.push(bytes);
        self.events.push(Event::Alloc { id });
        id
    }

    pub fn free(&mut self, id: usize) {
        self.events.push(Event::Free { id });
    }

    /// The most bytes live at once (what an eager pool's counter peaks at).
    pub fn live_peak(&self) -> u64 {
        let (mut live, mut peak) = (0u64, 0u64);
        for e in &self.events {
            match *e {
                Event::Alloc { id } => {
                    live += self.sizes[id];
                    peak = peak.max(live);
                }
                Event::Free { id } => live -= self.sizes[id],
            }
        }
        peak
    }

    /// The address span the pass's buffers take when each gets a fixed address in order: the
    /// smallest freed range that fits (the lowest of equals), at its start; past the end when
    /// none fits. Freed neighbours merge.
    pub fn packed_span(&self) -> u64 {
        let mut free: Vec<(u64, u64)> = vec![]; // (start, len), sorted by start
        let mut at = vec![0u64; self.sizes.len()];
        let mut end = 0u64;
        for e in &self.events {
            match *e {
                Event::Alloc { id } => {
                    let bytes = self.sizes[id];
                    let fit = free.iter().enumerate().filter(|(_, r)| r.1 >= bytes).min_by_key(|(_, r)| (r.1, r.0));
                    at[id] = match fit.map(|(i, r)| (i, *r)) {
                        Some((i, (start, len))) => {
                            if len == bytes {
                                free.remove(i);
                            } else {
                                free[i] = (start + bytes, len - bytes);
                            }
                            start
                        }
                        None => {
                            end += bytes;
                            end - bytes
                        }
                    };
                }
                Event::Free { id } => {
                    let (start, len) = (at[id], self.sizes[id]);
                    let i = free.partition_point(|r| r.0 < start);
                    free.insert(i, (start, len));
                    // Merge with the next range, then with the previous one.
                    if i + 1 < free.len() && free[i].0 + free[i].1 == free[i + 1].0 {
                        free[i].1 += free.remove(i + 1).1;
                    }
                    if i > 0 && free[i - 1].0 + free[i - 1].1 == free[i].0 {
                        free[i - 1].1 += free.remove(i).1;
                    }
                }
            }
        }
        end
    }

    /// What a graph of this pass holds beyond the eager pass's live peak: its packing's holes.
    pub fn holes(&self) -> u64 {
        self.packed_span().saturating_sub(self.live_peak())
    }
}

/// `models::llama::Llama::prefill` with fused norms and flash attention, buffer by buffer: the
/// embedding; per layer the norm (fused with the previous layer's MLP output), q, k and v with
/// RoPE, the attention output and its log-sum-exp, the output projection, the fused norm, the
/// gate/up GEMM, SwiGLU and the down projection; the final add, the last row, its norm and the
/// logits. K and V stay (the KV cache) until the layers end. With FP8 GEMMs each projection
/// first quantises its input (e4m3 bytes, a scale and an amax, freed after the GEMM). With
/// `fused_swiglu` the gate/up GEMM writes the activation itself (no [s, 2f] buffer).
pub fn llama_pass(c: &LlamaConfig, fp8: bool, fused_swiglu: bool) -> Pass {
    let mut p = Pass::default();
    let s = c.seq_len as u64;
    let (h, q, kv, f) = (c.hidden as u64, c.q_dim() as u64, c.kv_dim() as u64, c.ffn as u64);
    let bf = |cols: u64| 2 * s * cols;
    let linear = |p: &mut Pass, input_cols: u64, rows: u64, out_bytes: u64| {
        if !fp8 {
            return p.alloc(out_bytes);
        }
        let (x8, scale, amax) = (p.alloc(rows * input_cols), p.alloc(4), p.alloc(4));
        p.free(amax);
        let out = p.alloc(out_bytes);
        p.free(x8);
        p.free(scale);
        out
    };
    let mut x = p.alloc(bf(h));
    let mut pending: Option<usize> = None;
    let mut cache = vec![];
    for _ in 0..c.layers {
        let norm = p.alloc(bf(h));
        if let Some(d) = pending.take() {
            let sum = p.alloc(bf(h));
            p.free(x);
            x = sum;
            p.free(d);
        }
        let q0 = linear(&mut p, h, s, bf(q));
        let qr = p.alloc(bf(q));
        p.free(q0);
        let k0 = linear(&mut p, h, s, bf(kv));
        let k = p.alloc(bf(kv));
        p.free(k0);
        let v = linear(&mut p, h, s, bf(kv));
        p.free(norm);
        let a = p.alloc(bf(q));
        let lse = p.alloc(4 * s * c.heads as u64);
        p.free(lse);
        p.free(qr);
        cache.extend([k, v]);
        let o = linear(&mut p, q, s, bf(h));
        let norm2 = p.alloc(bf(h));
        let sum = p.alloc(bf(h));
        p.free(x);
        x = sum;
        let act = if fused_swiglu {
            linear(&mut p, h, s, bf(f))
        } else {
            let gate_up = linear(&mut p, h, s, bf(2 * f));
            let act = p.alloc(bf(f));
            p.free(gate_up);
            act
        };
        pending = Some(linear(&mut p, f, s, bf(h)));
        p.free(act);
        for t in [norm2, o, a] {
            p.free(t);
        }
    }
    if let Some(d) = pending {
        let sum = p.alloc(bf(h));
        p.free(x);
        p.free(d);
        x = sum;
    }
    cache.into_iter().for_each(|t| p.free(t));
    let last = p.alloc(2 * h);
    let normed = p.alloc(2 * h);
    // The logits are the graph's output: never freed inside it.
    let _logits = if fp8 { linear(&mut p, h, 1, 2 * c.vocab as u64) } else { p.alloc(4 * c.vocab as u64) };
    p.free(normed);
    p.free(last);
    p.free(x);
    p
}

/// The graph pool's term for a llama graph variant.
pub fn llama(c: &LlamaConfig, fp8: bool, fused_swiglu: bool) -> Checked {
    Checked::from(llama_pass(c, fp8, fused_swiglu).holes())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn a_freed_range_is_reused_by_what_fits_and_the_rest_goes_past_the_end() {
        let mut p = Pass::default();
        let (a, b) = (p.alloc(4 * MIB), p.alloc(4 * MIB));
        p.free(a);
        let c = p.alloc(2 * MIB); // in a's range
        let d = p.alloc(4 * MIB); // 2 MiB left there: past the end
        assert_eq!((p.live_peak(), p.packed_span()), (10 * MIB, 12 * MIB));
        for t in [b, c, d] {
            p.free(t);
        }
        // Everything merged back: 12 MiB fits again.
        p.alloc(12 * MIB);
        assert_eq!((p.packed_span(), p.holes()), (12 * MIB, 0));
    }

    #[test]
    fn best_fit_takes_the_smallest_range_that_fits() {
        let mut p = Pass::default();
        let big = p.alloc(8 * MIB);
        let keep = p.alloc(MIB);
        let small = p.alloc(2 * MIB);
        let _keep2 = p.alloc(MIB);
        p.free(big);
        p.free(small);
        let _ = keep;
        // 2 MiB goes to the 2 MiB hole, so 8 MiB still fits in big's.
        p.alloc(2 * MIB);
        p.alloc(8 * MIB);
        assert_eq!(p.packed_span(), 12 * MIB);
    }

    #[test]
    fn llama_bf16_pass_matches_the_measured_eager_peak_and_graph_excess() {
        // Llama 3.1 8B, L=2, S=8192: the eager pass peaked 992 MiB above what it started with on
        // the H200 (RWM_MEM_TRACE), its graph 288.5 MiB higher (0.5 of it the logits); at L=32
        // the graph was 224.5 MiB above the eager pass on the H100.
        let c = |layers| LlamaConfig { layers, seq_len: 8192, ..LlamaConfig::llama31_8b() };
        let p = llama_pass(&c(2), false, false);
        assert_eq!(p.live_peak(), 992 * MIB);
        assert_eq!(p.holes(), 288 * MIB);
        assert_eq!(llama_pass(&c(32), false, false).holes(), 224 * MIB);
    }
}
