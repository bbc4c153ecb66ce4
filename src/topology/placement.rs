//! Parallel layout and rank placement.
//!
//! Rank layout (as torchtitan and Megatron): tp varies fastest, then cp, then ep, then dp:
//! `rank = tp_i + tp * (cp_i + cp * (ep_i + ep * dp_i))`. So a TP group is a run of `tp`
//! consecutive ranks, every CP group lies inside one block of `tp*cp` consecutive ranks,
//! every EP group inside one block of `tp*cp*ep`.
//!
//! With EP folded (MoE parallel folding, Megatron-Core; torchtitan borrows EP from
//! dp_shard x cp likewise) the attention layout is `rank = tp_i + tp * (cp_i + cp * dp_i)`
//! and EP groups are runs of `ep` consecutive (cp, dp) positions:
//! `rank = tp_i + tp * (ep_i + ep * j)`; EP reuses the CP x DP ranks and the world is tp x cp x dp.
//!
//! Placement keeps the largest of these nested blocks that fits inside one NVLink domain,
//! splitting to the next smaller block only when it must; the most talkative groups
//! (TP > CP > EP > DP) are therefore the last to leave NVLink.

use super::{Error, LinkKind, Result, Topology};
use serde::Serialize;

/// How EP groups relate to the other dimensions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum EpLayout {
    /// EP is a dimension of its own: world = tp x cp x ep x dp.
    Separate,
    /// EP groups are formed from the CP x DP ranks: world = tp x cp x dp, ep divides cp x dp.
    Folded,
}

/// Degrees of each parallel dimension and how EP is laid out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct ParallelDims {
    pub tp: usize,
    pub cp: usize,
    pub ep: usize,
    pub dp: usize,
    pub ep_layout: EpLayout,
}

/// A parallel dimension, in order of how much traffic its groups carry (most first).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Dim {
    Tp,
    Cp,
    Ep,
    Dp,
}

impl Dim {
    pub const ALL: [Dim; 4] = [Dim::Tp, Dim::Cp, Dim::Ep, Dim::Dp];
    pub fn name(self) -> &'static str {
        match self {
            Dim::Tp => "tp",
            Dim::Cp => "cp",
            Dim::Ep => "ep",
            Dim::Dp => "dp",
        }
    }
}

/// A rank's coordinate along each dimension (its position in that dimension's group).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Coords {
    pub tp: usize,
    pub cp: usize,
    pub ep: usize,
    pub dp: usize,
}

impl Coords {
    pub fn get(&self, d: Dim) -> usize {
        match d {
            Dim::Tp => self.tp,
            Dim::Cp => self.cp,
            Dim::Ep => self.ep,
            Dim::Dp => self.dp,
        }
    }
}

impl ParallelDims {
    /// EP as a dimension of its own (world = tp x cp x ep x dp).
    pub fn new(tp: usize, cp: usize, ep: usize, dp: usize) -> Self {
        ParallelDims { tp, cp, ep, dp, ep_layout: EpLayout::Separate }
    }

    /// EP folded over the CP x DP ranks (world = tp x cp x dp).
    pub fn folded(tp: usize, cp: usize, ep: usize, dp: usize) -> Self {
        ParallelDims { tp, cp, ep, dp, ep_layout: EpLayout::Folded }
    }

    /// Degrees tp, cp, ep given; dp takes what is left of the world.
    pub fn infer_dp(world_size: usize, tp: usize, cp: usize, ep: usize, ep_layout: EpLayout) -> Result<Self> {
        let (inner, named) = match ep_layout {
            EpLayout::Separate => (tp * cp * ep, format!("tp {tp} x cp {cp} x ep {ep}")),
            EpLayout::Folded => (tp * cp, format!("tp {tp} x cp {cp}")),
        };
        if inner == 0 || !world_size.is_multiple_of(inner) {
            return Err(Error::Dims(format!(
                "world size {world_size} is not a multiple of {named} = {inner}, so no dp fits"
            )));
        }
        Ok(ParallelDims { tp, cp, ep, dp: world_size / inner, ep_layout })
    }

    /// The four degrees, read like coordinates.
    pub fn degrees(&self) -> Coords {
        Coords { tp: self.tp, cp: self.cp, ep: self.ep, dp: self.dp }
    }

