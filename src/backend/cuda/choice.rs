//! The backend's kernel choice: instantiations chosen by name (`choose_*`, for benchmarks),
//! and its entry to `select`, the pure function of op, shape and architecture that decides
//! what runs.

use super::select::{self, Op, Path};
use super::tiles::{DEFAULT_FLASH, FLASH_KERNELS, FlashKernel, GROUPED_KERNELS, GroupedKernel};
use super::*;

#[derive(Default)]
pub(crate) struct Choice {
    flash: std::sync::RwLock<Option<&'static str>>,
    grouped: std::sync::RwLock<Option<&'static str>>,
    /// The FP8 grouped GEMM kernel chosen by name (grouped_fp8.rs).
    pub(crate) grouped_fp8: std::sync::RwLock<Option<&'static str>>,
    /// At most this many blocks for a persistent flash kernel (tests: several tiles a block on small shapes).
    pub(crate) flash_grid_cap: std::sync::RwLock<Option<u32>>,
    /// Resident clusters of a multicast kernel, by (name, shared memory bytes).
    clusters: std::sync::Mutex<std::collections::HashMap<(&'static str, u32), u32>>,
    /// Ops whose architecture fallback has been logged (once each).
    noted: std::sync::Mutex<std::collections::HashSet<&'static str>>,
}

impl CudaBackend {
    /// Runs this flash attention instantiation (for its head dim) instead of the default; None restores it.
    pub fn choose_flash_kernel(&self, name: Option<&str>) -> Result<()> {
        let k = match name {
            None => None,
            Some(n) => {
                Some(FLASH_KERNELS.iter().find(|k| k.name == n).map(|k| k.name).ok_or_else(|| Error::Unsupported {
                    op: "flash kernel",
                    what: format!("{n} (known: {:?})", FLASH_KERNELS.iter().map(|k| k.name).collect::<Vec<_>>()),
                })?)
            }
        };
        if let Some(fk) = FLASH_KERNELS.iter().find(|f| Some(f.name) == k)
            && fk.sm90a()
            && !self.target().has_wgmma()
        {
            return Err(Error::Unsupported { op: "flash kernel", what: format!("{} on {}", fk.name, self.arch()) });
        }
        *self.choice.flash.write().unwrap() = k;
        Ok(())
    }

    /// Launches persistent flash kernels (`_pers`, `_dyn`) with at most `blocks` blocks instead of one an SM,
    /// so that small shapes give each block several query tiles (for tests); None restores the default.
    pub fn cap_persistent_flash_grid(&self, blocks: Option<u32>) {
        *self.choice.flash_grid_cap.write().unwrap() = blocks.map(|b| b.max(1));
    }

    /// Blocks of a persistent flash kernel over `tiles` query tiles: one an SM, or the cap.
    pub(crate) fn persistent_flash_grid(&self, tiles: usize) -> u32 {
        let cap = self.choice.flash_grid_cap.read().unwrap().unwrap_or(self.sm_count());
        tiles.min(cap as usize) as u32
    }

    /// The mma.sync default of head dim `d`: where the sm90 kernel cannot take the tensors.
    pub(crate) fn select_mma_flash(&self, d: usize) -> Result<FlashKernel> {
        DEFAULT_FLASH
            .iter()
            .find_map(|n| FLASH_KERNELS.iter().find(|k| k.name == *n && k.d == d))
            .copied()
            .ok_or_else(|| Error::Unsupported { op: "flash attention", what: format!("head dim {d}") })
    }

    /// Runs this grouped GEMM instantiation instead of the default; None restores it.
    pub fn choose_grouped_kernel(&self, name: Option<&str>) -> Result<()> {
        let k = match name {
            None => None,
            Some(n) => Some(GROUPED_KERNELS.iter().find(|k| k.name == n).map(|k| k.name).ok_or_else(|| {
                Error::Unsupported {
                    op: "grouped kernel",
                    what: format!("{n} (known: {:?})", GROUPED_KERNELS.iter().map(|k| k.name).collect::<Vec<_>>()),
                }
            })?),
        };
        if let Some(gk) = GROUPED_KERNELS.iter().find(|g| Some(g.name) == k)
            && gk.sm90a
            && !self.target().has_wgmma()
        {
            return Err(Error::Unsupported { op: "grouped kernel", what: format!("{} on {}", gk.name, self.arch()) });
        }
        *self.choice.grouped.write().unwrap() = k;
        Ok(())
    }

    /// What runs `op` on this GPU (`select::select` with the kernels chosen by name); an
    /// architecture fallback is logged once per op, a refusal names the architecture.
    pub(crate) fn select(&self, op: Op) -> Result<Path> {
        let (flash, grouped) = (*self.choice.flash.read().unwrap(), *self.choice.grouped.read().unwrap());
        let s = select::select(op, self.target(), select::Chosen { flash, grouped })
            .map_err(|e| Error::Unsupported { op: op.name(), what: e.to_string() })?;
        if let Some(line) = s.fallback
            && self.choice.noted.lock().unwrap().insert(op.name())
        {
            tracing::info!("{line}");
        }
        Ok(s.path)
    }

    /// How many clusters of two blocks of `gk` with `smem` bytes fit on the device at once (cached).
    pub(crate) fn resident_pairs(&self, gk: &GroupedKernel, smem: u32) -> Result<u32> {
        self.resident_pairs_of(gk.file, gk.name, gk.threads, smem)
    }

    /// The same for kernel `name` of `file` with `threads` a block (the FP8 grouped GEMM's too).
    pub(crate) fn resident_pairs_of(
        &self,
        file: &'static str,
        name: &'static str,
        threads: u32,
        smem: u32,
    ) -> Result<u32> {
        if let Some(n) = self.choice.clusters.lock().unwrap().get(&(name, smem)) {
            return Ok(*n);
        }
        let n = self.max_active_clusters(file, name, threads, smem, 2)?;
        self.choice.clusters.lock().unwrap().insert((name, smem), n);
        Ok(n)
    }
}
