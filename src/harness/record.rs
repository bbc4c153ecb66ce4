//! One JSON Lines record per (target, variant, rank). The schema is documented
//! in README.md and in schema/results-v2.json; bump SCHEMA_VERSION on any change.

use serde::{Deserialize, Serialize};

pub const SCHEMA_VERSION: u32 = 2;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Ran and matched the reference within tolerance.
    Ok,
    /// Ran, but its output differs from the reference beyond tolerance.
    Failed,
    /// Did not run to the end (error text in `error`).
    Error,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Machine {
    pub hostname: String,
    pub os: String,
    pub arch: String,
    pub cpus: usize,
    pub backend: String,
    pub device: String,
    /// The NCCL_* variables the run was started with (NCCL_NVLS_ENABLE, NCCL_MNNVL_ENABLE, ...):
    /// empty means NCCL's own defaults. Missing in records written before it existed.
    #[serde(default)]
    pub nccl_env: std::collections::BTreeMap<String, String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Record {
    pub schema_version: u32,
    pub run_id: String,
    pub timestamp: String,
    pub git_rev: String,
    pub rwm_version: String,
    pub machine: Machine,
    pub rank: usize,
    pub world_size: usize,
    pub target: String,
    pub variant: String,
    pub profile: String,
    pub gemm_dtype: String,
    pub config: serde_json::Value,
    pub status: Status,
    pub error: Option<String>,
    pub warmup: usize,
    pub iterations: usize,
    pub samples_ms: Vec<f64>,
    pub median_ms: Option<f64>,
    pub p10_ms: Option<f64>,
    pub p90_ms: Option<f64>,
    pub min_ms: Option<f64>,
    pub max_ms: Option<f64>,
    pub tokens: usize,
    pub tokens_per_s: Option<f64>,
    pub tflops: Option<f64>,
    /// Baseline median over this variant's median; absent for FAILED or errored variants.
    pub speedup: Option<f64>,
    pub max_err: Option<f64>,
    pub rel_l2_err: Option<f64>,
    pub tolerance: f64,
    /// Which error `tolerance` bounds: "max_err" or "rel_l2".
    pub gate: super::GateMetric,
    /// What the output was compared with: the reference variant (`BASELINE`), "none" for the baseline itself, or
    /// "single-rank" (distributed runs: the same variant on one rank alone).
    pub reference: String,
    /// With `reference: "single-rank"`, the gate against the baseline of the same layout.
    pub vs_baseline: Option<Check>,
    /// The parallel layout and this rank's coordinates in it.
    pub layout: Option<LayoutRecord>,
    pub peak_mem_bytes: Option<u64>,
    pub est_mem_bytes: Option<u64>,
    /// (est_mem_bytes - peak_mem_bytes) / peak_mem_bytes: the estimate's signed error against the
    /// measured peak (device pool on a GPU, the byte counter on the CPU). Absent before issue 16.
    #[serde(default)]
    pub est_err: Option<f64>,
    pub metrics: serde_json::Map<String, serde_json::Value>,
    /// Versions, GPU identity and settings, NCCL variables, job ids (`harness::env`).
    pub env: super::env::Environment,
    /// How each health gate that applies judged this record (`harness::gates`); a failed one
    /// makes the record FAILED. Absent before issue 16.
    #[serde(default)]
    pub gates: Vec<GateOutcome>,
}

/// One comparison of an output with a reference.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Check {
    pub reference: String,
    pub max_err: Option<f64>,
    pub rel_l2_err: Option<f64>,
    pub tolerance: f64,
    pub gate: super::GateMetric,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq)]
pub struct LayoutRecord {
    #[serde(flatten)]
    pub dims: crate::layout::ParallelDims,
    pub coords: crate::layout::Coords,
}

/// Identity of this run, shared by all its records.
#[derive(Clone, Debug)]
pub struct RunInfo {
    pub run_id: String,
    pub timestamp: String,
    pub machine: Machine,
    pub profile: String,
    pub rank: usize,
    pub world_size: usize,
    pub env: super::env::Environment,
}

impl RunInfo {
    pub fn new(backend: &dyn crate::backend::Backend, profile: &str, rank: usize, world_size: usize) -> Self {
        let now = time::OffsetDateTime::now_utc().replace_nanosecond(0).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
        RunInfo {
            run_id: run_id(now, random_u16()),
            timestamp: now.format(&time::format_description::well_known::Rfc3339).expect("UTC times format"),
            machine: Machine {
                hostname: crate::topology::host_name(),
                os: std::env::consts::OS.into(),
                arch: std::env::consts::ARCH.into(),
                cpus: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
                backend: format!("{:?}", backend.kind()).to_lowercase(),
                device: backend.device_name(),
                nccl_env: std::env::vars().filter(|(k, _)| k.starts_with("NCCL_")).collect(),
            },
            profile: profile.into(),
            rank,
            world_size,
            env: super::env::Environment::collect(backend),
        }
    }
}

/// `20261201T141502Z-3f9a`: the start in UTC, sortable as text, and a random suffix that
/// tells apart runs started in the same second.
pub fn run_id(t: time::OffsetDateTime, suffix: u16) -> String {
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z-{suffix:04x}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// 16 random bits from the standard library's per-process random hash keys.
fn random_u16() -> u16 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.finish() as u16
}

pub fn git_rev() -> &'static str {
    env!("RWM_GIT_REV")
}

/// How one health gate (`harness::gates`) judged one record.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GateOutcome {
    pub gate: String,
    pub value: f64,
    pub pass: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_are_utc_times_that_sort() {
        let t = |secs| time::OffsetDateTime::from_unix_timestamp(secs).unwrap();
        // 2000-02-29 12:34:56 UTC (leap day)
        assert_eq!(run_id(t(951_827_696), 0x3f9a), "20000229T123456Z-3f9a");
        assert_eq!(run_id(t(1_795_000_000), 7), "20261118T110640Z-0007");
        assert!(run_id(t(951_827_696), 0xffff) < run_id(t(951_827_697), 0));
        let info = RunInfo::new(&crate::backend::cpu::CpuBackend::new(), "quick", 0, 1);
        assert!(info.timestamp.ends_with('Z') && info.timestamp.len() == 20, "{}", info.timestamp);
        assert_eq!(info.run_id.len(), "20261118T110640Z-0007".len());
    }
}
