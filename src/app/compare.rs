//! `rwm-dist compare BASE NEW`: the same work in two results files, side by side, with
//! regressions marked, so that a CI job can gate on it (exit 1 on a regression).
//!
//! Records match when target, variant, config, gemm dtype, layout, world size and rank
//! are all equal. A time regression is a median slower by more than the threshold whose
//! noise band lies wholly above the base's (new p10 > base p90); a memory regression a
//! peak larger by more than the threshold (and 1 MiB); a status regression `ok` becoming
//! `failed` or `error`.

use super::records::{self, Row};
use super::{Error, Outcome, io};
use crate::cli::CompareArgs;
use crate::harness::table::{gib, human_rate};
use std::io::Write;

/// Why a pair of records is, or is not, a regression.
#[derive(Debug, Default, PartialEq)]
pub struct Verdict {
    pub regression: bool,
    pub notes: Vec<String>,
}

/// Peaks closer than this are equal whatever the threshold (allocator rounding).
const MEM_SLACK: u64 = 1 << 20;

pub fn judge(base: &Row, new: &Row, threshold: f64) -> Verdict {
    let mut v = Verdict::default();
    if base.status != new.status {
        v.regression |= base.status == "ok";
        v.notes.push(format!("status {} -> {}", base.status, new.status));
    }
    if let (Some(b), Some(n)) = (base.median_ms, new.median_ms) {
        let change = n / b - 1.0;
        let above = matches!((new.p10_ms, base.p90_ms), (Some(lo), Some(hi)) if lo <= hi);
        let below = matches!((new.p90_ms, base.p10_ms), (Some(hi), Some(lo)) if hi >= lo);
        if change > threshold {
            if above {
                v.notes.push("slower, within noise".into());
            } else {
                v.regression = true;
                v.notes.push(format!("SLOWER {:+.1}%", change * 100.0));
            }
        } else if change < -threshold {
            v.notes.push(if below { "faster, within noise".into() } else { format!("faster {:+.1}%", change * 100.0) });
        }
    }
    if let (Some(b), Some(n)) = (base.peak_mem_bytes, new.peak_mem_bytes)
        && n > b + MEM_SLACK
        && n as f64 > b as f64 * (1.0 + threshold)
    {
        v.regression = true;
        v.notes.push(format!("MORE MEMORY {:+.1}%", (n as f64 / b as f64 - 1.0) * 100.0));
    }
    v
}

fn pct(b: Option<f64>, n: Option<f64>) -> String {
    match (b, n) {
        (Some(b), Some(n)) if b > 0.0 => format!("{:+.1}%", (n / b - 1.0) * 100.0),
        _ => "-".into(),
    }
}

fn band(r: &Row) -> String {
    match (r.p10_ms, r.p90_ms) {
        (Some(a), Some(b)) => format!("{a:.3}-{b:.3}"),
        _ => "-".into(),
    }
}

fn ms(x: Option<f64>) -> String {
    x.map_or_else(|| "-".into(), |x| format!("{x:.3}"))
}

fn err(r: &Row) -> String {
    r.max_err.map_or_else(|| "-".into(), |x| format!("{x:.2e}"))
}

fn what(r: &Row) -> String {
    let dtype = r.gemm_dtype.as_deref().unwrap_or("-");
    let layout = r.layout_name();
    let rank = if r.world_size > 1 { format!(" rank {}/{}", r.rank, r.world_size) } else { String::new() };
    format!(
        "{} {} {dtype}{}{rank}",
        r.target,
        r.variant,
        if layout.is_empty() { String::new() } else { format!(" {layout}") }
    )
}

/// Columns padded to their widest cell, two spaces apart.
pub(crate) fn aligned(rows: &[Vec<String>], out: &mut dyn Write) -> std::io::Result<()> {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> =
        (0..cols).map(|c| rows.iter().filter_map(|r| r.get(c)).map(|s| s.chars().count()).max().unwrap_or(0)).collect();
    for r in rows {
        let cells: Vec<String> = r.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        writeln!(out, "{}", cells.join("  ").trim_end())?;
    }
    Ok(())
}

