//! `rwm-dist report RESULTS.jsonl... -o report.html`: one self-contained HTML file (inline
//! SVG charts, no scripts, nothing fetched) that a reader opens in any browser: the runs,
//! every record, tokens/s, the per-rank spread, estimated against measured memory, the
//! per-expert load of each MoE variant and its Gini and router entropy over batches.
//! The document is well-formed XML (XHTML syntax), so tests and tools can parse it.

mod charts;

use super::records::{self, Row};
use super::{Outcome, io};
use crate::cli::ReportArgs;
use crate::harness::table::{gib, human_rate};
use charts::Series;
use std::fmt::Write as _;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Chart(#[from] charts::Error),
}

/// The records of one file, named by the file's stem.
struct File {
    name: String,
    rows: Vec<Row>,
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// What a bar stands for: target, variant, GEMM dtype and (distributed) layout.
fn what(r: &Row) -> String {
    let layout = r.layout_name();
    let mut s = format!("{} {} {}", r.target, r.variant, r.gemm_dtype.as_deref().unwrap_or("-"));
    if !layout.is_empty() {
        let _ = write!(s, " {layout}");
    }
    s
}

/// Categories over every file's rank-0 records, in order of first appearance.
fn categories(files: &[File], keep: impl Fn(&Row) -> bool) -> Vec<String> {
    let mut cats: Vec<String> = vec![];
    for r in files.iter().flat_map(|f| &f.rows).filter(|r| r.rank == 0 && keep(r)) {
        let w = what(r);
        if !cats.contains(&w) {
            cats.push(w);
        }
    }
    cats
}

/// Per file, the value of the first rank-0 record of each category.
fn per_category(
    files: &[File],
    cats: &[String],
    label: impl Fn(&str) -> String,
    value: impl Fn(&Row) -> Option<f64>,
) -> Vec<Series> {
    files
        .iter()
        .map(|f| Series {
            name: label(&f.name),
            values: cats
                .iter()
                .map(|c| f.rows.iter().find(|r| r.rank == 0 && &what(r) == c).and_then(&value))
                .collect(),
            whiskers: vec![],
        })
        .collect()
}

fn routing<'a>(r: &'a Row, key: &str) -> Option<&'a serde_json::Value> {
    r.metrics.get("routing")?.get(key)
}

/// (mean, (min, max)) of a routing statistic over batches.
fn spread(r: &Row, key: &str) -> (Option<f64>, Option<(f64, f64)>) {
    let g = |k: &str| routing(r, key).and_then(|v| v.get(k)).and_then(|v| v.as_f64());
    (g("mean"), g("min").zip(g("max")))
}

fn section(html: &mut String, title: &str, note: &str, body: &str) {
    let _ = write!(html, "<section><h2>{}</h2>", esc(title));
    if !note.is_empty() {
        let _ = write!(html, "<p class=\"note\">{}</p>", esc(note));
    }
    html.push_str(body);
    html.push_str("</section>\n");
}

fn runs_table(files: &[File]) -> String {
    let mut t = String::from(
        "<table><tr><th>file</th><th>run</th><th>records</th><th>not ok</th><th>host</th><th>device</th>\
         <th>driver</th><th>CUDA</th><th>NCCL</th><th>job</th></tr>",
    );
    for f in files {
        let r = &f.rows[0];
        let m = |k: &str| r.machine.get(k).and_then(|v| v.as_str()).unwrap_or("-").to_string();
        let env = r.env.as_ref();
        let e = |k: &str| env.and_then(|e| e.get(k)).and_then(|v| v.as_str()).unwrap_or("-").to_string();
        let bad = f.rows.iter().filter(|r| r.status != "ok").count();
        let _ = write!(
            t,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{bad}</td><td>{}</td><td>{} ({})</td><td>{}</td><td>{}</td>\
             <td>{}</td><td>{}</td></tr>",
            esc(&f.name),
            esc(&r.run_id),
            f.rows.len(),
            esc(&m("hostname")),
            esc(&m("device")),
            esc(&m("backend")),
            esc(&e("driver_version")),
            esc(&e("cuda_version")),
            esc(&e("nccl_version")),
            esc(&e("job_id")),
        );
    }
    t.push_str("</table>");
    t
}

fn records_table(files: &[File]) -> String {
    let mut t = String::from(
        "<table><tr><th>file</th><th>record</th><th>rank</th><th>median ms</th><th>p10-p90 ms</th>\
         <th>tokens/s</th><th>peak GiB</th><th>est GiB</th><th>max err</th><th>status</th></tr>",
    );
    let opt = |v: Option<String>| v.unwrap_or_else(|| "-".into());
    for f in files {
        for r in &f.rows {
            let class = if r.status == "ok" { "" } else { " class=\"bad\"" };
            let _ = write!(
                t,
                "<tr{class}><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
                 <td>{}</td><td>{}</td></tr>",
                esc(&f.name),
                esc(&what(r)),
                r.rank,
                opt(r.median_ms.map(|x| format!("{x:.3}"))),
                opt(r.p10_ms.zip(r.p90_ms).map(|(a, b)| format!("{a:.3}-{b:.3}"))),
                opt(r.tokens_per_s.map(human_rate)),
                opt(r.peak_mem_bytes.map(gib)),
                opt(r.est_mem_bytes.map(gib)),
                opt(r.max_err.map(|x| format!("{x:.2e}"))),
                esc(&r.status),
            );
        }
    }
    t.push_str("</table>");
    t
}

