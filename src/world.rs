//! Who this process is among the ranks of a job. Under mpirun or srun (and built with the
//! `mpi` feature) ranks come from MPI; with no launcher there is one rank. The local rank
//! (which GPU of the node to use) comes from an all-gather of host names, not from
//! launcher variables, so it is right whatever launched the job.

pub mod fault;

use crate::backend::cpu::CpuBackend;
use crate::comm::single::SingleComm;
use crate::comm::{self, Comm};
use crate::watchdog;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "launched by {launcher} ({size} ranks) but this rwm-dist was built without MPI support: \
         rebuild with --features mpi (cargo build --release --features mpi)"
    )]
    NoMpiFeature { launcher: &'static str, size: String },
    #[error(
        "{launcher} started {expected} ranks but MPI_COMM_WORLD has {got}: the binary is linked against another MPI than the launcher's"
    )]
    SizeMismatch { launcher: &'static str, expected: usize, got: usize },
    #[error("MPI: {0}")]
    Mpi(String),
    #[error("{0}")]
    Env(String),
    #[error(transparent)]
    Comm(#[from] comm::Error),
}

pub type Result<T> = std::result::Result<T, Error>;

/// A launcher seen in the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launcher {
    pub name: &'static str,
    /// World size, when the launcher's variables say it.
    pub size: Option<usize>,
}

/// Recognise mpirun/mpiexec/srun from their variables (`get` reads one variable).
pub fn detect_launcher(get: impl Fn(&str) -> Option<String>) -> Option<Launcher> {
    let num = |k: &str| get(k).and_then(|v| v.trim().parse::<usize>().ok());
    if get("OMPI_COMM_WORLD_SIZE").is_some() {
        return Some(Launcher { name: "Open MPI mpirun", size: num("OMPI_COMM_WORLD_SIZE") });
    }
    if get("PMI_SIZE").is_some() {
        return Some(Launcher { name: "a PMI launcher (MPICH mpiexec, srun --mpi=pmi2)", size: num("PMI_SIZE") });
    }
    if get("MV2_COMM_WORLD_SIZE").is_some() {
        return Some(Launcher { name: "MVAPICH mpirun", size: num("MV2_COMM_WORLD_SIZE") });
    }
    if get("PMIX_RANK").is_some() {
        return Some(Launcher { name: "a PMIx launcher", size: num("SLURM_NTASKS") });
    }
    // Only srun sets SLURM_STEP_NUM_TASKS: an sbatch script outside srun is one process.
    if num("SLURM_STEP_NUM_TASKS").is_some() && get("SLURM_PROCID").is_some() {
        return Some(Launcher { name: "Slurm srun", size: num("SLURM_STEP_NUM_TASKS") });
    }
    None
}

/// (local rank, local size, node index) of `rank` from every rank's host name: ranks on
/// one host are numbered in rank order; nodes in order of their lowest rank.
pub fn locality(hosts: &[String], rank: usize) -> (usize, usize, usize) {
    let me = &hosts[rank];
    let local_rank = hosts[..rank].iter().filter(|h| *h == me).count();
    let local_size = hosts.iter().filter(|h| *h == me).count();
    let first = hosts.iter().position(|h| h == me).expect("rank's own host is in the list");
    let node = (0..first).filter(|&i| hosts[..i].iter().all(|h| h != &hosts[i])).count();
    (local_rank, local_size, node)
}

use crate::topology::host_name;

enum Inner {
    Single,
    #[cfg(feature = "mpi")]
    Mpi(Arc<comm::mpi::MpiComm>),
}

pub struct World {
    pub rank: usize,
    pub size: usize,
    /// This rank's index among the ranks on its host, and how many share the host.
    pub local_rank: usize,
    pub local_size: usize,
    pub hostname: String,
    /// Index of this rank's host among the job's hosts (in order of their lowest rank).
    pub node: usize,
    /// Host name of every rank, in rank order.
    pub hosts: Vec<String>,
    pub launcher: Option<Launcher>,
    inner: Inner,
}

impl std::fmt::Debug for World {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "World(rank {}/{}, local {}/{}, host {}, node {})",
            self.rank, self.size, self.local_rank, self.local_size, self.hostname, self.node
        )
    }
}

impl World {
    /// The world of this process, from the environment; also arms the watchdog when there
    /// are several ranks (`RWM_TIMEOUT_S`, default 600 s, 0 disables; one rank only when
    /// set; `RWM_SETUP_TIMEOUT_S`, default 120 s, for setup).
    pub fn init() -> Result<World> {
        Self::init_with_host(None)
    }

    /// As `init`, with this rank's host name given instead of read (tests fake several nodes on one).
    pub fn init_with_host(host: Option<String>) -> Result<World> {
        let asked = std::env::var("RWM_TIMEOUT_S").ok();
        let timeout = watchdog::timeout_from_env(asked.as_deref()).map_err(Error::Env)?;
        let setup = std::env::var("RWM_SETUP_TIMEOUT_S").ok();
        let setup = watchdog::setup_timeout_from_env(setup.as_deref()).map_err(Error::Env)?;
        let launcher = detect_launcher(|k| std::env::var(k).ok());
        let world = match &launcher {
            None => Self::single(host, None),
            Some(l) => Self::launched(l.clone(), host)?,
        };
        // One rank has no peer to wait for: watch it only when asked.
        if let Some(t) = timeout.filter(|_| world.size > 1 || asked.is_some()) {
            watchdog::arm(t, setup, world.rank, abort_job);
        }
        Ok(world)
    }

