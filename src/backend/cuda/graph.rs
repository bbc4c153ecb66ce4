//! CUDA graphs: a forward pass recorded once by stream capture, then launched as one
//! graph, so that hundreds of kernel launches cost one. Buffers the pass allocates
//! become graph allocations (stream-ordered, from the device's graph memory pool);
//! AUTO_FREE_ON_LAUNCH frees the previous launch's output before the next launch
//! writes it again at the same address.

use super::cuda_err;
use crate::backend::{Error, MemStats, Replay, Result};
use crate::tensor::Tensor;
use cudarc::driver::{CudaGraph, CudaStream, sys};
use std::ffi::c_void;
use std::sync::Arc;

pub(crate) struct Recorded {
    // Field order is drop order: free the output before the graph that owns its address.
    output: Tensor,
    graph: CudaGraph,
}

impl Replay for Recorded {
    fn replay(&self) -> Result<()> {
        self.graph.launch().map_err(|e| cuda_err("graph launch", e))
    }
    fn output(&self) -> &Tensor {
        &self.output
    }
}

pub(crate) fn capture(stream: &Arc<CudaStream>, f: &mut dyn FnMut() -> Result<Tensor>) -> Result<Recorded> {
    stream.synchronize().map_err(|e| cuda_err("synchronize before capture", e))?;
    let mode = sys::CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL;
    stream.begin_capture(mode).map_err(|e| cuda_err("begin capture", e))?;
    let output = f();
    // End the capture even when `f` failed, or the stream stays unusable.
    let flags = sys::CUgraphInstantiate_flags::CUDA_GRAPH_INSTANTIATE_FLAG_AUTO_FREE_ON_LAUNCH;
    let graph = stream.end_capture(flags).map_err(|e| cuda_err("end capture", e));
    let (output, graph) = (output?, graph?);
    let graph = graph.ok_or_else(|| Error::Cuda { op: "end capture".into(), msg: "no graph was captured".into() })?;
    // The output's address belongs to the graph: it holds data once the graph has run.
    graph.launch().map_err(|e| cuda_err("graph launch", e))?;
    Ok(Recorded { output, graph })
}

fn attr(dev: sys::CUdevice, a: sys::CUgraphMem_attribute) -> u64 {
    let mut v = 0u64;
    // SAFETY: these attributes are u64 (cuuint64_t) out-parameters of a valid device.
    let r = unsafe { sys::cuDeviceGetGraphMemAttribute(dev, a, &mut v as *mut u64 as *mut c_void) };
    if r != sys::CUresult::CUDA_SUCCESS {
        tracing::warn!("cuDeviceGetGraphMemAttribute({a:?}): {r:?}");
    }
    v
}

/// Bytes graphs hold on the device now, and their high-water mark.
pub(crate) fn memory(dev: sys::CUdevice) -> MemStats {
    use sys::CUgraphMem_attribute::*;
    MemStats {
        in_use: attr(dev, CU_GRAPH_MEM_ATTR_USED_MEM_CURRENT) as usize,
        peak: attr(dev, CU_GRAPH_MEM_ATTR_USED_MEM_HIGH) as usize,
    }
}

pub(crate) fn reset_peak(dev: sys::CUdevice) {
    let mut zero = 0u64;
    let a = sys::CUgraphMem_attribute::CU_GRAPH_MEM_ATTR_USED_MEM_HIGH;
    // SAFETY: as in `attr`; resetting the high-water mark takes a zero u64.
    let r = unsafe { sys::cuDeviceSetGraphMemAttribute(dev, a, &mut zero as *mut u64 as *mut c_void) };
    if r != sys::CUresult::CUDA_SUCCESS {
        tracing::warn!("cuDeviceSetGraphMemAttribute({a:?}): {r:?}");
    }
}