pub(super) fn compare(a: &CompareArgs, out: &mut dyn Write) -> Result<Outcome, Error> {
    let base = records::read(&a.base)?;
    let new = records::read(&a.new)?;
    let mut used = vec![false; base.len()];
    let mut rows = vec![
        [
            "record",
            "median ms base -> new",
            "change",
            "p10-p90 base | new",
            "tokens/s",
            "peak GiB",
            "max err",
            "verdict",
        ]
        .map(String::from)
        .to_vec(),
    ];
    let mut only_new = vec![];
    let mut regressions = 0;
    for n in &new {
        let Some(i) = (0..base.len()).find(|&i| !used[i] && base[i].same_work(n)) else {
            only_new.push(what(n));
            continue;
        };
        used[i] = true;
        let b = &base[i];
        let v = judge(b, n, a.threshold);
        regressions += usize::from(v.regression);
        let mem = match (b.peak_mem_bytes, n.peak_mem_bytes) {
            (Some(x), Some(y)) => format!("{} -> {}", gib(x), gib(y)),
            _ => "-".into(),
        };
        let verdict = if v.notes.is_empty() { "same".into() } else { v.notes.join("; ") };
        rows.push(vec![
            what(n),
            format!("{} -> {}", ms(b.median_ms), ms(n.median_ms)),
            pct(b.median_ms, n.median_ms),
            format!("{} | {}", band(b), band(n)),
            match (b.tokens_per_s, n.tokens_per_s) {
                (Some(x), Some(y)) => format!("{} -> {} ({})", human_rate(x), human_rate(y), pct(Some(x), Some(y))),
                _ => "-".into(),
            },
            mem,
            format!("{} -> {}", err(b), err(n)),
            if v.regression { format!("REGRESSION: {verdict}") } else { verdict },
        ]);
    }
    if rows.len() == 1 {
        return Err(super::config_err(format!(
            "{} and {}: no record of one matches a record of the other (target, variant, config, gemm dtype, \
             layout, world size and rank must all be equal)",
            a.base.display(),
            a.new.display()
        )));
    }
    let w = |e| io("stdout")(e);
    writeln!(
        out,
        "base {} (run {}), new {} (run {}); threshold {:.1}%",
        a.base.display(),
        base[0].run_id,
        a.new.display(),
        new[0].run_id,
        a.threshold * 100.0
    )
    .map_err(w)?;
    aligned(&rows, out).map_err(w)?;
    for (r, _) in base.iter().zip(&used).filter(|(_, u)| !**u) {
        writeln!(out, "only in base: {}", what(r)).map_err(w)?;
    }
    for r in only_new {
        writeln!(out, "only in new: {r}").map_err(w)?;
    }
    Ok(if regressions == 0 { Outcome::Ok } else { Outcome::Failures(regressions, "regression(s)") })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(median: f64, p10: f64, p90: f64) -> Row {
        serde_json::from_value(serde_json::json!({
            "target": "moe", "variant": "optimized", "status": "ok",
            "median_ms": median, "p10_ms": p10, "p90_ms": p90, "peak_mem_bytes": 100u64 << 20,
        }))
        .unwrap()
    }

    #[test]
    fn slower_beyond_threshold_and_noise_is_a_regression() {
        let base = row(10.0, 9.9, 10.1);
        assert!(judge(&base, &row(11.0, 10.9, 11.1), 0.03).regression);
        assert_eq!(judge(&base, &base, 0.03), Verdict::default());
        // 10% slower, but the noise bands overlap: not a regression.
        let noisy = judge(&row(10.0, 8.0, 12.0), &row(11.0, 9.0, 13.0), 0.03);
        assert!(!noisy.regression && noisy.notes == ["slower, within noise"], "{noisy:?}");
        // Outside the noise, but within the threshold.
        assert!(!judge(&base, &row(10.2, 10.15, 10.25), 0.03).regression);
        assert!(!judge(&base, &row(9.0, 8.9, 9.1), 0.03).regression);
    }

    #[test]
    fn status_and_memory_regressions() {
        let base = row(10.0, 9.9, 10.1);
        let mut failed = base.clone();
        failed.status = "failed".into();
        assert!(judge(&base, &failed, 0.03).regression);
        assert!(!judge(&failed, &base, 0.03).regression, "a fix is no regression");
        let mut fat = base.clone();
        fat.peak_mem_bytes = Some(120 << 20);
        assert!(judge(&base, &fat, 0.03).notes[0].starts_with("MORE MEMORY"));
        fat.peak_mem_bytes = Some((100 << 20) + 1000);
        assert!(!judge(&base, &fat, 0.0).regression, "allocator slack");
    }
}