    fn single(host: Option<String>, launcher: Option<Launcher>) -> World {
        let hostname = host.unwrap_or_else(host_name);
        World {
            rank: 0,
            size: 1,
            local_rank: 0,
            local_size: 1,
            hosts: vec![hostname.clone()],
            hostname,
            node: 0,
            launcher,
            inner: Inner::Single,
        }
    }

    #[cfg(not(feature = "mpi"))]
    fn launched(l: Launcher, host: Option<String>) -> Result<World> {
        if l.size == Some(1) {
            return Ok(Self::single(host, Some(l)));
        }
        let size = l.size.map_or("unknown number of".to_string(), |s| s.to_string());
        Err(Error::NoMpiFeature { launcher: l.name, size })
    }

    #[cfg(feature = "mpi")]
    fn launched(l: Launcher, host: Option<String>) -> Result<World> {
        use comm::mpi::{MpiComm, processor_name, runtime};
        let comm = MpiComm::world(runtime().map_err(Error::Mpi)?);
        let (rank, size) = (comm.rank(), comm.size());
        if let Some(expected) = l.size
            && expected != size
        {
            return Err(Error::SizeMismatch { launcher: l.name, expected, got: size });
        }
        let hostname = match host {
            Some(h) => h,
            None => processor_name().map_err(Error::Mpi)?,
        };
        let hosts: Vec<String> = comm
            .all_gather_bytes(hostname.as_bytes())?
            .into_iter()
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .collect();
        let (local_rank, local_size, node) = locality(&hosts, rank);
        Ok(World {
            rank,
            size,
            local_rank,
            local_size,
            hostname,
            node,
            hosts,
            launcher: Some(l),
            inner: Inner::Mpi(Arc::new(comm)),
        })
    }

    /// The communicator over every rank, for host tensors (the CPU backend's).
    pub fn comm(&self) -> Arc<dyn Comm> {
        match &self.inner {
            Inner::Single => Arc::new(SingleComm::new(Arc::new(CpuBackend::new()))),
            #[cfg(feature = "mpi")]
            Inner::Mpi(c) => c.clone(),
        }
    }

    /// End the whole job after a failure on this rank: print why, then MPI_Abort (every
    /// rank stops), or exit with `code` when there is one rank.
    pub fn abort(&self, code: i32, msg: &str) -> ! {
        eprintln!("rwm-dist: rank {} of {} ({}): {msg}; aborting the job", self.rank, self.size, self.hostname);
        abort_job(code)
    }
}

/// A wait that never ends in practice (a year): for `RWM_TIMEOUT_S=0`.
pub const NO_LIMIT: std::time::Duration = std::time::Duration::from_secs(365 * 24 * 3600);

/// Arms the watchdog for ranks run as threads of this process (`--ranks N`, N > 1), on by
/// default as for launched ranks; returns the run limit (None when `RWM_TIMEOUT_S=0`).
pub fn arm_for_threads() -> Result<Option<std::time::Duration>> {
    let timeout = watchdog::timeout_from_env(std::env::var("RWM_TIMEOUT_S").ok().as_deref()).map_err(Error::Env)?;
    let setup = std::env::var("RWM_SETUP_TIMEOUT_S").ok();
    let setup = watchdog::setup_timeout_from_env(setup.as_deref()).map_err(Error::Env)?;
    if let Some(t) = timeout {
        watchdog::arm(t, setup, 0, abort_job);
    }
    Ok(timeout)
}

/// Stop every rank of the job: MPI_Abort when MPI runs, else exit this process.
pub fn abort_job(code: i32) -> ! {
    #[cfg(feature = "mpi")]
    comm::mpi::abort(code);
    #[cfg(not(feature = "mpi"))]
    std::process::exit(code)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |k| m.get(k).cloned()
    }

    #[test]
    fn launchers_from_their_variables() {
        assert_eq!(detect_launcher(env(&[])), None);
        let l = detect_launcher(env(&[("OMPI_COMM_WORLD_SIZE", "4"), ("OMPI_COMM_WORLD_RANK", "1")])).unwrap();
        assert_eq!((l.name, l.size), ("Open MPI mpirun", Some(4)));
        assert_eq!(detect_launcher(env(&[("PMI_SIZE", "8"), ("PMI_RANK", "0")])).unwrap().size, Some(8));
        let srun = env(&[("SLURM_STEP_NUM_TASKS", "24"), ("SLURM_PROCID", "3"), ("SLURM_NTASKS", "48")]);
        assert_eq!(detect_launcher(srun).unwrap(), Launcher { name: "Slurm srun", size: Some(24) });
        // Inside an sbatch script, before srun: a job but no step of ranks.
        let batch = env(&[("SLURM_JOB_ID", "7"), ("SLURM_NTASKS", "24"), ("SLURM_PROCID", "0")]);
        assert_eq!(detect_launcher(batch), None);
    }

    #[test]
    fn locality_from_host_names() {
        let hosts: Vec<String> = ["a", "b", "a", "c", "b", "a"].iter().map(|s| s.to_string()).collect();
        assert_eq!(locality(&hosts, 0), (0, 3, 0));
        assert_eq!(locality(&hosts, 4), (1, 2, 1));
        assert_eq!(locality(&hosts, 5), (2, 3, 0));
        assert_eq!(locality(&hosts, 3), (0, 1, 2));
    }

    #[test]
    fn no_launcher_is_one_rank() {
        let w = World::single(Some("h".into()), None);
        assert_eq!((w.rank, w.size, w.local_rank, w.local_size, w.node), (0, 1, 0, 1, 0));
        assert_eq!(w.comm().size(), 1);
    }
}
