use super::close;
use rwm_dist::metrics::routing::*;

const LN2: f64 = std::f64::consts::LN_2;

/// E = 4, k = 2, t = 4; loads [4, 2, 1, 1]; router rows with entropies ln2, ln2, 2 ln2, 1.5 ln2.
fn skewed_batch() -> (Vec<i32>, Vec<f32>) {
    let ids = vec![0, 1, 0, 2, 0, 1, 3, 0];
    #[rustfmt::skip]
    let probs = vec![
        0.5, 0.5, 0.0, 0.0,
        0.5, 0.0, 0.5, 0.0,
        0.25, 0.25, 0.25, 0.25,
        0.25, 0.0, 0.25, 0.5,
    ];
    (ids, probs)
}

/// E = 4, k = 2, t = 4, every expert twice, uniform router.
fn uniform_batch() -> (Vec<i32>, Vec<f32>) {
    (vec![0, 1, 2, 3, 0, 1, 2, 3], vec![0.25; 16])
}

#[test]
fn gini_hand_worked() {
    close(gini(&[4.0, 0.0, 0.0, 0.0]), 0.75, 1e-12);
    close(gini(&[0.0, 0.0, 4.0, 0.0]), 0.75, 1e-12);
    close(gini(&[3.0; 5]), 0.0, 1e-12);
    // sorted [1,2,3,4]: 2*(1+4+9+16)/(4*10) - 5/4 = 0.25
    close(gini(&[4.0, 1.0, 3.0, 2.0]), 0.25, 1e-12);
    close(gini(&[0.0; 4]), 0.0, 0.0);
}

#[test]
fn max_mean_and_entropy_hand_worked() {
    close(max_mean(&[4.0, 0.0, 0.0, 0.0]), 4.0, 1e-12);
    close(max_mean(&[1.0, 2.0, 3.0, 4.0]), 1.6, 1e-12);
    close(normalized_entropy(&[0.25; 4]), 1.0, 1e-12);
    close(normalized_entropy(&[1.0, 0.0, 0.0, 0.0]), 0.0, 1e-12);
    // H = 1.75 ln2, ln 4 = 2 ln2
    close(normalized_entropy(&[0.5, 0.25, 0.125, 0.125]), 0.875, 1e-12);
}

#[test]
fn skewed_batch_hand_worked() {
    let (ids, probs) = skewed_batch();
    let b = batch_routing(&ids, &probs, 4, 2, 1.0).unwrap();
    assert_eq!(b.tokens, 4);
    assert_eq!(b.load, vec![4, 2, 1, 1]);
    assert_eq!(b.load_fraction, vec![0.5, 0.25, 0.125, 0.125]);
    for (p, want) in b.mean_prob.iter().zip([0.375, 0.1875, 0.25, 0.1875]) {
        close(*p, want, 1e-7);
    }
    // sorted [1,1,2,4]: 2*25/(4*8) - 5/4
    close(b.gini, 0.3125, 1e-12);
    close(b.max_mean, 2.0, 1e-12);
    close(b.load_entropy, 0.875, 1e-12);
    close(b.router_entropy, 1.375 * LN2, 1e-6);
    close(b.router_entropy_norm, 0.6875, 1e-6);
    // 4 * (0.5*0.375 + 0.25*0.1875 + 0.125*0.25 + 0.125*0.1875)
    close(b.aux_loss, 1.15625, 1e-6);
    // capacity ceil(8/4) = 2: expert 0 drops 2 of its 4
    assert_eq!((b.capacity, b.dropped), (2, 2));
    close(b.drop_fraction, 0.25, 1e-12);
}

#[test]
fn drops_follow_capacity_factor() {
    let (ids, probs) = skewed_batch();
    let at = |cf| {
        let b = batch_routing(&ids, &probs, 4, 2, cf).unwrap();
        (b.capacity, b.dropped)
    };
    assert_eq!(at(1.25), (3, 1)); // ceil(2.5)
    assert_eq!(at(2.0), (4, 0));
    assert_eq!(at(0.5), (1, 3 + 1)); // experts 0 and 1 over capacity 1
    assert_eq!(capacity(1.1, 100, 10), 11); // 11.000000000000002 in f64
    assert_eq!(capacity(1.0, 7, 2), 4);
    assert_eq!(dropped(&[5, 0, 3], 3), 2);
}

#[test]
fn uniform_router_scores_exactly_even() {
    let (ids, probs) = uniform_batch();
    let b = batch_routing(&ids, &probs, 4, 2, 1.0).unwrap();
    close(b.aux_loss, 1.0, 1e-12);
    close(b.gini, 0.0, 1e-12);
    close(b.max_mean, 1.0, 1e-12);
    close(b.load_entropy, 1.0, 1e-12);
    close(b.router_entropy_norm, 1.0, 1e-7);
    assert_eq!(b.dropped, 0);
}

