//! Rank placement: which GPU of a topology each rank of a layout runs on.
//!
//! Placement keeps the largest of the layout's nested rank blocks (`ParallelDims::blocks`)
//! that fits inside one NVLink domain, splitting to the next smaller block only when it
//! must; the most talkative groups (TP > CP > EP > DP) are therefore the last to leave NVLink.

use super::{Error, LinkKind, Result, Topology};
use crate::layout::{Dim, ParallelDims};
use serde::Serialize;

/// Where one rank runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Slot {
    pub node: usize,
    pub local_gpu: usize,
    /// Global GPU index in the topology.
    pub gpu: usize,
    /// Index into `Placement::domain_names`.
    pub domain: usize,
}

/// Rank -> GPU map for one world on one topology.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Placement {
    pub topology: String,
    pub dims: ParallelDims,
    /// Indexed by rank.
    pub slots: Vec<Slot>,
    pub domain_names: Vec<String>,
}

impl Placement {
    pub fn world_size(&self) -> usize {
        self.slots.len()
    }
    /// The rank placed on (node, local GPU), if any.
    pub fn rank_at(&self, node: usize, local_gpu: usize) -> Option<usize> {
        self.slots.iter().position(|s| s.node == node && s.local_gpu == local_gpu)
    }
    /// Nodes that hold at least one rank, ascending.
    pub fn nodes_used(&self) -> Vec<usize> {
        let mut n: Vec<usize> = self.slots.iter().map(|s| s.node).collect();
        n.sort_unstable();
        n.dedup();
        n
    }
    /// How many of the `dim` groups lie inside one NVLink domain, and how many groups there are.
    pub fn groups_in_domain(&self, dim: Dim) -> (usize, usize) {
        let groups = self.dims.groups(dim);
        let inside =
            groups.iter().filter(|g| g.iter().all(|&r| self.slots[r].domain == self.slots[g[0]].domain)).count();
        (inside, groups.len())
    }
}

fn check_fits(topo: &Topology, world_size: usize, dims: &ParallelDims) -> Result<()> {
    dims.validate(world_size)?;
    if world_size > topo.gpu_count() {
        return Err(Error::Dims(format!(
            "world size {world_size} does not fit topology \"{}\": it has {} GPUs ({} nodes x {} GPUs)",
            topo.name,
            topo.gpu_count(),
            topo.nodes,
            topo.gpus_per_node
        )));
    }
    Ok(())
}

fn make(topo: &Topology, dims: ParallelDims, gpus: Vec<usize>) -> Placement {
    let slots = gpus
        .into_iter()
        .map(|g| Slot { node: topo.node_of(g), local_gpu: topo.local_of(g), gpu: g, domain: topo.domain_of(g) })
        .collect();
    Placement {
        topology: topo.name.clone(),
        dims,
        slots,
        domain_names: topo.domains.iter().map(|d| d.name.clone()).collect(),
    }
}

/// Topology-aware placement (see the module comment). Pure: same inputs, same map.
pub fn place(topo: &Topology, world_size: usize, dims: ParallelDims) -> Result<Placement> {
    check_fits(topo, world_size, &dims)?;
    // Free GPUs per domain, in (node, local) order so blocks fill whole nodes first.
    let mut free: Vec<Vec<usize>> = topo.domains.iter().map(|d| d.gpus.clone()).collect();
    let mut gpu_of = vec![usize::MAX; world_size];
    let blocks = dims.blocks();
    place_block(&mut free, &mut gpu_of, &blocks, blocks.len() - 1, 0, world_size);
    debug_assert!(gpu_of.iter().all(|&g| g != usize::MAX));
    Ok(make(topo, dims, gpu_of))
}

/// Put ranks start..start+len (a block at `level`) into one domain if any has room
/// (the fullest such domain, to keep large holes for later blocks), else split it.
fn place_block(
    free: &mut [Vec<usize>],
    gpu_of: &mut [usize],
    blocks: &[usize],
    level: usize,
    start: usize,
    len: usize,
) {
    let best = (0..free.len()).filter(|&d| free[d].len() >= len).min_by_key(|&d| (free[d].len(), d));
    if let Some(d) = best {
        for (r, g) in (start..start + len).zip(free[d].drain(..len)) {
            gpu_of[r] = g;
        }
        return;
    }
    if level == 0 || len == 1 {
        // Even one TP group spans domains: fill the roomiest domains first.
        for slot in &mut gpu_of[start..start + len] {
            let d = (0..free.len()).max_by_key(|&d| (free[d].len(), usize::MAX - d)).expect("a topology has domains");
            *slot = free[d].remove(0);
        }
        return;
    }
    let sub = blocks[level - 1].max(1);
    let mut s = start;
    while s < start + len {
        place_block(free, gpu_of, blocks, level - 1, s, sub.min(start + len - s));
        s += sub;
    }
}

