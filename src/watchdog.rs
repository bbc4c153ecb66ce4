//! Ends the job when one operation makes no progress for too long (a dead peer, a hung
//! collective, a rank stuck at setup), instead of letting every other rank wait forever.
//! It watches operations, not targets: a slow but healthy run is never killed.
//!
//! Operations register with `watch` (the run limit, `RWM_TIMEOUT_S`) or `watch_setup`
//! (the setup limit, `RWM_SETUP_TIMEOUT_S`) and deregister when the guard drops. A thread
//! checks each against its own limit; past it, it prints what was in flight and calls the
//! abort function set by `arm` (MPI_Abort under MPI, process exit otherwise).
//!
//! A collective registered with `watch_waiting` also says whom it waits for: each rank
//! counts the operations it entered on each communicator, and the overdue one asks its peers
//! (shared counters for thread ranks, a message over MPI for processes) which of them have
//! not reached the same operation. Asking is bounded (`ask_budget`) and a second timer
//! aborts regardless, so a hang still ends.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
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

/// The peers an overdue operation still waits for, as far as they could be asked.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Waiting {
    /// Ranks (of the world) that have not reached the operation.
    pub behind: Vec<usize>,
    /// Ranks that did not answer in time (a dead process, or one that stopped entirely).
    pub silent: Vec<usize>,
}

impl Waiting {
    /// From each peer's count of operations entered on the communicator (None: no answer):
    /// a peer that entered `seq` operations or fewer has not reached operation `seq`.
    pub fn from_counts(seq: u64, peers: &[(usize, Option<u64>)]) -> Waiting {
        let mut w = Waiting::default();
        for &(rank, entered) in peers {
            match entered {
                Some(n) if n > seq => {}
                Some(_) => w.behind.push(rank),
                None => w.silent.push(rank),
            }
        }
        w
    }

    fn describe(&self) -> String {
        let list = |v: &[usize]| v.iter().map(|r| r.to_string()).collect::<Vec<_>>().join(", ");
        let all: Vec<usize> = self.behind.iter().chain(&self.silent).copied().collect();
        match (all.is_empty(), self.silent.is_empty()) {
            (true, _) => "(every peer reached it: waiting inside the transfer)".into(),
            (false, true) => format!("(waiting for ranks {})", list(&all)),
            (false, false) => format!("(waiting for ranks {}; {} did not answer)", list(&all), list(&self.silent)),
        }
    }
}

/// Asks who an operation waits for, within the given time; runs on the watchdog thread.
pub type AskFn = Box<dyn Fn(Duration) -> Waiting + Send + Sync>;

struct Op {
    what: String,
    started: Instant,
    limit: Limit,
    /// The rank the operation runs on, when it is not this process's (thread ranks).
    rank: Option<usize>,
    waiting: Option<Arc<AskFn>>,
}

static IN_FLIGHT: Mutex<BTreeMap<u64, Op>> = Mutex::new(BTreeMap::new());
static NEXT: AtomicU64 = AtomicU64::new(0);
static RANK: AtomicUsize = AtomicUsize::new(0);
static ARMED: OnceLock<State> = OnceLock::new();
/// Called on the watchdog thread several times a second: answers peers' questions (MPI).
static SERVE: OnceLock<fn()> = OnceLock::new();

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
    register(Op { what: what.into(), started: Instant::now(), limit: Limit::Run, rank: None, waiting: None })
}

/// As `watch`, under the setup limit: for agreeing on backends and devices, NCCL init.
pub fn watch_setup(what: impl Into<String>) -> Guard {
    register(Op { what: what.into(), started: Instant::now(), limit: Limit::Setup, rank: None, waiting: None })
}

/// As `watch`, for a collective on `rank` that can tell whom it waits for (`ask`).
pub fn watch_waiting(what: impl Into<String>, rank: Option<usize>, ask: AskFn) -> Guard {
    let waiting = Some(Arc::new(ask));
    register(Op { what: what.into(), started: Instant::now(), limit: Limit::Run, rank, waiting })
}

/// Run `serve` on the watchdog thread several times a second (set once per process).
pub fn serve_with(serve: fn()) {
    let _ = SERVE.set(serve);
}

fn register(op: Op) -> Guard {
    let id = NEXT.fetch_add(1, Ordering::Relaxed);
    IN_FLIGHT.lock().unwrap_or_else(|e| e.into_inner()).insert(id, op);
    Guard(id)
}

/// The oldest operation in flight and how long it has been.
pub fn oldest() -> Option<(String, Duration)> {
    let m = IN_FLIGHT.lock().unwrap_or_else(|e| e.into_inner());
    m.values().min_by_key(|o| o.started).map(|o| (o.what.clone(), o.started.elapsed()))
}

/// An operation past its limit, as the watchdog reports it.
struct Overdue {
    what: String,
    age: Duration,
    var: &'static str,
    limit: Duration,
    rank: Option<usize>,
    waiting: Option<Arc<AskFn>>,
}

/// The first operation past its limit.
fn overdue(s: &State) -> Option<Overdue> {
    overdue_all(s).into_iter().next()
}

/// Every operation past its limit, oldest registration first.
fn overdue_all(s: &State) -> Vec<Overdue> {
    let m = IN_FLIGHT.lock().unwrap_or_else(|e| e.into_inner());
    m.values()
        .filter_map(|o| {
            let (var, max) = match o.limit {
                Limit::Run => ("RWM_TIMEOUT_S", s.timeout),
                Limit::Setup => ("RWM_SETUP_TIMEOUT_S", s.setup),
            };
            (o.started.elapsed() >= max).then(|| Overdue {
                what: o.what.clone(),
                age: o.started.elapsed(),
                var,
                limit: max,
                rank: o.rank,
                waiting: o.waiting.clone(),
            })
        })
        .collect()
}

