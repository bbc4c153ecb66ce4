//! Device memory accounting from the driver's default memory pool: cudarc
//! allocates stream-ordered (cuMemAllocAsync) from it when the device supports
//! pools, so the pool's used-memory counters are this process's tensors plus the
//! cuBLASLt workspace (allocated the same way). Not counted: memory that
//! libraries allocate themselves (cuBLASLt internals, NCCL buffers).

use super::cuda_err;
use crate::backend::{MemStats, Result};
use cudarc::driver::sys;
use std::ffi::c_void;

pub(crate) struct Pool(sys::CUmemoryPool);

// SAFETY: a memory pool handle is a process-wide driver object.
unsafe impl Send for Pool {}
unsafe impl Sync for Pool {}

impl Pool {
    pub fn default_for(dev: sys::CUdevice) -> Result<Pool> {
        let mut p = std::ptr::null_mut();
        // SAFETY: out-parameter for a valid device.
        unsafe { sys::cuDeviceGetDefaultMemPool(&mut p, dev).result() }.map_err(|e| cuda_err("memory pool", e))?;
        let pool = Pool(p);
        // Keep freed blocks in the pool (as PyTorch's caching allocator does) instead of
        // returning them to the driver at every synchronisation.
        let mut keep = u64::MAX;
        pool.set(sys::CUmemPool_attribute::CU_MEMPOOL_ATTR_RELEASE_THRESHOLD, &mut keep)?;
        Ok(pool)
    }

    fn get(&self, a: sys::CUmemPool_attribute) -> u64 {
        let mut v = 0u64;
        // SAFETY: these attributes are u64 (cuuint64_t).
        let r = unsafe { sys::cuMemPoolGetAttribute(self.0, a, &mut v as *mut u64 as *mut c_void) };
        if r != sys::CUresult::CUDA_SUCCESS {
            tracing::warn!("cuMemPoolGetAttribute({a:?}): {r:?}");
        }
        v
    }

    fn set(&self, a: sys::CUmemPool_attribute, v: &mut u64) -> Result<()> {
        // SAFETY: as in `get`.
        unsafe { sys::cuMemPoolSetAttribute(self.0, a, v as *mut u64 as *mut c_void).result() }
            .map_err(|e| cuda_err(format!("cuMemPoolSetAttribute({a:?})"), e))
    }

    pub fn stats(&self) -> MemStats {
        use sys::CUmemPool_attribute::*;
        MemStats {
            in_use: self.get(CU_MEMPOOL_ATTR_USED_MEM_CURRENT) as usize,
            peak: self.get(CU_MEMPOOL_ATTR_USED_MEM_HIGH) as usize,
        }
    }

    /// The high-water mark restarts from what is in use now.
    pub fn reset_peak(&self) {
        let mut zero = 0u64;
        if let Err(e) = self.set(sys::CUmemPool_attribute::CU_MEMPOOL_ATTR_USED_MEM_HIGH, &mut zero) {
            tracing::warn!("{e}");
        }
    }
}
