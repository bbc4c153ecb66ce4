//! Dense-layer ops: RMSNorm (plain and fused with the residual add), RoPE,
//! SwiGLU and the cuBLASLt GEMM (bf16, f32 and per-tensor scaled FP8).

use super::blas::{Gemm, Ty};
use super::*;

impl CudaBackend {
    /// rms_norm(x) or, with a residual, (x + residual, rms_norm(x + residual)).
    pub(crate) fn norm(
        &self,
        x: &Tensor,
        residual: Option<&Tensor>,
        w: &Tensor,
        eps: f32,
    ) -> Result<(Option<Tensor>, Tensor)> {
        let h = x.shape.last().copied().unwrap_or(0);
        check("rms_norm", h == w.numel() && h > 0, || format!("x {:?} w {:?}", x.shape, w.shape))?;
        if let Some(r) = residual {
            check("add_rms_norm", r.shape == x.shape && r.dtype == x.dtype, || format!("x {x:?} residual {r:?}"))?;
        }
        let rows = x.numel() / h;
        let name = match (suffix("rms_norm", x)?, suffix("rms_norm", w)?, residual.is_some()) {
            ("bf16", "bf16", false) => "rms_norm_bf16_bf16",
            ("bf16", _, false) => "rms_norm_bf16_f32",
            (_, "bf16", false) => "rms_norm_f32_bf16",
            (_, _, false) => "rms_norm_f32_f32",
            ("bf16", "bf16", true) => "add_rms_norm_bf16_bf16",
            ("bf16", _, true) => "add_rms_norm_bf16_f32",
            (_, "bf16", true) => "add_rms_norm_f32_bf16",
            (_, _, true) => "add_rms_norm_f32_f32",
        };
        let out = self.alloc(&x.shape, x.dtype)?;
        let sum = residual.map(|_| self.alloc(&x.shape, x.dtype)).transpose()?;
        let mut ptrs = vec![self.ptr(&out)?, self.ptr(x)?, self.ptr(w)?];
        if let (Some(r), Some(s)) = (residual, &sum) {
            ptrs.extend([self.ptr(r)?, self.ptr(s)?]);
        }
        // The 16-byte kernels take the scalar ones' arguments.
        let (name, block) = match norm_x8_launch(h, &ptrs).filter(|_| rows > 0 && x.dtype == DType::Bf16) {
            Some((chunks, block)) => (
                NORM_X8[residual.is_some() as usize][(w.dtype != DType::Bf16) as usize]
                    [chunks.trailing_zeros() as usize],
                block,
            ),
            None => (name, if h >= 4096 { 512 } else { 256 }),
        };
        let (o, xp, wp) = (ptrs[0], ptrs[1], ptrs[2]);
        let a: &[Arg] = match residual {
            None => args![o, xp, wp, h, eps],
            Some(_) => args![ptrs[4], o, xp, ptrs[3], wp, h, eps],
        };
        self.launch("norm.cu", name, (rows as u32, 1, 1), block, 0, a)?;
        Ok((sum, out))
    }

    /// Inverse frequencies from the host's f64 formula, uploaded once per (d, params).
    fn inv_freq(&self, d: usize, p: &RopeParams) -> Result<Arc<CudaSlice<f32>>> {
        let mut cache = self.rope_freqs.lock().unwrap();
        if let Some((_, _, f)) = cache.iter().find(|(dd, pp, _)| *dd == d && pp == p) {
            return Ok(f.clone());
        }
        let host = crate::ops::rope::inv_freq(d, p);
        let f = Arc::new(self.stream.clone_htod(&host).map_err(|e| cuda_err("upload rope frequencies", e))?);
        cache.push((d, *p, f.clone()));
        Ok(f)
    }

