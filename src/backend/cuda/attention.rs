//! Attention: the naive baseline (per head: f32 scores from cuBLASLt, a softmax
//! kernel, bf16 probabilities times V in cuBLASLt), the flash kernels
//! (kernels/flash_attention.cu, head dims 64 and 128; on sm_90a at both,
//! kernels/flash_attention_sm90.cu, launched by flash_sm90.rs), and the lse merge.

use super::blas::{Gemm, Ty};
use super::flash_sm90::{FlashArgs, sm90_grid_fits};
use super::select::{Op, Path};
use super::*;
use crate::backend::cpu::attn_dims;

impl CudaBackend {
    pub(crate) fn attend(&self, q: &Tensor, k: &Tensor, v: &Tensor, p: &AttnParams) -> Result<AttnOut> {
        let n = attn_dims(q, k, v)?;
        if [q, k, v].iter().any(|t| t.dtype != DType::Bf16) {
            return Err(Error::Unsupported { op: "attention", what: format!("q {q:?} k {k:?} v {v:?} (bf16 only)") });
        }
        let out_dtype = if p.f32_out { DType::F32 } else { q.dtype };
        let out = self.alloc(&q.shape, out_dtype)?;
        let lse = self.alloc(&[n.hq, n.sq], DType::F32)?;
        if n.sq == 0 {
            return Ok(AttnOut { out, lse });
        }
        if n.sk == 0 {
            // No keys: zero rows and lse -inf, as the reference leaves them.
            let out = self.zeros_on_device(&q.shape, out_dtype)?;
            let lse = self.upload_f32(&vec![f32::NEG_INFINITY; n.hq * n.sq], &[n.hq, n.sq], DType::F32)?;
            return Ok(AttnOut { out, lse });
        }
        let scale = 1.0 / (n.d as f32).sqrt();
        let flash = match p.algo {
            AttnAlgo::Flash => self.select(Op::FlashAttention { d: n.d, sq: n.sq })?,
            AttnAlgo::Naive => Path::NaiveAttention,
        };
        match (p.algo, flash) {
            (AttnAlgo::Flash, Path::Flash(fk)) => {
                check("attention", n.sq < i32::MAX as usize && n.sk < i32::MAX as usize, || {
                    "sequence too long".into()
                })?;
                let delta = p.q_offset as i64 - p.k_offset as i64;
                let ptrs = [self.ptr(q)?, self.ptr(k)?, self.ptr(v)?, self.ptr(&out)?, self.ptr(&lse)?];
                // TMA needs 16-byte aligned bases, and the sm90 grid must fit.
                let fk = if fk.sm90a() && (!aligned16(&ptrs[..3]) || !sm90_grid_fits(&fk, n.hq, n.sq)) {
                    tracing::debug!("{}: q/k/v not 16-byte aligned or sq {} too long; running mma.sync", fk.name, n.sq);
                    self.select_mma_flash(n.d)?
                } else {
                    fk
                };
                if fk.sm90a() {
                    let scale_log2 = scale * std::f32::consts::LOG2_E;
                    let a = FlashArgs { delta, causal: p.causal, scale_log2, f32_out: p.f32_out };
                    self.flash_sm90(&fk, ptrs, n, a)?;
                    return Ok(AttnOut { out, lse });
                }
                let grid = (n.sq.div_ceil(fk.block_q()) as u32, n.hq as u32, 1);
                let a = args![
                    self.ptr(q)?,
                    self.ptr(k)?,
                    self.ptr(v)?,
                    self.ptr(&out)?,
                    self.ptr(&lse)?,
                    n.sq,
                    n.sk,
                    n.hq,
                    n.hkv,
                    delta as u64,
                    p.causal,
                    scale * std::f32::consts::LOG2_E
                ];
                let name = if p.f32_out { fk.name_f32o } else { fk.name };
                self.launch(fk.file(), name, grid, fk.threads(), fk.smem(), a)?;
            }
            (AttnAlgo::Flash, _) => {
                tracing::debug!(
                    "flash attention has kernels for head dims 64 and 128; d = {} runs the naive path",
                    n.d
                );
                self.naive_attention(q, k, v, p, n, scale, &out, &lse)?;
            }
            (AttnAlgo::Naive, _) => self.naive_attention(q, k, v, p, n, scale, &out, &lse)?,
        }
        Ok(AttnOut { out, lse })
    }

