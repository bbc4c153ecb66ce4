//! Moving tensors on and off the device, device-side random fills, copies,
//! adds, embedding gathers and FP8 quantisation.

use super::*;
use crate::tensor::FP8_E4M3_MAX;

const BLOCK: u32 = 256;

/// e4m3 (OCP fn) bits to f32: bias 7, subnormals below 2^-6, 0x7f/0xff NaN.
pub(crate) fn e4m3_to_f32(b: u8) -> f32 {
    let sign = if b & 0x80 != 0 { -1.0 } else { 1.0 };
    let (e, m) = ((b >> 3) & 0xf, b & 7);
    if e == 0xf && m == 7 {
        return f32::NAN;
    }
    let v = if e == 0 { m as f32 / 8.0 * 2f32.powi(-6) } else { (1.0 + m as f32 / 8.0) * 2f32.powi(e as i32 - 7) };
    sign * v
}

/// At least one element, so that every device tensor has a valid pointer.
fn pad<T>(mut v: Vec<T>, z: T) -> Vec<T> {
    if v.is_empty() {
        v.push(z)
    }
    v
}

impl CudaBackend {
    fn to_host<T: cudarc::driver::DeviceRepr + Default + Clone>(&self, s: &CudaSlice<T>, n: usize) -> Result<Vec<T>> {
        let _w = watch_device("copy to the host");
        let mut v = self.stream.clone_dtoh(s).map_err(|e| cuda_err("copy to host", e))?;
        self.stream.synchronize().map_err(|e| cuda_err("copy to host", e))?;
        v.truncate(n);
        Ok(v)
    }

    pub(crate) fn upload_f32(&self, v: &[f32], shape: &[usize], dtype: DType) -> Result<Tensor> {
        check("upload", v.len() == shape.iter().product::<usize>(), || {
            format!("{} values for shape {shape:?}", v.len())
        })?;
        let e = |e| cuda_err("upload", e);
        let data = match dtype {
            DType::F32 => DeviceData::F32(self.stream.clone_htod(&pad(v.to_vec(), 0.0)).map_err(e)?),
            DType::Bf16 => {
                let h: Vec<bf16> = v.iter().map(|x| bf16::from_f32(*x)).collect();
                DeviceData::Bf16(self.stream.clone_htod(&pad(h, bf16::ZERO)).map_err(e)?)
            }
            DType::F8 => return self.quantize(&self.upload_f32(v, shape, DType::F32)?),
            DType::I32 => {
                return Err(Error::Unsupported { op: "upload", what: "i32 from f32 values (use upload_i32)".into() });
            }
        };
        Ok(Tensor { shape: shape.to_vec(), dtype, data: Data::Device(data), ledger: None })
    }

    pub(crate) fn upload_ints(&self, v: &[i32], shape: &[usize]) -> Result<Tensor> {
        check("upload_i32", v.len() == shape.iter().product::<usize>(), || {
            format!("{} values for shape {shape:?}", v.len())
        })?;
        let s = self.stream.clone_htod(&pad(v.to_vec(), 0)).map_err(|e| cuda_err("upload_i32", e))?;
        Ok(Tensor { shape: shape.to_vec(), dtype: DType::I32, data: Data::Device(DeviceData::I32(s)), ledger: None })
    }

    pub(crate) fn download_f32(&self, t: &Tensor) -> Result<Vec<f32>> {
        let n = t.numel();
        Ok(match dev(t)? {
            DeviceData::F32(s) => self.to_host(s, n)?,
            DeviceData::Bf16(s) => self.to_host(s, n)?.into_iter().map(|x| x.to_f32()).collect(),
            DeviceData::I32(s) => self.to_host(s, n)?.into_iter().map(|x| x as f32).collect(),
            // The dequantised values, as host FP8 tensors hold them.
            DeviceData::F8 { data, scale } => {
                let sc = self.to_host(scale, 1)?[0];
                self.to_host(data, n)?.into_iter().map(|b| e4m3_to_f32(b) * sc).collect()
            }
        })
    }

