//! Faults injected on purpose, for the tests that show a job ending cleanly when a rank
//! goes wrong: `RWM_FAULT=KIND@RANK` (test-only; nothing happens when it is unset).
//!
//! - `setup@R`: rank R fails during setup (as a missing GPU or library would);
//! - `hang-setup@R`: rank R stops during setup and never answers;
//! - `fail:TARGET@R`: rank R's first step of TARGET returns an error;
//! - `hang:TARGET@R`: rank R stops responding at its first step of TARGET;
//! - `die:TARGET@R`: rank R's process dies at its first step of TARGET (as kill -9 would);
//! - `nomem@R`: rank R's memory check sees a host of 1 MiB, so the plan does not fit there.

use std::time::Duration;

#[derive(Clone, Debug, PartialEq, Eq)]
enum Fault {
    Setup,
    HangSetup,
    Fail(String),
    Hang(String),
    Die(String),
    NoMem,
}

fn parse(v: &str) -> Result<(Fault, usize), String> {
    let bad = || format!("RWM_FAULT={v}: expected setup@R, hang-setup@R, nomem@R, fail:T@R, hang:T@R or die:T@R");
    let (what, rank) = v.rsplit_once('@').ok_or_else(bad)?;
    let rank = rank.trim().parse().map_err(|_| bad())?;
    let fault = match what.split_once(':') {
        None if what == "setup" => Fault::Setup,
        None if what == "hang-setup" => Fault::HangSetup,
        None if what == "nomem" => Fault::NoMem,
        Some(("fail", t)) => Fault::Fail(t.into()),
        Some(("hang", t)) => Fault::Hang(t.into()),
        Some(("die", t)) => Fault::Die(t.into()),
        _ => return Err(bad()),
    };
    Ok((fault, rank))
}

fn mine(rank: usize) -> Option<Fault> {
    let v = std::env::var("RWM_FAULT").ok()?;
    match parse(&v) {
        Ok((f, r)) if r == rank => Some(f),
        Ok(_) => None,
        Err(e) => {
            tracing::warn!("{e}; no fault injected");
            None
        }
    }
}

fn hang() -> ! {
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

/// Called by every rank during setup.
pub fn at_setup(rank: usize) -> Result<(), String> {
    match mine(rank) {
        Some(Fault::Setup) => Err(format!("injected setup failure (RWM_FAULT) on rank {rank}")),
        Some(Fault::HangSetup) => hang(),
        _ => Ok(()),
    }
}

/// The memory (bytes) rank `rank`'s check is to see instead of its own, if a fault says so.
pub fn memory_at(rank: usize) -> Option<u64> {
    matches!(mine(rank), Some(Fault::NoMem)).then_some(1 << 20)
}

/// Called by every rank before each step of `target`.
pub fn at_step(rank: usize, target: &str) -> Result<(), String> {
    match mine(rank) {
        Some(Fault::Fail(t)) if t == target => Err(format!("injected step failure (RWM_FAULT) on rank {rank}")),
        Some(Fault::Hang(t)) if t == target => hang(),
        Some(Fault::Die(t)) if t == target => std::process::abort(),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_kind_and_refuses_the_rest() {
        assert_eq!(parse("setup@1"), Ok((Fault::Setup, 1)));
        assert_eq!(parse("hang-setup@0"), Ok((Fault::HangSetup, 0)));
        assert_eq!(parse("fail:gpt4@3"), Ok((Fault::Fail("gpt4".into()), 3)));
        assert_eq!(parse("die:moe@2"), Ok((Fault::Die("moe".into()), 2)));
        assert_eq!(parse("nomem@1"), Ok((Fault::NoMem, 1)));
        assert!(parse("setup").is_err() && parse("boom@1").is_err() && parse("hang:gpt4@x").is_err());
    }
}
