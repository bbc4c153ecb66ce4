//! The parallel layout of a job: degrees tp, cp, ep, dp, how EP relates to the others,
//! and the rank order. Resolved and validated once (`ParallelDims::resolve`); `run`,
//! `run --dry-run`, `estimate` and `topo show` all accept or refuse a layout here, with
//! the same message naming each factor. A leaf: it names no other module of the crate.
//!
//! Rank order (as torchtitan and Megatron): tp varies fastest, then cp, then ep, then dp:
//! `rank = tp_i + tp * (cp_i + cp * (ep_i + ep * dp_i))`. So a TP group is a run of `tp`
//! consecutive ranks, every CP group lies inside one block of `tp*cp` consecutive ranks,
//! every EP group inside one block of `tp*cp*ep`.
//!
//! With EP folded (MoE parallel folding, Megatron-Core; torchtitan borrows EP from
//! dp_shard x cp likewise) the attention layout is `rank = tp_i + tp * (cp_i + cp * dp_i)`
//! and EP groups are runs of `ep` consecutive (cp, dp) positions:
//! `rank = tp_i + tp * (ep_i + ep * j)`; EP reuses the CP x DP ranks and the world is tp x cp x dp.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("layout: {0}")]
pub struct Error(pub String);

pub type Result<T> = std::result::Result<T, Error>;

/// How EP groups relate to the other dimensions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum EpLayout {
    /// EP is a dimension of its own: world = tp x cp x ep x dp.
    Separate,
    /// EP groups are formed from the CP x DP ranks: world = tp x cp x dp, ep divides cp x dp.
    Folded,
}

/// The layout flags as typed, shared by `run`, `estimate` and `topo show`.
#[derive(clap::Args, Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayoutArgs {
    /// Tensor-parallel size (estimate and topo show model it; runs have no TP yet).
    #[arg(long, default_value_t = 1)]
    pub tp: usize,
    /// Context-parallel size (gpt4 attention).
    #[arg(long, default_value_t = 1)]
    pub cp: usize,
    /// Expert-parallel size (moe and gpt4 experts).
    #[arg(long, default_value_t = 1)]
    pub ep: usize,
    /// Data-parallel size; default: what the world leaves (world / (tp x cp), or
    /// world / (tp x cp x ep) with --ep-layout separate).
    #[arg(long)]
    pub dp: Option<usize>,
    /// folded: EP groups are formed from the CP x DP ranks (world = tp x cp x dp);
    /// separate: EP is a dimension of its own (world = tp x cp x ep x dp).
    #[arg(long, value_enum, default_value_t = EpLayout::Folded)]
    pub ep_layout: EpLayout,
}

impl Default for LayoutArgs {
    fn default() -> Self {
        LayoutArgs { tp: 1, cp: 1, ep: 1, dp: None, ep_layout: EpLayout::Folded }
    }
}

impl LayoutArgs {
    /// The smallest world these degrees fit: tp x cp x (dp, or the least dp that ep divides
    /// cp x dp by, folded), or tp x cp x ep x dp separate.
    pub fn smallest_world(&self) -> usize {
        let LayoutArgs { tp, cp, ep, dp, ep_layout } = *self;
        match (ep_layout, dp) {
            (EpLayout::Separate, dp) => tp.saturating_mul(cp).saturating_mul(ep).saturating_mul(dp.unwrap_or(1)),
            (EpLayout::Folded, Some(dp)) => tp.saturating_mul(cp).saturating_mul(dp),
            (EpLayout::Folded, None) => tp.saturating_mul(cp).saturating_mul((ep / gcd(ep.max(1), cp.max(1))).max(1)),
        }
    }
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 { a } else { gcd(b, a % b) }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
/// How context-parallel attention sees the other ranks' keys and values.
pub enum CpKind {
    /// K/V blocks passed around a ring, one block attended at a time.
    Ring,
    /// Every rank gathers the whole sequence's K/V.
    #[value(name = "allgather")]
    #[serde(rename = "allgather")]
    AllGather,
}

/// Degrees of each parallel dimension and how EP is laid out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
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
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
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

impl std::fmt::Display for ParallelDims {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ParallelDims { tp, cp, ep, dp, ep_layout } = *self;
        match ep_layout {
            EpLayout::Separate => write!(f, "tp {tp} x cp {cp} x ep {ep} x dp {dp}"),
            EpLayout::Folded => write!(f, "tp {tp} x cp {cp} x dp {dp}, ep {ep} folded over cp x dp"),
        }
    }
}

