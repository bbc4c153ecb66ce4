//! The reference backend: host memory, f32 arithmetic, results rounded to each
//! tensor's dtype the way a device would store them.

use super::*;
use crate::ops;
use crate::tensor::{Data, FP8_E4M3_MAX, fp8_e4m3_round, round_to};
use std::time::Instant;

#[derive(Default)]
pub struct CpuBackend;

impl CpuBackend {
    pub fn new() -> Self {
        CpuBackend
    }
}

fn f32s(t: &Tensor) -> Result<&[f32]> {
    match &t.data {
        Data::Host(v) => Ok(v),
        _ => Err(Error::Unsupported { op: "cpu", what: format!("{t:?} not in host f32 memory") }),
    }
}

fn i32s(t: &Tensor) -> Result<&[i32]> {
    match &t.data {
        Data::HostI32(v) => Ok(v),
        _ => Err(Error::Unsupported { op: "cpu", what: format!("{t:?} not in host i32 memory") }),
    }
}

/// A host tensor rounded to `dtype` (bf16 for F8 results: FP8 is an operand format only).
fn out(shape: &[usize], dtype: DType, mut v: Vec<f32>) -> Tensor {
    let dtype = if dtype == DType::F8 { DType::Bf16 } else { dtype };
    round_to(dtype, &mut v);
    Tensor::host(shape, dtype, v)
}

fn check(op: &'static str, ok: bool, detail: impl FnOnce() -> String) -> Result<()> {
    if ok { Ok(()) } else { Err(shape_err(op, detail())) }
}

