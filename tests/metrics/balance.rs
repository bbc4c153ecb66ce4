use super::close;
use rwm_dist::backend::{Gate, RouterParams};
use rwm_dist::metrics::routing::gini;
use rwm_dist::models::balance::*;
use rwm_dist::models::skew::Skew;
use rwm_dist::ops::routing::route;
use rwm_dist::parallel::eplb::*;

#[test]
fn bias_moves_against_the_load() {
    let mut b = BiasBalancer::new(4, 0.5).unwrap();
    // mean 2: expert 0 over, 1 even, 2 and 3 under
    b.update(&[6, 2, 0, 0]).unwrap();
    assert_eq!(b.bias(), &[-0.5, 0.0, 0.5, 0.5]);
    b.update(&[0, 4, 2, 2]).unwrap();
    assert_eq!(b.bias(), &[0.0, -0.5, 0.5, 0.5]);
    assert_eq!(b.update(&[1, 2]), Err(BalanceError::LoadLen { got: 2, expected: 4 }));
    assert_eq!(BiasBalancer::new(4, 0.0), Err(BalanceError::Gamma(0.0)));
    assert_eq!(BiasBalancer::new(4, DEFAULT_GAMMA).unwrap().gamma(), 1e-3);
}

/// Fixed skewed router logits; the balancer's bias is fed back into the real top-k selection.
#[test]
fn bias_balancing_evens_a_skewed_router() {
    let (t, e, k) = (512, 8, 2);
    let skew = Skew::Zipf { s: 1.2 }.logit_bias(e).unwrap();
    let logits: Vec<f32> = (0..t * e).map(|i| rwm_dist::rng::uniform(11, i as u64) + skew[i % e]).collect();
    let params =
        RouterParams { gate: Gate::Softmax, top_k: k, n_group: 1, topk_group: 1, norm_topk: true, scaling: 1.0 };
    let mut balancer = BiasBalancer::new(e, DEFAULT_GAMMA).unwrap();
    let mut ginis = Vec::new();
    for _ in 0..400 {
        let routed = route(&logits, e, &params, Some(balancer.bias()));
        let mut load = vec![0u64; e];
        routed.ids.iter().for_each(|&i| load[i as usize] += 1);
        ginis.push(gini(&load.iter().map(|&c| c as f64).collect::<Vec<_>>()));
        balancer.update(&load).unwrap();
    }
    let last: f64 = ginis[ginis.len() - 20..].iter().sum::<f64>() / 20.0;
    assert!(ginis[0] > 0.3, "zipf:1.2 should start skewed, gini {}", ginis[0]);
    assert!(last < 0.05, "gini {} -> {last}", ginis[0]);
    // Hot experts end with negative bias, cold ones with positive.
    assert!(balancer.bias()[0] < 0.0 && balancer.bias()[e - 1] > 0.0, "{:?}", balancer.bias());
}

#[test]
fn hot_expert_is_replicated_and_ranks_even_out() {
    let loads = [70.0, 10.0, 10.0, 10.0];
    let p = plan_placement(&loads, 2, 2).unwrap();
    // Replicas: expert 0 (70 -> 35 each), then expert 0 is capped at ep = 2 so expert 1 (tie, lower
    // index) gets the second. Packing 35,35,10,10,5,5 by least-loaded rank: [0,2,1] and [0,3,1].
    assert_eq!(p.placement.slots_per_rank, 3);
    assert_eq!(p.placement.replicas, vec![vec![(0, 0), (1, 0)], vec![(0, 1), (1, 1)], vec![(0, 2)], vec![(1, 2)]]);
    assert_eq!(p.rank_load, vec![50.0, 50.0]);
    assert_eq!(p.rank_slots(), vec![vec![0, 1, 2], vec![0, 1, 3]]);
    let r = p.report(&loads).unwrap();
    // contiguous: ranks carry 80 and 20
    close(r.before.max_mean, 1.6, 1e-12);
    close(r.before.gini, 0.3, 1e-12);
    assert_eq!(r.after, RankBalance { gini: 0.0, max_mean: 1.0 });
}

#[test]
fn packing_alone_rebalances_without_redundancy() {
    let loads = [8.0, 7.0, 1.0, 0.0];
    assert_eq!(contiguous_rank_load(&loads, 2).unwrap(), vec![15.0, 1.0]);
    let p = plan_placement(&loads, 2, 0).unwrap();
    // 8 -> r0, 7 -> r1, 1 -> r1 (7 < 8), 0 -> r0 (tie at 8, lower rank)
    assert_eq!(p.rank_slots(), vec![vec![0, 3], vec![1, 2]]);
    assert_eq!(p.rank_load, vec![8.0, 8.0]);
    let r = p.report(&loads).unwrap();
    close(r.before.max_mean, 1.875, 1e-12);
    close(r.after.max_mean, 1.0, 1e-12);
}

#[test]
fn placement_rejects_bad_layouts() {
    assert_eq!(plan_placement(&[1.0; 6], 4, 2), Err(EplbError::Indivisible { experts: 6, ep: 4 }));
    let err = plan_placement(&[1.0; 4], 2, 1).unwrap_err();
    assert_eq!(err, EplbError::Redundant { redundant: 1, experts: 4, ep: 2, max: 4 });
    assert!(err.to_string().contains("multiple of ep = 2"), "{err}");
    assert!(plan_placement(&[1.0; 4], 2, 6).is_err()); // 6 > 4 * (2 - 1)
    assert_eq!(plan_placement(&[1.0; 4], 0, 0), Err(EplbError::NoRanks));
    assert_eq!(plan_placement(&[1.0, -2.0], 1, 0), Err(EplbError::BadLoad { index: 1, value: -2.0 }));
}

#[test]
fn every_slot_is_filled_once() {
    let loads: Vec<f64> = (0..16).map(|i| 100.0 / (i + 1) as f64).collect();
    let p = plan_placement(&loads, 4, 8).unwrap();
    assert_eq!(p.placement.slots_per_rank, 6);
    let table = p.rank_slots();
    assert!(table.iter().flatten().all(|&x| x < 16), "{table:?}");
    assert_eq!(p.placement.replicas.iter().map(Vec::len).sum::<usize>(), 24);
    close(p.rank_load.iter().sum(), loads.iter().sum(), 1e-9);
    let r = p.report(&loads).unwrap();
    assert!(r.after.max_mean < r.before.max_mean, "{r:?}");
}