    pub fn get(&self, d: Dim) -> usize {
        self.degrees().get(d)
    }

    pub fn world_size(&self) -> usize {
        match self.ep_layout {
            EpLayout::Separate => self.tp * self.cp * self.ep * self.dp,
            EpLayout::Folded => self.tp * self.cp * self.dp,
        }
    }

    /// Every degree at least 1, their product the world size, and EP dividing the experts
    /// (and, folded, the CP x DP ranks it is formed from).
    pub fn validate(&self, world_size: usize, num_experts: Option<usize>) -> Result<()> {
        for d in Dim::ALL {
            if self.get(d) == 0 {
                return Err(Error::Dims(format!("{} must be at least 1, got 0", d.name())));
            }
        }
        let product = self.world_size();
        let ParallelDims { tp, cp, ep, dp, ep_layout } = *self;
        if product != world_size {
            let named = match ep_layout {
                EpLayout::Separate => format!("tp {tp} x cp {cp} x ep {ep} x dp {dp}"),
                EpLayout::Folded => format!("tp {tp} x cp {cp} x dp {dp} (ep {ep} folded over cp x dp)"),
            };
            return Err(Error::Dims(format!("world size {world_size} != {named} = {product}")));
        }
        if ep_layout == EpLayout::Folded && !(cp * dp).is_multiple_of(ep) {
            return Err(Error::Dims(format!(
                "ep {ep} must divide cp {cp} x dp {dp} = {}: folded EP groups are formed from those ranks",
                cp * dp
            )));
        }
        if let Some(e) = num_experts
            && (e == 0 || !e.is_multiple_of(ep))
        {
            return Err(Error::Dims(format!(
                "ep {ep} must divide the number of experts {e} (each EP rank holds {e}/{ep} experts)"
            )));
        }
        Ok(())
    }

    pub fn coords(&self, rank: usize) -> Coords {
        let ParallelDims { tp, cp, ep, .. } = *self;
        match self.ep_layout {
            EpLayout::Separate => {
                Coords { tp: rank % tp, cp: rank / tp % cp, ep: rank / (tp * cp) % ep, dp: rank / (tp * cp * ep) }
            }
            EpLayout::Folded => Coords { tp: rank % tp, cp: rank / tp % cp, ep: rank / tp % ep, dp: rank / (tp * cp) },
        }
    }

    /// Ranks of `rank`'s group along `dim`, ascending (which is also coordinate order).
    pub fn group(&self, rank: usize, dim: Dim) -> Vec<usize> {
        let ParallelDims { tp, cp, ep, .. } = *self;
        let t = rank % tp;
        match (dim, self.ep_layout) {
            (Dim::Tp, _) => (0..tp).map(|i| rank - t + i).collect(),
            (Dim::Cp, _) => {
                let c = rank / tp % cp;
                (0..cp).map(|i| rank - tp * c + tp * i).collect()
            }
            (Dim::Ep, EpLayout::Separate) => {
                let e = rank / (tp * cp) % ep;
                (0..ep).map(|i| rank - tp * cp * e + tp * cp * i).collect()
            }
            (Dim::Ep, EpLayout::Folded) => {
                let e = rank / tp % ep;
                (0..ep).map(|i| rank - tp * e + tp * i).collect()
            }
            (Dim::Dp, _) => {
                let stride = self.world_size() / self.dp;
                let d = rank / stride;
                (0..self.dp).map(|i| rank - stride * d + stride * i).collect()
            }
        }
    }

    /// All groups along `dim`, listed by their lowest rank.
    pub fn groups(&self, dim: Dim) -> Vec<Vec<usize>> {
        (0..self.world_size()).filter(|&r| self.group(r, dim)[0] == r).map(|r| self.group(r, dim)).collect()
    }

    /// (color, key) for splitting a communicator into `dim` groups: equal colors share a
    /// group (the color is its lowest rank); the key is the position in the group.
    pub fn split_color_key(&self, rank: usize, dim: Dim) -> (usize, usize) {
        let g = self.group(rank, dim);
        (g[0], g.iter().position(|&r| r == rank).expect("a rank is in its own group"))
    }

