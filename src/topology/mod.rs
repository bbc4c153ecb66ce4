//! Cluster topology: which GPUs share an NVLink domain and how fast each link is.
//! Files in `topology/*.toml` (schema in topology/README.md) are read by `schema`;
//! `nvsmi` reads `nvidia-smi topo -m`; `discover` inspects the local machine;
//! `placement` maps ranks to GPUs so that the most talkative groups stay on NVLink.

pub mod discover;
pub mod nvsmi;
pub mod placement;
mod schema;

pub use placement::{Cost, DimCost, GroupBytes, Placement, Slot, cost, place, round_robin};

use std::fmt;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// TOML syntax or type error, located by toml's span.
    #[error("{file}:{line}:{column}: {msg}")]
    Syntax { file: String, line: usize, column: usize, msg: String },
    /// A well-formed file whose values contradict each other.
    #[error("{at}: field `{field}`: {msg}")]
    Field { at: Loc, field: String, msg: String },
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    /// A world that does not fit the topology.
    #[error("{0}")]
    Dims(String),
    #[error(transparent)]
    Layout(#[from] crate::layout::Error),
    #[error("nvidia-smi topo -m output, line {line}: {msg}")]
    Nvsmi { line: usize, msg: String },
    #[error("topology discovery failed: {0}")]
    Discover(String),
    #[error("writing output: {0}")]
    Output(#[from] std::io::Error),
}

pub type Result<T> = std::result::Result<T, Error>;

/// A file and, where known, a line in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loc {
    pub file: String,
    pub line: Option<usize>,
}

impl fmt::Display for Loc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(l) => write!(f, "{}:{l}", self.file),
            None => write!(f, "{}", self.file),
        }
    }
}

/// GPUs that reach each other over NVLink (through NVSwitch or direct links).
#[derive(Debug, Clone, PartialEq)]
pub struct Domain {
    pub name: String,
    /// Global GPU indices (node * gpus_per_node + local index), ascending.
    pub gpus: Vec<usize>,
}

/// How two GPUs talk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LinkKind {
    SameGpu,
    NvLink,
    /// Same node, different NVLink domains: through PCIe and the host.
    Pcie,
    /// Different nodes outside a shared NVLink domain: through each GPU's NIC.
    Network,
}

impl LinkKind {
    pub fn name(self) -> &'static str {
        match self {
            LinkKind::SameGpu => "same-gpu",
            LinkKind::NvLink => "nvlink",
            LinkKind::Pcie => "pcie",
            LinkKind::Network => "network",
        }
    }
}

/// A validated topology. GPUs are numbered globally, node-major: gpu = node * gpus_per_node + local.
#[derive(Debug, Clone, PartialEq)]
pub struct Topology {
    pub name: String,
    pub description: Option<String>,
    pub nodes: usize,
    pub gpus_per_node: usize,
    pub gpu_model: String,
    pub memory_gb: f64,
    /// All bandwidths are GB/s (1e9 bytes) per direction per GPU.
    pub nvlink_gb_per_s: Option<f64>,
    pub pcie_gb_per_s: Option<f64>,
    pub network_gb_per_s: Option<f64>,
    pub domains: Vec<Domain>,
    domain_of: Vec<usize>,
}

impl Topology {
    /// Read and validate a topology file; errors name the file, line and field.
    pub fn load(path: impl AsRef<Path>) -> Result<Topology> {
        let path = path.as_ref();
        let text =
            std::fs::read_to_string(path).map_err(|source| Error::Io { path: path.display().to_string(), source })?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Parse TOML text; `file` only labels error messages.
    pub fn parse(text: &str, file: &str) -> Result<Topology> {
        schema::parse(text, file)
    }

    /// The file form of this topology; `parse` reads it back to an equal value.
    pub fn to_toml(&self) -> String {
        schema::write(self)
    }

    /// Fill the GPU -> domain index of a topology built by code (children of this module
    /// construct `Topology` with an empty `domain_of`); its parts must already be consistent.
    fn index_domains(mut self) -> Topology {
        self.domain_of = vec![usize::MAX; self.gpu_count()];
        for (d, dom) in self.domains.iter().enumerate() {
            for &g in &dom.gpus {
                self.domain_of[g] = d;
            }
        }
        debug_assert!(self.domain_of.iter().all(|&d| d != usize::MAX), "every GPU needs a domain");
        self
    }

    pub fn gpu_count(&self) -> usize {
        self.nodes * self.gpus_per_node
    }
    pub fn node_of(&self, gpu: usize) -> usize {
        gpu / self.gpus_per_node
    }
    pub fn local_of(&self, gpu: usize) -> usize {
        gpu % self.gpus_per_node
    }
    pub fn gpu_index(&self, node: usize, local: usize) -> usize {
        node * self.gpus_per_node + local
    }
    /// Index into `domains`.
    pub fn domain_of(&self, gpu: usize) -> usize {
        self.domain_of[gpu]
    }

    pub fn link(&self, a: usize, b: usize) -> LinkKind {
        if a == b {
            LinkKind::SameGpu
        } else if self.domain_of[a] == self.domain_of[b] {
            LinkKind::NvLink
        } else if self.node_of(a) == self.node_of(b) {
            LinkKind::Pcie
        } else {
            LinkKind::Network
        }
    }

    /// GB/s per direction for a link class. Validation guarantees a value for every
    /// class some GPU pair uses; an unused class reports infinity.
    pub fn link_gb_per_s(&self, kind: LinkKind) -> f64 {
        let v = match kind {
            LinkKind::SameGpu => None,
            LinkKind::NvLink => self.nvlink_gb_per_s,
            LinkKind::Pcie => self.pcie_gb_per_s,
            LinkKind::Network => self.network_gb_per_s,
        };
        v.unwrap_or(f64::INFINITY)
    }

    /// GB/s per direction from GPU `a` to GPU `b` (infinite for a GPU and itself).
    pub fn bandwidth_gb_per_s(&self, a: usize, b: usize) -> f64 {
        self.link_gb_per_s(self.link(a, b))
    }
}

/// This machine's name (gethostname(2)); "localhost" where it has none.
pub fn host_name() -> String {
    let name = gethostname::gethostname().to_string_lossy().trim().to_string();
    if name.is_empty() { "localhost".into() } else { name }
}