    pub(crate) fn download_ints(&self, t: &Tensor) -> Result<Vec<i32>> {
        match dev(t)? {
            DeviceData::I32(s) => self.to_host(s, t.numel()),
            _ => Err(Error::Unsupported { op: "download_i32", what: format!("{t:?}") }),
        }
    }

    pub(crate) fn random_on_device(&self, shape: &[usize], dtype: DType, seed: u64, std: f32) -> Result<Tensor> {
        let n = shape.iter().product::<usize>();
        // Same f32 product as rng::fill_uniform.
        let a = std * 3f32.sqrt();
        match dtype {
            DType::F32 | DType::Bf16 => {
                let t = self.alloc(shape, dtype)?;
                let name = if dtype == DType::F32 { "fill_random_f32" } else { "fill_random_bf16" };
                self.launch(
                    "elementwise.cu",
                    name,
                    self.grid_1d(n, BLOCK),
                    BLOCK,
                    0,
                    args![self.ptr(&t)?, n, seed, a],
                )?;
                Ok(t)
            }
            DType::F8 => self.quantize(&self.random_on_device(shape, DType::F32, seed, std)?),
            DType::I32 => Err(Error::Unsupported { op: "random", what: "i32".into() }),
        }
    }

    pub(crate) fn zeros_on_device(&self, shape: &[usize], dtype: DType) -> Result<Tensor> {
        let t = self.alloc(shape, dtype)?;
        let e = |e| cuda_err("zeros", e);
        let s = &self.stream;
        match &t.data {
            Data::Device(DeviceData::F8 { data, scale }) => {
                // SAFETY: both buffers are ours and not yet shared.
                let (d, sc) = (data.device_ptr(s).0, scale.device_ptr(s).0);
                self.ctx.bind_to_thread().map_err(e)?;
                unsafe {
                    driver::memset_d8(d, 0, data.len(), s).map_err(e)?;
                    driver::memset_d32(sc, 1f32.to_bits(), 1, s).map_err(e)?;
                }
            }
            _ => {
                let p = self.ptr(&t)?;
                self.ctx.bind_to_thread().map_err(e)?;
                // SAFETY: p is the start of a buffer of at least t.bytes() bytes.
                unsafe { driver::memset_d8(p, 0, t.bytes().max(1), s).map_err(e)? };
            }
        }
        Ok(t)
    }

    /// Per-tensor FP8: amax and scale stay on the device (no host round trip).
    pub(crate) fn quantize(&self, x: &Tensor) -> Result<Tensor> {
        self.select(super::select::Op::Fp8)?;
        let sfx = suffix("quantize_fp8", x)?;
        let n = x.numel();
        let out = self.alloc(&x.shape, DType::F8)?;
        let amax = self.zeros_on_device(&[1], DType::I32)?;
        let grid = self.grid_1d(n, BLOCK);
        let (xp, ap) = (self.ptr(x)?, self.ptr(&amax)?);
        self.launch("fp8.cu", pick(sfx, "amax_bf16", "amax_f32"), grid, BLOCK, 0, args![xp, n, ap])?;
        let (qp, sp) = (self.ptr(&out)?, self.scale_ptr(&out)?);
        debug_assert_eq!(FP8_E4M3_MAX, 448.0, "kernels/fp8.cu divides by 448");
        self.launch("fp8.cu", pick(sfx, "quantize_bf16", "quantize_f32"), grid, BLOCK, 0, args![qp, sp, xp, n, ap])?;
        Ok(out)
    }

    fn row_bytes(x: &Tensor) -> usize {
        if x.shape.is_empty() || x.shape[0] == 0 { 0 } else { x.bytes() / x.shape[0] }
    }

    pub(crate) fn copy_rows(&self, x: &Tensor, start: usize, len: usize) -> Result<Tensor> {
        let r = x.shape.first().copied().unwrap_or(0);
        check("rows", start + len <= r, || format!("rows {start}..{} of {r}", start + len))?;
        check("rows", x.dtype != DType::F8, || "fp8 tensors are GEMM operands only".into())?;
        let mut shape = x.shape.clone();
        shape[0] = len;
        let out = self.alloc(&shape, x.dtype)?;
        let rb = Self::row_bytes(x);
        self.memcpy_dtod(self.ptr(&out)?, self.ptr(x)? + (start * rb) as u64, len * rb)?;
        Ok(out)
    }

