//! The topology file format (documented in topology/README.md): serde structs that keep
//! each value's span, the semantic checks that turn spans into line numbers, and the writer.

use super::{Domain, Error, Loc, Result, Topology};
use serde::Deserialize;
use std::collections::HashMap;
use std::fmt::Write;
use toml::Spanned;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    name: Spanned<String>,
    description: Option<String>,
    nodes: Spanned<usize>,
    gpus_per_node: Spanned<usize>,
    /// Optional total, checked against nodes x gpus_per_node.
    gpus: Option<Spanned<usize>>,
    gpu: Spanned<RawGpu>,
    #[serde(default)]
    nvlink_domain: Vec<Spanned<RawDomain>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGpu {
    model: Spanned<String>,
    memory_gb: Spanned<f64>,
    nvlink_gb_per_s: Option<Spanned<f64>>,
    pcie_gb_per_s: Option<Spanned<f64>>,
    network_gb_per_s: Option<Spanned<f64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDomain {
    name: Option<Spanned<String>>,
    gpus: Option<Spanned<Vec<Spanned<Entry>>>>,
    nodes: Option<Spanned<Vec<Spanned<Entry>>>>,
}

/// A list element: one index, or an inclusive range written "a-b".
#[derive(Deserialize)]
#[serde(untagged)]
enum Entry {
    One(usize),
    Range(String),
}

/// Limits far above any machine built (NVL576 racks, 100K-GPU clusters) that keep a typo from
/// allocating per-GPU tables of absurd size.
pub const MAX_GPUS_PER_NODE: usize = 1024;
pub const MAX_GPUS: usize = 1 << 20;

struct Ctx<'a> {
    text: &'a str,
    file: &'a str,
}

impl Ctx<'_> {
    fn line(&self, span: std::ops::Range<usize>) -> usize {
        let end = span.start.min(self.text.len());
        self.text[..end].bytes().filter(|&b| b == b'\n').count() + 1
    }
    fn at<T>(&self, v: &Spanned<T>) -> Loc {
        Loc { file: self.file.to_string(), line: Some(self.line(v.span())) }
    }
    fn err<T>(&self, v: &Spanned<T>, field: &str, msg: impl Into<String>) -> Error {
        Error::Field { at: self.at(v), field: field.to_string(), msg: msg.into() }
    }
    fn err_file(&self, field: &str, msg: impl Into<String>) -> Error {
        Error::Field { at: Loc { file: self.file.to_string(), line: None }, field: field.to_string(), msg: msg.into() }
    }
}

pub(super) fn parse(text: &str, file: &str) -> Result<Topology> {
    let cx = Ctx { text, file };
    let raw: RawFile = toml::from_str(text).map_err(|e| {
        let (line, column) = match e.span() {
            Some(s) => {
                let line = cx.line(s.clone());
                let line_start = text[..s.start.min(text.len())].rfind('\n').map_or(0, |i| i + 1);
                (line, s.start.saturating_sub(line_start) + 1)
            }
            None => (1, 1),
        };
        Error::Syntax { file: file.to_string(), line, column, msg: e.message().trim().to_string() }
    })?;

    if raw.name.get_ref().trim().is_empty() {
        return Err(cx.err(&raw.name, "name", "must not be empty"));
    }
    let nodes = *raw.nodes.get_ref();
    let per_node = *raw.gpus_per_node.get_ref();
    if nodes == 0 {
        return Err(cx.err(&raw.nodes, "nodes", "must be at least 1"));
    }
    if per_node == 0 {
        return Err(cx.err(&raw.gpus_per_node, "gpus_per_node", "must be at least 1"));
    }
    // Placement builds tables per GPU: an absurd size would take minutes and gigabytes before failing.
    if per_node > MAX_GPUS_PER_NODE {
        let msg = format!("{per_node} is too many; at most {MAX_GPUS_PER_NODE} GPUs per node");
        return Err(cx.err(&raw.gpus_per_node, "gpus_per_node", msg));
    }
    let total = nodes.checked_mul(per_node).filter(|t| *t <= MAX_GPUS).ok_or_else(|| {
        let msg = format!("nodes {nodes} x gpus_per_node {per_node} is too many GPUs; at most {MAX_GPUS}");
        cx.err(&raw.nodes, "nodes", msg)
    })?;
    if let Some(g) = &raw.gpus
        && *g.get_ref() != total
    {
        return Err(cx.err(
            g,
            "gpus",
            format!("{} but nodes {nodes} x gpus_per_node {per_node} = {total}", g.get_ref()),
        ));
    }

    let gpu = raw.gpu.get_ref();
    if gpu.model.get_ref().trim().is_empty() {
        return Err(cx.err(&gpu.model, "gpu.model", "must not be empty"));
    }
    positive(&cx, &gpu.memory_gb, "gpu.memory_gb", "GB")?;
    for (v, field) in [
        (&gpu.nvlink_gb_per_s, "gpu.nvlink_gb_per_s"),
        (&gpu.pcie_gb_per_s, "gpu.pcie_gb_per_s"),
        (&gpu.network_gb_per_s, "gpu.network_gb_per_s"),
    ] {
        if let Some(v) = v {
            positive(&cx, v, field, "GB/s")?;
        }
    }

    let domains = domains(&cx, &raw, nodes, per_node)?;
    let topo = Topology {
        name: raw.name.get_ref().clone(),
        description: raw.description.clone(),
        nodes,
        gpus_per_node: per_node,
        gpu_model: gpu.model.get_ref().clone(),
        memory_gb: *gpu.memory_gb.get_ref(),
        nvlink_gb_per_s: gpu.nvlink_gb_per_s.as_ref().map(|v| *v.get_ref()),
        pcie_gb_per_s: gpu.pcie_gb_per_s.as_ref().map(|v| *v.get_ref()),
        network_gb_per_s: gpu.network_gb_per_s.as_ref().map(|v| *v.get_ref()),
        domains,
        domain_of: Vec::new(),
    }
    .index_domains();
    required_bandwidths(&cx, &raw, &topo)?;
    Ok(topo)
}

