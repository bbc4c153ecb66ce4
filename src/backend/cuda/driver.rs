//! The one file of backend/cuda that calls cudarc's raw driver API (`cudarc::driver::sys`),
//! as cudarc layers sys -> result -> safe: every unsafe driver call and every driver enum the
//! backend needs is wrapped here in a function that states its contract. The rest of the
//! backend uses these and cudarc's safe types. (cuBLASLt's raw API is `blas.rs`'s alone.)

use cudarc::driver::{CudaContext, CudaFunction, CudaStream, DriverError, sys};
use std::ffi::c_void;

pub(crate) use sys::CUtensorMap as TensorMap;

/// True when the CUDA driver library can be loaded (creating a context without it panics).
pub fn driver_present() -> bool {
    // SAFETY: only tries to dlopen the library.
    unsafe { sys::is_culib_present() }
}

/// The libraries the backend loads besides the driver, each with whether it can be loaded.
pub(crate) fn libraries_present() -> [(&'static str, bool); 2] {
    // SAFETY: only dlopen attempts.
    unsafe {
        [
            ("libnvrtc", cudarc::nvrtc::sys::is_culib_present()),
            ("libcublasLt", cudarc::cublaslt::sys::is_culib_present()),
        ]
    }
}

pub(crate) fn sm_count(ctx: &CudaContext) -> Result<u32, DriverError> {
    Ok(ctx.attribute(sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)? as u32)
}

/// Allows `f` up to `bytes` of dynamic shared memory (above the default 48 KiB).
pub(crate) fn set_max_dynamic_smem(f: &CudaFunction, bytes: u32) -> Result<(), DriverError> {
    f.set_attribute(sys::CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, bytes as i32)
}

/// A launch: grid, threads per block (1-D), dynamic shared memory, blocks per cluster along x.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Launch {
    pub grid: (u32, u32, u32),
    pub block: u32,
    pub smem: u32,
    pub cluster: u32,
}

/// The cluster attribute of `l` and the config pointing at it; `attr` must outlive the config.
fn config(stream: &CudaStream, l: Launch, attr: &mut sys::CUlaunchAttribute) -> sys::CUlaunchConfig {
    attr.id = sys::CUlaunchAttributeID::CU_LAUNCH_ATTRIBUTE_CLUSTER_DIMENSION;
    attr.value.clusterDim.x = l.cluster;
    attr.value.clusterDim.y = 1;
    attr.value.clusterDim.z = 1;
    sys::CUlaunchConfig {
        gridDimX: l.grid.0,
        gridDimY: l.grid.1,
        gridDimZ: l.grid.2,
        blockDimX: l.block,
        blockDimY: 1,
        blockDimZ: 1,
        sharedMemBytes: l.smem,
        hStream: stream.cu_stream(),
        attrs: attr,
        numAttrs: (l.cluster > 1) as u32,
    }
}

fn zeroed_attr() -> sys::CUlaunchAttribute {
    // SAFETY: a plain-data C struct and union, for which all-zero bytes are valid.
    unsafe { std::mem::zeroed() }
}

/// Launches `f` on `stream` (the context bound to this thread).
///
/// # Safety
/// `params` must hold one pointer per kernel parameter, each to a live value of that parameter's
/// size and layout; the driver copies the values during the call.
pub(crate) unsafe fn launch(
    f: &CudaFunction,
    stream: &CudaStream,
    l: Launch,
    params: &mut [*mut c_void],
) -> Result<(), DriverError> {
    let mut attr = zeroed_attr();
    let c = config(stream, l, &mut attr);
    let (pp, extra) = (params.as_mut_ptr(), std::ptr::null_mut());
    // SAFETY: the caller guarantees `params`; `c` and the attribute it points to live across the call.
    unsafe {
        if l.cluster > 1 {
            sys::cuLaunchKernelEx(&c, f.cu_function(), pp, extra).result()
        } else {
            let g = l.grid;
            sys::cuLaunchKernel(f.cu_function(), g.0, g.1, g.2, l.block, 1, 1, l.smem, c.hStream, pp, extra).result()
        }
    }
}