const STYLE: &str = "body{font-family:sans-serif;margin:2em;max-width:1000px;color:#222}\
table{border-collapse:collapse;font-size:13px;margin:1em 0}th,td{border:1px solid #ccc;padding:3px 8px;\
text-align:left}th{background:#f2f2f2}tr.bad td{background:#fde8e8}.note{color:#555;font-size:13px}\
svg{display:block;margin:0.5em 0}";

/// The whole document.
pub fn render(files: &[(String, Vec<Row>)]) -> Result<String, Error> {
    let files: Vec<File> = files.iter().map(|(n, r)| File { name: n.clone(), rows: r.clone() }).collect();
    let several = files.len() > 1;
    let mut html = String::new();
    let _ = write!(
        html,
        "<!DOCTYPE html>\n<html xmlns=\"http://www.w3.org/1999/xhtml\" lang=\"en\"><head><meta charset=\"utf-8\"/>\
         <title>rwm-dist report</title><style>{STYLE}</style></head><body>\n<h1>rwm-dist report</h1>\n"
    );
    section(&mut html, "Runs", "", &runs_table(&files));

    let cats = categories(&files, |r| r.tokens_per_s.is_some());
    let tokens = per_category(&files, &cats, |n| n.to_string(), |r| r.tokens_per_s);
    let note = if several { "rank 0 of each run; one colour per file" } else { "rank 0" };
    section(&mut html, "Tokens per second", note, &charts::bars("tokens/s", "tokens/s", &cats, &tokens)?);

    // Per-rank spread of medians, for distributed records.
    let mut spread_cats = vec![];
    let mut points = vec![];
    for f in &files {
        for r in f.rows.iter().filter(|r| r.world_size > 1 && r.rank == 0) {
            let ms: Vec<f64> = f.rows.iter().filter(|o| o.same_work_any_rank(r)).filter_map(|o| o.median_ms).collect();
            spread_cats.push(if several { format!("{} {}", f.name, what(r)) } else { what(r) });
            points.push(ms);
        }
    }
    let body = if spread_cats.is_empty() {
        "<p class=\"note\">No distributed records: every run had one rank.</p>".to_string()
    } else {
        charts::dots("median ms of every rank", "median ms", &spread_cats, &points)?
    };
    section(&mut html, "Per-rank spread", "one dot per rank; the line spans the fastest to the slowest", &body);

    let cats = categories(&files, |r| r.peak_mem_bytes.is_some() || r.est_mem_bytes.is_some());
    let g = |b: Option<u64>| b.map(|b| b as f64 / (1u64 << 30) as f64);
    let mut mem = per_category(&files, &cats, |n| format!("{n} estimate"), |r| g(r.est_mem_bytes));
    let measured = per_category(&files, &cats, |n| format!("{n} measured"), |r| g(r.peak_mem_bytes));
    mem.extend(measured);
    if !several {
        mem[0].name = "estimate".into();
        mem[1].name = "measured peak".into();
    }
    section(&mut html, "Memory: estimate and measured peak", note, &charts::bars("memory", "GiB", &cats, &mem)?);

    // MoE routing: per-expert load of each variant, and Gini / router entropy over batches.
    for f in &files {
        let moe: Vec<&Row> = f.rows.iter().filter(|r| r.rank == 0 && routing(r, "load_fraction").is_some()).collect();
        if moe.is_empty() {
            continue;
        }
        let lines: Vec<(String, Vec<f64>)> = moe
            .iter()
            .map(|r| {
                let fr: Vec<f64> = routing(r, "load_fraction")
                    .and_then(|v| v.as_array())
                    .map(|a| a.iter().filter_map(|x| x.as_f64()).collect())
                    .unwrap_or_default();
                let e = fr.len() as f64;
                (what(r), fr.iter().map(|x| x * e).collect())
            })
            .collect();
        let title = if several { format!("{}: per-expert load", f.name) } else { "Per-expert load".into() };
        let chart = charts::lines(&title, "expert", "load / even share", &lines)?;
        section(&mut html, &title, "1 is an even share; baseline routing against the balanced variant", &chart);

        let cats: Vec<String> = moe.iter().map(|r| what(r)).collect();
        let series: Vec<Series> =
            [("Gini of the expert load", "gini"), ("router entropy / ln E", "router_entropy_norm")]
                .iter()
                .map(|(name, key)| {
                    let (values, whiskers) = moe.iter().map(|r| spread(r, key)).unzip();
                    Series { name: name.to_string(), values, whiskers }
                })
                .collect();
        let title =
            if several { format!("{}: Gini and router entropy", f.name) } else { "Gini and router entropy".into() };
        let note = "mean over batches, the black line from the lowest to the highest batch";
        section(&mut html, &title, note, &charts::bars(&title, "", &cats, &series)?);
    }
    section(&mut html, "Records", "", &records_table(&files));
    html.push_str("</body></html>\n");
    Ok(html)
}

fn stem(p: &Path) -> String {
    p.file_stem().map_or_else(|| p.display().to_string(), |s| s.to_string_lossy().into_owned())
}

pub(super) fn report(a: &ReportArgs, out: &mut dyn std::io::Write) -> Result<Outcome, super::Error> {
    let files = a.files.iter().map(|p| Ok((stem(p), records::read(p)?))).collect::<Result<Vec<_>, super::Error>>()?;
    let html = render(&files)?;
    let path = a.output.display().to_string();
    std::fs::write(&a.output, html).map_err(io(&path))?;
    writeln!(out, "report: {path}").map_err(io("stdout"))?;
    Ok(Outcome::Ok)
}