fn positive(cx: &Ctx, v: &Spanned<f64>, field: &str, unit: &str) -> Result<()> {
    let x = *v.get_ref();
    if x.is_finite() && x > 0.0 {
        Ok(())
    } else {
        Err(cx.err(v, field, format!("must be a positive {unit} value, got {x}")))
    }
}

/// Expand a list of indices and "a-b" ranges, each element checked against `limit`.
fn expand(
    cx: &Ctx,
    list: &Spanned<Vec<Spanned<Entry>>>,
    field: &str,
    what: &str,
    limit: usize,
) -> Result<Vec<(usize, usize)>> {
    let mut out = Vec::new();
    for e in list.get_ref() {
        let line = cx.line(e.span());
        let (a, b) = match e.get_ref() {
            Entry::One(i) => (*i, *i),
            Entry::Range(s) => {
                let bad = || cx.err(e, field, format!("\"{s}\" is not a {what} index or an inclusive range \"a-b\""));
                let (a, b) = s.split_once('-').ok_or_else(bad)?;
                let a: usize = a.trim().parse().map_err(|_| bad())?;
                let b: usize = b.trim().parse().map_err(|_| bad())?;
                if a > b {
                    return Err(cx.err(e, field, format!("range \"{s}\" runs backwards")));
                }
                (a, b)
            }
        };
        if b >= limit {
            return Err(cx.err(e, field, format!("{what} {b} out of range: valid {what}s are 0..={}", limit - 1)));
        }
        out.extend((a..=b).map(|i| (i, line)));
    }
    Ok(out)
}

fn domains(cx: &Ctx, raw: &RawFile, nodes: usize, per_node: usize) -> Result<Vec<Domain>> {
    let total = nodes * per_node;
    // GPU -> (domain index, line) of its first listing.
    let mut owner: HashMap<usize, (usize, usize)> = HashMap::new();
    let mut names: HashMap<String, usize> = HashMap::new();
    let mut out = Vec::new();
    for (d, dom) in raw.nvlink_domain.iter().enumerate() {
        let field = format!("nvlink_domain[{d}]");
        let r = dom.get_ref();
        let name = match &r.name {
            Some(n) => {
                if let Some(prev) = names.insert(n.get_ref().clone(), d) {
                    let msg = format!("name \"{}\" already used by nvlink_domain[{prev}]", n.get_ref());
                    return Err(cx.err(n, &format!("{field}.name"), msg));
                }
                n.get_ref().clone()
            }
            None => format!("domain{d}"),
        };
        let gpus: Vec<(usize, usize)> = match (&r.gpus, &r.nodes) {
            (Some(g), None) => expand(cx, g, &format!("{field}.gpus"), "GPU", total)?,
            (None, Some(n)) => expand(cx, n, &format!("{field}.nodes"), "node", nodes)?
                .into_iter()
                .flat_map(|(node, line)| (0..per_node).map(move |l| (node * per_node + l, line)))
                .collect(),
            _ => return Err(cx.err(dom, &field, "give exactly one of `gpus` or `nodes`")),
        };
        if gpus.is_empty() {
            return Err(cx.err(dom, &format!("{field}.gpus"), "an NVLink domain needs at least one GPU"));
        }
        let mut list = Vec::with_capacity(gpus.len());
        for (g, line) in gpus {
            if let Some(&(prev, prev_line)) = owner.get(&g) {
                let at = Loc { file: cx.file.to_string(), line: Some(line) };
                let msg = if prev == d {
                    format!("GPU {g} is listed twice (first at line {prev_line})")
                } else {
                    format!("GPU {g} is already in nvlink_domain[{prev}] (line {prev_line})")
                };
                return Err(Error::Field { at, field: field.clone(), msg });
            }
            owner.insert(g, (d, line));
            list.push(g);
        }
        list.sort_unstable();
        out.push(Domain { name, gpus: list });
    }
    if let Some(g) = (0..total).find(|g| !owner.contains_key(g)) {
        let msg = format!(
            "GPU {g} (node {}, local GPU {}) is in no [[nvlink_domain]]; a GPU without NVLink peers needs a domain of its own",
            g / per_node,
            g % per_node
        );
        return Err(cx.err_file("nvlink_domain", msg));
    }
    Ok(out)
}

