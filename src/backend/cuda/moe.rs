//! MoE ops, all on the device with no host round trip: the router, the stable
//! permutation by expert (device-side counting and prefix sums), the gather-based
//! unpermute, and the grouped GEMM that reads the expert offsets from device memory.

use super::select::{Op, Path};
use super::*;
use crate::backend::cpu::{validate_permute_fp8, validate_router};

/// Slots per block in kernels/permute.cu (PERM_CHUNK).
const PERM_CHUNK: usize = 256;
const ROUTE_WARPS: usize = 4;

impl CudaBackend {
    pub(crate) fn route_tokens(&self, logits: &Tensor, p: &RouterParams, bias: Option<&Tensor>) -> Result<Routing> {
        check("route", logits.shape.len() == 2, || format!("logits {:?} must be [t, e]", logits.shape))?;
        let (t, e) = (logits.shape[0], logits.shape[1]);
        validate_router(e, p)?;
        check("route", e <= 1024 && p.top_k <= 32 && p.n_group <= 64, || {
            format!(
                "the CUDA router handles up to 1024 experts, top_k 32 and 64 groups (got {e}, {}, {})",
                p.top_k, p.n_group
            )
        })?;
        if let Some(b) = bias {
            check("route", b.numel() == e && b.dtype == DType::F32, || format!("bias {b:?} for {e} experts"))?;
        }
        let logits32;
        let logits = match logits.dtype {
            DType::F32 => logits,
            _ => {
                logits32 = self.cast(logits, DType::F32)?;
                &logits32
            }
        };
        let ids = self.alloc(&[t, p.top_k], DType::I32)?;
        let weights = self.alloc(&[t, p.top_k], DType::F32)?;
        let probs = self.alloc(&[t, e], DType::F32)?;
        let bias_ptr = match bias {
            Some(b) => self.ptr(b)?,
            None => 0u64,
        };
        let smem = (ROUTE_WARPS * (2 * e + p.n_group + 32) * 4) as u32;
        let a = args![
            self.ptr(logits)?,
            bias_ptr,
            t,
            e,
            p.gate == Gate::Sigmoid,
            p.top_k,
            p.n_group,
            p.topk_group,
            p.norm_topk,
            p.scaling,
            self.ptr(&ids)?,
            self.ptr(&weights)?,
            self.ptr(&probs)?
        ];
        let grid = (t.div_ceil(ROUTE_WARPS) as u32, 1, 1);
        self.launch("routing.cu", "route_topk", grid, (ROUTE_WARPS * 32) as u32, smem, a)?;
        Ok(Routing { ids, weights, probs })
    }

    pub(crate) fn permute_tokens(&self, x: &Tensor, ids: &Tensor, num_experts: usize) -> Result<Permuted> {
        let (offsets, row_of, token_of) = self.permutation(x, ids, num_experts)?;
        let xs = self.gather(x, &token_of, token_of.numel())?;
        Ok(Permuted { x: xs, offsets, row_of })
    }

    /// `permute_tokens` of row-blocked FP8 values: the e4m3 rows and their scales gathered.
    pub(crate) fn permute_blocks(&self, x: &BlockFp8, ids: &Tensor, num_experts: usize) -> Result<Permuted<BlockFp8>> {
        validate_permute_fp8(x)?;
        let (offsets, row_of, token_of) = self.permutation(&x.q, ids, num_experts)?;
        let (m, t, kb) = (token_of.numel(), x.q.shape[0], x.scales.shape[0]);
        let q = self.gather(&x.q, &token_of, m)?;
        let scales = self.alloc(&[kb, m], DType::F32)?;
        let a = args![self.ptr(&scales)?, self.ptr(&x.scales)?, self.ptr(&token_of)?, m, t, kb, self.scale_ptr(&q)?];
        self.launch("fp8.cu", "gather_row_scales", self.grid_1d(m * kb, 256), 256, 0, a)?;
        Ok(Permuted { x: BlockFp8 { q, scales, blocks: Blocks::Rows }, offsets, row_of })
    }