fn err(msg: String) -> Error {
    Error(msg)
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

    /// One rank: every degree 1.
    pub fn single() -> Self {
        Self::folded(1, 1, 1, 1)
    }

    /// The layout of `a` over `world` ranks, dp inferred when not given, validated.
    /// The one place a layout is accepted or refused.
    pub fn resolve(world: usize, a: &LayoutArgs) -> Result<Self> {
        // Every product below is at most this one: checked once, none can overflow after.
        let all = [a.tp, a.cp, a.ep, a.dp.unwrap_or(1)].iter().try_fold(1usize, |p, &d| p.checked_mul(d));
        if all.is_none() {
            return Err(err(format!("tp {} x cp {} x ep {} x dp {:?} overflows", a.tp, a.cp, a.ep, a.dp)));
        }
        // Degrees first: a zero degree also makes the default world (their product) zero.
        for (name, v) in [("tp", a.tp), ("cp", a.cp), ("ep", a.ep), ("dp", a.dp.unwrap_or(1))] {
            if v == 0 {
                return Err(err(format!("--{name} must be at least 1, got 0")));
            }
        }
        if world == 0 {
            return Err(err("the world size must be at least 1, got 0".into()));
        }
        let dims = match a.dp {
            Some(dp) => ParallelDims { tp: a.tp, cp: a.cp, ep: a.ep, dp, ep_layout: a.ep_layout },
            None => Self::infer_dp(world, a.tp, a.cp, a.ep, a.ep_layout)?,
        };
        dims.validate(world)?;
        Ok(dims)
    }

    /// Degrees tp, cp, ep given; dp takes what is left of the world.
    pub fn infer_dp(world_size: usize, tp: usize, cp: usize, ep: usize, ep_layout: EpLayout) -> Result<Self> {
        let (inner, named) = match ep_layout {
            EpLayout::Separate => (tp * cp * ep, format!("tp {tp} x cp {cp} x ep {ep}")),
            EpLayout::Folded => (tp * cp, format!("tp {tp} x cp {cp}")),
        };
        if inner == 0 || !world_size.is_multiple_of(inner) {
            return Err(err(format!("world size {world_size} is not a multiple of {named} = {inner}, so no dp fits")));
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

    /// Every degree at least 1, their product the world size, and (folded) EP dividing
    /// the CP x DP ranks it is formed from.
    pub fn validate(&self, world_size: usize) -> Result<()> {
        for d in Dim::ALL {
            if self.get(d) == 0 {
                return Err(err(format!("{} must be at least 1, got 0", d.name())));
            }
        }
        let product = self.world_size();
        let ParallelDims { cp, ep, dp, ep_layout, .. } = *self;
        if product != world_size {
            return Err(err(format!("world size {world_size} != {self} = {product}")));
        }
        if ep_layout == EpLayout::Folded && !(cp * dp).is_multiple_of(ep) {
            return Err(err(format!(
                "ep {ep} must divide cp {cp} x dp {dp} = {}: folded EP groups are formed from those ranks",
                cp * dp
            )));
        }
        Ok(())
    }

    /// Every expert held somewhere: each EP rank holds `num_experts / ep` of them, so ep
    /// must divide the count. `key` names the count in the message (`moe.num_experts`).
    pub fn check_experts(&self, num_experts: usize, key: &str) -> Result<()> {
        let ep = self.ep;
        if num_experts == 0 || !num_experts.is_multiple_of(ep) {
            return Err(err(format!(
                "ep {ep} must divide {key} = {num_experts}: each EP rank holds {key} / ep experts, \
                 so every expert is held somewhere"
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

    /// Which input data `rank` works on: the ranks of one TP x CP block share a sequence,
    /// every other block has its own (a data-parallel replica, folded or separate).
    pub fn replica(&self, rank: usize) -> usize {
        rank / (self.tp * self.cp)
    }

    /// How many replicas of the input data the world holds.
    pub fn replicas(&self) -> usize {
        self.world_size() / (self.tp * self.cp)
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
    pub fn blocks(&self) -> Vec<usize> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn args(tp: usize, cp: usize, ep: usize) -> LayoutArgs {
        LayoutArgs { tp, cp, ep, ..Default::default() }
    }

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
        assert_eq!((d.replica(17), d.replicas()), (2, 4));
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
        assert_eq!((d.replica(13), d.replicas()), (3, 6));
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

    #[test]
    fn resolve_accepts_or_refuses_naming_each_factor() {
        let ok = ParallelDims::resolve(24, &args(1, 4, 8)).unwrap();
        assert_eq!(ok, ParallelDims::folded(1, 4, 8, 6));
        let e = |world, a: LayoutArgs| ParallelDims::resolve(world, &a).unwrap_err().to_string();
        // tp 4 x cp 4 leaves no dp on 24 ranks.
        assert!(e(24, args(4, 4, 8)).contains("tp 4 x cp 4 = 16"), "{}", e(24, args(4, 4, 8)));
        // The README's old example: 72 = tp 4 x cp 2 x dp 9, and ep 8 does not divide 18.
        assert!(e(72, args(4, 2, 8)).contains("ep 8 must divide cp 2 x dp 9 = 18"));
        assert!(e(8, args(0, 1, 1)).contains("--tp must be at least 1"));
        assert!(e(0, args(1, 1, 1)).contains("world size must be at least 1"));
        let dp = LayoutArgs { dp: Some(3), ..args(1, 2, 2) };
        assert!(e(8, dp).contains("world size 8 != tp 1 x cp 2 x dp 3"), "{}", e(8, dp));
        assert!(e(8, args(usize::MAX, 2, 1)).contains("overflows"));
        assert_eq!(args(usize::MAX, 2, 1).smallest_world(), usize::MAX);
        let sep = LayoutArgs { ep_layout: EpLayout::Separate, ..args(1, 2, 4) };
        assert_eq!(ParallelDims::resolve(16, &sep).unwrap(), ParallelDims::new(1, 2, 4, 2));
    }

    #[test]
    fn every_expert_must_be_held() {
        let d = ParallelDims::folded(1, 1, 8, 8);
        assert!(d.check_experts(64, "moe.num_experts").is_ok());
        let m = d.check_experts(60, "gpt4.num_experts").unwrap_err().to_string();
        assert!(m.contains("ep 8 must divide gpt4.num_experts = 60"), "{m}");
    }

    #[test]
    fn smallest_world_fits_the_degrees() {
        for a in [args(1, 4, 8), args(1, 2, 4), args(1, 4, 2), args(2, 3, 4), args(1, 1, 1)] {
            let w = a.smallest_world();
            assert!(ParallelDims::resolve(w, &a).is_ok(), "{a:?}: {w}");
        }
        assert_eq!(args(1, 4, 8).smallest_world(), 8);
        assert_eq!(args(1, 4, 2).smallest_world(), 4);
    }
}
