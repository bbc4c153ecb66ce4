//! Describe the machine this runs on as a one-node topology: NVML first (dlopened at run
//! time, so the binary builds and runs without a driver), else `nvidia-smi topo -m`.
//! Neither sees other nodes: for a multi-node NVLink domain (GB200 NVL72) start from a
//! shipped file instead.

use super::nvsmi::{self, Conn, Matrix, Options, Row};
use super::{Error, Result, Topology};
use std::path::PathBuf;
use std::process::Command;

#[derive(Debug, Clone, PartialEq)]
pub struct DiscoverOptions {
    /// Name written into the file; default: the host name.
    pub name: Option<String>,
    /// Per-GPU NIC bandwidth in GB/s per direction; default: the fastest active port under
    /// /sys/class/infiniband, if any.
    pub network_gb_per_s: Option<f64>,
    /// GB/s per direction of one NVLink; default: 50 for Blackwell, else 25.
    pub nvlink_gb_per_link: Option<f64>,
    pub use_nvml: bool,
    /// The nvidia-smi program for the fallback.
    pub nvidia_smi: PathBuf,
}

impl Default for DiscoverOptions {
    fn default() -> Self {
        DiscoverOptions {
            name: None,
            network_gb_per_s: None,
            nvlink_gb_per_link: None,
            use_nvml: true,
            nvidia_smi: "nvidia-smi".into(),
        }
    }
}

/// Which source answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Nvml,
    NvidiaSmi,
}

pub fn discover(opts: &DiscoverOptions) -> Result<(Topology, Source)> {
    let nvml_err = if opts.use_nvml {
        match via_nvml(opts) {
            Ok(t) => return Ok((t, Source::Nvml)),
            Err(e) => e,
        }
    } else {
        "not tried (disabled)".to_string()
    };
    match via_nvidia_smi(opts) {
        Ok(t) => Ok((t, Source::NvidiaSmi)),
        Err(smi_err) => Err(Error::Discover(format!(
            "no GPU information on this machine: NVML: {nvml_err}; {}: {smi_err}. \
             Write a topology file by hand (see topology/README.md) or use a shipped one",
            opts.nvidia_smi.display()
        ))),
    }
}

/// Blackwell's NVLink 5 doubles the per-link rate of NVLink 3 and 4.
fn default_link_rate(model: &str) -> f64 {
    let blackwell = ["B100", "B200", "B300", "GB200", "GB300"].iter().any(|m| model.contains(m));
    if blackwell { 50.0 } else { 25.0 }
}

/// GB/s per direction of a PCIe link: per-lane rate after encoding overhead times width.
pub fn pcie_gb_per_s(gen_: u32, width: u32) -> Option<f64> {
    let lane = match gen_ {
        1 => 0.25,
        2 => 0.5,
        3 => 0.985,
        4 => 1.969,
        5 => 3.938,
        6 => 7.563,
        _ => return None,
    };
    (width > 0).then(|| (lane * width as f64 * 10.0).round() / 10.0)
}

/// Fastest active port under /sys/class/infiniband (rate file: "400 Gb/sec (4X NDR)"), in GB/s.
fn infiniband_gb_per_s() -> Option<f64> {
    let mut best: Option<f64> = None;
    for dev in std::fs::read_dir("/sys/class/infiniband").ok()?.flatten() {
        let Ok(ports) = std::fs::read_dir(dev.path().join("ports")) else { continue };
        for port in ports.flatten() {
            let state = std::fs::read_to_string(port.path().join("state")).unwrap_or_default();
            if !state.contains("ACTIVE") {
                continue;
            }
            let rate = std::fs::read_to_string(port.path().join("rate")).unwrap_or_default();
            if let Some(gbit) = rate.split_whitespace().next().and_then(|s| s.parse::<f64>().ok()) {
                best = Some(best.map_or(gbit / 8.0, |b: f64| b.max(gbit / 8.0)));
            }
        }
    }
    best
}

fn options(opts: &DiscoverOptions, model: &str, memory_gb: f64, pcie: Option<f64>) -> Options {
    let d = Options::default();
    Options {
        name: opts.name.clone().unwrap_or_else(crate::topology::host_name),
        gpu_model: model.to_string(),
        memory_gb: (memory_gb * 10.0).round() / 10.0,
        nvlink_gb_per_link: opts.nvlink_gb_per_link.unwrap_or_else(|| default_link_rate(model)),
        pcie_gb_per_s: pcie.unwrap_or(d.pcie_gb_per_s),
        network_gb_per_s: opts.network_gb_per_s.or_else(infiniband_gb_per_s),
    }
}

