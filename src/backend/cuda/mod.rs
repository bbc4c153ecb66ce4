//! CUDA backend: cudarc's driver, NVRTC and cuBLASLt (comm/nccl.rs also uses the driver's
//! streams and events, for NCCL's own stream).
//! One stream per backend; kernels from kernels/*.cu compiled at run time
//! (`compile`), GEMMs through cuBLASLt (`blas`), memory from the driver's pool; every raw
//! driver call is in `driver`.
//! The ops live in files by family: `tensors` (upload, random, copies, fp8),
//! `layers` (norm, rope, swiglu, matmul), `moe` (routing, permute, grouped GEMM),
//! `attention` (naive, flash, merge).

pub mod arch;
mod attention;
mod blas;
mod choice;
pub mod compile;
pub(crate) mod driver;
mod flash_sm90;
mod graph;
mod grouped_fp8;
mod layers;
mod memtrace;
mod moe;
pub mod ptxas;
pub mod select;
mod tensors;
mod tiles;

pub use grouped_fp8::{FP8_KERNELS, Fp8Kernel, choose_fp8};
pub use tiles::{FLASH_KERNELS, FlashKernel, GROUPED_KERNELS, GROUPED_SWIGLU, GroupedKernel, Schedule, TmaOptions};

use super::*;
use crate::tensor::Data;
use cudarc::driver::{CudaContext, CudaEvent, CudaFunction, CudaSlice, CudaStream, DevicePtr, DriverError};
pub use driver::driver_present;
use half::bf16;

pub use crate::tensor::DeviceData;

pub struct Event(pub(crate) CudaEvent);

pub(crate) fn cuda_err(op: impl Into<String>, e: DriverError) -> Error {
    Error::Cuda { op: op.into(), msg: format!("{e:?}") }
}

/// A kernel argument: every parameter travels in its own 8-byte slot; the driver
/// copies as many bytes as the kernel's parameter has (little-endian, so a 4-byte
/// parameter reads the low half).
#[derive(Clone, Copy)]
pub(crate) struct Arg(u64);
impl From<u64> for Arg {
    fn from(v: u64) -> Self {
        Arg(v)
    }
}
impl From<usize> for Arg {
    fn from(v: usize) -> Self {
        Arg(v as u64)
    }
}
impl From<i32> for Arg {
    fn from(v: i32) -> Self {
        Arg(v as u32 as u64)
    }
}
impl From<u32> for Arg {
    fn from(v: u32) -> Self {
        Arg(v as u64)
    }
}
impl From<f32> for Arg {
    fn from(v: f32) -> Self {
        Arg(v.to_bits() as u64)
    }
}
impl From<bool> for Arg {
    fn from(v: bool) -> Self {
        Arg(v as u64)
    }
}

macro_rules! args {
    ($($a:expr),* $(,)?) => { &[$($crate::backend::cuda::Arg::from($a)),*] };
}
pub(crate) use args;

/// Head dim, params, and the inverse frequencies on the device.
type RopeFreqs = (usize, RopeParams, Arc<CudaSlice<f32>>);

pub struct CudaBackend {
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    name: String,
    sms: u32,
    kernels: compile::Kernels,
    blas: blas::Blas,
    pool: Option<driver::Pool>,
    /// RoPE inverse frequencies on the device, per (head dim, params).
    rope_freqs: std::sync::Mutex<Vec<RopeFreqs>>,
    /// Offsets [0, r] of one expert over r rows (`matmul_swiglu` on the grouped kernel), per r.
    one_expert: std::sync::Mutex<Vec<(usize, Arc<CudaSlice<i32>>)>>,
    choice: choice::Choice,
    /// RWM_CUDA_SYNC_CHECK=1: synchronise after every launch so an error names its kernel.
    sync_check: bool,
    /// The dynamic persistent flash kernels' tile counter (`_dyn`): 0 between launches (each launch's
    /// last fetch sets it back), zeroed here once.
    flash_tiles: CudaSlice<i32>,
}

fn present(ok: bool, what: &str) -> Result<()> {
    if ok { Ok(()) } else { Err(Error::Unavailable(format!("{what} not found"))) }
}