#[test]
fn tallies_merge_like_one_batch() {
    let (ids, probs) = skewed_batch();
    let whole = RoutingTally::from_assignments(&ids, &probs, 4, 2).unwrap();
    let mut first = RoutingTally::from_assignments(&ids[..4], &probs[..8], 4, 2).unwrap();
    let second = RoutingTally::from_assignments(&ids[4..], &probs[8..], 4, 2).unwrap();
    assert_eq!(first.load, vec![2, 1, 1, 0]);
    first.merge(&second).unwrap();
    assert_eq!(first.load, whole.load);
    assert_eq!(first.tokens, 4);
    close(first.entropy_sum, whole.entropy_sum, 1e-9);
    let other = RoutingTally::new(8, 2).unwrap();
    assert!(matches!(first.merge(&other), Err(RoutingError::Mismatch { .. })));
}

#[test]
fn aggregate_over_batches() {
    let (ids, probs) = skewed_batch();
    let a = batch_routing(&ids, &probs, 4, 2, 1.0).unwrap();
    let (ids, probs) = uniform_batch();
    let b = batch_routing(&ids, &probs, 4, 2, 1.0).unwrap();
    let s = RoutingStats::from_batches(&[a, b]).unwrap();
    assert_eq!((s.batches, s.tokens), (2, 8));
    assert_eq!(s.load, vec![6, 4, 3, 3]);
    assert_eq!(s.load_fraction, vec![0.375, 0.25, 0.1875, 0.1875]);
    // gini 0.3125 and 0
    assert_eq!(s.gini, Spread { mean: 0.15625, min: 0.0, max: 0.3125, std: 0.15625 });
    // dropped 2 and 0
    assert_eq!(s.dropped, Spread { mean: 1.0, min: 0.0, max: 2.0, std: 1.0 });
    close(s.aux_loss.mean, (1.15625 + 1.0) / 2.0, 1e-6);
    // summed load sorted [3,3,4,6]: 2*45/(4*16) - 5/4
    close(s.overall.gini, 0.15625, 1e-12);
    close(s.overall.max_mean, 1.5, 1e-12);
    let json = serde_json::to_value(&s).unwrap();
    assert_eq!(json["load"], serde_json::json!([6, 4, 3, 3]));
    assert_eq!(json["gini"]["max"], serde_json::json!(0.3125));
}

#[test]
fn aggregate_rejects_mixed_batches() {
    let (ids, probs) = uniform_batch();
    let a = batch_routing(&ids, &probs, 4, 2, 1.0).unwrap();
    let b = batch_routing(&ids, &probs, 4, 2, 1.5).unwrap();
    assert!(matches!(RoutingStats::from_batches(&[a, b]), Err(RoutingError::Mismatch { .. })));
    assert_eq!(RoutingStats::from_batches(&[]), Err(RoutingError::NoBatches));
}

#[test]
fn sigmoid_scores_normalise_per_token() {
    let scores = [0.5, 0.25, 0.25, 1.0, 0.0, 0.0, 0.0, 0.0];
    assert_eq!(normalize_rows(&scores, 4), vec![0.25, 0.125, 0.125, 0.5, 0.0, 0.0, 0.0, 0.0]);
    // Unnormalised sigmoid scores are refused, with the fix in the message.
    let err = batch_routing(&[3], &scores[..4], 4, 1, 1.0).unwrap_err();
    assert_eq!(err, RoutingError::NotNormalized { token: 0, sum: 2.0 });
    assert!(err.to_string().contains("normalize_rows"));
    let ok = batch_routing(&[3], &normalize_rows(&scores[..4], 4), 4, 1, 1.0).unwrap();
    assert_eq!(ok.load, vec![0, 0, 0, 1]);
}

#[test]
fn bad_inputs_name_the_field() {
    let (ids, probs) = uniform_batch();
    assert_eq!(batch_routing(&ids, &probs, 4, 3, 1.0).unwrap_err(), RoutingError::IdsLen { len: 8, top_k: 3 });
    assert_eq!(
        batch_routing(&ids, &probs[..12], 4, 2, 1.0).unwrap_err(),
        RoutingError::ProbsLen { len: 12, tokens: 4, experts: 4 }
    );
    let mut bad = ids.clone();
    bad[5] = 4;
    assert_eq!(
        batch_routing(&bad, &probs, 4, 2, 1.0).unwrap_err(),
        RoutingError::IdOutOfRange { id: 4, slot: 5, experts: 4 }
    );
    let err = batch_routing(&ids, &probs, 4, 2, 0.0).unwrap_err();
    assert!(err.to_string().contains("capacity_factor"), "{err}");
    let err = RoutingTally::new(4, 5).unwrap_err();
    assert!(err.to_string().contains("top_k must be in 1..=4"), "{err}");
    assert_eq!(RoutingTally::new(4, 2).unwrap().batch_stats(1.0), Err(RoutingError::Empty));
}
