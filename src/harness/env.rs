//! What a run ran on and under, recorded with every result (`env` in the record):
//! library versions, the GPU's identity and settings at the start (NVML), the variables
//! that steer NCCL and device selection, the launcher's job ids and the build's features.
//! GPU fields are null on the CPU backend; a field NVML cannot answer is null too.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Environment {
    /// NVIDIA driver version (NVML), e.g. "580.95.05".
    pub driver_version: Option<String>,
    /// Highest CUDA version the driver supports (NVML), e.g. "13.0".
    pub cuda_version: Option<String>,
    /// Version of the NCCL library this process loaded, e.g. "2.27.7"; null when none was.
    pub nccl_version: Option<String>,
    /// MPI_Get_library_version's text; null in a build without the `mpi` feature.
    pub mpi_version: Option<String>,
    pub gpu: Gpu,
    pub cuda_visible_devices: Option<String>,
    /// Every NCCL_* variable of the process.
    pub nccl_env: BTreeMap<String, String>,
    /// NVLink SHARP (NCCL_NVLS_ENABLE) and multi-node NVLink (NCCL_MNNVL_ENABLE) as set:
    /// false for 0, true for 1; null when unset or left to NCCL (auto).
    pub nvls: Option<bool>,
    pub mnnvl: Option<bool>,
    /// The launcher that started the ranks, as `world` detects it; null without one.
    pub launcher: Option<String>,
    /// Batch job id (SLURM_JOB_ID, else PBS_JOBID, LSB_JOBID or FLUX_JOB_ID) and Slurm step.
    pub job_id: Option<String>,
    pub job_step: Option<String>,
    /// Cargo features of this build.
    pub features: Vec<String>,
}

/// The device this rank ran on, at the start of the run.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Gpu {
    /// CUDA's ordinal of the device in this process (after CUDA_VISIBLE_DEVICES).
    pub ordinal: Option<usize>,
    pub uuid: Option<String>,
    pub pci_bus_id: Option<String>,
    pub sm_clock_mhz: Option<u32>,
    pub mem_clock_mhz: Option<u32>,
    pub power_limit_w: Option<f64>,
    /// ECC mode and MIG mode, current (not pending).
    pub ecc: Option<bool>,
    pub mig: Option<bool>,
}

impl Environment {
    /// This process's environment, with the GPU of `backend` (if any).
    pub fn collect(backend: &dyn crate::backend::Backend) -> Self {
        let vars: Vec<(String, String)> =
            std::env::vars_os().filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?))).collect();
        let mut env = Self::from_vars(&vars);
        env.nccl_version = nccl_version();
        env.mpi_version = mpi_version();
        if let Some((ordinal, uuid)) = backend.device_identity() {
            env.gpu.ordinal = Some(ordinal);
            match nvml(&uuid, &mut env) {
                Ok(()) => {}
                Err(e) => tracing::warn!("NVML: {e}; the record's GPU clocks and modes are null"),
            }
            env.gpu.uuid = Some(uuid);
        }
        env
    }

    /// Everything read from variables alone.
    pub fn from_vars(vars: &[(String, String)]) -> Self {
        let get = |k: &str| vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        let switch = |k: &str| match get(k).as_deref().map(str::trim) {
            Some("0") => Some(false),
            Some("1") => Some(true),
            _ => None,
        };
        Environment {
            cuda_visible_devices: get("CUDA_VISIBLE_DEVICES"),
            nccl_env: vars.iter().filter(|(k, _)| k.starts_with("NCCL_")).cloned().collect(),
            nvls: switch("NCCL_NVLS_ENABLE"),
            mnnvl: switch("NCCL_MNNVL_ENABLE"),
            launcher: crate::world::detect_launcher(get).map(|l| l.name.to_string()),
            job_id: ["SLURM_JOB_ID", "PBS_JOBID", "LSB_JOBID", "FLUX_JOB_ID"].iter().find_map(|k| get(k)),
            job_step: get("SLURM_STEP_ID"),
            features: features(),
            ..Default::default()
        }
    }
}