    pub(crate) fn rotary(&self, x: &Tensor, start: usize, p: &RopeParams) -> Result<Tensor> {
        check("rope", x.shape.len() == 3 && x.shape[2].is_multiple_of(2) && x.shape[2] > 0, || {
            format!("x {:?} must be [s, heads, even d]", x.shape)
        })?;
        let (s, heads, d) = (x.shape[0], x.shape[1], x.shape[2]);
        let name = pick(suffix("rope", x)?, "rope_bf16", "rope_f32");
        let f = self.inv_freq(d, p)?;
        let out = self.alloc(&x.shape, x.dtype)?;
        let fp = f.device_ptr(&self.stream).0;
        let (op, xp) = (self.ptr(&out)?, self.ptr(x)?);
        if x.dtype == DType::Bf16 && d.is_multiple_of(16) && aligned16(&[op, xp]) && s > 0 {
            // About 256 (row, head, 8 pairs) items a block: several rows a block for few heads (Llama's k).
            let rows = (256 / (heads * d / 16)).clamp(1, 16);
            let a = args![op, xp, fp, heads, d, start, s, rows];
            let grid = (s.div_ceil(rows) as u32, 1, 1);
            self.launch("rope.cu", "rope_bf16_x8", grid, 256, (rows * d * 4) as u32, a)?;
            return Ok(out);
        }
        let a = args![op, xp, fp, heads, d, start];
        self.launch("rope.cu", name, (s as u32, 1, 1), 256, (d * 4) as u32, a)?;
        Ok(out)
    }

    pub(crate) fn swiglu_op(&self, gate: &Tensor, up: Option<&Tensor>) -> Result<Tensor> {
        let sfx = suffix("swiglu", gate)?;
        match up {
            Some(u) => {
                check("swiglu", gate.shape == u.shape && gate.dtype == u.dtype, || format!("gate {gate:?} up {u:?}"))?;
                let n = gate.numel();
                let out = self.alloc(&gate.shape, gate.dtype)?;
                let a = args![self.ptr(&out)?, self.ptr(gate)?, self.ptr(u)?, n];
                self.launch("activation.cu", pick(sfx, "swiglu_bf16", "swiglu_f32"), self.grid_1d(n, 256), 256, 0, a)?;
                Ok(out)
            }
            None => {
                let f2 = gate.shape.last().copied().unwrap_or(0);
                check("swiglu", f2 % 2 == 0, || format!("fused input {:?} needs an even last dim", gate.shape))?;
                let mut shape = gate.shape.clone();
                *shape.last_mut().unwrap() = f2 / 2;
                let rows = gate.numel() / f2.max(1);
                let out = self.alloc(&shape, gate.dtype)?;
                let (f, op, gp) = (f2 / 2, self.ptr(&out)?, self.ptr(gate)?);
                // bf16 rows of a multiple of 8 columns: 16-byte vectors (swiglu_fused_bf16_x8).
                if gate.dtype == DType::Bf16 && rows * f > 0 && f.is_multiple_of(8) && aligned16(&[op, gp]) {
                    let grid = (f.div_ceil(8 * 256) as u32, rows.clamp(1, 65535) as u32, 1);
                    self.launch("activation.cu", "swiglu_fused_bf16_x8", grid, 256, 0, args![op, gp, rows, f])?;
                    return Ok(out);
                }
                let name = pick(sfx, "swiglu_fused_bf16", "swiglu_fused_f32");
                self.launch("activation.cu", name, self.grid_1d(rows * f, 256), 256, 0, args![op, gp, rows, f])?;
                Ok(out)
            }
        }
    }

