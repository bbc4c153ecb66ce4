//! Reader for the matrix that `nvidia-smi topo -m` prints, and its conversion to a
//! one-node `Topology` (GPUs joined by NV# links form NVLink domains).
//!
//! The output is a header of device columns (GPU0.., NIC0.. or mlx5_0 on older drivers)
//! followed by "CPU Affinity", "NUMA Affinity" and, on newer drivers, "GPU NUMA ID"; one
//! row per device; then "Legend:" and an optional "NIC Legend:". Newer drivers underline
//! the header with ANSI escapes; columns are tab separated but affinity cells may be empty,
//! so link cells are read by whitespace and the affinity cells by what is left.

use super::{Domain, Error, Result, Topology};

/// One cell of the matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conn {
    /// "X": the device itself.
    Itself,
    /// "NV#": a bonded set of # NVLinks (through NVSwitch, # is the GPU's total link count).
    NvLink(u32),
    Pix,
    Pxb,
    Phb,
    Node,
    Sys,
}

impl Conn {
    fn parse(s: &str) -> Option<Conn> {
        Some(match s {
            "X" => Conn::Itself,
            "PIX" => Conn::Pix,
            "PXB" => Conn::Pxb,
            "PHB" => Conn::Phb,
            "NODE" => Conn::Node,
            "SYS" => Conn::Sys,
            _ => Conn::NvLink(s.strip_prefix("NV")?.parse().ok().filter(|&n| n > 0)?),
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub device: String,
    /// One cell per column of `Matrix::columns`.
    pub links: Vec<Conn>,
    pub cpu_affinity: Option<String>,
    pub numa_affinity: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Matrix {
    /// Device columns in header order.
    pub columns: Vec<String>,
    pub rows: Vec<Row>,
    /// (NIC0, mlx5_0) pairs from the "NIC Legend:" section.
    pub nic_names: Vec<(String, String)>,
}

impl Matrix {
    /// Indices (into `columns`) of the GPU columns, in column order.
    pub fn gpu_columns(&self) -> Vec<usize> {
        (0..self.columns.len()).filter(|&i| gpu_number(&self.columns[i]).is_some()).collect()
    }
    pub fn nic_count(&self) -> usize {
        self.columns.len() - self.gpu_columns().len()
    }
    pub fn row(&self, device: &str) -> Option<&Row> {
        self.rows.iter().find(|r| r.device == device)
    }
    /// Cell between two device columns, by column index.
    pub fn conn(&self, a: usize, b: usize) -> Conn {
        self.row(&self.columns[a]).map(|r| r.links[b]).expect("parse checks every column has a row")
    }
}

fn gpu_number(name: &str) -> Option<usize> {
    name.strip_prefix("GPU")?.parse().ok()
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ parameters final-letter
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Parse the full output of `nvidia-smi topo -m`.
pub fn parse(text: &str) -> Result<Matrix> {
    let lines: Vec<String> = text.lines().map(strip_ansi).collect();
    let err = |line: usize, msg: String| Error::Nvsmi { line: line + 1, msg };
    let header = lines
        .iter()
        .position(|l| {
            let t: Vec<&str> = l.split_whitespace().collect();
            t.first() == Some(&"GPU0") && t.get(1).is_none_or(|s| Conn::parse(s).is_none())
        })
        .ok_or_else(|| Error::Nvsmi { line: 1, msg: "no header line starting with GPU0 found".into() })?;
    let columns: Vec<String> =
        lines[header].split_whitespace().take_while(|t| *t != "CPU").map(str::to_string).collect();
    let has_affinity = lines[header].split_whitespace().any(|t| t == "CPU");

    let mut rows: Vec<Row> = Vec::new();
    let mut end = header + 1;
    for (i, line) in lines.iter().enumerate().skip(header + 1) {
        end = i;
        let t: Vec<&str> = line.split_whitespace().collect();
        if t.is_empty() || t[0].ends_with(':') {
            break;
        }
        end = i + 1;
        let device = t[0].to_string();
        if !columns.contains(&device) {
            return Err(err(i, format!("row {device} has no column in the header ({})", columns.join(" "))));
        }
        if rows.iter().any(|r| r.device == device) {
            return Err(err(i, format!("row {device} appears twice")));
        }
        if t.len() < 1 + columns.len() {
            return Err(err(
                i,
                format!("row {device} has {} cells, the header has {} devices", t.len() - 1, columns.len()),
            ));
        }
        let mut links = Vec::with_capacity(columns.len());
        for (c, cell) in columns.iter().zip(&t[1..=columns.len()]) {
            links.push(Conn::parse(cell).ok_or_else(|| {
                err(i, format!("unknown link \"{cell}\" between {device} and {c} (expected X, NV<n>, PIX, PXB, PHB, NODE or SYS)"))
            })?);
        }
        let rest = &t[1 + columns.len()..];
        let (cpu_affinity, numa_affinity) = if has_affinity {
            (rest.first().map(|s| s.to_string()), rest.get(1).map(|s| s.to_string()))
        } else {
            (None, None)
        };
        rows.push(Row { device, links, cpu_affinity, numa_affinity });
    }
    for (c, name) in columns.iter().enumerate() {
        let r = rows.iter().find(|r| &r.device == name).ok_or_else(|| err(end, format!("no row for column {name}")))?;
        if r.links[c] != Conn::Itself {
            return Err(err(header, format!("{name} to itself is {:?}, expected X", r.links[c])));
        }
    }
    let gpus: Vec<usize> = (0..columns.len()).filter(|&i| gpu_number(&columns[i]).is_some()).collect();
    if gpus.is_empty() {
        return Err(err(header, "no GPU columns".into()));
    }
    for (k, &c) in gpus.iter().enumerate() {
        if gpu_number(&columns[c]) != Some(k) {
            return Err(err(
                header,
                format!("GPU columns must be GPU0..GPU{} in order, found {}", gpus.len() - 1, columns[c]),
            ));
        }
    }
    let mut m = Matrix { columns, rows, nic_names: Vec::new() };
    for &a in &gpus {
        for &b in &gpus {
            if m.conn(a, b) != m.conn(b, a) {
                let line = header + 1 + m.rows.iter().position(|r| r.device == m.columns[a]).unwrap_or(0);
                return Err(err(
                    line,
                    format!(
                        "{} to {} is {:?} but {} to {} is {:?}",
                        m.columns[a],
                        m.columns[b],
                        m.conn(a, b),
                        m.columns[b],
                        m.columns[a],
                        m.conn(b, a)
                    ),
                ));
            }
        }
    }
    if let Some(nl) = lines.iter().position(|l| l.trim() == "NIC Legend:") {
        for l in &lines[nl + 1..] {
            if let Some((k, v)) = l.trim().split_once(':') {
                m.nic_names.push((k.trim().to_string(), v.trim().to_string()));
            }
        }
    }
    Ok(m)
}

/// What the matrix does not say about the machine.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    pub name: String,
    pub gpu_model: String,
    pub memory_gb: f64,
    /// GB/s per direction of one NVLink: 25 up to NVLink 4 (Hopper), 50 for NVLink 5 (Blackwell).
    pub nvlink_gb_per_link: f64,
    /// GB/s per direction between GPUs of one node without NVLink (PCIe Gen4 x16 is about 32).
    pub pcie_gb_per_s: f64,
    /// Per-GPU NIC bandwidth, GB/s per direction; not in the matrix.
    pub network_gb_per_s: Option<f64>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            name: "local".into(),
            gpu_model: "unknown".into(),
            memory_gb: 1.0,
            nvlink_gb_per_link: 25.0,
            pcie_gb_per_s: 32.0,
            network_gb_per_s: None,
        }
    }
}

/// Most NVLinks any GPU has had so far (Hopper, Blackwell: 18). A row of NV# that adds up
/// to more must be NVSwitch, where # is already the GPU's own total.
const MAX_LINKS_PER_GPU: u32 = 18;

/// NVLinks of each GPU, as the matrix shows them.
pub fn links_per_gpu(m: &Matrix) -> Vec<u32> {
    let gpus = m.gpu_columns();
    gpus.iter()
        .map(|&a| {
            let nv: Vec<u32> = gpus
                .iter()
                .filter_map(|&b| match m.conn(a, b) {
                    Conn::NvLink(n) => Some(n),
                    _ => None,
                })
                .collect();
            let sum: u32 = nv.iter().sum();
            if sum <= MAX_LINKS_PER_GPU { sum } else { nv.iter().copied().max().unwrap_or(0) }
        })
        .collect()
}

/// One node: NVLink-connected components become domains ("nvlink0", ...); a GPU with no
/// NVLink peer gets a domain of its own named after it. The per-GPU NVLink bandwidth is the
/// smallest link count of any GPU that has links, times `nvlink_gb_per_link`.
pub fn to_topology(m: &Matrix, opts: &Options) -> Result<Topology> {
    let gpus = m.gpu_columns();
    let n = gpus.len();
    let mut comp: Vec<usize> = (0..n).collect();
    fn root(c: &mut [usize], mut i: usize) -> usize {
        while c[i] != i {
            c[i] = c[c[i]];
            i = c[i];
        }
        i
    }
    for a in 0..n {
        for b in a + 1..n {
            if matches!(m.conn(gpus[a], gpus[b]), Conn::NvLink(_)) {
                let (ra, rb) = (root(&mut comp, a), root(&mut comp, b));
                comp[ra.max(rb)] = ra.min(rb);
            }
        }
    }
    let roots: Vec<usize> = (0..n).map(|i| root(&mut comp, i)).collect();
    let mut domains = Vec::new();
    let mut nvlinked = 0;
    let mut seen = Vec::new();
    for i in 0..n {
        let r = roots[i];
        if seen.contains(&r) {
            continue;
        }
        seen.push(r);
        let members: Vec<usize> = (0..n).filter(|&j| roots[j] == r).collect();
        let name = if members.len() > 1 {
            nvlinked += 1;
            format!("nvlink{}", nvlinked - 1)
        } else {
            format!("gpu{i}")
        };
        domains.push(Domain { name, gpus: members });
    }
    let links = links_per_gpu(m);
    let min_links = links.iter().copied().filter(|&l| l > 0).min();
    let nvlink_gb_per_s = min_links.map(|l| l as f64 * opts.nvlink_gb_per_link);
    let pcie_gb_per_s = (domains.len() > 1).then_some(opts.pcie_gb_per_s);
    Ok(Topology {
        name: opts.name.clone(),
        description: Some(format!(
            "read from nvidia-smi topo -m: {n} GPUs, {} NICs, {} NVLink domain(s)",
            m.nic_count(),
            domains.len()
        )),
        nodes: 1,
        gpus_per_node: n,
        gpu_model: opts.gpu_model.clone(),
        memory_gb: opts.memory_gb,
        nvlink_gb_per_s,
        pcie_gb_per_s,
        network_gb_per_s: opts.network_gb_per_s,
        domains,
        domain_of: Vec::new(),
    }
    .index_domains())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_parse() {
        assert_eq!(Conn::parse("NV18"), Some(Conn::NvLink(18)));
        assert_eq!(Conn::parse("NV0"), None);
        assert_eq!(Conn::parse("NVX"), None);
        assert_eq!(Conn::parse("PHB"), Some(Conn::Phb));
    }

    #[test]
    fn ansi_is_stripped() {
        assert_eq!(strip_ansi("\u{1b}[4mGPU0\tCPU\u{1b}[0m"), "GPU0\tCPU");
    }
}
