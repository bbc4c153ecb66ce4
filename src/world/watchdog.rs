//! Ends the job when an operation stays in flight too long (a dead peer, a hung
//! collective), instead of letting every other rank wait forever.
//!
//! Operations register with `watch` and deregister when the guard drops. A thread checks
//! the oldest one; past the timeout it prints what was in flight and calls the abort
//! function set by `arm` (MPI_Abort under MPI, process exit otherwise).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Exit status of a job ended by the watchdog (as `timeout(1)`).
pub const TIMEOUT_EXIT: i32 = 124;
pub const DEFAULT_TIMEOUT_S: u64 = 600;

type AbortFn = fn(i32) -> !;

struct State {
    timeout: Duration,
    abort: AbortFn,
}

static IN_FLIGHT: Mutex<BTreeMap<u64, (String, Instant)>> = Mutex::new(BTreeMap::new());
static NEXT: AtomicU64 = AtomicU64::new(0);
static RANK: AtomicUsize = AtomicUsize::new(0);
static ARMED: OnceLock<State> = OnceLock::new();

/// An operation in flight; dropping it marks the operation done.
#[must_use = "the operation counts as in flight only while the guard lives"]
pub struct Guard(u64);

impl Drop for Guard {
    fn drop(&mut self) {
        IN_FLIGHT.lock().unwrap_or_else(|e| e.into_inner()).remove(&self.0);
    }
}

/// Register `what` (e.g. "all_to_all_v on comm ep") as in flight until the guard drops.
pub fn watch(what: impl Into<String>) -> Guard {
    let id = NEXT.fetch_add(1, Ordering::Relaxed);
    IN_FLIGHT.lock().unwrap_or_else(|e| e.into_inner()).insert(id, (what.into(), Instant::now()));
    Guard(id)
}

/// The oldest operation in flight and how long it has been.
pub fn oldest() -> Option<(String, Duration)> {
    let m = IN_FLIGHT.lock().unwrap_or_else(|e| e.into_inner());
    m.values().min_by_key(|(_, t)| *t).map(|(w, t)| (w.clone(), t.elapsed()))
}

/// `RWM_TIMEOUT_S` as a timeout: unset means the default, 0 disables the watchdog.
pub fn timeout_from_env(value: Option<&str>) -> Result<Option<Duration>, String> {
    let Some(v) = value else { return Ok(Some(Duration::from_secs(DEFAULT_TIMEOUT_S))) };
    match v.trim().parse::<u64>() {
        Ok(0) => Ok(None),
        Ok(s) => Ok(Some(Duration::from_secs(s))),
        Err(_) => Err(format!("RWM_TIMEOUT_S={v}: expected a whole number of seconds (0 disables the watchdog)")),
    }
}

/// Start the watchdog once per process; later calls only update the rank in messages.
pub fn arm(timeout: Duration, rank: usize, abort: AbortFn) {
    RANK.store(rank, Ordering::Relaxed);
    let mut started = false;
    ARMED.get_or_init(|| {
        started = true;
        State { timeout, abort }
    });
    if started {
        let tick = (timeout / 10).clamp(Duration::from_millis(50), Duration::from_secs(1));
        std::thread::Builder::new()
            .name("rwm-watchdog".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(tick);
                    check();
                }
            })
            .expect("spawning the watchdog thread");
    }
}

fn check() {
    let Some(s) = ARMED.get() else { return };
    if let Some((what, age)) = oldest()
        && age >= s.timeout
    {
        eprintln!(
            "rwm-dist: rank {}: {what} still in flight after {} s (limit RWM_TIMEOUT_S={}); a peer has likely \
             failed or hung; aborting the job",
            RANK.load(Ordering::Relaxed),
            age.as_secs(),
            s.timeout.as_secs()
        );
        (s.abort)(TIMEOUT_EXIT);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guards_register_and_leave() {
        let g = watch("unit-test op");
        let id = g.0;
        let name = |id| IN_FLIGHT.lock().unwrap().get(&id).map(|(w, _)| w.clone());
        assert_eq!(name(id).as_deref(), Some("unit-test op"));
        drop(g);
        assert_eq!(name(id), None);
    }

    #[test]
    fn timeout_parsing() {
        assert_eq!(timeout_from_env(None), Ok(Some(Duration::from_secs(600))));
        assert_eq!(timeout_from_env(Some("0")), Ok(None));
        assert_eq!(timeout_from_env(Some(" 30 ")), Ok(Some(Duration::from_secs(30))));
        assert_eq!(
            timeout_from_env(Some("ten")),
            Err("RWM_TIMEOUT_S=ten: expected a whole number of seconds (0 disables the watchdog)".into())
        );
    }
}
