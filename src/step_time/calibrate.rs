//! `rwm-dist calibrate`: the rates the step-time model needs, measured through the backend on
//! the shapes the targets use (their `work` op lists at the profiles given) plus a few sizes
//! around them: GEMMs in bf16 and FP8, causal flash attention by length, grouped GEMMs by rows
//! per expert, the bandwidth of an element-wise add, and the costs of a launch and of a sync.
//! And the loopback link of ranks sharing one GPU, fitted to a multi-rank run's records.

use super::rates::{AttnRate, GemmRate, GroupedRate, LinkRate, Rates, SliceMs};
use super::work::Model;
use super::{Error, MemKind, Op, Phase, Result};
use crate::backend::{AttnAlgo, AttnParams, Backend, BackendKind};
use crate::layout::ParallelDims;
use crate::tensor::{DType, Tensor};
use std::collections::BTreeSet;

/// Median milliseconds of `f`, after two untimed calls, over at least `min_calls` calls and
/// `min_ms` of them (at most 200 calls).
fn time_ms(b: &dyn Backend, min_calls: usize, min_ms: f64, mut f: impl FnMut(usize) -> Result<()>) -> Result<f64> {
    for i in 0..2 {
        f(i)?;
    }
    b.synchronize()?;
    let mut ms = Vec::new();
    let mut i = 2;
    while ms.len() < min_calls || (ms.iter().sum::<f64>() < min_ms && ms.len() < 200) {
        let t0 = b.mark()?;
        f(i)?;
        let t1 = b.mark()?;
        b.synchronize()?;
        ms.push(b.elapsed_ms(&t0, &t1)?);
        i += 1;
    }
    ms.sort_by(f64::total_cmp);
    Ok(ms[ms.len() / 2])
}

/// The shapes to measure: every GEMM, grouped GEMM and attention of each target's optimized
/// (and FP8) step at each profile, on one rank.
#[derive(Default, Debug)]
pub struct Shapes {
    pub gemm: BTreeSet<(usize, usize, usize, bool)>,
    pub grouped: BTreeSet<(usize, usize, usize, usize)>,
    pub attn_seq: BTreeSet<usize>,
    pub head_dims: BTreeSet<(usize, usize, usize)>,
}

impl Shapes {
    pub fn of_profiles(profiles: &[&str]) -> Result<Shapes> {
        let mut s = Shapes::default();
        for p in profiles {
            let size = crate::harness::target::profile(p).map_err(|e| Error::Rates(e.to_string()))?.size;
            for r in crate::targets::ALL {
                let t = (r.config)(size);
                for spec in t.variants() {
                    for gemm in [DType::Bf16, DType::F8] {
                        let Some(w) = super::work::for_target(t.as_ref(), &ParallelDims::single(), spec.name, gemm)
                        else {
                            continue;
                        };
                        s.add(&w);
                    }
                }
                match super::work::Model::of(t.as_ref()) {
                    Some(Model::Llama(c)) => s.attn(c.seq_len, c.heads, c.kv_heads, c.head_dim),
                    Some(Model::Gpt4(c)) => s.attn(c.seq_len, c.heads, c.kv_heads, c.head_dim),
                    _ => {}
                }
            }
        }
        Ok(s)
    }

    fn attn(&mut self, seq: usize, heads: usize, kv: usize, d: usize) {
        self.head_dims.insert((heads, kv, d));
        // The target's length and shorter ones down to 1/16 (CP blocks, smaller profiles).
        let mut l = seq;
        while l >= (seq / 16).max(64) {
            self.attn_seq.insert(l);
            l /= 2;
        }
    }

    fn add(&mut self, w: &super::Work) {
        for p in &w.phases {
            let ops = match p {
                Phase::Compute(o) | Phase::Overlapped { compute: o, .. } => o,
                Phase::Comm(_) => continue,
            };
            for o in ops {
                match *o {
                    // The LM head's one row is bandwidth-bound: the model prices it by bytes.
                    Op::Gemm { m, n, k, fp8, .. } if m > 1 => {
                        self.gemm.insert((m, n, k, fp8));
                    }
                    Op::Grouped { rows, experts, n, k } => {
                        // The rows per expert seen, and 1/4, 1/16 of them (EP shares, skew).
                        for div in [1, 4, 16] {
                            self.grouped.insert(((rows / div).max(experts), experts, n, k));
                        }
                    }
                    _ => {}
                }
            }
        }
    }
}

