//! The targets, one file each. Adding one: a file `NAME.rs` with a `REGISTRATION`, a config
//! implementing `harness::target::Target` and the `Workload` it runs, and its name on one line
//! of `register!` below (docs/ARCHITECTURE.md shows a whole one).

use crate::config::ConfigError;
use crate::harness::target::Registration;

/// Declares each target's module and lists its registration in `ALL`.
macro_rules! register {
    ($($name:ident),* $(,)?) => {
        $(pub mod $name;)*
        /// Every target, in the order `list` shows and a run without `--target` runs them.
        pub static ALL: &[Registration] = &[$($name::REGISTRATION),*];
    };
}

register! {
    llama,
    moe,
    gpt4,
}

/// What a run of these targets keeps alive inside one layer, phase by phase (their run budgets).
pub mod working_set;

/// Routing records of the MoE targets (tallies, sums over ranks, the recomputable statistics).
pub mod routing;

/// What a CUDA graph's pool holds for a captured pass beyond its live bytes (llama's graph variants).
pub mod graph_pool;

pub fn find(name: &str) -> Result<&'static Registration, ConfigError> {
    ALL.iter().find(|r| r.name == name).ok_or_else(|| ConfigError::UnknownTarget {
        name: name.into(),
        allowed: ALL.iter().map(|r| r.name).collect::<Vec<_>>().join(", "),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::harness::target::Size;
    use crate::harness::variant::BASELINE;

    #[test]
    fn every_target_declares_one_reference_and_distinct_variants() {
        for r in ALL {
            let vs = (r.config)(Size::Quick).variants();
            let refs: Vec<_> = vs.iter().filter(|v| v.is_reference()).map(|v| v.name).collect();
            assert_eq!(refs, [BASELINE], "{}", r.name);
            let mut names: Vec<_> = vs.iter().map(|v| v.name).collect();
            names.dedup();
            assert_eq!(names.len(), vs.len(), "{}: variant names repeat", r.name);
        }
    }

    #[test]
    fn every_preset_applies_and_the_config_names_its_target() {
        for r in ALL {
            let mut cfg = (r.config)(Size::Bench);
            assert_eq!(cfg.name(), r.name);
            for p in cfg.presets() {
                cfg.set("preset", p).unwrap_or_else(|e| panic!("{}.preset={p}: {e}", r.name));
                cfg.finish(&["preset"]).unwrap_or_else(|e| panic!("{}.preset={p}: {e}", r.name));
            }
            let e = cfg.set("preset", "nonesuch").unwrap_err().to_string();
            assert!(e.contains(&format!("{}.preset=nonesuch", r.name)), "{e}");
        }
    }
}
