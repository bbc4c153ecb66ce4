//! The commands, between the parsed flags and the harness: `list` here, `estimate`,
//! `run`, `compare`, `report` and `topo` in their own files.

mod compare;
mod estimate;
mod output;
mod preflight;
pub mod records;
mod report;
mod run;
pub mod topo;

use crate::backend;
use crate::cli::Command;
use crate::harness::{self, target};
use std::io::Write;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Harness(#[from] harness::Error),
    #[error(transparent)]
    Backend(#[from] backend::Error),
    #[error(transparent)]
    Comm(#[from] crate::comm::Error),
    #[error(transparent)]
    Topology(#[from] crate::topology::Error),
    #[error(transparent)]
    World(#[from] crate::world::Error),
    #[error(transparent)]
    Records(#[from] records::Error),
    #[error(transparent)]
    Report(#[from] report::Error),
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
}

/// What the process should exit with when no error escaped.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    /// Some variant FAILED its correctness gate or errored, or a layout does not fit: (count, what).
    Failures(usize, &'static str),
}

pub fn run(cmd: &Command, out: &mut dyn Write) -> Result<Outcome, Error> {
    match cmd {
        Command::List => list(out).map(|_| Outcome::Ok),
        Command::Run(a) => run::run_targets(a, out),
        Command::Estimate(a) => estimate::estimate(a, out),
        Command::Compare(a) => compare::compare(a, out),
        Command::Report(a) => report::report(a, out),
        Command::Topo { cmd } => topo::run(cmd, out).map(|_| Outcome::Ok).map_err(Error::from),
    }
}

pub(crate) fn io(path: &str) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io { path: path.into(), source }
}

fn list(out: &mut dyn Write) -> Result<(), Error> {
    let w = |out: &mut dyn Write, s: String| writeln!(out, "{s}").map_err(io("stdout"));
    w(out, "targets:".into())?;
    for t in crate::targets::ALL {
        let (name, cfg) = (t.name, (t.config)(target::Size::Quick));
        w(out, format!("  {name:<6} {}", t.about))?;
        for v in cfg.variants() {
            w(out, format!("         {:<10} {}", v.name, v.about))?;
        }
        let keys = cfg.config_json();
        let keys: Vec<String> = keys.as_object().map(|m| m.keys().cloned().collect()).unwrap_or_default();
        w(out, format!("         keys (--set {name}.KEY=VALUE): {}", keys.join(", ")))?;
    }
    w(out, "presets (--set TARGET.preset=NAME, applied before other keys):".into())?;
    let presets: Vec<String> =
        crate::targets::ALL.iter().map(|t| format!("{}: {}", t.name, t.presets.join(", "))).collect();
    w(out, format!("  {}", presets.join("   ")))?;
    w(out, "profiles:".into())?;
    for p in target::PROFILES {
        w(out, format!("  {:<6} {} (warm-up {}, steps {})", p.name, p.about, p.warmup, p.iterations))?;
    }
    Ok(())
}

pub(crate) fn config_err(e: impl std::fmt::Display) -> Error {
    crate::config::ConfigError::Invalid(e.to_string()).into()
}
