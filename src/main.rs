use clap::Parser;
use rwm_dist::app::{self, Outcome};
use rwm_dist::cli::{Cli, LogFormat};
use rwm_dist::logging;
use std::process::ExitCode;

/// Exit codes: 0 success; 1 a variant failed its correctness gate or errored, (estimate) a
/// layout does not fit, or (compare) a regression; 2 bad input or a fatal error.
fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let args: Vec<String> = std::env::args().collect();
            if code == 2 && logging::format_in_args(&args) == LogFormat::Json {
                logging::last_words(LogFormat::Json, "ERROR", e.render().to_string().trim_end());
            } else {
                let _ = e.print();
            }
            return ExitCode::from(code);
        }
    };
    logging::init(cli.log_format);
    let mut stdout = std::io::stdout().lock();
    match app::run(&cli.command, &mut stdout).map_err(anyhow::Error::from) {
        Ok(Outcome::Ok) => ExitCode::SUCCESS,
        Ok(Outcome::Failures(n, what)) => {
            logging::last_words(cli.log_format, "ERROR", &format!("{n} {what}"));
            ExitCode::from(1)
        }
        Err(e) => {
            logging::last_words(cli.log_format, "ERROR", &format!("error: {}", logging::chain_message(e.chain())));
            ExitCode::from(2)
        }
    }
}
