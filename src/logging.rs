//! Logs on stderr: text, coloured only on a terminal with NO_COLOR unset (no-color.org),
//! or one JSON object per line (`--log-format json`), the process's last words included.

use crate::cli::LogFormat;
use std::io::{IsTerminal, Write};

/// Whether text logs may carry ANSI colour: stderr is a terminal and NO_COLOR is unset or empty.
pub fn colour(stderr_is_terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    stderr_is_terminal && no_color.is_none_or(|v| v.is_empty())
}

pub fn init(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("rwm_dist=info"));
    let b = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Json => b.json().init(),
        LogFormat::Text => {
            b.with_ansi(colour(std::io::stderr().is_terminal(), std::env::var_os("NO_COLOR").as_deref())).init()
        }
    }
}

/// The format asked for on a command line that may not parse: `--log-format json` or
/// `--log-format=json` anywhere.
pub fn format_in_args(args: &[String]) -> LogFormat {
    let json = args.windows(2).any(|w| w[0] == "--log-format" && w[1] == "json")
        || args.iter().any(|a| a == "--log-format=json");
    if json { LogFormat::Json } else { LogFormat::Text }
}

/// One line as the JSON logs write it (timestamp, level, fields.message, target).
pub fn json_line(level: &str, message: &str) -> String {
    let now = time::OffsetDateTime::now_utc();
    let timestamp = now.format(&time::format_description::well_known::Rfc3339).unwrap_or_default();
    serde_json::json!({
        "timestamp": timestamp,
        "level": level,
        "fields": {"message": message},
        "target": "rwm_dist",
    })
    .to_string()
}

/// The last line of a run (an error, or what failed), whatever RUST_LOG filters:
/// `rwm-dist: MESSAGE` as text, a JSON line otherwise.
pub fn last_words(format: LogFormat, level: &str, message: &str) {
    let line = match format {
        LogFormat::Json => json_line(level, message),
        LogFormat::Text => format!("rwm-dist: {message}"),
    };
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

/// An error and its causes, each said once: a cause whose text its parent already
/// includes (`path: {source}`) is not repeated.
pub fn chain_message<'a>(chain: impl IntoIterator<Item = &'a (dyn std::error::Error + 'static)>) -> String {
    let mut msg = String::new();
    for e in chain {
        let t = e.to_string();
        if msg.contains(&t) {
            continue;
        }
        if !msg.is_empty() {
            msg.push_str(": ");
        }
        msg.push_str(&t);
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        let os = |s: &str| std::ffi::OsString::from(s);
        assert!(colour(true, None));
        assert!(!colour(false, None));
        assert!(!colour(true, Some(&os("1"))));
        assert!(colour(true, Some(&os(""))), "NO_COLOR set but empty does not count");
    }

    #[test]
    fn os_errors_are_said_once() {
        #[derive(Debug, thiserror::Error)]
        #[error("results/x.jsonl: {source}")]
        struct Io {
            source: std::io::Error,
        }
        let e = Io { source: std::io::Error::from_raw_os_error(2) };
        let msg = chain_message(std::iter::successors(Some(&e as &dyn std::error::Error), |e| e.source()));
        assert_eq!(msg.matches("os error 2").count(), 1, "{msg}");
        assert!(msg.starts_with("results/x.jsonl: "), "{msg}");
    }

    #[test]
    fn json_lines_parse() {
        let v: serde_json::Value = serde_json::from_str(&json_line("ERROR", "a \"quoted\"\nline")).unwrap();
        assert_eq!(v["fields"]["message"], "a \"quoted\"\nline");
        assert_eq!(v["level"], "ERROR");
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(format_in_args(&args(&["rwm-dist", "--log-format", "json", "run"])), LogFormat::Json);
        assert_eq!(format_in_args(&args(&["rwm-dist", "run", "--log-format=json"])), LogFormat::Json);
        assert_eq!(format_in_args(&args(&["rwm-dist", "run"])), LogFormat::Text);
    }
}