/// Each link class that some GPU pair uses needs a bandwidth.
fn required_bandwidths(cx: &Ctx, raw: &RawFile, t: &Topology) -> Result<()> {
    let gpu_err = |field: &str, msg: String| cx.err(&raw.gpu, field, msg);
    if t.nvlink_gb_per_s.is_none()
        && let Some(d) = t.domains.iter().find(|d| d.gpus.len() > 1)
    {
        let msg = format!("missing: NVLink domain \"{}\" links {} GPUs", d.name, d.gpus.len());
        return Err(gpu_err("gpu.nvlink_gb_per_s", msg));
    }
    let n = t.gpu_count();
    let pair = |kind| (0..n).flat_map(|a| (a + 1..n).map(move |b| (a, b))).find(|&(a, b)| t.link(a, b) == kind);
    if t.pcie_gb_per_s.is_none()
        && let Some((a, b)) = pair(super::LinkKind::Pcie)
    {
        let msg = format!("missing: GPUs {a} and {b} share a node but no NVLink domain");
        return Err(gpu_err("gpu.pcie_gb_per_s", msg));
    }
    if t.network_gb_per_s.is_none()
        && let Some((a, b)) = pair(super::LinkKind::Network)
    {
        let msg = format!("missing: GPUs {a} and {b} are on different nodes outside a common NVLink domain");
        return Err(gpu_err("gpu.network_gb_per_s", msg));
    }
    Ok(())
}

/// Consecutive indices as "a-b" ranges.
fn ranges(v: &[usize]) -> Vec<String> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < v.len() {
        let mut j = i;
        while j + 1 < v.len() && v[j + 1] == v[j] + 1 {
            j += 1;
        }
        out.push(if i == j { v[i].to_string() } else { format!("\"{}-{}\"", v[i], v[j]) });
        i = j + 1;
    }
    out
}

fn quote(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

fn num(x: f64) -> String {
    // toml needs a decimal point or exponent for floats; integers read back as f64 too.
    if x.fract() == 0.0 && x.abs() < 1e15 { format!("{x:.0}") } else { format!("{x}") }
}

pub(super) fn write(t: &Topology) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "name = {}", quote(&t.name));
    if let Some(d) = &t.description {
        let _ = writeln!(s, "description = {}", quote(d));
    }
    let _ = writeln!(s, "nodes = {}\ngpus_per_node = {}\ngpus = {}\n", t.nodes, t.gpus_per_node, t.gpu_count());
    let _ = writeln!(s, "[gpu]\nmodel = {}\nmemory_gb = {}", quote(&t.gpu_model), num(t.memory_gb));
    for (k, v) in [
        ("nvlink_gb_per_s", t.nvlink_gb_per_s),
        ("pcie_gb_per_s", t.pcie_gb_per_s),
        ("network_gb_per_s", t.network_gb_per_s),
    ] {
        if let Some(v) = v {
            let _ = writeln!(s, "{k} = {}", num(v));
        }
    }
    for d in &t.domains {
        let _ = writeln!(s, "\n[[nvlink_domain]]\nname = {}\ngpus = [{}]", quote(&d.name), ranges(&d.gpus).join(", "));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_compress_runs() {
        assert_eq!(ranges(&[0, 1, 2, 5, 7, 8]), vec!["\"0-2\"", "5", "\"7-8\""]);
        assert_eq!(ranges(&[]), Vec::<String>::new());
    }

    #[test]
    fn line_counts_newlines_before_span() {
        let cx = Ctx { text: "a\nbb\nccc", file: "f" };
        assert_eq!(cx.line(0..1), 1);
        assert_eq!(cx.line(2..3), 2);
        assert_eq!(cx.line(5..6), 3);
    }
}