/// How many clusters of `l.cluster` blocks of `f` can be resident at once.
pub(crate) fn max_active_clusters(f: &CudaFunction, stream: &CudaStream, l: Launch) -> Result<u32, DriverError> {
    let mut attr = zeroed_attr();
    let c = config(stream, l, &mut attr);
    let mut n = 0i32;
    // SAFETY: `c` and its attribute live across the call; `n` is a live out-parameter.
    unsafe { sys::cuOccupancyMaxActiveClusters(&mut n, f.cu_function(), &c).result()? };
    Ok(n.max(0) as u32)
}

/// Element types of TMA tensor maps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TmaElem {
    Bf16,
    /// FP8 e4m3 bytes (the block-scaled grouped GEMM's operands).
    E4m3,
}

impl TmaElem {
    /// The driver's type and the element's bytes.
    fn raw(self) -> (sys::CUtensorMapDataType, u64) {
        match self {
            TmaElem::Bf16 => (sys::CUtensorMapDataType::CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 2),
            TmaElem::E4m3 => (sys::CUtensorMapDataType::CU_TENSOR_MAP_DATA_TYPE_UINT8, 1),
        }
    }
}

/// A TMA tensor map of `dims` (innermost first) with byte `strides` for every dimension but the
/// innermost, boxes of `boxes`: 128-byte swizzle (the innermost box must span 128 bytes), zero
/// fill past the edges.
fn tensor_map<const R: usize>(
    elem: TmaElem,
    ptr: u64,
    dims: [u64; R],
    strides: &[u64],
    boxes: [u32; R],
) -> Result<TensorMap, DriverError> {
    assert_eq!(strides.len() + 1, R, "one stride per dimension but the innermost");
    let mut map = sys::CUtensorMap { opaque: [0; 16] };
    let steps = [1u32; R];
    // SAFETY: every pointer is to a live array of the length the rank R implies.
    unsafe {
        sys::cuTensorMapEncodeTiled(
            &mut map,
            elem.raw().0,
            R as u32,
            ptr as *mut c_void,
            dims.as_ptr(),
            strides.as_ptr(),
            boxes.as_ptr(),
            steps.as_ptr(),
            sys::CUtensorMapInterleave::CU_TENSOR_MAP_INTERLEAVE_NONE,
            sys::CUtensorMapSwizzle::CU_TENSOR_MAP_SWIZZLE_128B,
            sys::CUtensorMapL2promotion::CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
            sys::CUtensorMapFloatOOBfill::CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE,
        )
        .result()?;
    }
    Ok(map)
}

/// A 2-D TMA tensor map over a row-major matrix [rows, cols] of `elem` at `ptr`: boxes of
/// `box_rows` x `box_cols` (box_cols elements must span 128 bytes).
pub(crate) fn tensor_map_2d(
    elem: TmaElem,
    ptr: u64,
    rows: usize,
    cols: usize,
    box_rows: u32,
    box_cols: u32,
) -> Result<TensorMap, DriverError> {
    let size = elem.raw().1;
    tensor_map(elem, ptr, [cols as u64, rows as u64], &[cols as u64 * size], [box_cols, box_rows])
}

/// A 3-D TMA tensor map over a row-major tensor [s, h, d] of `elem` at `ptr` (d contiguous): boxes of
/// `box_d` x 1 x `box_s` (box_d elements must span 128 bytes). Attention's q [sq, hq, d] and k, v
/// [sk, hkv, d]: one map serves every head.
pub(crate) fn tensor_map_3d(
    elem: TmaElem,
    ptr: u64,
    [s, h, d]: [usize; 3],
    box_s: u32,
    box_d: u32,
) -> Result<TensorMap, DriverError> {
    let size = elem.raw().1;
    let strides = [d as u64 * size, (h * d) as u64 * size];
    tensor_map(elem, ptr, [d as u64, h as u64, s as u64], &strides, [box_d, 1, box_s])
}

/// Copies `bytes` from `src` to `dst` on `stream`.
///
/// # Safety
/// Both ranges must lie inside live allocations of the stream's context.
pub(crate) unsafe fn memcpy_dtod(dst: u64, src: u64, bytes: usize, stream: &CudaStream) -> Result<(), DriverError> {
    // SAFETY: the caller guarantees the ranges.
    unsafe { sys::cuMemcpyDtoDAsync_v2(dst, src, bytes, stream.cu_stream()).result() }
}