/// Measures every rate on `b` for the shapes of `profiles`; `fp8` false skips FP8 GEMMs
/// (the CPU backend has no fast FP8).
pub fn measure(b: &dyn Backend, profiles: &[&str], fp8: bool, log: &mut dyn FnMut(&str)) -> Result<Rates> {
    let shapes = Shapes::of_profiles(profiles)?;
    let cuda = b.kind() == BackendKind::Cuda;
    let (calls, min_ms) = if cuda { (5, 50.0) } else { (3, 5.0) };
    if cuda {
        // Half a second of large GEMMs first: clocks and power settle as they do in a run.
        let x = b.random(&[8192, 8192], DType::Bf16, 1, 1.0)?;
        let t0 = std::time::Instant::now();
        while t0.elapsed().as_secs_f64() < 0.5 {
            drop(b.matmul(&x, &x, DType::Bf16)?);
            b.synchronize()?;
        }
    }
    let mut gemm = Vec::new();
    for &(m, n, k, f8) in shapes.gemm.iter().filter(|g| fp8 || !g.3) {
        let xs = [b.random(&[m, k], DType::Bf16, 1, 1.0)?, b.random(&[m, k], DType::Bf16, 2, 1.0)?];
        let ws = [b.random(&[n, k], DType::Bf16, 3, 0.02)?, b.random(&[n, k], DType::Bf16, 4, 0.02)?];
        let (xs, ws): (Vec<Tensor>, Vec<Tensor>) = if f8 {
            (xs.iter().map(|x| b.quantize_fp8(x)).collect::<std::result::Result<_, _>>()?, {
                ws.iter().map(|w| b.quantize_fp8(w)).collect::<std::result::Result<_, _>>()?
            })
        } else {
            (xs.into(), ws.into())
        };
        let ms = time_ms(b, calls, min_ms, |i| Ok(b.matmul(&xs[i % 2], &ws[i % 2], DType::Bf16).map(drop)?))?;
        let tflops = 2.0 * (m * n * k) as f64 / ms / 1e9;
        log(&format!("gemm {m}x{n}x{k} {}: {ms:.3} ms, {tflops:.1} TFLOP/s", if f8 { "fp8" } else { "bf16" }));
        gemm.push(GemmRate { m, n, k, fp8: f8, tflops });
    }
    let mut attention = Vec::new();
    for &(heads, kv, d) in &shapes.head_dims {
        for &s in &shapes.attn_seq {
            let q = b.random(&[s, heads, d], DType::Bf16, 5, 1.0)?;
            let (k, v) = (b.random(&[s, kv, d], DType::Bf16, 6, 1.0)?, b.random(&[s, kv, d], DType::Bf16, 7, 1.0)?);
            let p = AttnParams::causal(0, 0, AttnAlgo::Flash);
            let ms = time_ms(b, calls, min_ms, |_| Ok(b.attention(&q, &k, &v, &p).map(drop)?))?;
            let flops = Op::Attn { pairs: s as f64 * (s as f64 + 1.0) / 2.0, heads, head_dim: d }.flops();
            let tflops = flops / ms / 1e9;
            log(&format!("attention S={s} heads {heads}/{kv} d={d}: {ms:.3} ms, {tflops:.1} TFLOP/s"));
            attention.push(AttnRate { seq: s, heads, kv_heads: kv, head_dim: d, tflops });
        }
    }
    let mut grouped = Vec::new();
    for &(rows, e, n, k) in &shapes.grouped {
        let x = b.random(&[rows, k], DType::Bf16, 8, 1.0)?;
        let w = b.random(&[e, n, k], DType::Bf16, 9, 0.02)?;
        let off: Vec<i32> = (0..=e).map(|i| (i * rows / e) as i32).collect();
        let off = b.upload_i32(&off, &[e + 1])?;
        let ms = time_ms(b, calls, min_ms, |_| Ok(b.grouped_matmul(&x, &w, &off).map(drop)?))?;
        let tflops = 2.0 * (rows * n * k) as f64 / ms / 1e9;
        log(&format!("grouped {e} experts x {} rows, {n}x{k}: {ms:.3} ms, {tflops:.1} TFLOP/s", rows / e));
        grouped.push(GroupedRate { experts: e, rows_per_expert: rows / e, n, k, tflops });
    }
    // Element-wise bandwidth: an add of two tensors (two reads, one write) far beyond L2.
    let elems = if cuda { 64 << 20 } else { 1 << 20 };
    let (x, y) = (b.random(&[elems], DType::Bf16, 10, 1.0)?, b.random(&[elems], DType::Bf16, 11, 1.0)?);
    let ms = time_ms(b, calls, min_ms, |_| Ok(b.add(&x, &y).map(drop)?))?;
    let memory_gb_per_s = 3.0 * 2.0 * elems as f64 / ms / 1e6;
    log(&format!("add of {elems} bf16: {ms:.3} ms, {memory_gb_per_s:.0} GB/s"));
    let memory = memory_kinds(b, cuda, calls, min_ms, log)?;
    // Launches: 200 one-element adds, on the host clock (launch) and the backend's (kernel).
    let (one, two) = (b.random(&[1], DType::Bf16, 12, 1.0)?, b.random(&[1], DType::Bf16, 13, 1.0)?);
    const N: usize = 200;
    let per = |_| -> Result<()> {
        for _ in 0..N {
            drop(b.add(&one, &two)?);
        }
        Ok(())
    };
    per(0)?;
    b.synchronize()?;
    let h0 = std::time::Instant::now();
    let t0 = b.mark()?;
    per(1)?;
    let launch_us = h0.elapsed().as_secs_f64() * 1e6 / N as f64;
    let t1 = b.mark()?;
    b.synchronize()?;
    let kernel_us = b.elapsed_ms(&t0, &t1)? * 1e3 / N as f64;
    let ids = b.upload_i32(&[1], &[1])?;
    let sync_ms = time_ms(b, 20, 0.0, |_| {
        drop(b.add(&one, &two)?);
        Ok(b.download_i32(&ids).map(drop)?)
    })?;
    let sync_us = (sync_ms * 1e3 - kernel_us).max(0.0);
    log(&format!("launch {launch_us:.2} us (host), {kernel_us:.2} us per tiny kernel, sync {sync_us:.1} us"));
    let now = time::OffsetDateTime::now_utc();
    let r = Rates {
        gpu: b.device_name(),
        backend: if cuda { "cuda" } else { "cpu" }.into(),
        git_rev: crate::harness::record::git_rev().into(),
        measured_at: now.format(&time::format_description::well_known::Rfc3339).unwrap_or_default(),
        source: "measured".into(),
        gemm,
        attention,
        grouped,
        memory_gb_per_s,
        memory,
        launch_us,
        kernel_us,
        sync_us,
        loopback: None,
    };
    r.validate().map_err(Error::Rates)?;
    Ok(r)
}

