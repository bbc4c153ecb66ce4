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
    /// What the output was compared with: "baseline", "none" for the baseline itself, or
    /// "single-rank" (distributed runs: the same variant on one rank alone).
    pub reference: String,
    /// With `reference: "single-rank"`, the gate against the baseline of the same layout.
    pub vs_baseline: Option<Check>,
    /// The parallel layout and this rank's coordinates in it.
    pub layout: Option<LayoutRecord>,
    pub peak_mem_bytes: Option<u64>,
    pub est_mem_bytes: Option<u64>,
    pub metrics: serde_json::Map<String, serde_json::Value>,
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
}

impl RunInfo {
    pub fn new(backend: &dyn crate::backend::Backend, profile: &str, rank: usize, world_size: usize) -> Self {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        RunInfo {
            run_id: format!("{}-{}", now.as_millis(), std::process::id()),
            timestamp: rfc3339(now.as_secs()),
            machine: Machine {
                hostname: hostname(),
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
        }
    }
}

pub fn git_rev() -> &'static str {
    env!("RWM_GIT_REV")
}

pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "unknown".into())
}

/// UTC seconds since the epoch as `YYYY-MM-DDTHH:MM:SSZ` (civil-from-days, H. Hinnant).
pub fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_known_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        // 2000-02-29 12:34:56 UTC (leap day)
        assert_eq!(rfc3339(951_827_696), "2000-02-29T12:34:56Z");
        assert_eq!(rfc3339(1_795_000_000), "2026-11-18T11:06:40Z");
    }
}
