//! The gpt4 target under context and expert parallelism (ranks as threads on the CPU)
//! gives the single-rank output: CP with zigzag shards (ring and all-gather), EP with
//! all-to-all dispatch, and both together, at sequence lengths that split unevenly.

use rwm_dist::backend::{Backend, cpu::CpuBackend};
use rwm_dist::comm::{Comm, local::LocalComm, single::SingleComm};
use rwm_dist::harness::{Ctx, Workload};
use rwm_dist::models::gpt4::Gpt4Config;
use rwm_dist::parallel::context::{self, CpKind};
use rwm_dist::plan::Layout;
use rwm_dist::targets::gpt4::Gpt4Target;
use rwm_dist::tensor::DType;
use std::sync::Arc;

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

/// Full-sequence output of `variant` run over `n` thread ranks with `layout`.
fn run(c: &Gpt4Config, n: usize, layout: Layout, variant: &str) -> Vec<f32> {
    let b: Arc<dyn Backend> = Arc::new(CpuBackend::new());
    let comms: Vec<Arc<dyn Comm>> = if n == 1 {
        vec![Arc::new(SingleComm::new(b.clone()))]
    } else {
        LocalComm::group(n).into_iter().map(|c| Arc::new(c) as Arc<dyn Comm>).collect()
    };
    let outs: Vec<Vec<f32>> = std::thread::scope(|s| {
        let hs: Vec<_> = comms
            .into_iter()
            .map(|world| {
                let (b, c) = (b.clone(), c.clone());
                s.spawn(move || {
                    let ctx = Ctx { backend: b.clone(), world, gemm_dtype: DType::Bf16, layout };
                    let mut w = Gpt4Target::with_dtype(c, DType::F32);
                    w.setup(&ctx).unwrap();
                    w.prepare(&ctx, variant).unwrap();
                    b.download(&w.step(&ctx, variant).unwrap()).unwrap()
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    if layout.cp == 1 {
        return outs[0].clone();
    }
    let shards: Vec<_> =
        outs.iter().map(|o| b.upload(o, &[o.len() / c.hidden, c.hidden], DType::F32).unwrap()).collect();
    b.download(&context::unshard(b.as_ref(), &shards, c.seq_len).unwrap()).unwrap()
}

fn rel_l2(a: &[f32], r: &[f32]) -> f64 {
    assert_eq!(a.len(), r.len());
    let d: f64 = a.iter().zip(r).map(|(x, y)| ((x - y) as f64).powi(2)).sum();
    let n: f64 = r.iter().map(|y| (*y as f64).powi(2)).sum();
    (d / n).sqrt()
}

#[test]
fn context_and_expert_parallel_equal_one_rank() {
    for seq in [37, 64] {
        for kind in [CpKind::Ring, CpKind::AllGather] {
            let c = cfg(seq, kind);
            for variant in ["baseline", "optimized"] {
                let one = run(&c, 1, Layout { cp: 1, ep: 1 }, variant);
                for (n, layout) in
                    [(2, Layout { cp: 2, ep: 1 }), (2, Layout { cp: 1, ep: 2 }), (4, Layout { cp: 4, ep: 4 })]
                {
                    // f32 throughout: only summation order differs, so routing cannot flip.
                    let e = rel_l2(&run(&c, n, layout, variant), &one);
                    assert!(e < 1e-5, "seq {seq} {kind:?} {variant} {layout:?}: rel err {e:.2e}");
                }
            }
        }
    }
}

#[test]
fn a_wrong_shard_would_be_caught() {
    // The same comparison against a different input (another seed) fails: the check can fail.
    let c = cfg(37, CpKind::Ring);
    let other = Gpt4Config { seed: 7, ..c.clone() };
    let e = rel_l2(
        &run(&other, 2, Layout { cp: 2, ep: 1 }, "optimized"),
        &run(&c, 1, Layout { cp: 1, ep: 1 }, "optimized"),
    );
    assert!(e > 0.1, "{e}");
}
