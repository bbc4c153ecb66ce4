//! The moe target end to end on the CPU: routing health on default and skewed
//! inputs, bias balancing, and expert parallelism equal to one device.

mod common;

use common::{errors, on_ranks};
use rwm_dist::harness::Workload;
use rwm_dist::layout::ParallelDims;
use rwm_dist::models::moe::{MoeConfig, MoeLayer};
use rwm_dist::models::weights::Source;
use rwm_dist::targets::moe::MoeTarget;
use rwm_dist::tensor::DType;

fn small() -> MoeConfig {
    MoeConfig {
        hidden: 64,
        expert_ffn: 32,
        num_experts: 16,
        top_k: 4,
        tokens: 256,
        batches: 4,
        ..MoeConfig::deepseek_v2_lite()
    }
}

fn routing(m: &serde_json::Map<String, serde_json::Value>) -> &serde_json::Value {
    &m["routing"]
}

#[test]
fn default_inputs_route_evenly_and_stably() {
    let cfg = MoeConfig { tokens: 1024, ..small() };
    let m = on_ranks(ParallelDims::single(), |ctx| {
        let mut t = MoeTarget::new(cfg.clone());
        t.setup(ctx).unwrap();
        let v = common::variant(&t, ctx, "optimized");
        t.prepare(ctx, &v).unwrap();
        t.step(ctx, &v).unwrap();
        t.metrics(ctx, &v).unwrap()
    })
    .remove(0);
    let r = routing(&m);
    assert!(r["overall"]["gini"].as_f64().unwrap() < 0.2, "{r}");
    assert!(r["router_entropy_norm"]["std"].as_f64().unwrap() < 0.01, "{r}");
    let load: u64 = r["load"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap()).sum();
    assert_eq!(load, 4 * 1024 * 4, "every token-slot of every batch counted");
}

#[test]
fn skew_shows_and_bias_balancing_reduces_it() {
    let cfg = MoeConfig { skew: "zipf:1.2".into(), ..small() };
    let m = on_ranks(ParallelDims::single(), |ctx| {
        let mut t = MoeTarget::new(cfg.clone());
        t.setup(ctx).unwrap();
        let v = common::variant(&t, ctx, "balanced");
        t.prepare(ctx, &v).unwrap();
        t.step(ctx, &v).unwrap();
        t.metrics(ctx, &v).unwrap()
    })
    .remove(0);
    let before = m["balance"]["gini_before"].as_f64().unwrap();
    let after = routing(&m)["overall"]["gini"].as_f64().unwrap();
    assert!(before > 0.5, "zipf:1.2 should be visibly skewed: {before}");
    assert!(after < before / 2.0, "balancing: {before} -> {after}");
}

#[test]
fn expert_parallel_equals_one_device() {
    for (n, redundant) in [(2, 0), (4, 0), (4, 4)] {
        let cfg = MoeConfig { skew: "zipf:1.0".into(), redundant_experts: redundant, ..small() };
        let outs = on_ranks(ParallelDims::folded(1, 1, n, n), |ctx| {
            let mut t = MoeTarget::new(cfg.clone());
            t.setup(ctx).unwrap();
            let b = ctx.backend.as_ref();
            let got: Vec<Vec<f32>> = ["baseline", "optimized", "balanced"]
                .iter()
                .map(|name| {
                    let v = common::variant(&t, ctx, name);
                    t.prepare(ctx, &v).unwrap();
                    b.download(&t.step(ctx, &v).unwrap()).unwrap()
                })
                .collect();
            // The same layer on one device, all experts, this rank's tokens and routing.
            let all = MoeLayer::new(
                b,
                &cfg,
                &Source::Random { seed: cfg.seed },
                "moe",
                &MoeLayer::all_experts(&cfg),
                DType::Bf16,
            )
            .unwrap();
            let x = t.input(0);
            let skew = cfg.skew.parse::<rwm_dist::models::skew::Skew>().unwrap().logit_bias(cfg.num_experts).unwrap();
            let skew = b.upload(&skew, &[skew.len()], DType::F32).unwrap();
            let want: Vec<Vec<f32>> = [None, t.learned_bias()]
                .into_iter()
                .map(|bias| {
                    let r = all.route(b, x, Some(&skew), bias).unwrap();
                    b.download(&all.forward(b, x, &r, None, DType::Bf16).unwrap()).unwrap()
                })
                .collect();
            (got, want)
        });
        for (rank, (got, want)) in outs.iter().enumerate() {
            // baseline and optimized against plain routing; balanced (EPLB placement,
            // replicas when `redundant` > 0) against the same learned bias on one device.
            for (v, g, w) in
                [("baseline", &got[0], &want[0]), ("optimized", &got[1], &want[0]), ("balanced", &got[2], &want[1])]
            {
                let (max, _) = errors(g, w);
                assert!(max < 1e-2, "ep {n} (+{redundant} replicas) rank {rank} {v}: max err {max:.2e}");
            }
            let moved = errors(&got[2], &want[0]).0;
            assert!(
                moved > 1e-2,
                "ep {n} rank {rank}: the learned bias changed no routing ({moved:.1e}): the check is vacuous"
            );
        }
    }
}

/// `moe.shared_fp8`: with FP8 experts the grouped layer runs its shared experts in block-scaled
/// FP8 (off the bf16 result by an FP8-sized error), the per-expert loop (the reference) keeps
/// them in bf16, and without the flag they stay bf16.
#[test]
fn shared_experts_run_fp8_only_when_asked_and_grouped() {
    let b = rwm_dist::backend::cpu::CpuBackend::new();
    let cfg = small();
    let src = Source::Random { seed: cfg.seed };
    let layer = |shared_fp8: bool| {
        let c = MoeConfig { shared_fp8, ..cfg.clone() };
        let mut l = MoeLayer::new(&b, &c, &src, "moe", &MoeLayer::all_experts(&c), DType::Bf16).unwrap();
        l.use_fp8(&b, true, false, &src).unwrap();
        l
    };
    let (t, h) = (cfg.tokens, cfg.hidden);
    let xs: Vec<f32> = (0..t * h).map(|i| ((i * 7919 % 1000) as f32 / 500.0 - 1.0) * 2.0).collect();
    let x = rwm_dist::backend::Backend::upload(&b, &xs, &[t, h], DType::Bf16).unwrap();
    let shared = |l: &MoeLayer, grouped: bool| {
        let y = l.shared_experts(&b, &x, grouped).unwrap().expect("the preset has shared experts");
        rwm_dist::backend::Backend::download(&b, &y).unwrap()
    };
    let (plain, fp8) = (layer(false), layer(true));
    let bf16 = shared(&plain, true);
    assert_eq!(shared(&fp8, false), bf16, "the loop's shared experts are bf16");
    let full = shared(&fp8, true);
    let (_, rel) = errors(&full, &bf16);
    assert!(rel > 1e-3 && rel < 0.08, "shared experts in FP8: relative L2 error {rel:.2e} against bf16");
    // The one-expert offsets are kept per token count: the same step again, then half the tokens (each row's
    // result depends on its row only).
    assert_eq!(shared(&fp8, true), full);
    let half = rwm_dist::backend::Backend::rows(&b, &x, 0, t / 2).unwrap();
    let y = fp8.shared_experts(&b, &half, true).unwrap().unwrap();
    assert_eq!(rwm_dist::backend::Backend::download(&b, &y).unwrap(), full[..t / 2 * h]);
}