impl Backend for CpuBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Cpu
    }
    fn device_name(&self) -> String {
        format!("cpu ({} threads)", rayon::current_num_threads())
    }

    fn upload(&self, v: &[f32], shape: &[usize], dtype: DType) -> Result<Tensor> {
        check("upload", v.len() == shape.iter().product::<usize>(), || {
            format!("{} values for shape {shape:?}", v.len())
        })?;
        if dtype == DType::F8 {
            return self.quantize_fp8(&Tensor::host(shape, DType::F32, v.to_vec()));
        }
        Ok(out(shape, dtype, v.to_vec()))
    }
    fn upload_i32(&self, v: &[i32], shape: &[usize]) -> Result<Tensor> {
        check("upload_i32", v.len() == shape.iter().product::<usize>(), || {
            format!("{} values for shape {shape:?}", v.len())
        })?;
        Ok(Tensor::host_i32(shape, v.to_vec()))
    }
    fn download(&self, t: &Tensor) -> Result<Vec<f32>> {
        Ok(f32s(t)?.to_vec())
    }
    fn download_i32(&self, t: &Tensor) -> Result<Vec<i32>> {
        Ok(i32s(t)?.to_vec())
    }
    fn random(&self, shape: &[usize], dtype: DType, seed: u64, std: f32) -> Result<Tensor> {
        self.upload(&crate::rng::fill_uniform(seed, shape.iter().product(), std), shape, dtype)
    }
    fn zeros(&self, shape: &[usize], dtype: DType) -> Result<Tensor> {
        Ok(match dtype {
            DType::I32 => Tensor::host_i32(shape, vec![0; shape.iter().product()]),
            _ => Tensor::host(shape, dtype, vec![0.0; shape.iter().product()]),
        })
    }
    fn quantize_fp8(&self, x: &Tensor) -> Result<Tensor> {
        let v = f32s(x)?;
        let amax = v.iter().fold(0f32, |m, a| m.max(a.abs()));
        let scale = if amax > 0.0 { amax / FP8_E4M3_MAX } else { 1.0 };
        // Host FP8 holds the dequantised values: what the GEMM will multiply.
        let q = v.iter().map(|a| fp8_e4m3_round(a / scale) * scale).collect();
        Ok(Tensor::host(&x.shape, DType::F8, q))
    }

    fn rows(&self, x: &Tensor, start: usize, len: usize) -> Result<Tensor> {
        let r = x.shape[0];
        check("rows", start + len <= r, || format!("rows {start}..{} of {r}", start + len))?;
        let w = x.numel() / r.max(1);
        let mut shape = x.shape.clone();
        shape[0] = len;
        Ok(match &x.data {
            Data::HostI32(v) => Tensor::host_i32(&shape, v[start * w..(start + len) * w].to_vec()),
            _ => Tensor::host(&shape, x.dtype, f32s(x)?[start * w..(start + len) * w].to_vec()),
        })
    }
    fn concat_rows(&self, parts: &[&Tensor]) -> Result<Tensor> {
        let first = parts.first().ok_or_else(|| shape_err("concat_rows", "no parts"))?;
        let tail = &first.shape[1..];
        check("concat_rows", parts.iter().all(|p| &p.shape[1..] == tail && p.dtype == first.dtype), || {
            format!("parts {:?}", parts.iter().map(|p| p.shape.clone()).collect::<Vec<_>>())
        })?;
        let mut shape = first.shape.clone();
        shape[0] = parts.iter().map(|p| p.shape[0]).sum();
        if first.dtype == DType::I32 {
            let v = parts.iter().map(|p| i32s(p)).collect::<Result<Vec<_>>>()?.concat();
            return Ok(Tensor::host_i32(&shape, v));
        }
        let v = parts.iter().map(|p| f32s(p)).collect::<Result<Vec<_>>>()?.concat();
        Ok(Tensor::host(&shape, first.dtype, v))
    }
    fn add(&self, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        let n = a.dim(-1);
        let row = b.shape.len() == 1 && b.shape[0] == n;
        check("add", a.shape == b.shape || row, || format!("{:?} + {:?}", a.shape, b.shape))?;
        let bv = f32s(b)?;
        let v = f32s(a)?.iter().enumerate().map(|(i, x)| x + bv[if row { i % n } else { i }]).collect();
        Ok(out(&a.shape, a.dtype, v))
    }
    fn embedding(&self, table: &Tensor, ids: &Tensor) -> Result<Tensor> {
        let (vocab, h) = (table.shape[0], table.dim(-1));
        let ids = i32s(ids)?;
        check("embedding", ids.iter().all(|&i| (i as usize) < vocab && i >= 0), || {
            format!("token id outside vocab {vocab}")
        })?;
        Ok(out(&[ids.len(), h], table.dtype, ops::permute::gather_rows(f32s(table)?, h, ids)))
    }
    fn matmul(&self, x: &Tensor, w: &Tensor, dt: DType) -> Result<Tensor> {
        let (k, n) = (x.dim(-1), w.shape[0]);
        check("matmul", w.shape.len() == 2 && w.shape[1] == k, || format!("x {:?} w {:?}", x.shape, w.shape))?;
        let m = x.numel() / k;
        let mut shape = x.shape.clone();
        *shape.last_mut().unwrap() = n;
        Ok(out(&shape, dt, ops::gemm::matmul(f32s(x)?, f32s(w)?, m, n, k)))
    }
    fn grouped_matmul(&self, x: &Tensor, w: &Tensor, offsets: &Tensor) -> Result<Tensor> {
        let (e, n, k) = (w.shape[0], w.shape[1], w.shape[2]);
        let off = i32s(offsets)?;
        check("grouped_matmul", x.dim(-1) == k && off.len() == e + 1 && off[e] as usize == x.shape[0], || {
            format!("x {:?} w {:?} offsets {off:?}", x.shape, w.shape)
        })?;
        Ok(out(&[x.shape[0], n], x.dtype, ops::gemm::grouped_matmul(f32s(x)?, f32s(w)?, off, n, k)))
    }
    fn quantize_blocks(&self, x: &Tensor, blocks: Blocks) -> Result<BlockFp8> {
        let dims @ (g, m, k) = block_fp8::quantize_dims(x, blocks)?;
        let (q, s) = match blocks {
            Blocks::Rows => ops::block_fp8::quantize_rows(f32s(x)?, m, k),
            Blocks::Tiles => ops::block_fp8::quantize_tiles(f32s(x)?, g, m, k),
        };
        // Host FP8 tensors hold what the GEMM multiplies: here the e4m3 values (per-tensor scale 1).
        let q = Tensor::host(&x.shape, DType::F8, q);
        Ok(BlockFp8 { q, scales: Tensor::host(&block_fp8::scale_shape(blocks, dims), DType::F32, s), blocks })
    }
    fn grouped_matmul_fp8(&self, x: &BlockFp8, w: &BlockFp8, offsets: &Tensor, swiglu: bool) -> Result<Tensor> {
        let (r, e, nw, k) = block_fp8::grouped_dims(x, w, offsets, swiglu)?;
        let off = i32s(offsets)?;
        check("grouped_matmul_fp8", off[e] as usize == r, || format!("offsets {off:?} for {r} rows"))?;
        let o =
            ops::block_fp8::Operands { xq: f32s(&x.q)?, xs: f32s(&x.scales)?, wq: f32s(&w.q)?, ws: f32s(&w.scales)? };
        let y = ops::block_fp8::grouped_matmul(&o, off, nw, k);
        Ok(match swiglu {
            true => out(&[r, nw / 2], DType::Bf16, ops::activation::swiglu_fused(&y, nw / 2)),
            false => out(&[r, nw], DType::Bf16, y),
        })
    }
    fn rms_norm(&self, x: &Tensor, w: &Tensor, eps: f32) -> Result<Tensor> {
        check("rms_norm", x.dim(-1) == w.numel(), || format!("x {:?} w {:?}", x.shape, w.shape))?;
        Ok(out(&x.shape, x.dtype, ops::norm::rms_norm(f32s(x)?, f32s(w)?, eps)))
    }
    fn add_rms_norm(&self, x: &Tensor, residual: &Tensor, w: &Tensor, eps: f32) -> Result<(Tensor, Tensor)> {
        let sum = self.add(x, residual)?;
        let normed = self.rms_norm(&sum, w, eps)?;
        Ok((sum, normed))
    }
    fn rope(&self, x: &Tensor, start: usize, p: &RopeParams) -> Result<Tensor> {
        check("rope", x.shape.len() == 3 && x.shape[2].is_multiple_of(2), || {
            format!("x {:?} must be [s, heads, even d]", x.shape)
        })?;
        Ok(out(&x.shape, x.dtype, ops::rope::rope(f32s(x)?, x.shape[1], x.shape[2], start, p)))
    }
    fn swiglu(&self, gate: &Tensor, up: Option<&Tensor>) -> Result<Tensor> {
        match up {
            Some(u) => {
                check("swiglu", gate.shape == u.shape, || format!("gate {:?} up {:?}", gate.shape, u.shape))?;
                Ok(out(&gate.shape, gate.dtype, ops::activation::swiglu(f32s(gate)?, f32s(u)?)))
            }
            None => {
                let f2 = gate.dim(-1);
                check("swiglu", f2.is_multiple_of(2), || {
                    format!("fused input {:?} needs an even last dim", gate.shape)
                })?;
                let mut shape = gate.shape.clone();
                *shape.last_mut().unwrap() = f2 / 2;
                Ok(out(&shape, gate.dtype, ops::activation::swiglu_fused(f32s(gate)?, f2 / 2)))
            }
        }
    }
    fn attention(&self, q: &Tensor, k: &Tensor, v: &Tensor, p: &AttnParams) -> Result<AttnOut> {
        let n = attn_dims(q, k, v)?;
        // Naive attention keeps one head's f32 scores [sq, sk] in a plain vector: count them.
        let _scores = (p.algo == AttnAlgo::Naive).then(|| crate::tensor::ledger::Charge::new(n.sq * n.sk * 4));
        let f = match p.algo {
            AttnAlgo::Naive => ops::attention::naive,
            AttnAlgo::Flash => ops::attention::flash,
        };
        let (o, lse) = f(f32s(q)?, f32s(k)?, f32s(v)?, n, p.causal, p.q_offset, p.k_offset);
        let dtype = if p.f32_out { DType::F32 } else { q.dtype };
        Ok(AttnOut { out: out(&q.shape, dtype, o), lse: Tensor::host(&[n.hq, n.sq], DType::F32, lse) })
    }
    fn attn_merge(&self, a: &AttnOut, b: &AttnOut) -> Result<AttnOut> {
        check("attn_merge", a.out.shape == b.out.shape, || format!("{:?} vs {:?}", a.out.shape, b.out.shape))?;
        let (sq, hq, d) = (a.out.shape[0], a.out.shape[1], a.out.shape[2]);
        let (o, lse) = ops::attention::merge(f32s(&a.out)?, f32s(&a.lse)?, f32s(&b.out)?, f32s(&b.lse)?, sq, hq, d);
        Ok(AttnOut { out: out(&a.out.shape, a.out.dtype, o), lse: Tensor::host(&[hq, sq], DType::F32, lse) })
    }
    fn cast(&self, x: &Tensor, dtype: DType) -> Result<Tensor> {
        Ok(out(&x.shape, dtype, f32s(x)?.to_vec()))
    }
    fn route(&self, logits: &Tensor, p: &RouterParams, bias: Option<&Tensor>) -> Result<Routing> {
        let (t, e) = (logits.shape[0], logits.dim(-1));
        validate_router(e, p)?;
        let bias = bias.map(f32s).transpose()?;
        let r = ops::routing::route(f32s(logits)?, e, p, bias);
        Ok(Routing {
            ids: Tensor::host_i32(&[t, p.top_k], r.ids),
            weights: Tensor::host(&[t, p.top_k], DType::F32, r.weights),
            probs: Tensor::host(&[t, e], DType::F32, r.probs),
        })
    }
    fn permute(&self, x: &Tensor, ids: &Tensor, num_experts: usize) -> Result<Permuted> {
        Ok(permute_rows(x, ids, num_experts)?.0)
    }
    fn permute_fp8(&self, x: &BlockFp8, ids: &Tensor, num_experts: usize) -> Result<Permuted<BlockFp8>> {
        validate_permute_fp8(x)?;
        let (t, kb) = (x.q.shape[0], x.scales.shape[0]);
        let (p, tok) = permute_rows(&x.q, ids, num_experts)?;
        let s = f32s(&x.scales)?;
        let scales = (0..kb).flat_map(|b| tok.iter().map(move |&r| s[b * t + r as usize])).collect();
        let scales = Tensor::host(&[kb, tok.len()], DType::F32, scales);
        Ok(Permuted { x: BlockFp8 { q: p.x, scales, blocks: Blocks::Rows }, offsets: p.offsets, row_of: p.row_of })
    }
    fn unpermute(&self, y: &Tensor, row_of: &Tensor, weights: &Tensor) -> Result<Tensor> {
        let (t, k, n) = (weights.shape[0], weights.dim(-1), y.dim(-1));
        check("unpermute", row_of.numel() == t * k && y.shape[0] == t * k, || {
            format!("y {:?} row_of {:?} weights {:?}", y.shape, row_of.shape, weights.shape)
        })?;
        Ok(out(&[t, n], y.dtype, ops::permute::unpermute(f32s(y)?, n, i32s(row_of)?, f32s(weights)?, k)))
    }

    fn synchronize(&self) -> Result<()> {
        Ok(())
    }
    fn mark(&self) -> Result<Mark> {
        Ok(Mark::Host(Instant::now()))
    }
    fn elapsed_ms(&self, start: &Mark, end: &Mark) -> Result<f64> {
        match (start, end) {
            (Mark::Host(a), Mark::Host(b)) => Ok(b.duration_since(*a).as_secs_f64() * 1e3),
            _ => Err(Error::Unsupported { op: "elapsed_ms", what: "device marks on the CPU backend".into() }),
        }
    }
    fn memory(&self) -> MemStats {
        crate::tensor::ledger::host_stats()
    }
    fn reset_peak(&self) {
        crate::tensor::ledger::reset_host_peak()
    }
}

