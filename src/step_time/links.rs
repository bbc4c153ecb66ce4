//! The link each parallel dimension's collectives cross: from a topology file and the rank
//! placement (`topology::place`), the slowest link inside any group of that dimension; or the
//! loopback sockets NCCL uses when several ranks share one GPU (bench/nccl_one_gpu.sh).

use super::rates::LinkRate;
use super::{CollKind, Collective};
use crate::layout::{Dim, ParallelDims};
use crate::topology::{LinkKind, Topology};

/// Latency per collective call (per ring step of an all-gather): NCCL's small-message times
/// on NVLink (~10 us), PCIe through the host (~15 us) and InfiniBand/RoCE (~20 us).
const NVLINK_ALPHA_S: f64 = 10e-6;
const PCIE_ALPHA_S: f64 = 15e-6;
const NETWORK_ALPHA_S: f64 = 20e-6;

#[derive(Clone, Debug, PartialEq)]
pub struct Link {
    pub name: &'static str,
    /// GB/s per direction per GPU.
    pub gb_per_s: f64,
    pub alpha_s: f64,
    /// Latency of one CP ring exchange (`alpha_s` except on a GPU shared by several ranks).
    pub exchange_alpha_s: f64,
}

impl Link {
    /// A link whose every call, ring exchanges included, costs `alpha_s`.
    pub fn new(name: &'static str, gb_per_s: f64, alpha_s: f64) -> Link {
        Link { name, gb_per_s, alpha_s, exchange_alpha_s: alpha_s }
    }
}

/// The link and group size of every dimension, and how many ranks share one GPU.
#[derive(Clone, Debug, PartialEq)]
pub struct Links {
    pub per_dim: [(Dim, Link, usize); 4],
    pub ranks_per_gpu: usize,
}

fn class_link(topo: &Topology, kind: LinkKind) -> Link {
    let alpha = match kind {
        LinkKind::SameGpu | LinkKind::NvLink => NVLINK_ALPHA_S,
        LinkKind::Pcie => PCIE_ALPHA_S,
        LinkKind::Network => NETWORK_ALPHA_S,
    };
    Link::new(kind.name(), topo.link_gb_per_s(kind), alpha)
}

impl Links {
    /// Every dimension over `link` (tests, and one-GPU worlds).
    pub fn uniform(link: Link, n: usize) -> Links {
        Links { per_dim: Dim::ALL.map(|d| (d, link.clone(), n)), ranks_per_gpu: 1 }
    }

    /// The links of `dims` over `world` ranks placed on `topo`: per dimension, the slowest link
    /// class between two ranks of one of its groups.
    pub fn on_topology(topo: &Topology, world: usize, dims: ParallelDims) -> super::Result<Links> {
        let p = crate::topology::place(topo, world, dims)?;
        let per_dim = Dim::ALL.map(|d| {
            let worst = dims
                .groups(d)
                .iter()
                .flat_map(|g| g.iter().map(move |&r| (g[0], r)))
                .map(|(a, b)| topo.link(p.slots[a].gpu, p.slots[b].gpu))
                .max()
                .unwrap_or(LinkKind::SameGpu);
            (d, class_link(topo, worst), size(&dims, d))
        });
        Ok(Links { per_dim, ranks_per_gpu: 1 })
    }

    /// `world` ranks on one GPU talking through loopback sockets: the latency of a call was
    /// measured with `rate.ranks` contexts taking turns on the GPU and grows with the ranks
    /// there; the sockets' bandwidth is shared by every rank.
    pub fn loopback(rate: &LinkRate, world: usize, dims: ParallelDims) -> Links {
        let turns = world as f64 / rate.ranks.max(1) as f64;
        let alpha_s = rate.alpha_ms * 1e-3 * turns.powf(rate.alpha_exponent);
        let link = Link {
            name: "loopback",
            gb_per_s: rate.gb_per_s / turns.max(1.0),
            alpha_s,
            exchange_alpha_s: alpha_s * rate.exchange_factor,
        };
        Links { per_dim: Dim::ALL.map(|d| (d, link.clone(), size(&dims, d))), ranks_per_gpu: world }
    }

    pub fn get(&self, d: Dim) -> (&Link, usize) {
        let (_, l, n) = self.per_dim.iter().find(|(x, _, _)| *x == d).expect("every dimension");
        (l, *n)
    }

    pub fn seconds(&self, c: &Collective) -> f64 {
        let (link, n) = self.get(c.dim);
        // An all-to-all whose group is one rank still runs (a local copy): no link time.
        if c.kind == CollKind::AllToAll && n <= 1 {
            return 0.0;
        }
        c.seconds(n, link)
    }
}

fn size(d: &ParallelDims, dim: Dim) -> usize {
    match dim {
        Dim::Tp => d.tp,
        Dim::Cp => d.cp,
        Dim::Ep => d.ep,
        Dim::Dp => d.dp,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_inside_the_nvl72_rack_use_nvlink_and_dgx_pairs_use_the_network() {
        let root = env!("CARGO_MANIFEST_DIR");
        let rack = Topology::load(format!("{root}/topology/gb200-nvl72.toml")).unwrap();
        let l = Links::on_topology(&rack, 24, ParallelDims::folded(1, 4, 8, 6)).unwrap();
        assert_eq!(l.get(Dim::Cp).0.name, "nvlink");
        assert_eq!(l.get(Dim::Cp).0.gb_per_s, 900.0);
        assert_eq!((l.get(Dim::Ep).1, l.get(Dim::Dp).1), (8, 6));
        let x3 = Topology::load(format!("{root}/topology/dgx-h100-x3.toml")).unwrap();
        // CP 24 spans three nodes: its ring crosses the network.
        let l = Links::on_topology(&x3, 24, ParallelDims::folded(1, 24, 1, 1)).unwrap();
        assert_eq!(l.get(Dim::Cp).0.name, "network");
        let l = Links::on_topology(&x3, 24, ParallelDims::folded(1, 8, 1, 3)).unwrap();
        assert_eq!(l.get(Dim::Cp).0.name, "nvlink");
    }

    #[test]
    fn loopback_latency_grows_with_the_ranks_on_the_gpu() {
        let rate = LinkRate {
            alpha_ms: 2.0,
            gb_per_s: 1.0,
            ranks: 2,
            alpha_exponent: 1.0,
            exchange_factor: 2.0,
            from: "test".into(),
        };
        let l = Links::loopback(&rate, 8, ParallelDims::folded(1, 4, 2, 2));
        let (link, n) = l.get(Dim::Cp);
        assert_eq!((link.alpha_s, link.exchange_alpha_s, link.gb_per_s, n, l.ranks_per_gpu), (8e-3, 16e-3, 0.25, 4, 8));
    }
}
