//! Health gates (`--gate 'moe.gini<=0.2'`): bounds on routing health, the memory estimate's
//! error and the speedup, checked on every record after it is measured. A record that breaks one
//! is FAILED, naming the gate. Parsed once in the plan, so a bad expression stops `--dry-run`.
//!
//! Grammar: `METRIC OP NUMBER[@VARIANT]`, OP one of `<=`, `<`, `>=`, `>`; `@VARIANT` limits the
//! gate to one variant's records. A gate applies to the records that carry its metric (routing
//! metrics exist for moe only; a baseline has no speedup). Metrics in docs/metrics.md "Gates".

use super::record::{Record, Status};
use serde::Serialize;

#[derive(Debug, PartialEq, thiserror::Error)]
pub enum GateError {
    #[error("--gate `{gate}`: expected METRIC OP NUMBER[@VARIANT] with OP one of <=, <, >=, > (e.g. moe.gini<=0.2)")]
    Syntax { gate: String },
    #[error("--gate `{gate}`: unknown metric `{metric}`; metrics: {allowed}")]
    Metric { gate: String, metric: String, allowed: String },
    #[error("--gate `{gate}`: bound `{bound}` is not a finite number")]
    Bound { gate: String, bound: String },
    #[error("--gate `{gate}`: unknown variant `{variant}`; variants: {allowed}")]
    Variant { gate: String, variant: String, allowed: String },
}

/// What a gate bounds. Routing metrics are layer-wide (`metrics.routing_layer` when the run
/// has several ranks, else `metrics.routing`), so every rank of a layer judges the same figure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Metric {
    /// Gini of the expert load summed over the judged batches (`overall.gini`).
    MoeGini,
    /// Mean over batches of each batch's Gini (`gini.mean`), which has a sampling floor.
    MoeGiniBatch,
    /// max/mean of the summed load (`overall.max_mean`).
    MoeMaxMean,
    /// Mean router entropy over batches, normalised by ln E (`router_entropy_norm.mean`).
    MoeRouterEntropy,
    /// Its standard deviation over batches, nats (`router_entropy.std`).
    MoeRouterEntropyStd,
    /// Mean auxiliary loss over batches (`aux_loss.mean`).
    MoeAuxLoss,
    /// Mean fraction of token-slots over capacity (`drop_fraction.mean`).
    MoeDropFraction,
    /// |est - peak| / peak of the memory estimate (`est_err`, which keeps the sign).
    MemEstErr,
    /// Baseline median over the variant's (`speedup`).
    Speedup,
}

const METRICS: [(&str, Metric); 9] = [
    ("moe.gini", Metric::MoeGini),
    ("moe.gini_batch", Metric::MoeGiniBatch),
    ("moe.max_mean", Metric::MoeMaxMean),
    ("moe.router_entropy", Metric::MoeRouterEntropy),
    ("moe.router_entropy_std", Metric::MoeRouterEntropyStd),
    ("moe.aux_loss", Metric::MoeAuxLoss),
    ("moe.drop_fraction", Metric::MoeDropFraction),
    ("mem.est_err", Metric::MemEstErr),
    ("speedup", Metric::Speedup),
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Le,
    Lt,
    Ge,
    Gt,
}

impl Op {
    fn holds(self, value: f64, bound: f64) -> bool {
        match self {
            Op::Le => value <= bound,
            Op::Lt => value < bound,
            Op::Ge => value >= bound,
            Op::Gt => value > bound,
        }
    }
}

/// One parsed gate; `text` is how the user wrote it (without spaces), used to name it.
#[derive(Clone, Debug, PartialEq)]
pub struct Gate {
    pub text: String,
    pub metric: Metric,
    pub op: Op,
    pub bound: f64,
    pub variant: Option<String>,
}