pub fn features() -> Vec<String> {
    let mut f = vec![];
    if cfg!(feature = "mpi") {
        f.push("mpi".to_string());
    }
    f
}

/// NCCL's version, asked only when this process has the library loaded already (a GPU run
/// of several ranks): loading it just to ask would fail, or cost, everywhere else.
fn nccl_version() -> Option<String> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    if !maps.lines().any(|l| l.contains("/libnccl.so")) {
        return None;
    }
    let code = cudarc::nccl::result::get_nccl_version().ok()?;
    // NCCL_VERSION_CODE: major * 10000 + minor * 100 + patch since 2.9.
    Some(format!("{}.{}.{}", code / 10000, code / 100 % 100, code % 100))
}

#[cfg(feature = "mpi")]
fn mpi_version() -> Option<String> {
    mpi::environment::library_version().ok().map(|s| s.trim_end_matches(['\0', '\n', ' ']).to_string())
}

#[cfg(not(feature = "mpi"))]
fn mpi_version() -> Option<String> {
    None
}

/// Driver, clocks, power limit and modes of the GPU with this UUID.
fn nvml(uuid: &str, env: &mut Environment) -> Result<(), nvml_wrapper::error::NvmlError> {
    use nvml_wrapper::Nvml;
    use nvml_wrapper::enum_wrappers::device::Clock;
    // Driver installs ship libnvidia-ml.so.1; the unversioned name comes only with dev files.
    let nvml = Nvml::builder().lib_path(std::ffi::OsStr::new("libnvidia-ml.so.1")).init().or_else(|_| Nvml::init())?;
    env.driver_version = nvml.sys_driver_version().ok();
    env.cuda_version = nvml.sys_cuda_driver_version().ok().map(|v| {
        format!("{}.{}", nvml_wrapper::cuda_driver_version_major(v), nvml_wrapper::cuda_driver_version_minor(v))
    });
    let d = nvml.device_by_uuid(uuid)?;
    let g = &mut env.gpu;
    g.pci_bus_id = d.pci_info().ok().map(|p| p.bus_id);
    g.sm_clock_mhz = d.clock_info(Clock::SM).ok();
    g.mem_clock_mhz = d.clock_info(Clock::Memory).ok();
    g.power_limit_w = d.enforced_power_limit().ok().map(|mw| mw as f64 / 1e3);
    g.ecc = d.is_ecc_enabled().ok().map(|e| e.currently_enabled);
    g.mig = d.mig_mode().ok().map(|m| m.current == 1);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(kv: &[(&str, &str)]) -> Vec<(String, String)> {
        kv.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn variables_of_nccl_slurm_and_cuda_are_recorded() {
        let e = Environment::from_vars(&vars(&[
            ("NCCL_NVLS_ENABLE", "0"),
            ("NCCL_DEBUG", "WARN"),
            ("CUDA_VISIBLE_DEVICES", "2,3"),
            ("SLURM_JOB_ID", "4242"),
            ("SLURM_STEP_ID", "1"),
            ("SLURM_STEP_NUM_TASKS", "8"),
            ("SLURM_PROCID", "3"),
            ("PATH", "/bin"),
        ]));
        assert_eq!(e.nvls, Some(false));
        assert_eq!(e.mnnvl, None, "unset: NCCL's default");
        assert_eq!(e.nccl_env.len(), 2);
        assert_eq!(e.nccl_env["NCCL_DEBUG"], "WARN");
        assert_eq!(e.cuda_visible_devices.as_deref(), Some("2,3"));
        assert_eq!((e.job_id.as_deref(), e.job_step.as_deref()), (Some("4242"), Some("1")));
        assert_eq!(e.launcher.as_deref(), Some("Slurm srun"));
        assert_eq!(e.gpu, Gpu::default());
    }

    #[test]
    fn the_cpu_backend_has_no_gpu_fields() {
        let e = Environment::collect(&crate::backend::cpu::CpuBackend::new());
        assert_eq!(e.gpu, Gpu::default());
        assert_eq!(e.driver_version, None);
        assert_eq!(e.features.contains(&"mpi".to_string()), cfg!(feature = "mpi"));
    }
}