/// GB/s of each kind of memory-bound kernel: the bytes `work::kernels` counts for it over its
/// time, at the llama (norms, RoPE, SwiGLU, FP8 quantisation) and DeepSeek-V2-Lite (routing,
/// permutation) shapes of the bench profile on a GPU, of the quick profile on the CPU.
fn memory_kinds(
    b: &dyn Backend,
    cuda: bool,
    calls: usize,
    min_ms: f64,
    log: &mut dyn FnMut(&str),
) -> Result<std::collections::BTreeMap<MemKind, f64>> {
    use super::work::kernels;
    let (s, h, f) = if cuda { (8192, 4096, 14336) } else { (256, 512, 512) };
    let (t, mh, k, e) = if cuda { (16384, 2048, 6, 64) } else { (512, 512, 6, 64) };
    let bf = DType::Bf16;
    let x = b.random(&[s, h], bf, 20, 1.0)?;
    let res = b.random(&[s, h], bf, 21, 1.0)?;
    let w = b.random(&[h], bf, 22, 1.0)?;
    let q = b.random(&[s, 32, h / 32], bf, 23, 1.0)?;
    let gu = b.random(&[s, 2 * f], bf, 24, 1.0)?;
    let logits = b.random(&[t, e], DType::F32, 25, 1.0)?;
    let mx = b.random(&[t, mh], bf, 26, 1.0)?;
    let router = crate::models::moe::MoeConfig::deepseek_v2_lite().router();
    let routing = b.route(&logits, &router, None)?;
    let p = b.permute(&mx, &routing.ids, e)?;
    let rope = crate::models::gpt4::Gpt4Config::full().rope();
    let mut out = std::collections::BTreeMap::new();
    let mut kind = |name: MemKind, ops: Vec<Op>, f: &mut dyn FnMut() -> Result<()>| -> Result<()> {
        let ms = time_ms(b, calls, min_ms, |_| f())?;
        let bytes: f64 = ops.iter().map(|o| if let Op::Mem { bytes, .. } = o { *bytes } else { 0.0 }).sum();
        let gbps = bytes / ms / 1e6;
        log(&format!("{name:?}: {ms:.3} ms, {gbps:.0} GB/s"));
        out.insert(name, gbps);
        Ok(())
    };
    kind(MemKind::Norm, vec![kernels::norm(s, h, false)], &mut || Ok(b.rms_norm(&x, &w, 1e-5).map(drop)?))?;
    kind(MemKind::NormAdd, vec![kernels::norm(s, h, true)], &mut || {
        Ok(b.add_rms_norm(&x, &res, &w, 1e-5).map(drop)?)
    })?;
    kind(MemKind::Rope, vec![kernels::rope(s, h)], &mut || Ok(b.rope(&q, 0, &rope).map(drop)?))?;
    kind(MemKind::Swiglu, vec![kernels::swiglu(s, f)], &mut || Ok(b.swiglu(&gu, None).map(drop)?))?;
    if cuda {
        kind(MemKind::Quantize, vec![kernels::quantize(s, h)], &mut || Ok(b.quantize_fp8(&x).map(drop)?))?;
    }
    kind(MemKind::Route, vec![kernels::route(t, e, k)], &mut || Ok(b.route(&logits, &router, None).map(drop)?))?;
    kind(MemKind::Permute, kernels::permute(t, mh, k, e), &mut || Ok(b.permute(&mx, &routing.ids, e).map(drop)?))?;
    kind(MemKind::Unpermute, vec![kernels::unpermute(t, mh, k)], &mut || {
        Ok(b.unpermute(&p.x, &p.row_of, &routing.weights).map(drop)?)
    })?;
    Ok(out)
}

