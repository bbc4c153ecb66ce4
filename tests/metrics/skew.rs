use super::close;
use rwm_dist::models::skew::*;

fn softmax(x: &[f32]) -> Vec<f64> {
    let e: Vec<f64> = x.iter().map(|&v| (v as f64).exp()).collect();
    let s: f64 = e.iter().sum();
    e.iter().map(|v| v / s).collect()
}

#[test]
fn zipf_probabilities_hand_worked() {
    let skew: Skew = "zipf:1.2".parse().unwrap();
    assert_eq!(skew, Skew::Zipf { s: 1.2 });
    // weights 1, 2^-1.2, 3^-1.2, 4^-1.2 over their sum 1.892...
    let want = [0.528451743, 0.230021981, 0.141403393, 0.100122883];
    let p = skew.probabilities(4).unwrap();
    for (a, b) in p.iter().zip(want) {
        close(*a, b, 1e-8);
    }
    // A softmax router with zero logits plus the bias picks experts with exactly p.
    let bias = skew.logit_bias(4).unwrap();
    close(bias.iter().map(|&b| b as f64).sum(), 0.0, 1e-6);
    close((bias[0] - bias[3]) as f64, 1.2 * 4f64.ln(), 1e-6);
    for (a, b) in softmax(&bias).iter().zip(want) {
        close(*a, b, 1e-6);
    }
}

#[test]
fn none_gives_zero_bias() {
    let skew: Skew = "none".parse().unwrap();
    assert_eq!(skew.logit_bias(7).unwrap(), vec![0.0; 7]);
    assert_eq!(skew.probabilities(4).unwrap(), vec![0.25; 4]);
}

#[test]
fn hot_experts_take_their_share() {
    let skew: Skew = "hot:2:0.5".parse().unwrap();
    let p = skew.probabilities(8).unwrap();
    close(p[0], 0.25, 1e-15);
    close(p[1], 0.25, 1e-15);
    for &c in &p[2..] {
        close(c, 0.5 / 6.0, 1e-15);
    }
    let bias = skew.logit_bias(8).unwrap();
    close((bias[0] - bias[7]) as f64, 3f64.ln(), 1e-6); // 0.25 / (1/12)
    let err = skew.probabilities(2).unwrap_err();
    assert_eq!(err, SkewError::HotCount { spec: "hot:2:0.5".into(), n: 2, experts: 2 });
}

#[test]
fn bad_specs_name_the_flag_and_forms() {
    for bad in [
        "",
        "uniform",
        "zipf",
        "zipf:x",
        "zipf:-1",
        "zipf:inf",
        "hot:2",
        "hot:0:0.5",
        "hot:2:1",
        "hot:2:0",
        "hot:a:0.5",
    ] {
        let err = bad.parse::<Skew>().unwrap_err().to_string();
        assert!(err.starts_with("--skew"), "{bad}: {err}");
        assert!(err.contains("zipf:S") && err.contains("hot:N:P") && err.contains("none"), "{bad}: {err}");
    }
}

#[test]
fn display_round_trips() {
    for spec in ["none", "zipf:1.2", "hot:3:0.6"] {
        let skew: Skew = spec.parse().unwrap();
        assert_eq!(skew.to_string(), spec);
        assert_eq!(serde_json::to_string(&skew).unwrap(), format!("\"{spec}\""));
    }
}