    pub(crate) fn concat(&self, parts: &[&Tensor]) -> Result<Tensor> {
        let first = parts.first().ok_or_else(|| shape_err("concat_rows", "no parts"))?;
        let tail = &first.shape[1..];
        check("concat_rows", parts.iter().all(|p| &p.shape[1..] == tail && p.dtype == first.dtype), || {
            format!("parts {:?}", parts.iter().map(|p| p.shape.clone()).collect::<Vec<_>>())
        })?;
        check("concat_rows", first.dtype != DType::F8, || "fp8 tensors are GEMM operands only".into())?;
        let mut shape = first.shape.clone();
        shape[0] = parts.iter().map(|p| p.shape[0]).sum();
        let out = self.alloc(&shape, first.dtype)?;
        let mut at = self.ptr(&out)?;
        for p in parts {
            self.memcpy_dtod(at, self.ptr(p)?, p.bytes())?;
            at += p.bytes() as u64;
        }
        Ok(out)
    }

    pub(crate) fn add_tensors(&self, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        let n = a.numel();
        let row = b.shape.len() == 1 && !a.shape.is_empty() && b.shape[0] == a.dim(-1);
        check("add", (a.shape == b.shape || row) && a.dtype == b.dtype, || {
            format!("{:?} {} + {:?} {}", a.shape, a.dtype.name(), b.shape, b.dtype.name())
        })?;
        let sfx = suffix("add", a)?;
        let out = self.alloc(&a.shape, a.dtype)?;
        let (o, ap, bp) = (self.ptr(&out)?, self.ptr(a)?, self.ptr(b)?);
        if sfx == "bf16" && a.shape == b.shape && n.is_multiple_of(8) {
            let n8 = n / 8;
            return self
                .launch("elementwise.cu", "add_bf16_vec8", self.grid_1d(n8, BLOCK), BLOCK, 0, args![o, ap, bp, n8])
                .map(|_| out);
        }
        let name = pick(sfx, "add_bf16", "add_f32");
        self.launch("elementwise.cu", name, self.grid_1d(n, BLOCK), BLOCK, 0, args![o, ap, bp, n, b.numel()])?;
        Ok(out)
    }

    /// Rows of `x` ([r, ...]) picked by i32 `idx` ([m]) -> [m, ...]; indices out of range give zero rows.
    pub(crate) fn gather(&self, x: &Tensor, idx: &Tensor, m: usize) -> Result<Tensor> {
        let mut shape = x.shape.clone();
        shape[0] = m;
        let out = self.alloc(&shape, x.dtype)?;
        let rb = Self::row_bytes(x);
        let args = args![self.ptr(&out)?, self.ptr(x)?, self.ptr(idx)?, rb, x.shape[0]];
        self.launch("elementwise.cu", "gather_rows", (m as u32, 1, 1), 128, 0, args)?;
        Ok(out)
    }

    pub(crate) fn gather_embedding(&self, table: &Tensor, ids: &Tensor) -> Result<Tensor> {
        check("embedding", table.shape.len() == 2 && ids.dtype == DType::I32 && table.dtype != DType::F8, || {
            format!("table {table:?} ids {ids:?}")
        })?;
        let s = ids.numel();
        self.gather(table, ids, s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::fp8_e4m3_round;

    #[test]
    fn e4m3_decoding_inverts_rounding() {
        // Every finite code decodes to a value that rounds back to itself.
        for b in 0..=255u8 {
            let v = e4m3_to_f32(b);
            if b & 0x7f == 0x7f {
                assert!(v.is_nan());
                continue;
            }
            assert_eq!(fp8_e4m3_round(v), v, "code {b:#x}");
        }
        assert_eq!(e4m3_to_f32(0x7e), 448.0);
        assert_eq!(e4m3_to_f32(0x01), 2f32.powi(-9));
        assert_eq!(e4m3_to_f32(0x38), 1.0);
        assert_eq!(e4m3_to_f32(0xb8), -1.0);
    }
}
