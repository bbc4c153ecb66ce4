//! Command-line flags as typed (the raw layer; plan.rs validates and resolves them).

use crate::backend::BackendKind;
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(name = "rwm-dist", version, about = "Run LLM building blocks on GPUs: speed, memory, MoE routing health")]
pub struct Cli {
    /// Log format on stderr (filter with RUST_LOG, e.g. RUST_LOG=rwm_dist=debug).
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum GemmDtype {
    Bf16,
    Fp8,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// List targets with their variants, and the profiles.
    List,
    /// Run targets (all by default) and write results as JSON Lines.
    Run(RunArgs),
    /// Print a per-rank memory budget for a config and parallel layout; allocates nothing.
    Estimate(EstimateArgs),
    /// Measure the rates the step-time model needs on this GPU (or CPU) and write them to a file.
    Calibrate(CalibrateArgs),
    /// Compare two results files: deltas of the same work, regressions marked (exit 1 on one).
    Compare(CompareArgs),
    /// Write one self-contained HTML file with charts of one or more results files.
    Report(ReportArgs),
    /// Topology files: show a rank map and its communication cost, or discover this machine.
    Topo {
        #[command(subcommand)]
        cmd: TopoCommand,
    },
}

/// Selection of targets and their configs, shared by `run` and `estimate`.
#[derive(Args, Debug, Clone)]
pub struct ConfigArgs {
    /// Targets to run, comma-separated (default: all).
    #[arg(long, value_delimiter = ',')]
    pub target: Vec<String>,
    /// Size profile: quick, bench or long.
    #[arg(long, default_value = "quick")]
    pub profile: String,
    /// Override a config key: target.key=value (see `list` for keys). Repeatable.
    #[arg(long = "set", value_name = "TARGET.KEY=VALUE")]
    pub set: Vec<String>,
    /// Sequence length of llama and gpt4, tokens per batch of moe.
    #[arg(long)]
    pub seq_len: Option<usize>,
    /// Decoder layers of llama and gpt4.
    #[arg(long)]
    pub layers: Option<usize>,
    /// Element type of the GEMMs in the optimized variants.
    #[arg(long, value_enum, default_value_t = GemmDtype::Bf16)]
    pub dtype: GemmDtype,
    #[command(flatten)]
    pub layout: crate::layout::LayoutArgs,
    /// Context-parallel attention: ring or allgather (gpt4).
    #[arg(long)]
    pub cp_kind: Option<String>,
    /// Router input skew for moe: none, zipf:S or hot:N:P.
    #[arg(long)]
    pub skew: Option<String>,
    /// Llama checkpoint directory as Hugging Face publishes it: config.json (decides the
    /// architecture), safetensors (one file or shards with their index), tokenizer.json.
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// Prompt to prefill (llama): prints its top-5 next tokens and perplexity; timing repeats
    /// or cuts it to --seq-len. Token ids (`128000 791`) when the checkpoint has no tokenizer.json.
    #[arg(long, conflicts_with = "prompt_file")]
    pub prompt: Option<String>,
    /// Read the prompt from a file.
    #[arg(long)]
    pub prompt_file: Option<PathBuf>,
    /// Topology file (topology/*.toml) for rank placement.
    #[arg(long)]
    pub topology: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Variants to time, comma-separated (default: all; the baseline always runs as the reference).
    #[arg(long, value_delimiter = ',')]
    pub variant: Vec<String>,
    /// Backend (default: CUDA when a GPU and driver are found, else CPU).
    #[arg(long, value_enum)]
    pub backend: Option<BackendKind>,
    /// Warm-up steps per variant (default: the profile's).
    #[arg(long)]
    pub warmup: Option<usize>,
    /// Timed steps per variant (default: the profile's).
    #[arg(long)]
    pub iters: Option<usize>,
    /// JSON Lines output file (default: results/<run id>.jsonl).
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// In a distributed run, compare every rank's output with the same inputs computed on
    /// one rank alone (always on in the quick profile).
    #[arg(long)]
    pub single_rank_check: bool,
    /// Bracket the timed steps (not set-up or warm-up) with cuProfilerStart/Stop, for
    /// `ncu --profile-from-start off` or `nsys profile --capture-range=cudaProfilerApi`.
    #[arg(long)]
    pub profile_steps: bool,
    /// Health gate `METRIC OP NUMBER[@VARIANT]`, e.g. `moe.gini<=0.2`, `mem.est_err<=0.05`,
    /// `speedup>=1.0`: a record that breaks one is FAILED (exit 1). Repeatable; adds to the
    /// profile's defaults and replaces the default of the same metric and variant.
    #[arg(long = "gate", value_name = "GATE")]
    pub gate: Vec<String>,
    /// Validate everything and print the plan (and rank map) without touching a GPU.
    #[arg(long)]
    pub dry_run: bool,
    /// World size to validate against with --dry-run (default: the launcher's, else --ranks).
    #[arg(long)]
    pub world: Option<usize>,
    /// Without a launcher: run this many ranks as threads of one process (CPU backend),
    /// to try CP/EP layouts on one machine.
    #[arg(long, default_value_t = 1)]
    pub ranks: usize,
}

#[derive(Args, Debug)]
pub struct EstimateArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// World size of the layout (default: the smallest the degrees fit).
    #[arg(long)]
    pub world: Option<usize>,
    /// Device memory per GPU to check the budget against: h100, h200, gb200 or a number of GiB
    /// (default: the topology file's GPU, else no check).
    #[arg(long)]
    pub device_memory: Option<String>,
    /// Also predict the step time (optimized variant), and rank every layout of the world.
    #[arg(long)]
    pub time: bool,
    /// Rates file written by `calibrate` (default: datasheet rates of the topology's GPU).
    #[arg(long, requires = "time")]
    pub rates: Option<PathBuf>,
    /// Every rank on one GPU, NCCL over loopback sockets (bench/nccl_one_gpu.sh); the link is
    /// the rates file's `loopback`.
    #[arg(long, requires = "rates")]
    pub one_gpu: bool,
}