    /// The stable grouping by expert of `ids` [t, k] for rows `x` [t, ..]: (offsets [e + 1], row_of
    /// [t * k], token_of [t * k]).
    fn permutation(&self, x: &Tensor, ids: &Tensor, num_experts: usize) -> Result<(Tensor, Tensor, Tensor)> {
        check(
            "permute",
            ids.shape.len() == 2 && ids.dtype == DType::I32 && x.shape.first() == ids.shape.first(),
            || format!("x {x:?} ids {ids:?}"),
        )?;
        check("permute", num_experts > 0 && num_experts <= 4096, || format!("{num_experts} experts"))?;
        let (t, k) = (ids.shape[0], ids.shape[1]);
        let n = t * k;
        let e = num_experts;
        let offsets = self.zeros_on_device(&[e + 1], DType::I32)?;
        let row_of = self.alloc(&[n], DType::I32)?;
        let token_of = self.alloc(&[n], DType::I32)?;
        if n > 0 {
            let chunks = n.div_ceil(PERM_CHUNK);
            let counts = self.alloc(&[e * chunks], DType::I32)?;
            let totals = self.zeros_on_device(&[e], DType::I32)?;
            let smem = (9 * e * 4) as u32;
            let (ip, cp, tp) = (self.ptr(ids)?, self.ptr(&counts)?, self.ptr(&totals)?);
            let grid = (chunks as u32, 1, 1);
            self.launch("permute.cu", "perm_count", grid, PERM_CHUNK as u32, smem, args![ip, n, e, chunks, cp, tp])?;
            let a = args![cp, chunks, e, tp, self.ptr(&offsets)?];
            self.launch("permute.cu", "perm_scan", (e as u32, 1, 1), 256, 0, a)?;
            let a = args![ip, n, k, e, chunks, cp, self.ptr(&row_of)?, self.ptr(&token_of)?];
            self.launch("permute.cu", "perm_rank", grid, PERM_CHUNK as u32, smem, a)?;
        }
        Ok((offsets, row_of, token_of))
    }

    /// The weighted sum of each token's expert rows, plus `add` [t, n] when given (rounded as a
    /// separate add would round it).
    pub(crate) fn unpermute_tokens(
        &self,
        y: &Tensor,
        row_of: &Tensor,
        weights: &Tensor,
        add: Option<&Tensor>,
    ) -> Result<Tensor> {
        check("unpermute", weights.shape.len() == 2 && y.shape.len() == 2, || format!("y {y:?} weights {weights:?}"))?;
        let (t, k, n) = (weights.shape[0], weights.shape[1], y.shape[1]);
        check("unpermute", row_of.numel() == t * k && y.shape[0] == t * k && weights.dtype == DType::F32, || {
            format!("y {y:?} row_of {row_of:?} weights {weights:?}")
        })?;
        if let Some(a) = add {
            check("unpermute", a.shape == [t, n] && a.dtype == y.dtype, || format!("add {a:?} to [{t}, {n}] {y:?}"))?;
        }
        let out = self.alloc(&[t, n], y.dtype)?;
        let ap = match add {
            Some(a) => self.ptr(a)?,
            None => 0u64,
        };
        let (op, yp) = (self.ptr(&out)?, self.ptr(y)?);
        let sfx = suffix("unpermute", y)?;
        let vec8 = sfx == "bf16" && n.is_multiple_of(8) && aligned16(&[op, yp, ap]);
        let name = if vec8 { "unpermute_bf16_x8" } else { pick(sfx, "unpermute_bf16", "unpermute_f32") };
        let a = args![op, yp, self.ptr(row_of)?, self.ptr(weights)?, k, n, ap];
        self.launch("permute.cu", name, (t as u32, 1, 1), 256, 0, a)?;
        Ok(out)
    }