/// Sets `n` bytes at `ptr` to `byte` on `stream`.
///
/// # Safety
/// `ptr .. ptr + n` must lie inside a live allocation of the stream's context.
pub(crate) unsafe fn memset_d8(ptr: u64, byte: u8, n: usize, stream: &CudaStream) -> Result<(), DriverError> {
    // SAFETY: the caller guarantees the range.
    unsafe { sys::cuMemsetD8Async(ptr, byte, n, stream.cu_stream()).result() }
}

/// Sets `n` 4-byte words at `ptr` to `word` on `stream`.
///
/// # Safety
/// `ptr .. ptr + 4n` must lie inside a live allocation of the stream's context.
pub(crate) unsafe fn memset_d32(ptr: u64, word: u32, n: usize, stream: &CudaStream) -> Result<(), DriverError> {
    // SAFETY: the caller guarantees the range.
    unsafe { sys::cuMemsetD32Async(ptr, word, n, stream.cu_stream()).result() }
}

/// A timing event.
pub(crate) fn new_event(ctx: &std::sync::Arc<CudaContext>) -> Result<cudarc::driver::CudaEvent, DriverError> {
    ctx.new_event(Some(sys::CUevent_flags::CU_EVENT_DEFAULT))
}

/// Stream capture that records only this thread's work.
pub(crate) const CAPTURE_THREAD_LOCAL: sys::CUstreamCaptureMode =
    sys::CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL;

/// A graph launch frees the previous launch's allocations first.
pub(crate) const AUTO_FREE_ON_LAUNCH: sys::CUgraphInstantiate_flags =
    sys::CUgraphInstantiate_flags::CUDA_GRAPH_INSTANTIATE_FLAG_AUTO_FREE_ON_LAUNCH;

/// Bytes in use now and the high-water mark: (current, high).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Usage {
    pub current: u64,
    pub high: u64,
}

fn graph_attr(dev: sys::CUdevice, a: sys::CUgraphMem_attribute) -> u64 {
    let mut v = 0u64;
    // SAFETY: these attributes are u64 (cuuint64_t) out-parameters of a valid device.
    let r = unsafe { sys::cuDeviceGetGraphMemAttribute(dev, a, &mut v as *mut u64 as *mut c_void) };
    if r != sys::CUresult::CUDA_SUCCESS {
        tracing::warn!("cuDeviceGetGraphMemAttribute({a:?}): {r:?}");
    }
    v
}

/// What CUDA graphs hold on `ctx`'s device.
pub(crate) fn graph_memory(ctx: &CudaContext) -> Usage {
    use sys::CUgraphMem_attribute::*;
    let dev = ctx.cu_device();
    Usage {
        current: graph_attr(dev, CU_GRAPH_MEM_ATTR_USED_MEM_CURRENT),
        high: graph_attr(dev, CU_GRAPH_MEM_ATTR_USED_MEM_HIGH),
    }
}

/// Restarts the graphs' high-water mark from what they hold now.
pub(crate) fn reset_graph_peak(ctx: &CudaContext) {
    let mut zero = 0u64;
    let a = sys::CUgraphMem_attribute::CU_GRAPH_MEM_ATTR_USED_MEM_HIGH;
    // SAFETY: as in `graph_attr`; resetting the high-water mark takes a zero u64.
    let r = unsafe { sys::cuDeviceSetGraphMemAttribute(ctx.cu_device(), a, &mut zero as *mut u64 as *mut c_void) };
    if r != sys::CUresult::CUDA_SUCCESS {
        tracing::warn!("cuDeviceSetGraphMemAttribute({a:?}): {r:?}");
    }
}

/// The device's default memory pool, which cudarc's stream-ordered allocations
/// (cuMemAllocAsync) come from: its counters are this process's tensors plus the cuBLASLt
/// workspace (allocated the same way). Not counted: memory that libraries allocate themselves
/// (cuBLASLt internals, NCCL buffers).
pub(crate) struct Pool(sys::CUmemoryPool);

// SAFETY: a memory pool handle is a process-wide driver object.
unsafe impl Send for Pool {}
unsafe impl Sync for Pool {}