impl CudaBackend {
    pub fn new(device: usize) -> Result<Self> {
        present(driver_present(), "libcuda")?;
        for (lib, ok) in driver::libraries_present() {
            present(ok, lib)?;
        }
        let unavailable = |e: DriverError| Error::Unavailable(format!("CUDA driver: {e:?}"));
        let count = CudaContext::device_count().map_err(unavailable)?;
        if device >= count.max(0) as usize {
            return Err(Error::Unavailable(format!("GPU {device} requested, {count} present")));
        }
        let ctx = CudaContext::new(device).map_err(unavailable)?;
        let (major, minor) = ctx.compute_capability().map_err(unavailable)?;
        if major < 8 {
            return Err(Error::Unavailable(format!("compute capability {major}.{minor}: bf16 tensor cores need 8.0")));
        }
        // One stream, so cudarc's per-buffer event tracking is pure overhead.
        // SAFETY: every buffer is used on this backend's stream only (the NCCL communicator
        // also enqueues on `stream()`), so stream order is the only synchronisation needed.
        unsafe { ctx.disable_event_tracking() };
        let stream = ctx.new_stream().map_err(|e| cuda_err("create stream", e))?;
        let sms = driver::sm_count(&ctx).map_err(|e| cuda_err("attribute", e))?;
        let name = ctx.name().map_err(|e| cuda_err("device name", e))?;
        let pool = driver::Pool::default_for(&ctx).map_err(|e| cuda_err("memory pool", e))?;
        let target = arch::Arch::for_capability(major as u32, minor as u32);
        let kernels = compile::Kernels::new(ctx.clone(), target)?;
        let blas = blas::Blas::new(stream.clone())?;
        let flash_tiles = stream.alloc_zeros::<i32>(1).map_err(|e| cuda_err("flash tile counter", e))?;
        tracing::debug!("CUDA backend on {name} ({}, {sms} SMs)", kernels.arch());
        Ok(CudaBackend {
            ctx,
            stream,
            name,
            sms,
            kernels,
            blas,
            pool,
            rope_freqs: Default::default(),
            one_expert: Default::default(),
            choice: Default::default(),
            sync_check: std::env::var("RWM_CUDA_SYNC_CHECK").is_ok_and(|v| v == "1"),
            flash_tiles,
        })
    }

    /// The stream every op of this backend runs on (NCCL enqueues its collectives here).
    pub fn stream(&self) -> &Arc<CudaStream> {
        &self.stream
    }

    pub fn context(&self) -> &Arc<CudaContext> {
        &self.ctx
    }

    /// The NVRTC target, e.g. "sm_90a".
    pub fn arch(&self) -> &str {
        self.kernels.arch()
    }

    /// The NVRTC target as an `Arch`, which decides the kernels (`select`).
    pub fn target(&self) -> arch::Arch {
        self.kernels.target()
    }

    /// Launches `name` from kernels/`file` on the backend's stream.
    pub(crate) fn launch(
        &self,
        file: &'static str,
        name: &'static str,
        grid: (u32, u32, u32),
        block: u32,
        smem: u32,
        args: &[Arg],
    ) -> Result<()> {
        let mut slots: Vec<u64> = args.iter().map(|a| a.0).collect();
        let l = driver::Launch { grid, block, smem, cluster: 1 };
        // SAFETY: one 8-byte slot per kernel parameter (the kernel signatures in kernels/*.cu are
        // matched by the callers), no tensor maps.
        unsafe { self.launch_maps((file, name), l, &mut [], &mut slots) }
    }

    /// Launches a kernel whose parameters are `maps` (128-byte tensor maps, by value) followed by
    /// one 8-byte slot per parameter in `slots` (4-byte ones read from the low half).
    ///
    /// # Safety
    /// The kernel's parameters must be exactly these, in this order.
    pub(crate) unsafe fn launch_maps(
        &self,
        kernel: (&'static str, &'static str),
        l: driver::Launch,
        maps: &mut [driver::TensorMap],
        slots: &mut [u64],
    ) -> Result<()> {
        let mut params: Vec<*mut std::ffi::c_void> = maps
            .iter_mut()
            .map(|m| m as *mut driver::TensorMap as *mut std::ffi::c_void)
            .chain(slots.iter_mut().map(|s| s as *mut u64 as *mut std::ffi::c_void))
            .collect();
        // SAFETY: one live pointer per parameter, as the caller guarantees; both arrays outlive the call.
        unsafe { self.launch_params(kernel, l, &mut params) }
    }