impl Serialize for Gate {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

pub use super::record::GateOutcome as Outcome;

impl Gate {
    /// Parses `s`; `variants` are the names `@VARIANT` may take.
    pub fn parse(s: &str, variants: &[&str]) -> Result<Gate, GateError> {
        let text: String = s.chars().filter(|c| !c.is_whitespace()).collect();
        let syntax = || GateError::Syntax { gate: s.into() };
        let (expr, variant) = match text.split_once('@') {
            Some((e, v)) if !v.is_empty() => (e, Some(v.to_string())),
            Some(_) => return Err(syntax()),
            None => (text.as_str(), None),
        };
        let at = expr.find(['<', '>']).ok_or_else(syntax)?;
        let (name, rest) = expr.split_at(at);
        let (op, bound) = if let Some(b) = rest.strip_prefix("<=") {
            (Op::Le, b)
        } else if let Some(b) = rest.strip_prefix(">=") {
            (Op::Ge, b)
        } else if let Some(b) = rest.strip_prefix('<') {
            (Op::Lt, b)
        } else {
            (Op::Gt, &rest[1..])
        };
        if name.is_empty() || bound.is_empty() {
            return Err(syntax());
        }
        let metric = METRICS.iter().find(|(n, _)| *n == name).map(|(_, m)| *m).ok_or_else(|| GateError::Metric {
            gate: s.into(),
            metric: name.into(),
            allowed: METRICS.map(|(n, _)| n).join(", "),
        })?;
        let bound = match bound.parse::<f64>() {
            Ok(b) if b.is_finite() => b,
            _ => return Err(GateError::Bound { gate: s.into(), bound: bound.into() }),
        };
        if let Some(v) = &variant
            && !variants.contains(&v.as_str())
        {
            return Err(GateError::Variant { gate: s.into(), variant: v.clone(), allowed: variants.join(", ") });
        }
        Ok(Gate { text, metric, op, bound, variant })
    }

    /// The same metric on the same records: a user's gate replaces a profile's default of that kind.
    pub fn same_scope(&self, other: &Gate) -> bool {
        self.metric == other.metric && self.variant == other.variant
    }

    /// The gate's metric on `r`, or None when the gate does not apply to it.
    pub fn value(&self, r: &Record) -> Option<f64> {
        if self.variant.as_deref().is_some_and(|v| v != r.variant) {
            return None;
        }
        let routing = || r.metrics.get("routing_layer").or_else(|| r.metrics.get("routing"));
        let at = |a: &str, b: &str| routing().and_then(|x| x.get(a)).and_then(|x| x.get(b)).and_then(|x| x.as_f64());
        match self.metric {
            Metric::MoeGini => at("overall", "gini"),
            Metric::MoeGiniBatch => at("gini", "mean"),
            Metric::MoeMaxMean => at("overall", "max_mean"),
            Metric::MoeRouterEntropy => at("router_entropy_norm", "mean"),
            Metric::MoeRouterEntropyStd => at("router_entropy", "std"),
            Metric::MoeAuxLoss => at("aux_loss", "mean"),
            Metric::MoeDropFraction => at("drop_fraction", "mean"),
            Metric::MemEstErr => r.est_err.map(f64::abs),
            Metric::Speedup => r.speedup,
        }
    }
}

/// The gates that apply: the profile's defaults, each replaced by a user's gate of the same
/// metric and variant, then the user's.
pub fn merge(defaults: Vec<Gate>, user: Vec<Gate>) -> Vec<Gate> {
    let mut out: Vec<Gate> = defaults.into_iter().filter(|d| !user.iter().any(|u| u.same_scope(d))).collect();
    out.extend(user);
    out
}

/// The run's gates: the profile's `defaults` merged with the user's `--gate`s; `@VARIANT` may name
/// any of `variants` (those of every target: a gate on a target not run applies to nothing).
pub fn resolve(defaults: &[&str], user: &[String], variants: &[&str]) -> Result<Vec<Gate>, GateError> {
    let defaults = defaults.iter().map(|s| Gate::parse(s, variants)).collect::<Result<Vec<_>, _>>()?;
    let user = user.iter().map(|s| Gate::parse(s, variants)).collect::<Result<Vec<_>, _>>()?;
    Ok(merge(defaults, user))
}

/// Judges `r` by every gate that applies and writes the outcomes to `r.gates`. A record that
/// ran to the end (not an error) and breaks a gate becomes FAILED, with the gate named in its
/// error; its speedup stays (the timing is real).
pub fn apply(gates: &[Gate], r: &mut Record) {
    for g in gates {
        let Some(value) = g.value(r) else { continue };
        let pass = g.op.holds(value, g.bound);
        r.gates.push(Outcome { gate: g.text.clone(), value, pass });
    }
    let failed: Vec<String> =
        r.gates.iter().filter(|o| !o.pass).map(|o| format!("gate {} failed: {}", o.gate, fmt(o.value))).collect();
    if failed.is_empty() || r.status == Status::Error {
        return;
    }
    r.status = Status::Failed;
    let msg = failed.join("; ");
    r.error = Some(match r.error.take() {
        Some(e) => format!("{e}; {msg}"),
        None => msg,
    });
}

/// The gates a record failed, for the table: `moe.gini<=0.2, speedup>=1`.
pub fn failed_names(r: &Record) -> Option<String> {
    let names: Vec<&str> = r.gates.iter().filter(|o| !o.pass).map(|o| o.gate.as_str()).collect();
    (!names.is_empty()).then(|| names.join(", "))
}

fn fmt(v: f64) -> String {
    if v != 0.0 && (v.abs() < 1e-3 || v.abs() >= 1e4) { format!("{v:.3e}") } else { format!("{v:.4}") }
}

#[cfg(test)]
mod tests {
    use super::*;