    /// x [.., k] times w [n, k] transposed. bf16 x bf16 and fp8 x fp8 (per-tensor
    /// scales) accumulate in f32 on the tensor cores; f32 x f32 runs in full f32.
    /// A bf16/f32 activation against an fp8 weight is quantised on the device first.
    pub(crate) fn gemm(&self, x: &Tensor, w: &Tensor, out: DType) -> Result<Tensor> {
        let k = x.shape.last().copied().unwrap_or(0);
        check("matmul", w.shape.len() == 2 && w.shape[1] == k && k > 0, || format!("x {:?} w {:?}", x.shape, w.shape))?;
        let (m, n) = (x.numel() / k, w.shape[0]);
        if w.dtype == DType::F8 && x.dtype != DType::F8 {
            return self.gemm(&self.quantize(x)?, w, out);
        }
        let mut shape = x.shape.clone();
        *shape.last_mut().unwrap() = n;
        let out = if out == DType::F8 { DType::Bf16 } else { out };
        let (ti, scales) = match (x.dtype, w.dtype) {
            (DType::Bf16, DType::Bf16) => (Ty::Bf16, None),
            (DType::F8, DType::F8) => {
                self.select(super::select::Op::Fp8)?;
                check("matmul", k % 16 == 0, || format!("fp8 GEMM needs k % 16 == 0, got {k}"))?;
                (Ty::E4m3, Some((self.scale_ptr(w)?, self.scale_ptr(x)?)))
            }
            (DType::F32, DType::F32) => (Ty::F32, None),
            (a, b) => {
                return Err(Error::Unsupported { op: "matmul", what: format!("{} x {}", a.name(), b.name()) });
            }
        };
        if ti == Ty::F32 && out != DType::F32 {
            let y = self.gemm(x, w, DType::F32)?;
            return self.cast(&y, out);
        }
        let y = self.alloc(&shape, out)?;
        if m == 0 || n == 0 {
            return Ok(y);
        }
        let to = if out == DType::F32 { Ty::F32 } else { Ty::Bf16 };
        let g = Gemm::linear(m, n, k, ti, ti, to);
        self.blas.run(&g, self.ptr(w)?, self.ptr(x)?, self.ptr(&y)?, 1.0, scales)?;
        Ok(y)
    }

    /// bf16 <-> f32 copy.
    pub(crate) fn cast(&self, x: &Tensor, to: DType) -> Result<Tensor> {
        if x.dtype == to {
            return self.copy_rows(x, 0, x.shape.first().copied().unwrap_or(0));
        }
        let name = match (x.dtype, to) {
            (DType::F32, DType::Bf16) => "cast_f32_bf16",
            (DType::Bf16, DType::F32) => "cast_bf16_f32",
            (a, b) => return Err(Error::Unsupported { op: "cast", what: format!("{} -> {}", a.name(), b.name()) }),
        };
        let n = x.numel();
        let y = self.alloc(&x.shape, to)?;
        self.launch("elementwise.cu", name, self.grid_1d(n, 256), 256, 0, args![self.ptr(&y)?, self.ptr(x)?, n])?;
        Ok(y)
    }
}

/// norm.cu's 16-byte kernels by [with the residual][f32 weight][log2 chunks a thread].
const NORM_X8: [[[&str; 3]; 2]; 2] = [
    [
        ["rms_norm_x8_c1_bf16", "rms_norm_x8_c2_bf16", "rms_norm_x8_c4_bf16"],
        ["rms_norm_x8_c1_f32", "rms_norm_x8_c2_f32", "rms_norm_x8_c4_f32"],
    ],
    [
        ["add_rms_norm_x8_c1_bf16", "add_rms_norm_x8_c2_bf16", "add_rms_norm_x8_c4_bf16"],
        ["add_rms_norm_x8_c1_f32", "add_rms_norm_x8_c2_f32", "add_rms_norm_x8_c4_f32"],
    ],
];

/// The 16-byte RMSNorm kernels (`rms_norm_x8_c{C}_*` in norm.cu) for rows of `h` bf16 columns at
/// `ptrs` (every row base 16-byte aligned): (chunks of 8 columns a thread, threads), or None for the
/// scalar kernels. Fewest chunks a thread with at most 512 threads (4096 columns: 1 chunk, 512 threads;
/// up to 32768 columns with 4 chunks and 1024 threads).
pub(crate) fn norm_x8_launch(h: usize, ptrs: &[u64]) -> Option<(usize, u32)> {
    let aligned = aligned16(ptrs) && (2 * h).is_multiple_of(16);
    let h8 = h / 8;
    if !aligned || h8 == 0 {
        return None;
    }
    let chunks = [1usize, 2, 4].into_iter().find(|c| h8.div_ceil(*c) <= 512).unwrap_or(4);
    let threads = h8.div_ceil(chunks).next_multiple_of(32);
    (threads <= 1024).then_some((chunks, threads as u32))
}