/// One multi-rank measurement to fit the loopback link to: the step the model builds for the
/// record's target and layout, and the median over the ranks of their median step (ms).
pub struct Measured {
    pub name: String,
    pub work: super::Work,
    pub dims: crate::layout::ParallelDims,
    pub world: usize,
    pub ms: f64,
}

/// The modelled records (not baselines, status ok, world > 1) of `files`, one per file and variant.
pub fn measured(files: &[std::path::PathBuf]) -> Result<Vec<Measured>> {
    let mut groups: std::collections::BTreeMap<(String, String), Vec<serde_json::Value>> = Default::default();
    for f in files {
        let text = std::fs::read_to_string(f).map_err(|e| Error::Io(f.display().to_string(), e))?;
        for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
            let v: serde_json::Value =
                serde_json::from_str(line).map_err(|e| Error::Fit(format!("{}:{}: {e}", f.display(), i + 1)))?;
            if v["status"] == "ok"
                && v["variant"] != crate::harness::variant::BASELINE
                && v["world_size"].as_u64().is_some_and(|n| n > 1)
            {
                let key = (f.display().to_string(), v["variant"].as_str().unwrap_or("").to_string());
                groups.entry(key).or_default().push(v);
            }
        }
    }
    let mut out = Vec::new();
    for ((file, variant), recs) in groups {
        let r = &recs[0];
        let bad = |e: String| Error::Fit(format!("{file}: {e}"));
        let target = r["target"].as_str().unwrap_or("");
        let model = Model::from_json(target, r["config"].clone())
            .ok_or_else(|| bad(format!("target {target:?} with a config this build does not read")))?;
        let reg = crate::targets::find(target).map_err(|e| bad(e.to_string()))?;
        let Some(spec) =
            (reg.config)(crate::harness::target::Size::Quick).variants().into_iter().find(|s| s.name == variant)
        else {
            continue;
        };
        let l = &r["layout"];
        let deg = |k: &str| l[k].as_u64().map(|v| v as usize).ok_or_else(|| bad(format!("layout.{k} missing")));
        let dims = crate::layout::ParallelDims::folded(deg("tp")?, deg("cp")?, deg("ep")?, deg("dp")?);
        let gemm = if r["gemm_dtype"] == "fp8" { DType::F8 } else { DType::Bf16 };
        let Some(work) = super::work::for_variant(&model, &dims, &spec.resolve(gemm)) else { continue };
        // The ranks' medians differ by whole time slices on one GPU: their median is the step.
        let mut ms: Vec<f64> = recs.iter().filter_map(|x| x["median_ms"].as_f64()).collect();
        ms.sort_by(f64::total_cmp);
        let mid = ms.len() / 2;
        let ms = if ms.len().is_multiple_of(2) { (ms[mid - 1] + ms[mid]) / 2.0 } else { ms[mid] };
        let world = r["world_size"].as_u64().unwrap_or(1) as usize;
        let name = format!("{} {variant}", file.rsplit('/').next().unwrap_or(&file));
        out.push(Measured { name, work, dims, world, ms });
    }
    Ok(out)
}

