//! Run-time kernel compilation: kernels/*.cu (embedded by build.rs) compiled by
//! NVRTC for this GPU's own architecture, with kernels/*.cuh passed as named
//! headers, and cached on disk as CUBIN keyed by a hash of everything that
//! affects the binary.

use super::arch::Arch;
use super::cuda_err;
use crate::backend::{Error, Result};
use cudarc::driver::{CudaContext, CudaFunction, CudaModule};
use cudarc::nvrtc::sys as nv;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::ffi::{CStr, CString, c_char};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

mod sources {
    include!(concat!(env!("OUT_DIR"), "/kernel_sources.rs"));
}

fn source(file: &str) -> Option<&'static str> {
    sources::KERNEL_SOURCES.iter().find(|(n, _)| *n == file).map(|(_, s)| *s)
}

#[cfg(test)]
pub(crate) fn source_of(file: &str) -> Option<&'static str> {
    source(file)
}

fn headers() -> impl Iterator<Item = &'static (&'static str, &'static str)> {
    sources::KERNEL_SOURCES.iter().filter(|(n, _)| n.ends_with(".cuh"))
}

/// Names of the embedded kernel files (.cu), for diagnostics and tests.
pub fn kernel_files() -> Vec<&'static str> {
    sources::KERNEL_SOURCES.iter().map(|(n, _)| *n).filter(|n| n.ends_with(".cu")).collect()
}

/// $RWM_KERNEL_CACHE, else $XDG_CACHE_HOME/rwm-dist/kernels, else ~/.cache/rwm-dist/kernels.
pub fn cache_dir() -> Option<PathBuf> {
    cache_dir_from(|k| std::env::var_os(k))
}

