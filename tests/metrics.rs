//! Routing metrics, skew, balancing and the memory estimate against hand-worked values.

#[path = "metrics/balance.rs"]
mod balance;
#[path = "metrics/budget.rs"]
mod budget;
#[path = "metrics/routing.rs"]
mod routing;
#[path = "metrics/skew.rs"]
mod skew;

/// |a - b| <= tol, with both values in the message.
#[track_caller]
fn close(a: f64, b: f64, tol: f64) {
    assert!((a - b).abs() <= tol, "{a} vs expected {b} (tol {tol})");
}
