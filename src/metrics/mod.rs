//! MoE routing health. Pure functions over host data, so the harness can feed them any backend's
//! results; docs/metrics.md gives every formula.

pub mod routing;

/// `ceil(x)` for a count computed in floating point: a value within 1e-9 (relative) of an integer
/// is that integer, so `1.1 * 100 / 10 = 11.000000000000002` gives 11 rather than 12.
pub(crate) fn ceil_count(x: f64) -> u64 {
    let r = x.round();
    if (x - r).abs() <= 1e-9 * r.abs().max(1.0) { r as u64 } else { x.ceil() as u64 }
}