/// Shapes of q [sq, hq, d], k and v [sk, hkv, d], checked.
pub(crate) fn attn_dims(q: &Tensor, k: &Tensor, v: &Tensor) -> Result<ops::attention::Dims> {
    let ok = q.shape.len() == 3 && k.shape.len() == 3 && k.shape == v.shape && q.shape[2] == k.shape[2];
    check("attention", ok && k.shape[1] > 0 && q.shape[1].is_multiple_of(k.shape[1]), || {
        format!(
            "q {:?} k {:?} v {:?}: need [s, heads, d] with q heads a multiple of kv heads",
            q.shape, k.shape, v.shape
        )
    })?;
    Ok(ops::attention::Dims { sq: q.shape[0], sk: k.shape[0], hq: q.shape[1], hkv: k.shape[1], d: q.shape[2] })
}

/// `permute_fp8` takes rows quantised per token, [r, k].
pub(crate) fn validate_permute_fp8(x: &BlockFp8) -> Result<()> {
    check("permute_fp8", x.blocks == Blocks::Rows && x.q.shape.len() == 2, || {
        format!("x {:?} ({:?}): per-token blocks [r, k]", x.q.shape, x.blocks)
    })
}

pub(crate) fn validate_router(e: usize, p: &RouterParams) -> Result<()> {
    check("route", p.n_group > 0 && e.is_multiple_of(p.n_group) && p.topk_group <= p.n_group && p.top_k <= e, || {
        format!("{e} experts, n_group {}, topk_group {}, top_k {}", p.n_group, p.topk_group, p.top_k)
    })?;
    check("route", p.top_k <= p.topk_group * (e / p.n_group), || {
        format!("top_k {} exceeds the experts in {} groups of {}", p.top_k, p.topk_group, e / p.n_group)
    })
}

/// `permute` of `x` [t, h] by `ids` [t, k] (the stable grouping of `ops::permute::plan`), and the
/// source token of each permuted row.
fn permute_rows(x: &Tensor, ids: &Tensor, num_experts: usize) -> Result<(Permuted, Vec<i32>)> {
    let (t, k, h) = (ids.shape[0], ids.dim(-1), x.dim(-1));
    let idv = i32s(ids)?;
    check("permute", x.shape[0] == t && idv.iter().all(|&e| e >= 0 && (e as usize) < num_experts), || {
        format!("x {:?} ids {:?} experts {num_experts}", x.shape, ids.shape)
    })?;
    let p = ops::permute::plan(idv, k, num_experts);
    let permuted = Permuted {
        x: Tensor::host(&[t * k, h], x.dtype, ops::permute::gather_rows(f32s(x)?, h, &p.token_of)),
        offsets: Tensor::host_i32(&[num_experts + 1], p.offsets),
        row_of: Tensor::host_i32(&[t * k], p.row_of),
    };
    Ok((permuted, p.token_of))
}