/// Relative squared error of the model's steps against `m` with the loopback link `l`.
pub fn loss(m: &[Measured], rates: &Rates, l: &LinkRate) -> f64 {
    m.iter()
        .map(|x| {
            let links = super::Links::loopback(l, x.world, x.dims);
            let p = super::predict(&x.work, rates, &links, x.world);
            (p.step_s * 1e3 / x.ms - 1.0).powi(2)
        })
        .sum()
}

/// The loopback link that makes the model's steps closest (in relative error) to the records `m`
/// (`measured`), given the compute `rates`; `from` names the records. A kind of collective that no
/// record uses keeps its starting slice.
pub fn fit_loopback(m: &[Measured], rates: &Rates, from: String) -> Result<LinkRate> {
    if m.is_empty() {
        return Err(Error::Fit("no multi-rank records of a modelled variant (world_size > 1, status ok)".into()));
    }
    let link = |x: &[f64]| LinkRate {
        slice_ms: SliceMs { send_recv: x[0].exp(), all_gather: x[1].exp(), all_to_all: x[2].exp() },
        visit_ms: x[3].exp(),
        gb_per_s: x[4].exp(),
        from: from.clone(),
    };
    // From a 2 ms slice (the GPU's time slice), a visit of 0.5 ms and 2 GB/s, in log space.
    let x0 = [2.0f64.ln(), 2.0f64.ln(), 2.0f64.ln(), 0.5f64.ln(), 2.0f64.ln()];
    let best = nelder_mead(&x0, 0.5, 3000, |x| loss(m, rates, &link(x)));
    Ok(link(&best))
}