    /// Launches with raw parameter pointers (for parameters wider than 8 bytes, such as tensor maps),
    /// in clusters of `l.cluster` blocks along x (1: no clusters).
    ///
    /// # Safety
    /// `params` must hold one pointer per kernel parameter, each to a live value of that parameter's
    /// size and layout.
    pub(crate) unsafe fn launch_params(
        &self,
        (file, name): (&'static str, &'static str),
        l: driver::Launch,
        params: &mut [*mut std::ffi::c_void],
    ) -> Result<()> {
        let driver::Launch { grid, block, smem, .. } = l;
        if grid.0 == 0 || grid.1 == 0 || grid.2 == 0 {
            return Ok(());
        }
        let f = self.function_with_smem(file, name, smem)?;
        self.ctx.bind_to_thread().map_err(|e| cuda_err("bind", e))?;
        // SAFETY: the caller guarantees `params`.
        unsafe { driver::launch(&f, &self.stream, l, params) }
            .map_err(|e| cuda_err(format!("launch {file}:{name} grid {grid:?} block {block} smem {smem}"), e))?;
        if self.sync_check {
            self.stream.synchronize().map_err(|e| cuda_err(format!("after {file}:{name}"), e))?;
        }
        Ok(())
    }

    fn function_with_smem(&self, file: &'static str, name: &'static str, smem: u32) -> Result<CudaFunction> {
        let f = self.kernels.function(file, name)?;
        if smem > 48 * 1024 {
            driver::set_max_dynamic_smem(&f, smem)
                .map_err(|e| cuda_err(format!("{name}: {smem} bytes of shared memory"), e))?;
        }
        Ok(f)
    }

    /// How many clusters of `cluster` blocks of `block` threads and `smem` bytes can be resident at once.
    pub(crate) fn max_active_clusters(
        &self,
        file: &'static str,
        name: &'static str,
        block: u32,
        smem: u32,
        cluster: u32,
    ) -> Result<u32> {
        let f = self.function_with_smem(file, name, smem)?;
        self.ctx.bind_to_thread().map_err(|e| cuda_err("bind", e))?;
        let l = driver::Launch { grid: (cluster * self.sms, 1, 1), block, smem, cluster };
        driver::max_active_clusters(&f, &self.stream, l)
            .map_err(|e| cuda_err(format!("max active clusters of {name}"), e))
    }

    /// A 2-D TMA tensor map over a row-major bf16 or e4m3 matrix [rows, cols] at `ptr`: boxes of
    /// `box_rows` x `box_cols` (box_cols elements spanning 128 bytes), 128-byte swizzle, zero fill
    /// past the edges.
    pub(crate) fn tensor_map(
        &self,
        elem: driver::TmaElem,
        ptr: u64,
        rows: usize,
        cols: usize,
        box_rows: u32,
        box_cols: u32,
    ) -> Result<driver::TensorMap> {
        driver::tensor_map_2d(elem, ptr, rows, cols, box_rows, box_cols)
            .map_err(|e| cuda_err(format!("tensor map [{rows}, {cols}] box {box_rows}x{box_cols}"), e))
    }

    /// Streaming multiprocessors of the device.
    pub(crate) fn sm_count(&self) -> u32 {
        self.sms
    }

    /// Blocks for a grid-stride loop over `n` items.
    pub(crate) fn grid_1d(&self, n: usize, block: u32) -> (u32, u32, u32) {
        let want = n.div_ceil(block as usize).max(1);
        (want.min(self.sms as usize * 16) as u32, 1, 1)
    }

