//! `rwm-dist topo show` and `rwm-dist topo discover`.

use crate::cli::{DiscoverArgs, ShowArgs, TopoCommand};
use crate::layout::{Dim, ParallelDims};
use crate::topology::discover::{self, DiscoverOptions, Source};
use crate::topology::placement::{self, Cost, GroupBytes, Placement};
use crate::topology::{Result, Topology};
use std::io::Write;

pub fn run(cmd: &TopoCommand, out: &mut dyn Write) -> Result<()> {
    match cmd {
        TopoCommand::Show(a) => show(a, out),
        TopoCommand::Discover(a) => discover_cmd(a, out),
    }
}

fn show(a: &ShowArgs, out: &mut dyn Write) -> Result<()> {
    let topo = Topology::load(&a.topology)?;
    let world = a.world.unwrap_or(topo.gpu_count());
    let dims = ParallelDims::resolve(world, &a.layout)?;
    if let Some(e) = a.experts {
        dims.check_experts(e, "--experts")?;
    }
    let p = placement::place(&topo, world, dims)?;
    writeln!(
        out,
        "topology {}: {} node(s) x {} GPU(s) {}, {} NVLink domain(s)",
        topo.name,
        topo.nodes,
        topo.gpus_per_node,
        topo.gpu_model,
        topo.domains.len()
    )?;
    render_map(&p, out)?;
    let bytes = GroupBytes { tp: a.tp_bytes, cp: a.cp_bytes, ep: a.ep_bytes, dp: a.dp_bytes };
    let cost = placement::cost(&topo, &p, &bytes);
    render_cost(&cost, &bytes, out)?;
    let naive = placement::cost(&topo, &placement::round_robin(&topo, world, dims)?, &bytes);
    writeln!(
        out,
        "naive round-robin over nodes: nvlink {:.2} GB, pcie {:.2} GB, network {:.2} GB, est. {:.3} ms",
        naive.nvlink_bytes / 1e9,
        naive.pcie_bytes / 1e9,
        naive.network_bytes / 1e9,
        naive.time_s * 1e3
    )?;
    Ok(())
}

/// The rank table: rank, node, local GPU, coordinates and NVLink domain of every rank.
pub fn render_map(p: &Placement, out: &mut dyn Write) -> std::io::Result<()> {
    let d = p.dims;
    writeln!(out, "world {} = {d} on {} (nodes {})", p.world_size(), p.topology, compact(&p.nodes_used()))?;
    writeln!(out, "{:>5} {:>5} {:>4} {:>4} {:>4} {:>4} {:>4}  domain", "rank", "node", "gpu", "tp", "cp", "ep", "dp")?;
    for (r, s) in p.slots.iter().enumerate() {
        let c = d.coords(r);
        writeln!(
            out,
            "{r:>5} {:>5} {:>4} {:>4} {:>4} {:>4} {:>4}  {}",
            s.node, s.local_gpu, c.tp, c.cp, c.ep, c.dp, p.domain_names[s.domain]
        )?;
    }
    let inside: Vec<String> = Dim::ALL
        .iter()
        .map(|&dim| {
            let (i, n) = p.groups_in_domain(dim);
            format!("{} {i}/{n}", dim.name())
        })
        .collect();
    writeln!(out, "groups inside one NVLink domain: {}", inside.join(", "))
}

/// Per-dimension bytes by link class and estimated time.
pub fn render_cost(c: &Cost, bytes: &GroupBytes, out: &mut dyn Write) -> std::io::Result<()> {
    let per: Vec<String> = Dim::ALL.iter().map(|&d| format!("{} {:.2} GB", d.name(), bytes.get(d) / 1e9)).collect();
    writeln!(out, "cost per step (bytes each rank sends to its group: {}):", per.join(", "))?;
    writeln!(
        out,
        "{:<4} {:>7} {:>10} {:>10} {:>10} {:>11} {:>10}",
        "dim", "groups", "in-domain", "nvlink GB", "pcie GB", "network GB", "est. ms"
    )?;
    for d in &c.per_dim {
        writeln!(
            out,
            "{:<4} {:>7} {:>10} {:>10.2} {:>10.2} {:>11.2} {:>10.3}",
            d.dim.name(),
            d.groups,
            d.groups_in_domain,
            d.nvlink_bytes / 1e9,
            d.pcie_bytes / 1e9,
            d.network_bytes / 1e9,
            d.time_s * 1e3
        )?;
    }
    writeln!(
        out,
        "{:<4} {:>7} {:>10} {:>10.2} {:>10.2} {:>11.2} {:>10.3}",
        "all",
        "",
        "",
        c.nvlink_bytes / 1e9,
        c.pcie_bytes / 1e9,
        c.network_bytes / 1e9,
        c.time_s * 1e3
    )
}

/// "0-5,8" for [0,1,2,3,4,5,8].
fn compact(v: &[usize]) -> String {
    let mut parts = Vec::new();
    let mut i = 0;
    while i < v.len() {
        let mut j = i;
        while j + 1 < v.len() && v[j + 1] == v[j] + 1 {
            j += 1;
        }
        parts.push(if i == j { v[i].to_string() } else { format!("{}-{}", v[i], v[j]) });
        i = j + 1;
    }
    parts.join(",")
}

fn discover_cmd(a: &DiscoverArgs, out: &mut dyn Write) -> Result<()> {
    let opts = DiscoverOptions {
        name: a.name.clone(),
        network_gb_per_s: a.network_gb_per_s,
        nvlink_gb_per_link: a.nvlink_gb_per_link,
        use_nvml: !a.no_nvml,
        nvidia_smi: a.nvidia_smi.clone(),
    };
    let (topo, source) = discover::discover(&opts)?;
    let via = match source {
        Source::Nvml => "NVML",
        Source::NvidiaSmi => "nvidia-smi topo -m",
    };
    let text = format!("# Written by `rwm-dist topo discover` (via {via}).\n{}", topo.to_toml());
    match &a.output {
        Some(path) => {
            std::fs::write(path, &text)
                .map_err(|source| crate::topology::Error::Io { path: path.display().to_string(), source })?;
            writeln!(
                out,
                "wrote {}: {} GPU(s) {}, {} NVLink domain(s) (via {via})",
                path.display(),
                topo.gpu_count(),
                topo.gpu_model,
                topo.domains.len()
            )?;
        }
        None => out.write_all(text.as_bytes())?,
    }
    Ok(())
}