    const V: [&str; 3] = [crate::harness::variant::BASELINE, "optimized", "balanced"];

    #[test]
    fn parses_every_operator_and_the_variant() {
        let g = Gate::parse(" moe.gini <= 0.2 ", &V).unwrap();
        assert_eq!(
            (g.metric, g.op, g.bound, g.variant.as_deref(), g.text.as_str()),
            (Metric::MoeGini, Op::Le, 0.2, None, "moe.gini<=0.2")
        );
        assert_eq!(Gate::parse("speedup>=1", &V).unwrap().op, Op::Ge);
        assert_eq!(Gate::parse("speedup>1", &V).unwrap().op, Op::Gt);
        let g = Gate::parse("mem.est_err<0.05@balanced", &V).unwrap();
        assert_eq!((g.op, g.variant.as_deref()), (Op::Lt, Some("balanced")));
    }

    #[test]
    fn bad_gates_are_refused_naming_the_gate() {
        let e = |s: &str| Gate::parse(s, &V).unwrap_err().to_string();
        assert!(e("moe.gini=0.2").contains("`moe.gini=0.2`: expected METRIC OP NUMBER"));
        assert!(e("<=0.2").contains("expected METRIC"));
        assert!(e("moe.gini<=").contains("expected METRIC"));
        assert!(e("moe.gini<=0.2@").contains("expected METRIC"));
        let m = e("moe.ginny<=0.2");
        assert!(m.contains("unknown metric `moe.ginny`") && m.contains("moe.router_entropy_std"), "{m}");
        assert!(e("moe.gini<=nan").contains("bound `nan` is not a finite number"));
        assert!(e("moe.gini<=x").contains("bound `x`"));
        let v = e("moe.gini<=0.2@turbo");
        assert!(v.contains("unknown variant `turbo`") && v.contains("balanced"), "{v}");
    }

    #[test]
    fn a_users_gate_replaces_the_default_of_its_scope() {
        let p = |s: &str| Gate::parse(s, &V).unwrap();
        let merged = merge(vec![p("moe.gini<0.2@balanced"), p("speedup>=0")], vec![p("moe.gini<=0.5@balanced")]);
        let names: Vec<&str> = merged.iter().map(|g| g.text.as_str()).collect();
        assert_eq!(names, ["speedup>=0", "moe.gini<=0.5@balanced"]);
    }
}