/// The minimum of `f` near `x0` by Nelder and Mead's simplex (reflect, expand, contract,
/// shrink), starting from steps of `step` along each axis, for at most `iters` iterations.
fn nelder_mead<const N: usize>(x0: &[f64; N], step: f64, iters: usize, f: impl Fn(&[f64]) -> f64) -> [f64; N] {
    let mut pts: Vec<([f64; N], f64)> = (0..=N)
        .map(|i| {
            let mut x = *x0;
            if i > 0 {
                x[i - 1] += step;
            }
            (x, f(&x))
        })
        .collect();
    let along = |a: &[f64; N], b: &[f64; N], t: f64| -> [f64; N] { std::array::from_fn(|i| a[i] + t * (b[i] - a[i])) };
    for _ in 0..iters {
        pts.sort_by(|a, b| a.1.total_cmp(&b.1));
        if pts[N].1 - pts[0].1 <= 1e-12 * (1.0 + pts[0].1.abs()) {
            break;
        }
        let c: [f64; N] = std::array::from_fn(|i| pts[..N].iter().map(|p| p.0[i]).sum::<f64>() / N as f64);
        let worst = pts[N];
        let r = along(&c, &worst.0, -1.0);
        let fr = f(&r);
        if fr < pts[0].1 {
            let e = along(&c, &worst.0, -2.0);
            let fe = f(&e);
            pts[N] = if fe < fr { (e, fe) } else { (r, fr) };
        } else if fr < pts[N - 1].1 {
            pts[N] = (r, fr);
        } else {
            let k = along(&c, &worst.0, 0.5);
            let fk = f(&k);
            if fk < worst.1 {
                pts[N] = (k, fk);
            } else {
                let best = pts[0].0;
                for p in pts.iter_mut().skip(1) {
                    p.0 = along(&best, &p.0, 0.5);
                    p.1 = f(&p.0);
                }
            }
        }
    }
    pts.sort_by(|a, b| a.1.total_cmp(&b.1));
    pts[0].0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_link_fit_recovers_the_link_that_made_the_steps() {
        // Steps made by the model itself with a known link (every kind of collective, 2-8
        // ranks, groups of 2-8) are fitted back to it.
        let rates = Rates::from_datasheet(super::super::rates::datasheet("H200").unwrap(), "NVIDIA H200");
        let truth = LinkRate {
            slice_ms: SliceMs { send_recv: 3.4, all_gather: 1.7, all_to_all: 2.1 },
            visit_ms: 0.2,
            gb_per_s: 9.0,
            from: String::new(),
        };
        let ring = crate::models::gpt4::Gpt4Config::small();
        let gather = crate::models::gpt4::Gpt4Config { cp_kind: crate::layout::CpKind::AllGather, ..ring.clone() };
        let moe = crate::models::moe::MoeConfig { tokens: 4096, ..crate::models::moe::MoeConfig::deepseek_v2_lite() };
        let dims = |world: usize, cp: usize, ep: usize| crate::layout::ParallelDims::folded(1, cp, ep, world / cp);
        let gpt4 =
            |g, world, cp, ep| (world, dims(world, cp, ep), super::super::work::gpt4(g, &dims(world, cp, ep), false));
        let moe = |world, ep| (world, dims(world, 1, ep), super::super::work::moe(&moe, &dims(world, 1, ep)));
        let runs = [
            gpt4(&ring, 2, 2, 1),
            gpt4(&gather, 2, 2, 1),
            gpt4(&ring, 2, 1, 2),
            gpt4(&ring, 4, 4, 1),
            gpt4(&ring, 4, 2, 1),
            gpt4(&gather, 8, 4, 2),
            moe(2, 2),
            moe(4, 4),
            moe(8, 8),
            moe(8, 4),
        ];
        let m: Vec<Measured> = runs
            .into_iter()
            .map(|(world, dims, work)| {
                let links = super::super::Links::loopback(&truth, world, dims);
                let ms = super::super::predict(&work, &rates, &links, world).step_s * 1e3;
                Measured { name: String::new(), work, dims, world, ms }
            })
            .collect();
        assert!(loss(&m, &rates, &truth) < 1e-20);
        let fit = fit_loopback(&m, &rates, String::new()).unwrap();
        let close = |a: f64, b: f64| (a / b - 1.0).abs() < 0.02;
        let (s, t) = (fit.slice_ms, truth.slice_ms);
        assert!(
            close(s.send_recv, t.send_recv)
                && close(s.all_gather, t.all_gather)
                && close(s.all_to_all, t.all_to_all)
                && close(fit.visit_ms, truth.visit_ms)
                && close(fit.gb_per_s, truth.gb_per_s),
            "{fit:?}"
        );
        assert!(fit_loopback(&[], &rates, String::new()).is_err());
        let dir = tempfile::tempdir().unwrap();
        let missing = measured(&[dir.path().join("none.jsonl")]).err().expect("no such file");
        assert!(missing.to_string().contains("none.jsonl"), "{missing}");
    }

    #[test]
    fn the_quick_profile_calibrates_on_the_cpu() {
        let b = crate::backend::cpu::CpuBackend::new();
        let mut lines = Vec::new();
        let r = measure(&b, &["quick"], false, &mut |l| lines.push(l.to_string())).unwrap();
        assert!(r.gemm.iter().all(|g| !g.fp8) && r.gemm.len() >= 5, "{:?}", r.gemm);
        assert!(!r.attention.is_empty() && !r.grouped.is_empty());
        // Every rate measured is a real, positive number and the file reads back the same.
        r.validate().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("rates.json");
        r.save(&p).unwrap();
        assert_eq!(Rates::load(&p).unwrap(), r);
    }
}