/// The naive baseline: ranks dealt round-robin over nodes (rank r on node r % nodes).
pub fn round_robin(topo: &Topology, world_size: usize, dims: ParallelDims) -> Result<Placement> {
    check_fits(topo, world_size, &dims)?;
    let gpus = (0..world_size).map(|r| topo.gpu_index(r % topo.nodes, r / topo.nodes)).collect();
    Ok(make(topo, dims, gpus))
}

/// Bytes each rank sends to its group peers per step, per dimension.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct GroupBytes {
    pub tp: f64,
    pub cp: f64,
    pub ep: f64,
    pub dp: f64,
}

impl GroupBytes {
    pub fn uniform(bytes: f64) -> Self {
        GroupBytes { tp: bytes, cp: bytes, ep: bytes, dp: bytes }
    }
    pub fn get(&self, d: Dim) -> f64 {
        match d {
            Dim::Tp => self.tp,
            Dim::Cp => self.cp,
            Dim::Ep => self.ep,
            Dim::Dp => self.dp,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DimCost {
    pub dim: Dim,
    pub groups: usize,
    pub groups_in_domain: usize,
    /// Bytes summed over all ranks, by the link they cross.
    pub nvlink_bytes: f64,
    pub pcie_bytes: f64,
    pub network_bytes: f64,
    /// Time of the slowest rank of the slowest group.
    pub time_s: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Cost {
    pub per_dim: Vec<DimCost>,
    pub nvlink_bytes: f64,
    pub pcie_bytes: f64,
    pub network_bytes: f64,
    /// Dimensions communicate one after another; each one's groups at the same time.
    pub time_s: f64,
}

/// Estimated communication per step. Model: within a group of g ranks, each rank sends
/// bytes/(g-1) to every peer (all-to-all shaped); a rank's NVLink, PCIe and NIC carry their
/// shares at the same time, so its time is the largest bytes/bandwidth over the three.
pub fn cost(topo: &Topology, p: &Placement, bytes: &GroupBytes) -> Cost {
    let mut per_dim = Vec::new();
    for dim in Dim::ALL {
        let g = p.dims.get(dim);
        let (inside, groups) = p.groups_in_domain(dim);
        let mut c = DimCost {
            dim,
            groups,
            groups_in_domain: inside,
            nvlink_bytes: 0.0,
            pcie_bytes: 0.0,
            network_bytes: 0.0,
            time_s: 0.0,
        };
        if g > 1 {
            let share = bytes.get(dim) / (g - 1) as f64;
            for group in p.dims.groups(dim) {
                for &a in &group {
                    let mut by_kind = [0.0f64; 3];
                    for &b in group.iter().filter(|&&b| b != a) {
                        let kind = topo.link(p.slots[a].gpu, p.slots[b].gpu);
                        let i = match kind {
                            LinkKind::NvLink => 0,
                            LinkKind::Pcie => 1,
                            LinkKind::Network => 2,
                            LinkKind::SameGpu => unreachable!("two ranks on one GPU"),
                        };
                        by_kind[i] += share;
                    }
                    c.nvlink_bytes += by_kind[0];
                    c.pcie_bytes += by_kind[1];
                    c.network_bytes += by_kind[2];
                    let t = [LinkKind::NvLink, LinkKind::Pcie, LinkKind::Network]
                        .iter()
                        .zip(by_kind)
                        .filter(|(_, b)| *b > 0.0)
                        .map(|(&k, b)| b / (topo.link_gb_per_s(k) * 1e9))
                        .fold(0.0, f64::max);
                    c.time_s = c.time_s.max(t);
                }
            }
        }
        per_dim.push(c);
    }
    Cost {
        nvlink_bytes: per_dim.iter().map(|c| c.nvlink_bytes).sum(),
        pcie_bytes: per_dim.iter().map(|c| c.pcie_bytes).sum(),
        network_bytes: per_dim.iter().map(|c| c.network_bytes).sum(),
        time_s: per_dim.iter().map(|c| c.time_s).sum(),
        per_dim,
    }
}
