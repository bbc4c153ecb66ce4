//! The link each parallel dimension's collectives cross: from a topology file and the rank
//! placement (`topology::place`), the slowest link inside any group of that dimension; or the
//! loopback sockets NCCL uses when several ranks share one GPU (bench/nccl_one_gpu.sh).

use super::rates::{LinkRate, SliceMs};
use super::{CollKind, Collective};
use crate::layout::{Dim, ParallelDims};
use crate::topology::{LinkKind, Topology};

/// Latency per collective call (per ring step of an all-gather): NCCL's small-message times
/// on NVLink (~10 us), PCIe through the host (~15 us) and InfiniBand/RoCE (~20 us).
const NVLINK_ALPHA_S: f64 = 10e-6;
const PCIE_ALPHA_S: f64 = 15e-6;
const NETWORK_ALPHA_S: f64 = 20e-6;

/// What a collective call costs besides its bytes.
#[derive(Clone, Debug, PartialEq)]
pub enum Latency {
    /// Seconds per call (per ring step of an all-gather).
    PerCall(f64),
    /// `world` ranks time-sliced on one GPU (`LinkRate` says why): per call, the slice of the
    /// call's kind for every rank that waits for a peer, plus a visit of every rank.
    TimeSliced { world: usize, slice_ms: SliceMs, visit_ms: f64 },
}

#[derive(Clone, Debug, PartialEq)]
pub struct Link {
    pub name: &'static str,
    /// GB/s per direction per GPU.
    pub gb_per_s: f64,
    pub latency: Latency,
}

impl Link {
    /// A link whose every call (ring step) costs `alpha_s`.
    pub fn new(name: &'static str, gb_per_s: f64, alpha_s: f64) -> Link {
        Link { name, gb_per_s, latency: Latency::PerCall(alpha_s) }
    }

    /// Seconds of latency of one `kind` call in each group of `n`.
    pub fn latency_s(&self, kind: CollKind, n: usize) -> f64 {
        let steps = if kind == CollKind::AllGather { n.saturating_sub(1) as f64 } else { 1.0 };
        match self.latency {
            Latency::PerCall(a) => steps * a,
            Latency::TimeSliced { world, slice_ms, visit_ms } => {
                // Every group of the dimension calls at once; in a ring exchange one member of a
                // group waits for its predecessor, in an all-gather or all-to-all all but one do.
                let groups = (world / n.max(1)) as f64;
                let waiting = if kind == CollKind::SendRecv { groups } else { groups * (n as f64 - 1.0) };
                1e-3 * (slice_ms.of(kind) * waiting + visit_ms * world as f64)
            }
        }
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

    /// `world` ranks on one GPU talking through loopback sockets, whose bandwidth they share.
    pub fn loopback(rate: &LinkRate, world: usize, dims: ParallelDims) -> Links {
        let link = Link {
            name: "loopback",
            gb_per_s: rate.gb_per_s / world.max(1) as f64,
            latency: Latency::TimeSliced { world, slice_ms: rate.slice_ms, visit_ms: rate.visit_ms },
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
    fn loopback_calls_cost_a_slice_per_waiting_rank() {
        let rate = LinkRate {
            slice_ms: SliceMs { send_recv: 3.0, all_gather: 2.0, all_to_all: 1.0 },
            visit_ms: 0.5,
            gb_per_s: 8.0,
            from: "test".into(),
        };
        // 8 ranks: CP groups of 4 (two of them), EP groups of 2 (four).
        let l = Links::loopback(&rate, 8, ParallelDims::folded(1, 4, 2, 2));
        let ((cp, n_cp), (ep, n_ep)) = (l.get(Dim::Cp), l.get(Dim::Ep));
        assert_eq!((n_cp, n_ep, l.ranks_per_gpu, cp.gb_per_s), (4, 2, 8, 1.0));
        let ms = |link: &Link, k, n| (link.latency_s(k, n) * 1e3 * 1e9).round() / 1e9;
        // Ring exchange: one waiting rank per group, 2 groups x 3 ms + 8 visits x 0.5 ms.
        assert_eq!(ms(cp, CollKind::SendRecv, n_cp), 10.0);
        // All-gather over 4: 3 waiting per group, 2 x 3 x 2 ms + 4 ms.
        assert_eq!(ms(cp, CollKind::AllGather, n_cp), 16.0);
        // All-to-all over 2: 1 waiting per group, 4 x 1 ms + 4 ms.
        assert_eq!(ms(ep, CollKind::AllToAll, n_ep), 8.0);
        // A topology link: one latency per call, per ring step of an all-gather.
        let nv = Link::new("nv", 900.0, 1e-5);
        assert_eq!((ms(&nv, CollKind::AllGather, 4), ms(&nv, CollKind::AllToAll, 4)), (0.03, 0.01));
    }
}