/// Asks each operation in flight whose description contains `what` whom it waits for.
#[cfg(test)]
pub(crate) fn ask_in_flight(what: &str) -> Vec<Waiting> {
    let asks: Vec<Arc<AskFn>> = {
        let m = IN_FLIGHT.lock().unwrap_or_else(|e| e.into_inner());
        m.values().filter(|o| o.what.contains(what)).filter_map(|o| o.waiting.clone()).collect()
    };
    asks.iter().map(|a| a(Duration::ZERO)).collect()
}

/// How long an overdue operation may spend asking its peers: a tenth of its limit, 1 to 3 s
/// (peers answer within a fifth of a second).
pub fn ask_budget(limit: Duration) -> Duration {
    (limit / 10).clamp(Duration::from_secs(1), Duration::from_secs(3))
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
        let tick = (timeout.min(setup) / 10).clamp(Duration::from_millis(50), Duration::from_millis(200));
        std::thread::Builder::new()
            .name("rwm-watchdog".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(tick);
                    if let Some(serve) = SERVE.get() {
                        serve();
                    }
                    check();
                }
            })
            .expect("spawning the watchdog thread");
    }
}

/// Whether `arm` has started the watchdog in this process.
pub fn armed() -> bool {
    ARMED.get().is_some()
}

fn check() {
    let Some(s) = ARMED.get() else { return };
    let Some(o) = overdue(s) else { return };
    let rank = o.rank.unwrap_or_else(|| RANK.load(Ordering::Relaxed));
    let line = |waiting: &str| {
        format!(
            "rwm-dist: rank {rank}: no progress for {} s in {}{waiting} (limit {}={}); a peer has likely failed or \
             hung; aborting the job",
            o.age.as_secs(),
            o.what,
            o.var,
            o.limit.as_secs()
        )
    };
    let Some(ask) = o.waiting else {
        eprintln!("{}", line(""));
        (s.abort)(TIMEOUT_EXIT)
    };
    // Asking is bounded, but a peer's answer must never keep the job alive: abort regardless.
    let budget = ask_budget(o.limit);
    let (abort, plain) = (s.abort, line(" (peers not asked in time)"));
    let _ = std::thread::Builder::new().name("rwm-watchdog-last".into()).spawn(move || {
        std::thread::sleep(budget + Duration::from_secs(2));
        eprintln!("{plain}");
        abort(TIMEOUT_EXIT)
    });
    let waiting = ask(budget);
    eprintln!("{}", line(&format!(" {}", waiting.describe())));
    (s.abort)(TIMEOUT_EXIT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guards_register_and_leave() {
        let g = watch("unit-test op");
        let id = g.0;
        let name = |id| IN_FLIGHT.lock().unwrap().get(&id).map(|o| o.what.clone());
        assert_eq!(name(id).as_deref(), Some("unit-test op"));
        let setup = watch_setup("setup op");
        let limit = IN_FLIGHT.lock().unwrap().get(&setup.0).map(|o| o.limit);
        assert_eq!(limit, Some(Limit::Setup));
        drop(g);
        assert_eq!(name(id), None);
    }

    #[test]
    fn overdue_goes_by_each_operation_s_own_limit() {
        let s = State { timeout: Duration::from_secs(3600), setup: Duration::from_millis(1), abort: |_| panic!() };
        let _run = watch("a long healthy collective");
        assert!(overdue_all(&s).iter().all(|o| o.what != "a long healthy collective"));
        let _setup = watch_setup("nccl init of a test");
        std::thread::sleep(Duration::from_millis(5));
        let found: Vec<_> = overdue_all(&s).into_iter().map(|o| (o.what, o.var)).collect();
        assert!(found.iter().any(|(w, v)| w.contains("nccl init") && *v == "RWM_SETUP_TIMEOUT_S"), "{found:?}");
        assert!(found.iter().all(|(w, _)| w != "a long healthy collective"), "{found:?}");
        assert_eq!(setup_timeout_from_env(None), Ok(Duration::from_secs(120)));
        assert!(setup_timeout_from_env(Some("0")).is_err());
    }

    #[test]
    fn waiting_names_the_peers_behind_and_the_silent_ones() {
        // Operation 5 on a communicator: rank 1 entered 6 operations (reached it), rank 2 only 5.
        let w = Waiting::from_counts(5, &[(1, Some(6)), (2, Some(5)), (3, None)]);
        assert_eq!(w, Waiting { behind: vec![2], silent: vec![3] });
        assert_eq!(w.describe(), "(waiting for ranks 2, 3; 3 did not answer)");
        assert_eq!(Waiting::from_counts(0, &[(4, Some(0))]).describe(), "(waiting for ranks 4)");
        assert!(Waiting::from_counts(0, &[(4, Some(1))]).describe().contains("every peer reached it"));
        let ask: AskFn = Box::new(|_| Waiting { behind: vec![7], silent: vec![] });
        let s = State { timeout: Duration::from_millis(1), setup: Duration::from_secs(3600), abort: |_| panic!() };
        let _g = watch_waiting("all_to_all_v on a unit-test comm", Some(3), ask);
        std::thread::sleep(Duration::from_millis(5));
        let o = overdue_all(&s).into_iter().find(|o| o.what.contains("unit-test comm")).expect("overdue");
        assert_eq!((o.rank, (o.waiting.unwrap())(Duration::ZERO).behind), (Some(3), vec![7]));
        assert_eq!(ask_budget(Duration::from_secs(600)), Duration::from_secs(3));
        assert_eq!(ask_budget(Duration::from_secs(2)), Duration::from_secs(1));
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
