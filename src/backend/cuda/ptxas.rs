//! ptxas's resource report (`--ptxas-options=-v` in an NVRTC log): registers, stack and
//! spill bytes per kernel, and the table of spills a kernel is allowed (tests/kernel_spills.toml).

use std::collections::BTreeMap;

/// What ptxas reports for one entry function.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    pub kernel: String,
    pub registers: u32,
    pub stack: u32,
    pub spill_stores: u32,
    pub spill_loads: u32,
}

impl Usage {
    /// Bytes spilled: stores plus loads.
    pub fn spills(&self) -> u32 {
        self.spill_stores + self.spill_loads
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SpillTableError {
    #[error("spill table: {0}")]
    Toml(String),
    #[error("spill table: [{arch}] {kernel} = {value}: expected a byte count")]
    Value { arch: String, kernel: String, value: String },
}

/// The entry functions of an NVRTC log with `-v`, in the order ptxas compiled them.
pub fn parse(log: &str) -> Vec<Usage> {
    let mut out: Vec<Usage> = Vec::new();
    // The function the next "N bytes stack frame" line describes (entries and called functions alike).
    let mut props_of = String::new();
    let num_before = |line: &str, word: &str| -> Option<u32> {
        let words: Vec<&str> = line.split(|c: char| c.is_whitespace() || c == ',').filter(|w| !w.is_empty()).collect();
        words.windows(2).find(|w| w[1] == word).and_then(|w| w[0].parse().ok())
    };
    for line in log.lines() {
        if let Some(rest) = line.split("Compiling entry function '").nth(1) {
            let name = rest.split('\'').next().unwrap_or_default();
            out.push(Usage { kernel: name.to_string(), ..Usage::default() });
        } else if let Some(rest) = line.split("Function properties for ").nth(1) {
            props_of = rest.trim().to_string();
        } else if line.contains("bytes stack frame") {
            if let Some(u) = out.last_mut().filter(|u| u.kernel == props_of) {
                u.stack = num_before(line, "bytes").unwrap_or(0);
                let parts: Vec<&str> = line.split(',').collect();
                u.spill_stores =
                    parts.iter().find(|p| p.contains("spill stores")).and_then(|p| num_before(p, "bytes")).unwrap_or(0);
                u.spill_loads =
                    parts.iter().find(|p| p.contains("spill loads")).and_then(|p| num_before(p, "bytes")).unwrap_or(0);
            }
        } else if line.contains("ptxas info")
            && line.contains(" registers")
            && let Some(u) = out.last_mut()
        {
            u.registers = num_before(line, "registers").unwrap_or(0);
        }
    }
    out
}

/// Allowed spill bytes (stores plus loads) by architecture, then kernel; a kernel not listed
/// may spill nothing. `nvrtc` names the NVRTC (ptxas) version the numbers were measured with.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SpillTable {
    nvrtc: Option<String>,
    allowed: BTreeMap<String, BTreeMap<String, u32>>,
}

impl SpillTable {
    /// `nvrtc = "13.0"`, then `[sm_90a]` tables of `kernel = bytes`.
    pub fn parse(text: &str) -> Result<SpillTable, SpillTableError> {
        let mut doc: toml::Table = text.parse().map_err(|e: toml::de::Error| SpillTableError::Toml(e.to_string()))?;
        let nvrtc = match doc.remove("nvrtc") {
            None => None,
            Some(toml::Value::String(v)) => Some(v),
            Some(v) => return Err(SpillTableError::Toml(format!("nvrtc = {v}: expected a version string"))),
        };
        let mut out = BTreeMap::new();
        for (arch, kernels) in doc {
            let kernels =
                kernels.as_table().ok_or_else(|| SpillTableError::Toml(format!("[{arch}] must be a table")))?;
            let mut m = BTreeMap::new();
            for (kernel, v) in kernels {
                let bytes = v.as_integer().and_then(|b| u32::try_from(b).ok()).ok_or_else(|| {
                    SpillTableError::Value { arch: arch.clone(), kernel: kernel.clone(), value: v.to_string() }
                })?;
                m.insert(kernel.clone(), bytes);
            }
            out.insert(arch, m);
        }
        Ok(SpillTable { nvrtc, allowed: out })
    }

