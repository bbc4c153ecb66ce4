//! Results files read back (for `compare` and `report`): every JSON Lines record of any
//! schema version, leniently: only the fields those commands use, unknown ones ignored.

use serde::Deserialize;
use serde_json::Value;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{}:{line}: {msg}", path.display())]
    Parse { path: PathBuf, line: usize, msg: String },
    #[error("{}: no records", path.display())]
    Empty { path: PathBuf },
}

/// One record as `compare` and `report` see it.
#[derive(Clone, Debug, Deserialize)]
pub struct Row {
    pub target: String,
    pub variant: String,
    pub status: String,
    #[serde(default)]
    pub run_id: String,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub config: Value,
    #[serde(default)]
    pub gemm_dtype: Option<String>,
    #[serde(default)]
    pub layout: Value,
    #[serde(default = "one")]
    pub world_size: usize,
    #[serde(default)]
    pub rank: usize,
    #[serde(default)]
    pub median_ms: Option<f64>,
    #[serde(default)]
    pub p10_ms: Option<f64>,
    #[serde(default)]
    pub p90_ms: Option<f64>,
    #[serde(default)]
    pub tokens_per_s: Option<f64>,
    #[serde(default)]
    pub peak_mem_bytes: Option<u64>,
    #[serde(default)]
    pub est_mem_bytes: Option<u64>,
    #[serde(default)]
    pub max_err: Option<f64>,
    #[serde(default)]
    pub rel_l2_err: Option<f64>,
    #[serde(default)]
    pub metrics: serde_json::Map<String, Value>,
    #[serde(default)]
    pub machine: Value,
    #[serde(default)]
    pub env: Option<Value>,
}

fn one() -> usize {
    1
}

impl Row {
    /// The layout without this rank's coordinates, e.g. `tp1 cp2 ep2 dp1`; "" on one rank
    /// and for records written before layouts were recorded.
    pub fn layout_name(&self) -> String {
        let Some(l) = self.layout.as_object().filter(|_| self.world_size > 1) else { return String::new() };
        let mut s: Vec<String> =
            ["tp", "cp", "ep", "dp"].iter().filter_map(|k| l.get(*k).map(|v| format!("{k}{v}"))).collect();
        if l.get("ep_layout").and_then(Value::as_str) == Some("folded") && l.get("ep").is_some_and(|e| e != 1) {
            s.push("folded".into());
        }
        s.join(" ")
    }

    /// Layout and coordinates apart, so records of one layout match across runs.
    fn layout_dims(&self) -> Value {
        let mut l = self.layout.clone();
        if let Some(o) = l.as_object_mut() {
            o.remove("coords");
        }
        l
    }

    /// Whether two records measured the same thing on the same rank (and so can be compared).
    pub fn same_work(&self, o: &Row) -> bool {
        self.rank == o.rank && self.same_work_any_rank(o)
    }

    /// Whether two records measured the same thing, on any rank of the same layout.
    pub fn same_work_any_rank(&self, o: &Row) -> bool {
        self.target == o.target
            && self.variant == o.variant
            && self.gemm_dtype == o.gemm_dtype
            && self.world_size == o.world_size
            && self.config == o.config
            && self.layout_dims() == o.layout_dims()
    }
}

/// Every record of a JSON Lines file; blank lines are skipped, anything else that is not a
/// record is an error naming the file and line.
pub fn read(path: &Path) -> Result<Vec<Row>, Error> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Read { path: path.into(), source })?;
    let mut rows = vec![];
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let row = serde_json::from_str::<Row>(line).map_err(|e| Error::Parse {
            path: path.into(),
            line: i + 1,
            msg: without_position(&e),
        })?;
        rows.push(row);
    }
    if rows.is_empty() {
        return Err(Error::Empty { path: path.into() });
    }
    Ok(rows)
}

/// serde_json's message without its " at line 1 column N" (each line is parsed alone), with the column.
fn without_position(e: &serde_json::Error) -> String {
    let s = e.to_string();
    let msg = s.rfind(" at line ").map_or(s.as_str(), |i| &s[..i]);
    format!("{msg} (column {})", e.column())
}
