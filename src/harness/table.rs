//! The human-readable summary printed at the end of a run.

use super::record::{Record, Status};
use std::io::Write;

fn opt(v: Option<f64>, f: impl Fn(f64) -> String) -> String {
    v.map(f).unwrap_or_else(|| "-".into())
}

pub fn human_rate(x: f64) -> String {
    match x {
        x if x >= 1e6 => format!("{:.2}M", x / 1e6),
        x if x >= 1e3 => format!("{:.1}K", x / 1e3),
        x => format!("{x:.1}"),
    }
}

pub fn gib(bytes: u64) -> String {
    format!("{:.2}", bytes as f64 / (1u64 << 30) as f64)
}

/// One row per record (rank 0's view; multi-rank runs print per-rank spreads separately).
pub fn print(records: &[Record], out: &mut dyn Write) -> std::io::Result<()> {
    let head = [
        "target",
        "variant",
        "median ms",
        "p10/p90 ms",
        "tokens/s",
        "TFLOP/s",
        "speedup",
        "max err",
        "peak GiB",
        "est GiB",
        "status",
    ];
    let rows: Vec<Vec<String>> = records
        .iter()
        .map(|r| {
            vec![
                r.target.clone(),
                r.variant.clone(),
                opt(r.median_ms, |x| format!("{x:.3}")),
                match (r.p10_ms, r.p90_ms) {
                    (Some(a), Some(b)) => format!("{a:.3}/{b:.3}"),
                    _ => "-".into(),
                },
                opt(r.tokens_per_s, human_rate),
                opt(r.tflops, |x| format!("{x:.2}")),
                opt(r.speedup, |x| format!("{x:.2}x")),
                if r.reference == "none" { "ref".into() } else { opt(r.max_err, |x| format!("{x:.2e}")) },
                r.peak_mem_bytes.map(gib).unwrap_or_else(|| "-".into()),
                r.est_mem_bytes.map(gib).unwrap_or_else(|| "-".into()),
                match r.status {
                    Status::Ok => "ok".into(),
                    Status::Failed => match super::gates::failed_names(r) {
                        Some(g) => format!("FAILED (gate {g})"),
                        None => format!("FAILED (tol {:.0e})", r.tolerance),
                    },
                    Status::Error => "ERROR".into(),
                },
            ]
        })
        .collect();
    let widths: Vec<usize> =
        (0..head.len()).map(|c| rows.iter().map(|r| r[c].len()).chain([head[c].len()]).max().unwrap_or(0)).collect();
    let line = |cells: Vec<String>| {
        cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect::<Vec<_>>().join("  ").trim_end().to_string()
    };
    writeln!(out, "{}", line(head.iter().map(|s| s.to_string()).collect()))?;
    for r in rows {
        writeln!(out, "{}", line(r))?;
    }
    for r in records.iter().filter(|r| r.status == Status::Error) {
        writeln!(out, "error in {} {}: {}", r.target, r.variant, r.error.as_deref().unwrap_or("?"))?;
    }
    routing_lines(records, out)?;
    prompt_lines(records, out)
}

/// Routing health of each record that has it (layer-wide when several ranks route): the Gini and
/// max/mean of the load summed over the judged batches, the mean per-batch Gini, the router entropy
/// (normalised by ln E, mean and spread over batches), and for `balanced` the Gini before balancing
/// and whether its bias settled.
fn routing_lines(records: &[Record], out: &mut dyn Write) -> std::io::Result<()> {
    let with: Vec<&Record> = records.iter().filter(|r| r.metrics.contains_key("routing")).collect();
    if with.is_empty() {
        return Ok(());
    }
    writeln!(out, "routing  variant    Gini   max/mean  Gini/batch  router entropy (std)  balancing")?;
    for r in with {
        let s = r.metrics.get("routing_layer").or_else(|| r.metrics.get("routing")).expect("filtered");
        let f = |a: &str, b: &str| s[a][b].as_f64().map_or_else(|| "-".into(), |x| format!("{x:.3}"));
        let bal = r.metrics.get("balance").map_or_else(String::new, |b| {
            let settled = match b["settled_at"].as_u64() {
                Some(n) => format!("settled after {n} steps"),
                None => format!("NOT settled in {} steps", b["steps"]),
            };
            format!("Gini {:.3} before; {settled}; held-out batches", b["gini_before"].as_f64().unwrap_or(f64::NAN))
        });
        let entropy = format!("{} ({})", f("router_entropy_norm", "mean"), f("router_entropy", "std"));
        writeln!(
            out,
            "{:<8} {:<10} {:<6} {:<9} {:<11} {:<21} {bal}",
            r.target,
            r.variant,
            f("overall", "gini"),
            f("overall", "max_mean"),
            f("gini", "mean"),
            entropy
        )?;
    }
    Ok(())
}

/// What each variant made of the prompt (`metrics.prompt`): perplexity and the next tokens.
fn prompt_lines(records: &[Record], out: &mut dyn Write) -> std::io::Result<()> {
    for r in records {
        let Some(p) = r.metrics.get("prompt") else { continue };
        let next: Vec<String> = p["next"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|t| {
                let token = t["text"].as_str().map_or_else(|| format!("#{}", t["id"]), |s| format!("{s:?}"));
                format!("{token} {:.3}", t["p"].as_f64().unwrap_or(f64::NAN))
            })
            .collect();
        let ppl = p["perplexity"].as_f64().map_or_else(|| "-".into(), |x| format!("{x:.3}"));
        writeln!(
            out,
            "{} {}: prompt of {} tokens, perplexity {ppl}; next token: {}",
            r.target,
            r.variant,
            p["tokens"],
            next.join(", ")
        )?;
    }
    Ok(())
}

/// Across ranks, per target and variant: min / median / max of the rank medians and
/// peaks, and the slowest rank (one-rank diagnostics hide imbalance).
pub fn print_spread(records: &[Record], out: &mut dyn Write) -> std::io::Result<()> {
    let mut keys: Vec<(String, String)> = vec![];
    for r in records {
        let k = (r.target.clone(), r.variant.clone());
        if !keys.contains(&k) {
            keys.push(k);
        }
    }
    writeln!(out, "across ranks: median ms min/median/max, slowest rank, peak GiB min/max")?;
    for (t, v) in keys {
        let rs: Vec<&Record> = records.iter().filter(|r| r.target == t && r.variant == v).collect();
        let times: Vec<(f64, usize)> = rs.iter().filter_map(|r| r.median_ms.map(|m| (m, r.rank))).collect();
        let peaks: Vec<u64> = rs.iter().filter_map(|r| r.peak_mem_bytes).collect();
        if times.is_empty() {
            writeln!(out, "  {t} {v}: no timings")?;
            continue;
        }
        let ms: Vec<f64> = times.iter().map(|x| x.0).collect();
        let slowest = times.iter().max_by(|a, b| a.0.total_cmp(&b.0)).expect("non-empty");
        writeln!(
            out,
            "  {t:<6} {v:<10} {:.3} / {:.3} / {:.3} ms  slowest rank {} of {}  peak {} / {} GiB",
            super::stats::quantile(&ms, 0.0),
            super::stats::median(&ms),
            super::stats::quantile(&ms, 1.0),
            slowest.1,
            rs.len(),
            gib(peaks.iter().copied().min().unwrap_or(0)),
            gib(peaks.iter().copied().max().unwrap_or(0)),
        )?;
    }
    Ok(())
}