    /// Uninitialised device storage for `shape` (at least one element, so every
    /// tensor has a valid pointer).
    pub(crate) fn alloc(&self, shape: &[usize], dtype: DType) -> Result<Tensor> {
        let n = shape.iter().product::<usize>().max(1);
        let e = |e| cuda_err(format!("allocate {shape:?} {}", dtype.name()), e);
        // SAFETY: every op writes all elements of its outputs before they are read.
        let data = unsafe {
            match dtype {
                DType::Bf16 => DeviceData::Bf16(self.stream.alloc(n).map_err(e)?),
                DType::F32 => DeviceData::F32(self.stream.alloc(n).map_err(e)?),
                DType::I32 => DeviceData::I32(self.stream.alloc(n).map_err(e)?),
                DType::F8 => {
                    DeviceData::F8 { data: self.stream.alloc(n).map_err(e)?, scale: self.stream.alloc(1).map_err(e)? }
                }
            }
        };
        let t = Tensor { shape: shape.to_vec(), dtype, data: Data::Device(data), ledger: None };
        if memtrace::on() {
            let capturing = memtrace::CAPTURING.load(std::sync::atomic::Ordering::Relaxed);
            let pool = (!capturing).then(|| self.pool.as_ref().map(|p| p.usage()).unwrap_or_default());
            memtrace::alloc(t.bytes(), &format!("{shape:?} {}", dtype.name()), self.ptr(&t)?, pool);
        }
        Ok(t)
    }

    pub(crate) fn ptr(&self, t: &Tensor) -> Result<u64> {
        let d = dev(t)?;
        let s = &self.stream;
        Ok(match d {
            DeviceData::Bf16(x) => x.device_ptr(s).0,
            DeviceData::F32(x) => x.device_ptr(s).0,
            DeviceData::I32(x) => x.device_ptr(s).0,
            DeviceData::F8 { data, .. } => data.device_ptr(s).0,
        })
    }

    /// Device pointer of an FP8 tensor's scale.
    pub(crate) fn scale_ptr(&self, t: &Tensor) -> Result<u64> {
        match dev(t)? {
            DeviceData::F8 { scale, .. } => Ok(scale.device_ptr(&self.stream).0),
            _ => Err(Error::Unsupported { op: "fp8 scale", what: format!("{t:?}") }),
        }
    }

    pub(crate) fn memcpy_dtod(&self, dst: u64, src: u64, bytes: usize) -> Result<()> {
        if bytes == 0 {
            return Ok(());
        }
        self.ctx.bind_to_thread().map_err(|e| cuda_err("bind", e))?;
        // SAFETY: callers pass ranges inside live allocations of this context.
        unsafe { driver::memcpy_dtod(dst, src, bytes, &self.stream) }
            .map_err(|e| cuda_err(format!("copy {bytes} bytes"), e))
    }
}

/// The host waits for the stream's queued work (which may hold a collective waiting for a stopped
/// peer): watched, so that such a wait ends the job naming it; nothing when the watchdog is off.
pub(crate) fn watch_device(op: &str) -> Option<crate::watchdog::Guard> {
    crate::watchdog::armed().then(|| crate::watchdog::watch(format!("{op} on the GPU (waiting for its queued work)")))
}

pub(crate) fn dev(t: &Tensor) -> Result<&DeviceData> {
    match &t.data {
        Data::Device(d) => Ok(d),
        _ => Err(Error::Unsupported { op: "cuda", what: format!("{t:?} is in host memory") }),
    }
}

/// "bf16" or "f32" for kernel names; other dtypes are refused by `op`.
pub(crate) fn suffix(op: &'static str, t: &Tensor) -> Result<&'static str> {
    match t.dtype {
        DType::Bf16 => Ok("bf16"),
        DType::F32 => Ok("f32"),
        d => Err(Error::Unsupported { op, what: format!("dtype {}", d.name()) }),
    }
}

pub(crate) fn check(op: &'static str, ok: bool, detail: impl FnOnce() -> String) -> Result<()> {
    if ok { Ok(()) } else { Err(shape_err(op, detail())) }
}

/// Every pointer 16-byte aligned: TMA's bases and the 16-byte vector kernels' rows need it.
pub(crate) fn aligned16(ptrs: &[u64]) -> bool {
    ptrs.iter().all(|p| p.is_multiple_of(16))
}

/// Kernel names are static strings; pick the one for a dtype suffix.
pub(crate) fn pick(sfx: &str, bf16: &'static str, f32: &'static str) -> &'static str {
    if sfx == "bf16" { bf16 } else { f32 }
}