    /// Rows offsets[e]..offsets[e+1] of x [r, k] times w[e]^T; offsets never leave the device.
    /// Rows outside offsets[0]..offsets[E] are not written (permute's offsets cover every row).
    pub(crate) fn grouped_gemm(&self, x: &Tensor, w: &Tensor, offsets: &Tensor) -> Result<Tensor> {
        let (r, e, n, k) = grouped_shape(x, w, offsets)?;
        let y = self.alloc(&[r, n], DType::Bf16)?;
        let gk = match self.select(Op::GroupedMatmul { r, e, n, k })? {
            Path::Grouped(gk) => gk,
            p => unreachable!("grouped_matmul selected {p:?}"),
        };
        let (xp, wp, op, yp) = (self.ptr(x)?, self.ptr(w)?, self.ptr(offsets)?, self.ptr(&y)?);
        if gk.tma.is_some() {
            self.launch_tma_grouped(&gk, [xp, wp, op, yp], r, e, n, k)?;
            return Ok(y);
        }
        let grid = (n.div_ceil(gk.bn) as u32, (r.div_ceil(gk.bm) + e) as u32, 1);
        self.launch(gk.file, gk.name, grid, gk.threads, gk.smem, args![xp, wp, op, yp, e, n, k])?;
        Ok(y)
    }

    /// silu(gate) * up of the grouped GEMM with w [e, 2f, k] (gate rows, then up rows) -> [r, f]:
    /// fused into the TMA kernel's epilogue where it takes the shape, else the two ops.
    pub(crate) fn grouped_gemm_swiglu(&self, x: &Tensor, w: &Tensor, offsets: &Tensor) -> Result<Tensor> {
        let (r, e, n, k) = grouped_shape(x, w, offsets)?;
        check("grouped_matmul_swiglu", n.is_multiple_of(2), || format!("w {w:?}: gate and up rows, an even count"))?;
        let f = n / 2;
        let gk = match self.select(Op::GroupedMatmulSwiglu { r, e, f, k })? {
            Path::GroupedSwiglu(gk) => gk,
            _ => return self.swiglu_op(&self.grouped_gemm(x, w, offsets)?, None),
        };
        let y = self.alloc(&[r, f], DType::Bf16)?;
        let (xp, wp, op, yp) = (self.ptr(x)?, self.ptr(w)?, self.ptr(offsets)?, self.ptr(&y)?);
        self.launch_tma_grouped(&gk, [xp, wp, op, yp], r, e, f, k)?;
        Ok(y)
    }

    /// silu(x w_gate^T) * (x w_up^T) for x [.., k] and w [2f, k] (gate rows, then up rows): on sm_90a the
    /// fused TMA kernel as one expert over all rows, else (or where it does not take the shape) the
    /// cuBLASLt GEMM then the SwiGLU kernel.
    pub(crate) fn gemm_swiglu(&self, x: &Tensor, w: &Tensor) -> Result<Tensor> {
        let k = x.shape.last().copied().unwrap_or(0);
        check("matmul_swiglu", w.shape.len() == 2 && w.shape[1] == k && w.shape[0].is_multiple_of(2), || {
            format!("x {x:?} w {w:?}: w must be [2f, k], gate rows then up rows")
        })?;
        let (r, f) = (x.numel() / k.max(1), w.shape[0] / 2);
        let (xp, wp) = (self.ptr(x)?, self.ptr(w)?);
        // TMA reads 16-byte aligned bases and row strides.
        let fused = x.dtype == DType::Bf16
            && w.dtype == DType::Bf16
            && r > 0
            && f > 0
            && k.is_multiple_of(8)
            && aligned16(&[xp, wp]);
        let gk = match fused.then(|| self.select(Op::GroupedMatmulSwiglu { r, e: 1, f, k })).transpose()? {
            Some(Path::GroupedSwiglu(gk)) => gk,
            _ => return self.swiglu_op(&self.gemm(x, w, x.dtype)?, None),
        };
        let mut shape = x.shape.clone();
        *shape.last_mut().unwrap() = f;
        let y = self.alloc(&shape, DType::Bf16)?;
        let op = self.one_expert_offsets(r)?.device_ptr(&self.stream).0;
        self.launch_tma_grouped(&gk, [xp, wp, op, self.ptr(&y)?], r, 1, f, k)?;
        Ok(y)
    }

    /// [0, r] on the device, uploaded once per r (before any graph capture: the eager pass makes it).
    fn one_expert_offsets(&self, r: usize) -> Result<Arc<CudaSlice<i32>>> {
        let mut cache = self.one_expert.lock().unwrap();
        if let Some((_, o)) = cache.iter().find(|(rr, _)| *rr == r) {
            return Ok(o.clone());
        }
        check("matmul_swiglu", r < i32::MAX as usize, || format!("{r} rows"))?;
        let o = Arc::new(self.stream.clone_htod(&[0, r as i32]).map_err(|e| cuda_err("upload offsets", e))?);
        cache.push((r, o.clone()));
        Ok(o)
    }

