//! The gpt4 target under CP x EP x DP layouts (ranks as threads on the CPU, each with its
//! own layout groups) gives what one rank computes alone on the same inputs: every rank's
//! output is compared with `single_rank_output`, the whole sequence of its replica on one
//! rank, at lengths that split unevenly.

mod common;

use common::{errors, on_ranks};
use rwm_dist::harness::Workload;
use rwm_dist::layout::ParallelDims;
use rwm_dist::models::gpt4::Gpt4Config;
use rwm_dist::parallel::context::CpKind;
use rwm_dist::targets::gpt4::Gpt4Target;
use rwm_dist::tensor::DType;

fn cfg(seq_len: usize, kind: CpKind) -> Gpt4Config {
    Gpt4Config {
        layers: 2,
        hidden: 64,
        heads: 4,
        kv_heads: 2,
        head_dim: 16,
        num_experts: 8,
        top_k: 2,
        expert_ffn: 32,
        seq_len,
        cp_kind: kind,
        ..Gpt4Config::small()
    }
}

/// Per rank: (distributed output, the same rows computed on one rank alone), from `variant`
/// run over the layout `dims` with weights and activations in `dtype`.
fn run(c: &Gpt4Config, dims: ParallelDims, variant: &str, dtype: DType) -> Vec<(Vec<f32>, Vec<f32>)> {
    on_ranks(dims, |ctx| {
        let b = ctx.backend.as_ref();
        let mut w = Gpt4Target::with_dtype(c.clone(), dtype);
        w.setup(ctx).unwrap();
        let v = common::variant(&w, ctx, variant);
        w.prepare(ctx, &v).unwrap();
        let got = b.download(&w.step(ctx, &v).unwrap()).unwrap();
        let one = b.download(&w.single_rank_output(ctx, &v).unwrap().unwrap()).unwrap();
        (got, one)
    })
}

/// Worst rel-L2 error of any rank against one rank.
fn worst(c: &Gpt4Config, dims: ParallelDims, variant: &str, dtype: DType) -> f64 {
    run(c, dims, variant, dtype).iter().map(|(g, o)| errors(g, o).1).fold(0.0, f64::max)
}

/// The layouts the issue names, on 2, 4 and 8 ranks (EP folded over CP x DP, and separate).
fn layouts() -> Vec<ParallelDims> {
    vec![
        ParallelDims::folded(1, 2, 1, 1),
        ParallelDims::folded(1, 1, 2, 2),
        ParallelDims::folded(1, 2, 1, 2),
        ParallelDims::folded(1, 4, 4, 1),
        ParallelDims::new(1, 2, 2, 1),
        ParallelDims::folded(1, 2, 4, 4),
        ParallelDims::folded(1, 4, 2, 2),
    ]
}

#[test]
fn cp_ep_dp_layouts_equal_one_rank_in_f32() {
    for (seq, kinds) in [(255, &[CpKind::Ring, CpKind::AllGather][..]), (1001, &[CpKind::Ring][..])] {
        for &kind in kinds {
            let c = cfg(seq, kind);
            for variant in ["baseline", "optimized"] {
                for dims in layouts() {
                    // f32 throughout: only summation order differs, so routing cannot flip.
                    let e = worst(&c, dims, variant, DType::F32);
                    assert!(e < 1e-5, "seq {seq} {kind:?} {variant} {dims}: rel err {e:.2e}");
                }
            }
        }
    }
}

#[test]
fn data_parallel_replicas_see_different_sequences() {
    // cp 2 x dp 2: ranks 0, 1 hold replica 0 and ranks 2, 3 replica 1, each of its own input.
    let outs = run(&cfg(64, CpKind::Ring), ParallelDims::folded(1, 2, 1, 2), "optimized", DType::F32);
    assert!(errors(&outs[2].0, &outs[0].0).1 > 0.1, "replicas 0 and 1 computed the same sequence");
}

#[test]
fn bf16_ring_matches_one_rank_as_all_gather_does() {
    // Partials in f32, merged by log-sum-exp, rounded once: bf16 ring stays at rounding level.
    for seq in [1000, 1001] {
        for dims in [ParallelDims::folded(1, 2, 1, 1), ParallelDims::folded(1, 4, 2, 2)] {
            let ring = worst(&cfg(seq, CpKind::Ring), dims, "optimized", DType::Bf16);
            let gather = worst(&cfg(seq, CpKind::AllGather), dims, "optimized", DType::Bf16);
            assert!(ring <= 5e-3, "seq {seq} {dims}: bf16 ring vs one rank rel {ring:.2e}");
            assert!(gather <= 5e-3, "seq {seq} {dims}: bf16 all-gather vs one rank rel {gather:.2e}");
        }
    }
}

#[test]
fn a_wrong_shard_would_be_caught() {
    // The same comparison against another seed's one-rank output fails: the check can fail.
    let c = cfg(37, CpKind::Ring);
    let other = run(&Gpt4Config { seed: 7, ..c.clone() }, ParallelDims::folded(1, 2, 1, 1), "optimized", DType::F32);
    let mine = run(&c, ParallelDims::folded(1, 2, 1, 1), "optimized", DType::F32);
    let e = errors(&other[0].0, &mine[0].1).1;
    assert!(e > 0.1, "{e}");
}