impl Pool {
    /// The pool of `ctx`'s device, or None where the device has no stream-ordered allocator.
    pub fn default_for(ctx: &CudaContext) -> Result<Option<Pool>, DriverError> {
        if !ctx.has_async_alloc() {
            return Ok(None);
        }
        let mut p = std::ptr::null_mut();
        // SAFETY: out-parameter for a valid device.
        unsafe { sys::cuDeviceGetDefaultMemPool(&mut p, ctx.cu_device()).result()? };
        let pool = Pool(p);
        // Keep freed blocks in the pool (as PyTorch's caching allocator does) instead of
        // returning them to the driver at every synchronisation.
        pool.set(sys::CUmemPool_attribute::CU_MEMPOOL_ATTR_RELEASE_THRESHOLD, u64::MAX)?;
        Ok(Some(pool))
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

    fn set(&self, a: sys::CUmemPool_attribute, mut v: u64) -> Result<(), DriverError> {
        // SAFETY: as in `get`.
        unsafe { sys::cuMemPoolSetAttribute(self.0, a, &mut v as *mut u64 as *mut c_void).result() }
    }

    pub fn usage(&self) -> Usage {
        use sys::CUmemPool_attribute::*;
        Usage { current: self.get(CU_MEMPOOL_ATTR_USED_MEM_CURRENT), high: self.get(CU_MEMPOOL_ATTR_USED_MEM_HIGH) }
    }

    /// The high-water mark restarts from what is in use now.
    pub fn reset_peak(&self) {
        if let Err(e) = self.set(sys::CUmemPool_attribute::CU_MEMPOOL_ATTR_USED_MEM_HIGH, 0) {
            tracing::warn!("cuMemPoolSetAttribute(USED_MEM_HIGH): {e:?}");
        }
    }
}

/// A memory node of a graph: an allocation (its address and size) or the free of one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum GraphMemNode {
    Alloc { ptr: u64, bytes: u64 },
    Free { ptr: u64 },
}

/// The allocation and free nodes of `graph`, in the driver's node order (for a single-stream
/// capture, the order they were captured in).
pub(crate) fn graph_mem_nodes(graph: sys::CUgraph) -> Result<Vec<GraphMemNode>, DriverError> {
    let mut count = 0usize;
    // SAFETY: a null node array asks for the count only.
    unsafe { sys::cuGraphGetNodes(graph, std::ptr::null_mut(), &mut count).result()? };
    let mut nodes = vec![std::ptr::null_mut(); count];
    // SAFETY: `nodes` has room for `count` handles.
    unsafe { sys::cuGraphGetNodes(graph, nodes.as_mut_ptr(), &mut count).result()? };
    let mut out = vec![];
    for &node in &nodes[..count] {
        let mut ty = sys::CUgraphNodeType::CU_GRAPH_NODE_TYPE_EMPTY;
        // SAFETY: `node` belongs to `graph`; out-parameter.
        unsafe { sys::cuGraphNodeGetType(node, &mut ty).result()? };
        match ty {
            sys::CUgraphNodeType::CU_GRAPH_NODE_TYPE_MEM_ALLOC => {
                // SAFETY: an allocation node; the struct is plain data the driver fills.
                let mut p: sys::CUDA_MEM_ALLOC_NODE_PARAMS = unsafe { std::mem::zeroed() };
                unsafe { sys::cuGraphMemAllocNodeGetParams(node, &mut p).result()? };
                out.push(GraphMemNode::Alloc { ptr: p.dptr, bytes: p.bytesize as u64 });
            }
            sys::CUgraphNodeType::CU_GRAPH_NODE_TYPE_MEM_FREE => {
                let mut ptr = 0;
                // SAFETY: a free node; out-parameter.
                unsafe { sys::cuGraphMemFreeNodeGetParams(node, &mut ptr).result()? };
                out.push(GraphMemNode::Free { ptr });
            }
            _ => {}
        }
    }
    Ok(out)
}

/// What the graphs' asynchronous allocator has reserved on `ctx`'s device: (current, high).
pub(crate) fn graph_reserved(ctx: &CudaContext) -> Usage {
    use sys::CUgraphMem_attribute::*;
    let dev = ctx.cu_device();
    Usage {
        current: graph_attr(dev, CU_GRAPH_MEM_ATTR_RESERVED_MEM_CURRENT),
        high: graph_attr(dev, CU_GRAPH_MEM_ATTR_RESERVED_MEM_HIGH),
    }
}
