use clap::Parser;
use rwm_dist::app::{self, Outcome};
use rwm_dist::cli::{Cli, LogFormat};
use std::process::ExitCode;

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("rwm_dist=info"));
    let b = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Json => b.json().init(),
        LogFormat::Text => b.init(),
    }
}

/// Exit codes: 0 success; 1 a variant failed its correctness gate or errored, or (estimate) a
/// layout does not fit; 2 bad input or a fatal error.
fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    init_tracing(cli.log_format);
    let mut stdout = std::io::stdout().lock();
    match app::run(&cli.command, &mut stdout).map_err(anyhow::Error::from) {
        Ok(Outcome::Ok) => ExitCode::SUCCESS,
        Ok(Outcome::Failures(n, what)) => {
            eprintln!("rwm-dist: {n} {what}");
            ExitCode::from(1)
        }
        Err(e) => {
            // Every error's message already ends with its cause (`{path}: {source}`): `{e:#}`
            // would print the OS error a second time.
            eprintln!("rwm-dist: error: {e}");
            ExitCode::from(2)
        }
    }
}