    /// Launches a TG kernel of kernels/grouped_gemm_tma.cu on pointers [x, w, offsets, y] for `r` rows,
    /// `e` experts, `n` output columns (with SwiGLU: f, of 2f weight rows) and depth `k`.
    fn launch_tma_grouped(
        &self,
        gk: &GroupedKernel,
        ptrs: [u64; 4],
        r: usize,
        e: usize,
        n: usize,
        k: usize,
    ) -> Result<()> {
        let o = gk.tma.expect("a TMA kernel");
        let [xp, wp, op, yp] = ptrs;
        // Persistent: at most one block per SM (multicast: as many pairs as can be resident);
        // blocks find their tiles from the offsets.
        let smem = gk.smem_for(e);
        let row_blocks = r.div_ceil(gk.bm) + e;
        let col_blocks = n.div_ceil(if o.swiglu { gk.bn / 2 } else { gk.bn });
        let (grid, cluster) = if o.multicast {
            let pairs = row_blocks.div_ceil(2) * col_blocks;
            let resident = self.resident_pairs(gk, smem)? as usize;
            check("grouped_matmul", resident > 0, || format!("{}: no cluster of two fits", gk.name))?;
            tracing::debug!("{}: {resident} resident pairs, {pairs} pair tiles", gk.name);
            ((2 * pairs.min(resident)) as u32, 2)
        } else {
            ((row_blocks * col_blocks).min(self.sm_count() as usize) as u32, 1)
        };
        let w_rows = if o.swiglu { 2 * e * n } else { e * n };
        let mx = self.tensor_map(driver::TmaElem::Bf16, xp, r, k, gk.bm as u32, 64)?;
        let w_box = if o.multicast || o.swiglu { gk.bn / 2 } else { gk.bn };
        let mw = self.tensor_map(driver::TmaElem::Bf16, wp, w_rows, k, w_box as u32, 64)?;
        // The output by TMA where its rows are 16-byte strided; otherwise the kernel stores it
        // itself and the map is a placeholder.
        let y_tma = n.is_multiple_of(8);
        let my = if y_tma { self.tensor_map(driver::TmaElem::Bf16, yp, r, n, 64, 64)? } else { mx };
        let mut slots = [op, yp, e as u64, n as u64, k as u64, y_tma as u64];
        let l = driver::Launch { grid: (grid, 1, 1), block: gk.threads, smem, cluster };
        // SAFETY: the parameters of the TG kernels in kernels/grouped_gemm_tma.cu: three 128-byte
        // tensor maps, two pointers and four ints (read from the low half of their slots).
        unsafe { self.launch_maps((gk.file, gk.name), l, &mut [mx, mw, my], &mut slots) }
    }
}

/// (r, e, n, k) of a grouped GEMM of x [r, k] by w [e, n, k], checked (bf16, 16-byte rows).
fn grouped_shape(x: &Tensor, w: &Tensor, offsets: &Tensor) -> Result<(usize, usize, usize, usize)> {
    check("grouped_matmul", x.shape.len() == 2 && w.shape.len() == 3, || format!("x {x:?} w {w:?}"))?;
    let (r, e, n, k) = (x.shape[0], w.shape[0], w.shape[1], w.shape[2]);
    check("grouped_matmul", x.shape[1] == k && offsets.numel() == e + 1 && offsets.dtype == DType::I32, || {
        format!("x {x:?} w {w:?} offsets {offsets:?}")
    })?;
    if x.dtype != DType::Bf16 || w.dtype != DType::Bf16 {
        return Err(Error::Unsupported { op: "grouped_matmul", what: format!("{x:?} x {w:?} (bf16 only)") });
    }
    check("grouped_matmul", k.is_multiple_of(8), || format!("k = {k} must be a multiple of 8 (16-byte rows)"))?;
    check("grouped_matmul", n < i32::MAX as usize && k < i32::MAX as usize, || format!("n {n} k {k}"))?;
    Ok((r, e, n, k))
}