    /// Sizes of nested rank blocks, smallest first, each dividing the next: a TP group, a
    /// CP block, an EP block (where it nests with the others), the world.
    fn blocks(&self) -> Vec<usize> {
        let mut b = vec![self.tp, self.tp * self.cp];
        let ep_block = match self.ep_layout {
            EpLayout::Separate => self.tp * self.cp * self.ep,
            EpLayout::Folded => self.tp * self.ep,
        };
        if let Some(pos) = b.iter().position(|&x| x >= ep_block) {
            // Insert before the first larger block if it nests; an EP block that does not is
            // skipped (CP, more talkative, decides).
            if pos > 0 && ep_block != b[pos] && b[pos].is_multiple_of(ep_block) && ep_block.is_multiple_of(b[pos - 1]) {
                b.insert(pos, ep_block);
            }
        } else if ep_block.is_multiple_of(*b.last().expect("two blocks")) {
            b.push(ep_block);
        }
        let world = self.world_size();
        if *b.last().expect("blocks") != world {
            b.push(world);
        }
        b
    }
}

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
    dims.validate(world_size, None)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn separate_layout_is_tp_fastest() {
        let d = ParallelDims::new(2, 3, 2, 2);
        // rank 17 = tp 1 + 2*(cp 2 + 3*(ep 0 + 2*dp 1)) = 1 + 2*(2 + 6) = 17
        assert_eq!(d.coords(17), Coords { tp: 1, cp: 2, ep: 0, dp: 1 });
        assert_eq!(d.group(17, Dim::Tp), vec![16, 17]);
        assert_eq!(d.group(17, Dim::Cp), vec![13, 15, 17]);
        assert_eq!(d.group(17, Dim::Ep), vec![17, 23]);
        assert_eq!(d.group(17, Dim::Dp), vec![5, 17]);
        assert_eq!(d.split_color_key(17, Dim::Cp), (13, 2));
        assert_eq!(d.blocks(), vec![2, 6, 12, 24]);
    }

    #[test]
    fn folded_ep_reuses_cp_and_dp_ranks() {
        // 24 ranks: CP groups of 4 consecutive ranks, EP groups of 8, dp 6.
        let d = ParallelDims::folded(1, 4, 8, 6);
        assert_eq!(d.world_size(), 24);
        assert_eq!(d.group(13, Dim::Cp), vec![12, 13, 14, 15]);
        assert_eq!(d.group(13, Dim::Ep), (8..16).collect::<Vec<_>>());
        assert_eq!(d.group(13, Dim::Dp), vec![1, 5, 9, 13, 17, 21]);
        assert_eq!(d.coords(13), Coords { tp: 0, cp: 1, ep: 5, dp: 3 });
        assert_eq!(d.blocks(), vec![1, 4, 8, 24]);
        // EP of 6 does not nest with CP of 4: placement follows CP.
        assert_eq!(ParallelDims::folded(1, 4, 6, 6).blocks(), vec![1, 4, 24]);
        // tp 2: EP groups take every other rank.
        let t = ParallelDims::folded(2, 2, 2, 1);
        assert_eq!((t.group(1, Dim::Ep), t.group(1, Dim::Cp)), (vec![1, 3], vec![1, 3]));
    }

    #[test]
    fn groups_partition_the_world() {
        for d in [ParallelDims::new(2, 3, 2, 2), ParallelDims::folded(2, 2, 4, 4), ParallelDims::folded(1, 4, 6, 6)] {
            for dim in Dim::ALL {
                let mut all: Vec<usize> = d.groups(dim).concat();
                assert_eq!(d.groups(dim).len() * d.get(dim), d.world_size(), "{d:?} {dim:?}");
                all.sort_unstable();
                assert_eq!(all, (0..d.world_size()).collect::<Vec<_>>(), "{d:?} {dim:?}");
                for r in 0..d.world_size() {
                    let (color, key) = d.split_color_key(r, dim);
                    assert_eq!(d.group(r, dim)[key], r);
                    assert_eq!(d.group(color, dim), d.group(r, dim));
                    assert_eq!(d.coords(r).get(dim), key, "{d:?} {dim:?} rank {r}");
                }
            }
        }
    }
}