    /// The NVRTC version ("13.0") the table was measured with.
    pub fn nvrtc(&self) -> Option<&str> {
        self.nvrtc.as_deref()
    }

    pub fn allowed(&self, arch: &str, kernel: &str) -> u32 {
        self.allowed.get(arch).and_then(|m| m.get(kernel)).copied().unwrap_or(0)
    }

    /// The regression, if any: `usage` on `arch` spills more than its entry allows.
    pub fn excess(&self, arch: &str, usage: &Usage) -> Option<String> {
        let allowed = self.allowed(arch, &usage.kernel);
        (usage.spills() > allowed).then(|| {
            format!(
                "{} on {arch} spills {} bytes ({} stored, {} loaded); tests/kernel_spills.toml allows {allowed}",
                usage.kernel,
                usage.spills(),
                usage.spill_stores,
                usage.spill_loads
            )
        })
    }

    /// Every (arch, kernel, bytes) listed.
    pub fn entries(&self) -> impl Iterator<Item = (&str, &str, u32)> {
        self.allowed.iter().flat_map(|(a, m)| m.iter().map(move |(k, b)| (a.as_str(), k.as_str(), *b)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = "ptxas info    : 0 bytes gmem
ptxas info    : Compiling entry function 'flash_fwd_d128_w8m2' for 'sm_90a'
ptxas info    : Function properties for flash_fwd_d128_w8m2
ptxas         .     48 bytes stack frame, 76 bytes spill stores, 60 bytes spill loads
ptxas info    : Used 255 registers, used 1 barriers, 408 bytes cmem[0]
ptxas info    : Compile time = 28.686 ms
ptxas info    : Function properties for helper
ptxas         .     16 bytes stack frame, 8 bytes spill stores, 8 bytes spill loads
ptxas info    : Compiling entry function 'amax_f32' for 'sm_90a'
ptxas info    : Function properties for amax_f32
ptxas         .     0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Used 13 registers, used 0 barriers
";

    #[test]
    fn parses_entries_and_ignores_called_functions() {
        let u = parse(LOG);
        assert_eq!(
            u,
            [
                Usage {
                    kernel: "flash_fwd_d128_w8m2".into(),
                    registers: 255,
                    stack: 48,
                    spill_stores: 76,
                    spill_loads: 60
                },
                Usage { kernel: "amax_f32".into(), registers: 13, ..Usage::default() },
            ]
        );
        assert_eq!(u[0].spills(), 136);
        assert!(parse("nvrtc: error: something").is_empty());
    }

    #[test]
    fn spill_table() {
        let t = SpillTable::parse("nvrtc = \"13.0\"\n[sm_90a]\nflash_fwd_d128_w8m2 = 136\n[sm_100a]\nx = 8\n").unwrap();
        assert_eq!(t.nvrtc(), Some("13.0"));
        assert_eq!(t.allowed("sm_90a", "flash_fwd_d128_w8m2"), 136);
        assert_eq!(t.allowed("sm_90a", "x"), 0);
        assert_eq!(t.allowed("sm_80", "flash_fwd_d128_w8m2"), 0);
        assert_eq!(t.entries().count(), 2);
        let usage = |kernel: &str, spill_stores, spill_loads| Usage {
            kernel: kernel.into(),
            registers: 255,
            stack: 0,
            spill_stores,
            spill_loads,
        };
        // At or under the entry passes; a new spill, or more than listed, is a regression.
        assert_eq!(t.excess("sm_90a", &usage("flash_fwd_d128_w8m2", 76, 60)), None);
        assert_eq!(t.excess("sm_90a", &usage("flash_fwd_d128_w8m2", 10, 0)), None);
        let more = t.excess("sm_90a", &usage("flash_fwd_d128_w8m2", 80, 60)).unwrap();
        assert!(more.contains("spills 140 bytes") && more.contains("allows 136"), "{more}");
        let new = t.excess("sm_80", &usage("flash_fwd_d128_w8m2", 4, 4)).unwrap();
        assert!(new.contains("on sm_80 spills 8 bytes") && new.contains("allows 0"), "{new}");
        assert!(matches!(SpillTable::parse("[sm_90a]\nk = -1"), Err(SpillTableError::Value { .. })));
        assert!(matches!(SpillTable::parse("sm_90a = 3"), Err(SpillTableError::Toml(_))));
    }
}