fn cache_dir_from(var: impl Fn(&str) -> Option<std::ffi::OsString>) -> Option<PathBuf> {
    let env = |k: &str| var(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    env("RWM_KERNEL_CACHE")
        .or_else(|| env("XDG_CACHE_HOME").map(|p| p.join("rwm-dist/kernels")))
        .or_else(|| env("HOME").map(|p| p.join(".cache/rwm-dist/kernels")))
}

/// The NVRTC options every kernel is compiled with for `arch`.
pub fn options(arch: Arch) -> Vec<String> {
    vec![format!("--gpu-architecture={arch}"), "-std=c++17".into(), "-default-device".into()]
}

/// True when libnvrtc can be loaded (no GPU or driver needed).
pub fn nvrtc_present() -> bool {
    // SAFETY: only tries to dlopen the library.
    unsafe { nv::is_culib_present() }
}

/// A kernel file compiled without a GPU, with ptxas's resource report.
pub struct Checked {
    pub cubin: Vec<u8>,
    /// The NVRTC log, with ptxas's `-v` lines (see `ptxas::parse`).
    pub log: String,
}

/// Compiles kernels/`file` for `arch` exactly as the backend does (same headers and
/// options), adding only `--ptxas-options=-v` for the register and spill report.
pub fn compile_checked(file: &str, arch: Arch) -> Result<Checked> {
    let src = source(file).ok_or_else(|| Error::Unavailable(format!("no kernel file {file} embedded")))?;
    let mut opts = options(arch);
    opts.push("--ptxas-options=-v".into());
    let (cubin, log) = compile(file, src, &opts)?;
    Ok(Checked { cubin, log })
}

pub fn nvrtc_version() -> Result<(i32, i32)> {
    let (mut a, mut b) = (0, 0);
    // SAFETY: two out-parameters.
    let r = unsafe { nv::nvrtcVersion(&mut a, &mut b) };
    nv_ok(r, "nvrtcVersion")?;
    Ok((a, b))
}

fn nv_ok(r: nv::nvrtcResult, op: &str) -> Result<()> {
    if r == nv::nvrtcResult::NVRTC_SUCCESS { Ok(()) } else { Err(Error::Cuda { op: op.into(), msg: format!("{r:?}") }) }
}

pub(crate) struct Kernels {
    ctx: Arc<CudaContext>,
    arch: String,
    target: Arch,
    options: Vec<String>,
    version: (i32, i32),
    cache: Option<PathBuf>,
    modules: Mutex<HashMap<&'static str, Arc<CudaModule>>>,
    funcs: Mutex<HashMap<(&'static str, &'static str), CudaFunction>>,
}

impl Kernels {
    pub fn new(ctx: Arc<CudaContext>, target: Arch) -> Result<Self> {
        let version = nvrtc_version()?;
        let options = options(target);
        let cache = cache_dir().filter(|d| match std::fs::create_dir_all(d) {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!("kernel cache {} unusable ({e}); compiling without a cache", d.display());
                false
            }
        });
        Ok(Kernels {
            ctx,
            arch: target.to_string(),
            target,
            options,
            version,
            cache,
            modules: Mutex::default(),
            funcs: Mutex::default(),
        })
    }

    pub fn arch(&self) -> &str {
        &self.arch
    }

    pub fn target(&self) -> Arch {
        self.target
    }

    /// The kernel `name` of kernels/`file`, compiling and loading the file on first use.
    pub fn function(&self, file: &'static str, name: &'static str) -> Result<CudaFunction> {
        if let Some(f) = self.funcs.lock().unwrap().get(&(file, name)) {
            return Ok(f.clone());
        }
        let module = self.module(file)?;
        let f = module.load_function(name).map_err(|e| cuda_err(format!("load {file}:{name}"), e))?;
        self.funcs.lock().unwrap().insert((file, name), f.clone());
        Ok(f)
    }

    fn module(&self, file: &'static str) -> Result<Arc<CudaModule>> {
        // Held while compiling so two threads do not compile the same file twice.
        let mut modules = self.modules.lock().unwrap();
        if let Some(m) = modules.get(file) {
            return Ok(m.clone());
        }
        let cubin = self.cubin(file)?;
        let m = self
            .ctx
            .load_module(cudarc::nvrtc::Ptx::from_binary(cubin))
            .map_err(|e| cuda_err(format!("load module {file}"), e))?;
        modules.insert(file, m.clone());
        Ok(m)
    }

    fn key(&self, file: &str, src: &str) -> String {
        let mut h = Sha256::new();
        for part in [file, src, &self.arch, &format!("nvrtc {}.{}", self.version.0, self.version.1)] {
            h.update((part.len() as u64).to_le_bytes());
            h.update(part.as_bytes());
        }
        for o in &self.options {
            h.update(o.as_bytes());
            h.update([0]);
        }
        for (n, s) in headers() {
            h.update(n.as_bytes());
            h.update([0]);
            h.update(s.as_bytes());
            h.update([0]);
        }
        h.finalize().iter().take(16).map(|b| format!("{b:02x}")).collect()
    }

    fn cubin(&self, file: &'static str) -> Result<Vec<u8>> {
        let src = source(file).ok_or_else(|| Error::Unavailable(format!("no kernel file {file} embedded")))?;
        let path = self.cache.as_ref().map(|d| d.join(format!("{}-{}.cubin", file, self.key(file, src))));
        if let Some(bin) = path.as_ref().and_then(|p| std::fs::read(p).ok()) {
            return Ok(bin);
        }
        let t0 = std::time::Instant::now();
        let (bin, _) = compile(file, src, &self.options)?;
        tracing::debug!("NVRTC compiled {file} for {} in {:.1}s", self.arch, t0.elapsed().as_secs_f64());
        if let Some(p) = path {
            // Temp file + rename: concurrent processes never see half a CUBIN.
            let tmp = p.with_extension(format!("tmp{}.{:?}", std::process::id(), std::thread::current().id()));
            let written = std::fs::write(&tmp, &bin).and_then(|_| std::fs::rename(&tmp, &p));
            if let Err(e) = written {
                let _ = std::fs::remove_file(&tmp);
                tracing::warn!("could not cache kernel {}: {e}", p.display());
            }
        }
        Ok(bin)
    }
}