impl Backend for CudaBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Cuda
    }
    fn device_name(&self) -> String {
        self.name.clone()
    }
    fn device_identity(&self) -> Option<(usize, String)> {
        let b = self.ctx.uuid().ok()?.bytes.map(|c| c as u8);
        let hex = |r: std::ops::Range<usize>| b[r].iter().map(|x| format!("{x:02x}")).collect::<String>();
        let uuid = format!("GPU-{}-{}-{}-{}-{}", hex(0..4), hex(4..6), hex(6..8), hex(8..10), hex(10..16));
        Some((self.ctx.ordinal(), uuid))
    }
    fn profiler_capture(&self, on: bool) -> Result<()> {
        self.ctx.bind_to_thread().map_err(|e| cuda_err("bind context", e))?;
        let r = if on { cudarc::driver::profiler_start() } else { cudarc::driver::profiler_stop() };
        r.map_err(|e| cuda_err(if on { "cuProfilerStart" } else { "cuProfilerStop" }, e))
    }
    fn upload(&self, v: &[f32], shape: &[usize], dtype: DType) -> Result<Tensor> {
        self.upload_f32(v, shape, dtype)
    }
    fn upload_i32(&self, v: &[i32], shape: &[usize]) -> Result<Tensor> {
        self.upload_ints(v, shape)
    }
    fn download(&self, t: &Tensor) -> Result<Vec<f32>> {
        self.download_f32(t)
    }
    fn download_i32(&self, t: &Tensor) -> Result<Vec<i32>> {
        self.download_ints(t)
    }
    fn random(&self, shape: &[usize], dtype: DType, seed: u64, std: f32) -> Result<Tensor> {
        self.random_on_device(shape, dtype, seed, std)
    }
    fn zeros(&self, shape: &[usize], dtype: DType) -> Result<Tensor> {
        self.zeros_on_device(shape, dtype)
    }
    fn quantize_fp8(&self, x: &Tensor) -> Result<Tensor> {
        self.quantize(x)
    }
    fn rows(&self, x: &Tensor, start: usize, len: usize) -> Result<Tensor> {
        self.copy_rows(x, start, len)
    }
    fn concat_rows(&self, parts: &[&Tensor]) -> Result<Tensor> {
        self.concat(parts)
    }
    fn add(&self, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        self.add_tensors(a, b)
    }
    fn embedding(&self, table: &Tensor, ids: &Tensor) -> Result<Tensor> {
        self.gather_embedding(table, ids)
    }
    fn matmul(&self, x: &Tensor, w: &Tensor, out: DType) -> Result<Tensor> {
        self.gemm(x, w, out)
    }
    fn grouped_matmul(&self, x: &Tensor, w: &Tensor, offsets: &Tensor) -> Result<Tensor> {
        self.grouped_gemm(x, w, offsets)
    }
    fn grouped_matmul_swiglu(&self, x: &Tensor, w: &Tensor, offsets: &Tensor) -> Result<Tensor> {
        self.grouped_gemm_swiglu(x, w, offsets)
    }
    /// The fused TMA kernel runs on sm_90a (`select`: shapes it cannot take are not the targets').
    fn matmul_swiglu(&self, x: &Tensor, w: &Tensor) -> Result<Tensor> {
        self.gemm_swiglu(x, w)
    }
    fn fuses_grouped_swiglu(&self) -> bool {
        self.target().has_wgmma()
    }
    fn quantize_blocks(&self, x: &Tensor, blocks: Blocks) -> Result<BlockFp8> {
        self.quantize_blocks_op(x, blocks)
    }
    fn grouped_matmul_fp8(&self, x: &BlockFp8, w: &BlockFp8, offsets: &Tensor, swiglu: bool) -> Result<Tensor> {
        self.grouped_gemm_fp8(x, w, offsets, swiglu)
    }
    fn rms_norm(&self, x: &Tensor, w: &Tensor, eps: f32) -> Result<Tensor> {
        self.norm(x, None, w, eps).map(|(_, n)| n)
    }
    fn add_rms_norm(&self, x: &Tensor, residual: &Tensor, w: &Tensor, eps: f32) -> Result<(Tensor, Tensor)> {
        self.norm(x, Some(residual), w, eps).map(|(s, n)| (s.expect("sum of add_rms_norm"), n))
    }
    fn rope(&self, x: &Tensor, start: usize, p: &RopeParams) -> Result<Tensor> {
        self.rotary(x, start, p)
    }
    fn swiglu(&self, gate: &Tensor, up: Option<&Tensor>) -> Result<Tensor> {
        self.swiglu_op(gate, up)
    }
    fn attention(&self, q: &Tensor, k: &Tensor, v: &Tensor, p: &AttnParams) -> Result<AttnOut> {
        self.attend(q, k, v, p)
    }
    fn attn_merge(&self, a: &AttnOut, b: &AttnOut) -> Result<AttnOut> {
        self.merge(a, b)
    }
    fn cast(&self, x: &Tensor, dtype: DType) -> Result<Tensor> {
        CudaBackend::cast(self, x, dtype)
    }
    fn route(&self, logits: &Tensor, p: &RouterParams, bias: Option<&Tensor>) -> Result<Routing> {
        self.route_tokens(logits, p, bias)
    }
    fn permute(&self, x: &Tensor, ids: &Tensor, num_experts: usize) -> Result<Permuted> {
        self.permute_tokens(x, ids, num_experts)
    }
    fn permute_fp8(&self, x: &BlockFp8, ids: &Tensor, num_experts: usize) -> Result<Permuted<BlockFp8>> {
        self.permute_blocks(x, ids, num_experts)
    }
    fn unpermute(&self, y: &Tensor, row_of: &Tensor, weights: &Tensor) -> Result<Tensor> {
        self.unpermute_tokens(y, row_of, weights, None)
    }
    fn unpermute_add(&self, y: &Tensor, row_of: &Tensor, weights: &Tensor, add: &Tensor) -> Result<Tensor> {
        self.unpermute_tokens(y, row_of, weights, Some(add))
    }
    fn capture(&self, f: &mut dyn FnMut() -> Result<Tensor>) -> Result<Option<Box<dyn Replay>>> {
        memtrace::CAPTURING.store(true, std::sync::atomic::Ordering::Relaxed);
        let g = graph::capture(&self.stream, f);
        memtrace::CAPTURING.store(false, std::sync::atomic::Ordering::Relaxed);
        let g = g?;
        if memtrace::on() {
            self.stream.synchronize().map_err(|e| cuda_err("synchronize", e))?;
            memtrace::counters("captured", &self.ctx, self.pool.as_ref().map(|p| p.usage()).unwrap_or_default());
        }
        Ok(Some(Box::new(g) as Box<dyn Replay>))
    }
    fn synchronize(&self) -> Result<()> {
        let _w = watch_device("synchronize");
        self.stream.synchronize().map_err(|e| cuda_err("synchronize", e))
    }
    fn mark(&self) -> Result<Mark> {
        let ev = driver::new_event(&self.ctx).map_err(|e| cuda_err("create event", e))?;
        ev.record(&self.stream).map_err(|e| cuda_err("record event", e))?;
        Ok(Mark::Device(Event(ev)))
    }
    fn elapsed_ms(&self, start: &Mark, end: &Mark) -> Result<f64> {
        match (start, end) {
            (Mark::Device(a), Mark::Device(b)) => {
                a.0.elapsed_ms(&b.0).map(|t| t as f64).map_err(|e| cuda_err("event elapsed time", e))
            }
            _ => Err(Error::Unsupported { op: "elapsed_ms", what: "host marks on the CUDA backend".into() }),
        }
    }
    fn memory(&self) -> MemStats {
        let pool = self.pool.as_ref().map(|p| p.usage()).unwrap_or_default();
        // Graphs allocate from their own pool: add it (the peaks may not coincide, so their sum bounds the peak).
        let g = driver::graph_memory(&self.ctx);
        if memtrace::on() {
            memtrace::counters("read", &self.ctx, pool);
        }
        MemStats { in_use: (pool.current + g.current) as usize, peak: (pool.high + g.high) as usize }
    }
    fn total_memory(&self) -> Option<u64> {
        self.ctx.total_mem().ok().map(|b| b as u64)
    }
    fn reset_peak(&self) {
        if let Some(p) = &self.pool {
            p.reset_peak()
        }
        driver::reset_graph_peak(&self.ctx);
        if memtrace::on() {
            memtrace::counters("reset", &self.ctx, self.pool.as_ref().map(|p| p.usage()).unwrap_or_default());
        }
    }
}