fn via_nvml(opts: &DiscoverOptions) -> std::result::Result<Topology, String> {
    use nvml_wrapper::Nvml;
    use nvml_wrapper::enum_wrappers::device::{P2pCapabilitiesIndex, P2pStatus};
    // Driver installs ship libnvidia-ml.so.1; the unversioned name comes only with dev files.
    let nvml = Nvml::builder()
        .lib_path(std::ffi::OsStr::new("libnvidia-ml.so.1"))
        .init()
        .or_else(|_| Nvml::init())
        .map_err(|e| format!("cannot load libnvidia-ml: {e}"))?;
    let count = nvml.device_count().map_err(|e| format!("device count: {e}"))? as usize;
    if count == 0 {
        return Err("NVML sees no GPUs".into());
    }
    let devs = (0..count)
        .map(|i| nvml.device_by_index(i as u32).map_err(|e| format!("GPU {i}: {e}")))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let model = devs[0].name().map_err(|e| format!("GPU 0 name: {e}"))?;
    let memory = devs[0].memory_info().map_err(|e| format!("GPU 0 memory: {e}"))?.total as f64 / 1e9;
    let pcie = match (devs[0].max_pcie_link_gen(), devs[0].max_pcie_link_width()) {
        (Ok(g), Ok(w)) => pcie_gb_per_s(g, w),
        _ => None,
    };
    // NVML_NVLINK_MAX_LINKS is 18; links beyond what a GPU has answer with an error.
    let active_links: Vec<u32> = devs
        .iter()
        .map(|d| (0..18).filter(|&l| d.link_wrapper_for(l).is_active().unwrap_or(false)).count() as u32)
        .collect();
    // Express what NVML says as the matrix nvidia-smi would print, and convert that.
    let columns: Vec<String> = (0..count).map(|i| format!("GPU{i}")).collect();
    let mut rows = Vec::with_capacity(count);
    for a in 0..count {
        let links = (0..count)
            .map(|b| {
                if a == b {
                    Conn::Itself
                } else if active_links[a] > 0
                    && matches!(devs[a].p2p_status(&devs[b], P2pCapabilitiesIndex::NvLink), Ok(P2pStatus::Ok))
                {
                    Conn::NvLink(active_links[a])
                } else {
                    Conn::Sys
                }
            })
            .collect();
        rows.push(Row { device: columns[a].clone(), links, cpu_affinity: None, numa_affinity: None });
    }
    let m = Matrix { columns, rows, nic_names: Vec::new() };
    let mut t = nvsmi::to_topology(&m, &options(opts, &model, memory, pcie)).map_err(|e| e.to_string())?;
    t.description = Some(format!("discovered with NVML: {count} x {model}, {} NVLink domain(s)", t.domains.len()));
    Ok(t)
}

fn run(program: &PathBuf, args: &[&str]) -> std::result::Result<String, String> {
    let out = Command::new(program).args(args).output().map_err(|e| format!("cannot run: {e}"))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(format!("`{}` exited with {}: {}", args.join(" "), out.status, err.trim()));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn via_nvidia_smi(opts: &DiscoverOptions) -> std::result::Result<Topology, String> {
    let text = run(&opts.nvidia_smi, &["topo", "-m"])?;
    let m = nvsmi::parse(&text).map_err(|e| e.to_string())?;
    // Model, memory (MiB) and PCIe link of GPU 0; optional: the matrix alone still gives a topology.
    let q = run(
        &opts.nvidia_smi,
        &["--query-gpu=name,memory.total,pcie.link.gen.max,pcie.link.width.max", "--format=csv,noheader,nounits"],
    )
    .unwrap_or_default();
    let first: Vec<&str> = q.lines().next().unwrap_or("").split(',').map(str::trim).collect();
    let model = first.first().filter(|s| !s.is_empty()).copied().unwrap_or("unknown");
    let memory = first.get(1).and_then(|s| s.parse::<f64>().ok()).map_or(1.0, |mib| mib * 1048576.0 / 1e9);
    let pcie = match (first.get(2).and_then(|s| s.parse().ok()), first.get(3).and_then(|s| s.parse().ok())) {
        (Some(g), Some(w)) => pcie_gb_per_s(g, w),
        _ => None,
    };
    nvsmi::to_topology(&m, &options(opts, model, memory, pcie)).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pcie_rates() {
        assert_eq!(pcie_gb_per_s(4, 16), Some(31.5));
        assert_eq!(pcie_gb_per_s(5, 16), Some(63.0));
        assert_eq!(pcie_gb_per_s(9, 16), None);
    }
}