/// Compiles one source to CUBIN and NVRTC's log (the architecture in `options` must be a real sm_).
fn compile(file: &str, src: &str, options: &[String]) -> Result<(Vec<u8>, String)> {
    let c = |s: &str| CString::new(s).expect("no NUL in kernel sources");
    let src_c = c(src);
    let name_c = c(file);
    let hdr: Vec<(CString, CString)> = headers().map(|(n, s)| (c(n), c(s))).collect();
    let hdr_src: Vec<*const c_char> = hdr.iter().map(|(_, s)| s.as_ptr()).collect();
    let hdr_name: Vec<*const c_char> = hdr.iter().map(|(n, _)| n.as_ptr()).collect();
    let opts: Vec<CString> = options.iter().map(|o| c(o)).collect();
    let opt_ptrs: Vec<*const c_char> = opts.iter().map(|o| o.as_ptr()).collect();
    let mut prog: nv::nvrtcProgram = std::ptr::null_mut();
    // SAFETY: every pointer is a live NUL-terminated string for the duration of the calls,
    // and the program is destroyed on every path after creation.
    unsafe {
        nv_ok(
            nv::nvrtcCreateProgram(
                &mut prog,
                src_c.as_ptr(),
                name_c.as_ptr(),
                hdr.len() as i32,
                hdr_src.as_ptr(),
                hdr_name.as_ptr(),
            ),
            "nvrtcCreateProgram",
        )?;
        let r = nv::nvrtcCompileProgram(prog, opt_ptrs.len() as i32, opt_ptrs.as_ptr());
        let mut n = 0usize;
        nv::nvrtcGetProgramLogSize(prog, &mut n);
        let mut log = vec![0 as c_char; n.max(1)];
        nv::nvrtcGetProgramLog(prog, log.as_mut_ptr());
        let log = CStr::from_ptr(log.as_ptr()).to_string_lossy().into_owned();
        let out = if r != nv::nvrtcResult::NVRTC_SUCCESS {
            Err(Error::Cuda {
                op: format!("NVRTC compile {file} ({})", options.join(" ")),
                msg: format!("{r:?}\n{log}"),
            })
        } else {
            let mut n = 0usize;
            nv_ok(nv::nvrtcGetCUBINSize(prog, &mut n), "nvrtcGetCUBINSize").and_then(|_| {
                let mut bin = vec![0u8; n];
                nv_ok(nv::nvrtcGetCUBIN(prog, bin.as_mut_ptr() as *mut c_char), "nvrtcGetCUBIN").map(|_| (bin, log))
            })
        };
        nv::nvrtcDestroyProgram(&mut prog);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_generated_from_the_directory() {
        let on_disk: Vec<String> = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/kernels"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.ends_with(".cu") || n.ends_with(".cuh"))
            .collect();
        assert!(!on_disk.is_empty());
        for n in &on_disk {
            let embedded = source(n).unwrap_or_else(|| panic!("{n} not embedded"));
            let disk = std::fs::read_to_string(format!("{}/kernels/{n}", env!("CARGO_MANIFEST_DIR"))).unwrap();
            assert_eq!(embedded, disk, "{n} is stale");
        }
        assert_eq!(on_disk.len(), sources::KERNEL_SOURCES.len());
        assert!(headers().any(|(n, _)| *n == "common.cuh"));
    }

    #[test]
    fn options_name_the_target() {
        let o = options(Arch::for_capability(10, 0));
        assert_eq!(o, ["--gpu-architecture=sm_100a", "-std=c++17", "-default-device"]);
    }

    #[test]
    fn cache_dir_precedence() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| (*v).into())
        };
        static ALL: [(&str, &str); 3] = [("RWM_KERNEL_CACHE", "/a"), ("XDG_CACHE_HOME", "/x"), ("HOME", "/h")];
        assert_eq!(cache_dir_from(env(&ALL)), Some("/a".into()));
        assert_eq!(cache_dir_from(env(&ALL[1..])), Some("/x/rwm-dist/kernels".into()));
        assert_eq!(
            cache_dir_from(env(&[("RWM_KERNEL_CACHE", ""), ("HOME", "/h")])),
            Some("/h/.cache/rwm-dist/kernels".into())
        );
        assert_eq!(cache_dir_from(env(&[])), None);
    }
}
