//! Ends the job when one operation makes no progress for too long (a dead peer, a hung
//! collective, a rank stuck at setup), instead of letting every other rank wait forever.
//! It watches operations, not targets: a slow but healthy run is never killed.
//!
//! Operations register with `watch` (the run limit, `RWM_TIMEOUT_S`) or `watch_setup`
//! (the setup limit, `RWM_SETUP_TIMEOUT_S`) and deregister when the guard drops. A thread
//! checks each against its own limit; past it, it prints what was in flight and calls the
//! abort function set by `arm` (MPI_Abort under MPI, process exit otherwise).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Exit status of a job ended by the watchdog (as `timeout(1)`).
pub const TIMEOUT_EXIT: i32 = 124;
pub const DEFAULT_TIMEOUT_S: u64 = 600;
/// Setup (backend, devices, NCCL init) of a job that works takes seconds.
pub const DEFAULT_SETUP_TIMEOUT_S: u64 = 120;

type AbortFn = fn(i32) -> !;

struct State {
    timeout: Duration,
    setup: Duration,
    abort: AbortFn,
}

/// Which limit an operation runs under.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Limit {
    Run,
    Setup,
}

static IN_FLIGHT: Mutex<BTreeMap<u64, (String, Instant, Limit)>> = Mutex::new(BTreeMap::new());
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
    register(what.into(), Limit::Run)
}

/// As `watch`, under the setup limit: for agreeing on backends and devices, NCCL init.
pub fn watch_setup(what: impl Into<String>) -> Guard {
    register(what.into(), Limit::Setup)
}

fn register(what: String, limit: Limit) -> Guard {
    let id = NEXT.fetch_add(1, Ordering::Relaxed);
    IN_FLIGHT.lock().unwrap_or_else(|e| e.into_inner()).insert(id, (what, Instant::now(), limit));
    Guard(id)
}

/// The oldest operation in flight and how long it has been.
pub fn oldest() -> Option<(String, Duration)> {
    let m = IN_FLIGHT.lock().unwrap_or_else(|e| e.into_inner());
    m.values().min_by_key(|(_, t, _)| *t).map(|(w, t, _)| (w.clone(), t.elapsed()))
}

/// The first operation past its limit: (what, how long, the limit's variable and seconds).
fn overdue(s: &State) -> Option<(String, Duration, &'static str, u64)> {
    let m = IN_FLIGHT.lock().unwrap_or_else(|e| e.into_inner());
    m.values().find_map(|(w, t, limit)| {
        let (var, max) = match limit {
            Limit::Run => ("RWM_TIMEOUT_S", s.timeout),
            Limit::Setup => ("RWM_SETUP_TIMEOUT_S", s.setup),
        };
        (t.elapsed() >= max).then(|| (w.clone(), t.elapsed(), var, max.as_secs()))
    })
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

/// `RWM_SETUP_TIMEOUT_S` as a limit: unset means the default; 0 is refused (setup must end).
pub fn setup_timeout_from_env(value: Option<&str>) -> Result<Duration, String> {
    let Some(v) = value else { return Ok(Duration::from_secs(DEFAULT_SETUP_TIMEOUT_S)) };
    match v.trim().parse::<u64>() {
        Ok(s) if s > 0 => Ok(Duration::from_secs(s)),
        _ => Err(format!("RWM_SETUP_TIMEOUT_S={v}: expected a whole number of seconds above 0")),
    }
}

/// Start the watchdog once per process; later calls only update the rank in messages.
pub fn arm(timeout: Duration, setup: Duration, rank: usize, abort: AbortFn) {
    RANK.store(rank, Ordering::Relaxed);
    let mut started = false;
    ARMED.get_or_init(|| {
        started = true;
        State { timeout, setup, abort }
    });
    if started {
        let tick = (timeout.min(setup) / 10).clamp(Duration::from_millis(50), Duration::from_secs(1));
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
    if let Some((what, age, var, limit)) = overdue(s) {
        eprintln!(
            "rwm-dist: rank {}: no progress for {} s in {what} (limit {var}={limit}); a peer has likely failed \
             or hung; aborting the job",
            RANK.load(Ordering::Relaxed),
            age.as_secs()
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
        let name = |id| IN_FLIGHT.lock().unwrap().get(&id).map(|(w, _, _)| w.clone());
        assert_eq!(name(id).as_deref(), Some("unit-test op"));
        let setup = watch_setup("setup op");
        let limit = IN_FLIGHT.lock().unwrap().get(&setup.0).map(|(_, _, l)| *l);
        assert_eq!(limit, Some(Limit::Setup));
        drop(g);
        assert_eq!(name(id), None);
    }

    #[test]
    fn overdue_goes_by_each_operation_s_own_limit() {
        let s = State { timeout: Duration::from_secs(3600), setup: Duration::from_millis(1), abort: |_| panic!() };
        let _run = watch("a long healthy collective");
        assert!(overdue(&s).is_none_or(|(w, ..)| w != "a long healthy collective"));
        let _setup = watch_setup("nccl init of a test");
        std::thread::sleep(Duration::from_millis(5));
        let found = overdue(&s).map(|(w, _, var, _)| (w, var));
        assert!(matches!(&found, Some((w, "RWM_SETUP_TIMEOUT_S")) if w.contains("nccl init")), "{found:?}");
        assert_eq!(setup_timeout_from_env(None), Ok(Duration::from_secs(120)));
        assert!(setup_timeout_from_env(Some("0")).is_err());
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
