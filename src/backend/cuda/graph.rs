//! CUDA graphs: a forward pass recorded once by stream capture, then launched as one
//! graph, so that hundreds of kernel launches cost one. Buffers the pass allocates
//! become graph allocations (stream-ordered, from the device's graph memory pool);
//! AUTO_FREE_ON_LAUNCH frees the previous launch's output before the next launch
//! writes it again at the same address.

use super::{cuda_err, driver};
use crate::backend::{Error, Replay, Result};
use crate::tensor::Tensor;
use cudarc::driver::{CudaGraph, CudaStream};
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
    stream.begin_capture(driver::CAPTURE_THREAD_LOCAL).map_err(|e| cuda_err("begin capture", e))?;
    let output = f();
    // End the capture even when `f` failed, or the stream stays unusable.
    let graph = stream.end_capture(driver::AUTO_FREE_ON_LAUNCH).map_err(|e| cuda_err("end capture", e));
    let (output, graph) = (output?, graph?);
    let graph = graph.ok_or_else(|| Error::Cuda { op: "end capture".into(), msg: "no graph was captured".into() })?;
    if super::memtrace::on() {
        match driver::graph_mem_nodes(graph.cu_graph()) {
            Ok(nodes) => super::memtrace::graph(&nodes),
            Err(e) => tracing::warn!("graph memory nodes: {e:?}"),
        }
    }
    // The output's address belongs to the graph: it holds data once the graph has run.
    graph.launch().map_err(|e| cuda_err("graph launch", e))?;
    Ok(Recorded { output, graph })
}
