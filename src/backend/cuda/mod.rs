//! CUDA backend (stub: filled in by the CUDA backend work). The only module that
//! touches cudarc's driver, NVRTC and cuBLASLt.

use super::*;
use cudarc::driver::{CudaContext, CudaEvent, CudaSlice, CudaStream};
use half::bf16;

pub enum DeviceData {
    Bf16(CudaSlice<bf16>),
    F32(CudaSlice<f32>),
    I32(CudaSlice<i32>),
    /// e4m3 bytes and the per-tensor scale (device f32) that dequantises them.
    F8 {
        data: CudaSlice<u8>,
        scale: CudaSlice<f32>,
    },
}

pub struct Event(pub(crate) CudaEvent);

/// True when the CUDA driver library can be loaded (creating a context without it panics).
pub fn driver_present() -> bool {
    // SAFETY: only tries to dlopen the library.
    unsafe { cudarc::driver::sys::is_culib_present() }
}

pub struct CudaBackend {
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
}

impl CudaBackend {
    /// The stream every op of this backend runs on.
    pub fn stream(&self) -> &Arc<CudaStream> {
        &self.stream
    }
    pub fn context(&self) -> &Arc<CudaContext> {
        &self.ctx
    }

    pub fn new(_device: usize) -> Result<Self> {
        if !driver_present() {
            return Err(Error::Unavailable("libcuda not found".into()));
        }
        Err(Error::Unavailable("CUDA backend not built yet".into()))
    }
}

impl Backend for CudaBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Cuda
    }
    fn device_name(&self) -> String {
        unreachable!()
    }
    fn upload(&self, _: &[f32], _: &[usize], _: DType) -> Result<Tensor> {
        unreachable!()
    }
    fn upload_i32(&self, _: &[i32], _: &[usize]) -> Result<Tensor> {
        unreachable!()
    }
    fn download(&self, _: &Tensor) -> Result<Vec<f32>> {
        unreachable!()
    }
    fn download_i32(&self, _: &Tensor) -> Result<Vec<i32>> {
        unreachable!()
    }
    fn random(&self, _: &[usize], _: DType, _: u64, _: f32) -> Result<Tensor> {
        unreachable!()
    }
    fn zeros(&self, _: &[usize], _: DType) -> Result<Tensor> {
        unreachable!()
    }
    fn quantize_fp8(&self, _: &Tensor) -> Result<Tensor> {
        unreachable!()
    }
    fn rows(&self, _: &Tensor, _: usize, _: usize) -> Result<Tensor> {
        unreachable!()
    }
    fn concat_rows(&self, _: &[&Tensor]) -> Result<Tensor> {
        unreachable!()
    }
    fn add(&self, _: &Tensor, _: &Tensor) -> Result<Tensor> {
        unreachable!()
    }
    fn embedding(&self, _: &Tensor, _: &Tensor) -> Result<Tensor> {
        unreachable!()
    }
    fn matmul(&self, _: &Tensor, _: &Tensor, _: DType) -> Result<Tensor> {
        unreachable!()
    }
    fn grouped_matmul(&self, _: &Tensor, _: &Tensor, _: &Tensor) -> Result<Tensor> {
        unreachable!()
    }
    fn rms_norm(&self, _: &Tensor, _: &Tensor, _: f32) -> Result<Tensor> {
        unreachable!()
    }
    fn add_rms_norm(&self, _: &Tensor, _: &Tensor, _: &Tensor, _: f32) -> Result<(Tensor, Tensor)> {
        unreachable!()
    }
    fn rope(&self, _: &Tensor, _: usize, _: &RopeParams) -> Result<Tensor> {
        unreachable!()
    }
    fn swiglu(&self, _: &Tensor, _: Option<&Tensor>) -> Result<Tensor> {
        unreachable!()
    }
    fn attention(&self, _: &Tensor, _: &Tensor, _: &Tensor, _: &AttnParams) -> Result<AttnOut> {
        unreachable!()
    }
    fn attn_merge(&self, _: &AttnOut, _: &AttnOut) -> Result<AttnOut> {
        unreachable!()
    }
    fn route(&self, _: &Tensor, _: &RouterParams, _: Option<&Tensor>) -> Result<Routing> {
        unreachable!()
    }
    fn permute(&self, _: &Tensor, _: &Tensor, _: usize) -> Result<Permuted> {
        unreachable!()
    }
    fn unpermute(&self, _: &Tensor, _: &Tensor, _: &Tensor) -> Result<Tensor> {
        unreachable!()
    }
    fn synchronize(&self) -> Result<()> {
        unreachable!()
    }
    fn mark(&self) -> Result<Mark> {
        unreachable!()
    }
    fn elapsed_ms(&self, _: &Mark, _: &Mark) -> Result<f64> {
        unreachable!()
    }
    fn memory(&self) -> MemStats {
        unreachable!()
    }
    fn reset_peak(&self) {
        unreachable!()
    }
}