#[derive(Args, Debug)]
pub struct CalibrateArgs {
    /// Backend (default: CUDA when a GPU and driver are found, else CPU).
    #[arg(long, value_enum)]
    pub backend: Option<BackendKind>,
    /// Profiles whose shapes to measure (default: quick and bench on a GPU, quick on the CPU).
    #[arg(long, value_delimiter = ',')]
    pub profile: Vec<String>,
    /// The rates file to write (JSON).
    #[arg(short, long, default_value = "rates.json")]
    pub output: PathBuf,
    /// Fit the loopback link (ranks sharing one GPU) to these multi-rank results files and add
    /// it to the rates file given by --output, which must exist; nothing is measured.
    #[arg(long, num_args = 1..)]
    pub link_from: Vec<PathBuf>,
}

#[derive(Args, Debug)]
pub struct CompareArgs {
    /// The results file to compare against (JSON Lines of `run`).
    pub base: PathBuf,
    /// The results file under test.
    pub new: PathBuf,
    /// A median slower (or a peak larger) by more than this is a regression, if also outside
    /// the noise band: a percentage, `3%` or `3`.
    #[arg(long, default_value = "3%", value_parser = parse_percent)]
    pub threshold: f64,
}

/// `3%` or `3` as the fraction 0.03.
pub fn parse_percent(s: &str) -> Result<f64, String> {
    let n = s.trim().trim_end_matches('%').trim();
    match n.parse::<f64>() {
        Ok(x) if x.is_finite() && x >= 0.0 => Ok(x / 100.0),
        _ => Err(format!("`{s}` is not a percentage (e.g. 3%)")),
    }
}

#[derive(Args, Debug)]
pub struct ReportArgs {
    /// Results files (JSON Lines of `run`); each is one colour in the charts.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// The HTML file to write.
    #[arg(short, long, default_value = "report.html")]
    pub output: PathBuf,
}

#[derive(clap::Subcommand, Debug, Clone)]
pub enum TopoCommand {
    /// Print the rank -> GPU map of a world on a topology file, and its communication cost.
    Show(ShowArgs),
    /// Write a topology file for this machine (NVML, else `nvidia-smi topo -m`).
    Discover(DiscoverArgs),
}

#[derive(clap::Args, Debug, Clone)]
pub struct ShowArgs {
    /// Topology file (see topology/README.md).
    #[arg(long)]
    pub topology: PathBuf,
    /// Number of ranks; default: every GPU of the topology.
    #[arg(long)]
    pub world: Option<usize>,
    #[command(flatten)]
    pub layout: crate::layout::LayoutArgs,
    /// Number of experts, to check that EP divides it.
    #[arg(long)]
    pub experts: Option<usize>,
    /// Bytes each rank sends to its TP group per step (for the cost estimate).
    #[arg(long, default_value_t = 1e9)]
    pub tp_bytes: f64,
    #[arg(long, default_value_t = 1e9)]
    pub cp_bytes: f64,
    #[arg(long, default_value_t = 1e9)]
    pub ep_bytes: f64,
    #[arg(long, default_value_t = 1e9)]
    pub dp_bytes: f64,
}

#[derive(clap::Args, Debug, Clone)]
pub struct DiscoverArgs {
    /// Where to write the file; default: stdout.
    #[arg(long, short)]
    pub output: Option<PathBuf>,
    /// Topology name; default: the host name.
    #[arg(long)]
    pub name: Option<String>,
    /// Per-GPU network bandwidth in GB/s per direction (a 400 Gb/s NIC is 50).
    #[arg(long)]
    pub network_gb_per_s: Option<f64>,
    /// GB/s per direction of one NVLink; default 50 on Blackwell, else 25.
    #[arg(long)]
    pub nvlink_gb_per_link: Option<f64>,
    /// Skip NVML and read `nvidia-smi topo -m`.
    #[arg(long)]
    pub no_nvml: bool,
    #[arg(long, default_value = "nvidia-smi")]
    pub nvidia_smi: PathBuf,
}