    /// One head at a time, materialising that head's [sq, sk] f32 scores (the baseline's memory profile).
    #[allow(clippy::too_many_arguments)]
    fn naive_attention(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        p: &AttnParams,
        n: crate::ops::attention::Dims,
        scale: f32,
        out: &Tensor,
        lse: &Tensor,
    ) -> Result<()> {
        let scores = self.alloc(&[n.sq, n.sk], DType::F32)?;
        let probs = self.alloc(&[n.sq, n.sk], DType::Bf16)?;
        let (qp, kp, vp, op) = (self.ptr(q)?, self.ptr(k)?, self.ptr(v)?, self.ptr(out)?);
        let (sp, pp, lp) = (self.ptr(&scores)?, self.ptr(&probs)?, self.ptr(lse)?);
        let (d, group) = (n.d as i64, n.hq / n.hkv);
        let (out_ty, out_bytes) = if out.dtype == DType::F32 { (Ty::F32, 4) } else { (Ty::Bf16, 2) };
        let one = |m: usize, nn: usize, kk: usize, a: Ty, dt: Ty, trans_a: bool, lda: i64, ldb: i64, ldd: i64| Gemm {
            m: m as u64,
            n: nn as u64,
            k: kk as u64,
            a,
            b: Ty::Bf16,
            d: dt,
            trans_a,
            trans_b: false,
            lda,
            ldb,
            ldd,
            batch: 1,
            stride_a: 0,
            stride_b: 0,
            stride_d: 0,
        };
        // Column-major views: scores^T [sk, sq] = K_h (as [d, sk], transposed) x Q_h ([d, sq]).
        let g_scores = one(n.sk, n.sq, n.d, Ty::Bf16, Ty::F32, true, n.hkv as i64 * d, n.hq as i64 * d, n.sk as i64);
        // out_h^T [d, sq] = V_h ([d, sk]) x P^T ([sk, sq]).
        let g_out = one(n.d, n.sq, n.sk, Ty::Bf16, out_ty, false, n.hkv as i64 * d, n.sk as i64, n.hq as i64 * d);
        for h in 0..n.hq {
            let kh = h / group;
            let (qo, ko, oo) = ((h * n.d * 2) as u64, (kh * n.d * 2) as u64, (h * n.d * out_bytes) as u64);
            self.blas.run(&g_scores, kp + ko, qp + qo, sp, scale, None)?;
            let a = args![sp, pp, lp + (h * n.sq * 4) as u64, n.sk, p.causal, p.q_offset, p.k_offset];
            self.launch("attention.cu", "softmax_rows", (n.sq as u32, 1, 1), 256, 0, a)?;
            self.blas.run(&g_out, vp + ko, pp, op + oo, 1.0, None)?;
        }
        Ok(())
    }

    pub(crate) fn merge(&self, a: &AttnOut, b: &AttnOut) -> Result<AttnOut> {
        check(
            "attn_merge",
            a.out.shape == b.out.shape && a.out.shape.len() == 3 && a.out.dtype == b.out.dtype,
            || format!("{:?} vs {:?}", a.out, b.out),
        )?;
        let (sq, hq, d) = (a.out.shape[0], a.out.shape[1], a.out.shape[2]);
        check("attn_merge", a.lse.shape == [hq, sq] && b.lse.shape == [hq, sq], || {
            format!("lse {:?} / {:?} for out {:?}", a.lse.shape, b.lse.shape, a.out.shape)
        })?;
        let name = pick(suffix("attn_merge", &a.out)?, "attn_merge_bf16", "attn_merge_f32");
        let out = self.alloc(&a.out.shape, a.out.dtype)?;
        let lse = self.alloc(&[hq, sq], DType::F32)?;
        let args = args![
            self.ptr(&out)?,
            self.ptr(&lse)?,
            self.ptr(&a.out)?,
            self.ptr(&a.lse)?,
            self.ptr(&b.out)?,
            self.ptr(&b.lse)?,
            sq,
            hq,
            d
        ];
        self.launch("attention.cu", name, ((sq * hq) as u32, 1, 1), 128, 0, args)?;
        Ok(AttnOut { out, lse })
    }
}
