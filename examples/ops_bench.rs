//! Throughput of the CUDA backend's heavy ops, timed with CUDA events (median of
//! N after warm-up), on random data (never zeros), with inputs rotated among sets
//! larger than L2. Prints a table; `--json FILE` also writes one JSON object per
//! line (bench/run_ops.sh joins them with PyTorch's numbers from bench/peers/torch_ops.py).
//!
//!   cargo build --release --example ops_bench
//!   target/release/examples/ops_bench [--iters 20] [--json out.jsonl] [--only gemm,fp8,attn,moe|moe_v2lite,moe_v3,llama,llama32k]
//!       [--variants] [--kernels grouped_a,grouped_b] [--attn-seq 32768,5000]
//!
//! `--variants` also times every compiled tile configuration of the flash attention
//! and grouped GEMM kernels, bf16 and FP8 (rows named op[kernel]), to choose the defaults;
//! `--kernels` times only the flash and grouped GEMM kernels listed, in that order; `--attn-seq` attention at the
//! lengths listed (`attention_shapes`; e.g. one shape under ncu: bench/ncu_kernels.sh). On sm_90a the MoE shapes also get
//! the block-scaled FP8 grouped GEMM rows (`grouped_gemm_fp8_*`, `moe_expert_mlp_fp8`).
//! `llama` (`llama32k`): Llama 3.1 8B's gate/up with SwiGLU at 8K (32K) tokens, cuBLASLt then the SwiGLU kernel
//! against `matmul_swiglu` (fused on sm_90a), and the memory-bound ops (add + RMSNorm, RoPE of q and k,
//! SwiGLU) in TB/s. The grouped SwiGLU kernels (`grouped_gemm_swiglu_*`) that `--variants` times run
//! `matmul_swiglu` there (`llama_gate_up_swiglu[kernel]`) and `grouped_matmul_swiglu` at the MoE
//! shapes (`grouped_gemm_gate_up_swiglu[kernel]`).

use rwm_dist::backend::cuda::{CudaBackend, FLASH_KERNELS, FP8_KERNELS, GROUPED_KERNELS};
use rwm_dist::backend::*;
use rwm_dist::tensor::{DType, Tensor};
use std::io::Write;

struct Bench<'a> {
    b: &'a CudaBackend,
    iters: usize,
    variants: bool,
    /// `--kernels a,b`: the flash and grouped GEMM kernels that `--variants` times (all when empty).
    kernels: Vec<String>,
    /// `--attn-seq a,b`: the attention lengths to time (`attention_shapes`; the default list when empty).
    attn_seq: Vec<usize>,
    json: Option<std::fs::File>,
}

impl Bench<'_> {
    /// Median milliseconds of `f(i)`: warm-up of at least 3 calls and 100 ms (clocks
    /// settle, kernels load), then at least `iters` timed calls and 300 ms of them.
    fn time(&self, mut f: impl FnMut(usize) -> Result<()>) -> Result<f64> {
        let start = std::time::Instant::now();
        let mut i = 0;
        while i < 3 || start.elapsed().as_millis() < 100 {
            f(i)?;
            self.b.synchronize()?;
            i += 1;
        }
        let mut ms: Vec<f64> = Vec::with_capacity(self.iters);
        while ms.len() < self.iters || (ms.iter().sum::<f64>() < 300.0 && ms.len() < 1000) {
            let t0 = self.b.mark()?;
            f(i)?;
            let t1 = self.b.mark()?;
            ms.push(self.b.elapsed_ms(&t0, &t1)?);
            i += 1;
        }
        ms.sort_by(f64::total_cmp);
        Ok(ms[ms.len() / 2])
    }

    fn listed<'t, K>(&self, table: &'t [K], name: impl Fn(&K) -> &str) -> Vec<&'t K> {
        listed(&self.kernels, table, name)
    }

    fn record(&mut self, op: &str, shape: &str, flops: f64, ms: f64) {
        let tflops = flops / ms / 1e9;
        println!("{op:<28} {shape:<44} {ms:>10.3} ms {tflops:>9.1} TFLOP/s");
        if let Some(f) = &mut self.json {
            let line = serde_json::json!({"impl": "rwm", "op": op, "shape": shape, "ms": ms, "tflops": tflops});
            writeln!(f, "{line}").unwrap();
        }
    }

    /// A memory-bound op: `bytes` read and written, in TB/s (bench/run_ops.sh lists its `tb_s` rows
    /// without a peer).
    fn record_bytes(&mut self, op: &str, shape: &str, bytes: f64, ms: f64) {
        let tb_s = bytes / ms / 1e9;
        println!("{op:<28} {shape:<44} {ms:>10.3} ms {tb_s:>9.2} TB/s");
        if let Some(f) = &mut self.json {
            let line = serde_json::json!({"impl": "rwm", "op": op, "shape": shape, "ms": ms, "tb_s": tb_s});
            writeln!(f, "{line}").unwrap();
        }
    }
}

fn rand(b: &CudaBackend, shape: &[usize], dt: DType, seed: u64, std: f32) -> Result<Tensor> {
    b.random(shape, dt, seed, std)
}

fn gemms(bench: &mut Bench) -> Result<()> {
    let b = bench.b;
    let n = 8192;
    let flops = 2.0 * (n as f64).powi(3);
    // Two sets of 2 x 128 MiB: each operand alone is bigger than L2.
    let xs: Vec<Tensor> = (0..2).map(|i| rand(b, &[n, n], DType::Bf16, 10 + i, 1.0)).collect::<Result<_>>()?;
    let ws: Vec<Tensor> = (0..2).map(|i| rand(b, &[n, n], DType::Bf16, 20 + i, 0.02)).collect::<Result<_>>()?;
    let ms = bench.time(|i| b.matmul(&xs[i % 2], &ws[i % 2], DType::Bf16).map(drop))?;
    bench.record("gemm_bf16", "8192x8192x8192 (x w^T, bf16 out)", flops, ms);
    let xq: Vec<Tensor> = xs.iter().map(|x| b.quantize_fp8(x)).collect::<Result<_>>()?;
    let wq: Vec<Tensor> = ws.iter().map(|w| b.quantize_fp8(w)).collect::<Result<_>>()?;
    drop((xs, ws));
    let ms = bench.time(|i| b.matmul(&xq[i % 2], &wq[i % 2], DType::Bf16).map(drop))?;
    bench.record("gemm_fp8", "8192x8192x8192 (e4m3 per-tensor, bf16 out)", flops, ms);
    Ok(())
}

/// Llama 3.1 8B's per-layer MLP entry and memory-bound ops at `s` tokens (two input sets: x alone is
/// 64 MiB at 8K, more than L2).
fn llama(bench: &mut Bench, s: usize) -> Result<()> {
    let b = bench.b;
    let (h, f, q, kv, d) = (4096usize, 14336usize, 4096usize, 1024usize, 128usize);
    let xs: Vec<Tensor> = (0..2).map(|i| rand(b, &[s, h], DType::Bf16, 30 + i, 1.0)).collect::<Result<_>>()?;
    let w = rand(b, &[2 * f, h], DType::Bf16, 40, 0.02)?;
    let flops = 2.0 * (s * 2 * f * h) as f64;
    let shape = format!("{s}x{}x{h}", 2 * f);
    let ms = bench.time(|i| b.matmul(&xs[i % 2], &w, DType::Bf16).map(drop))?;
    bench.record("llama_gate_up", &shape, flops, ms);
    let gu: Vec<Tensor> = (0..2).map(|i| rand(b, &[s, 2 * f], DType::Bf16, 50 + i, 2.0)).collect::<Result<_>>()?;
    let ms = bench.time(|i| b.swiglu(&gu[i % 2], None).map(drop))?;
    bench.record_bytes("llama_swiglu", &format!("{s}x{f} (reads 2f, writes f)"), (s * 3 * f * 2) as f64, ms);
    drop(gu);
    let ms = bench.time(|i| b.swiglu(&b.matmul(&xs[i % 2], &w, DType::Bf16)?, None).map(drop))?;
    bench.record("llama_gate_up_swiglu[cublaslt+swiglu]", &shape, flops, ms);
    let ms = bench.time(|i| b.matmul_swiglu(&xs[i % 2], &w).map(drop))?;
    let fused = if b.fuses_grouped_swiglu() { "fused" } else { "composed" };
    bench.record(&format!("llama_gate_up_swiglu[{fused}]"), &shape, flops, ms);
    if bench.variants && b.arch() == "sm_90a" {
        let kernels: Vec<_> =
            bench.listed(GROUPED_KERNELS, |g| g.name).into_iter().filter(|g| g.tma.is_some_and(|o| o.swiglu)).collect();
        for gk in kernels {
            b.choose_grouped_kernel(Some(gk.name))?;
            let ms = bench.time(|i| b.matmul_swiglu(&xs[i % 2], &w).map(drop))?;
            bench.record(&format!("llama_gate_up_swiglu[{}]", gk.name), &shape, flops, ms);
        }
        b.choose_grouped_kernel(None)?;
    }
    drop(w);
    let rs: Vec<Tensor> = (0..2).map(|i| rand(b, &[s, h], DType::Bf16, 60 + i, 1.0)).collect::<Result<_>>()?;
    let nw = rand(b, &[h], DType::Bf16, 70, 1.0)?;
    let ms = bench.time(|i| b.add_rms_norm(&xs[i % 2], &rs[i % 2], &nw, 1e-5).map(drop))?;
    bench.record_bytes("llama_add_rms_norm", &format!("{s}x{h} (reads 2, writes 2)"), (4 * s * h * 2) as f64, ms);
    let ms = bench.time(|i| b.rms_norm(&xs[i % 2], &nw, 1e-5).map(drop))?;
    bench.record_bytes("llama_rms_norm", &format!("{s}x{h}"), (2 * s * h * 2) as f64, ms);
    drop(rs);
    let p = rwm_dist::models::llama::LlamaConfig::llama31_8b().rope();
    for (what, cols) in [("llama_rope_q", q), ("llama_rope_k", kv)] {
        let t: Vec<Tensor> =
            (0..2).map(|i| rand(b, &[s, cols / d, d], DType::Bf16, 80 + i, 1.0)).collect::<Result<_>>()?;
        let ms = bench.time(|i| b.rope(&t[i % 2], 0, &p).map(drop))?;
        bench.record_bytes(what, &format!("{s}x{}x{d}", cols / d), (2 * s * cols * 2) as f64, ms);
    }
    Ok(())
}

/// (head dim, length) pairs. By default head dim 128 at 8K and 32K (Llama prefill) and at two lengths that are not
/// multiples of any tile, and head dim 64 at 8K and 32K; with `--attn-seq`, head dim 128 at each length given and 64
/// at those of the default pairs (bench/peers/torch_ops.py the same).
fn attention_shapes(seqs: &[usize]) -> Vec<(usize, usize)> {
    const DEFAULT: [(usize, usize); 6] =
        [(128, 8192), (128, 32768), (128, 5000), (128, 12345), (64, 8192), (64, 32768)];
    if seqs.is_empty() {
        return DEFAULT.to_vec();
    }
    let d64 = DEFAULT.iter().filter(|&&(d, s)| d == 64 && seqs.contains(&s)).copied();
    seqs.iter().map(|&s| (128, s)).chain(d64).collect()
}

fn attention(bench: &mut Bench) -> Result<()> {
    let b = bench.b;
    let (hq, hkv) = (32, 8);
    for (d, s) in attention_shapes(&bench.attn_seq) {
        let flops = 4.0 * (s * s) as f64 * (hq * d) as f64 / 2.0;
        let sets = if s <= 8192 { 2 } else { 1 };
        let qkv: Vec<[Tensor; 3]> = (0..sets)
            .map(|i| {
                let i = i as u64 * 3;
                Ok([
                    rand(b, &[s, hq, d], DType::Bf16, 30 + i, 1.0)?,
                    rand(b, &[s, hkv, d], DType::Bf16, 31 + i, 1.0)?,
                    rand(b, &[s, hkv, d], DType::Bf16, 32 + i, 1.0)?,
                ])
            })
            .collect::<Result<_>>()?;
        let shape = format!("S={s} hq={hq} hkv={hkv} d={d} causal");
        let kernels: Vec<Option<&str>> = if bench.variants {
            bench.listed(FLASH_KERNELS, |k| k.name).into_iter().filter(|k| k.d == d).map(|k| Some(k.name)).collect()
        } else {
            vec![]
        };
        for kname in kernels {
            b.choose_flash_kernel(kname)?;
            let p = AttnParams::causal(0, 0, AttnAlgo::Flash);
            let ms = bench.time(|i| {
                let [q, k, v] = &qkv[i % sets];
                b.attention(q, k, v, &p).map(drop)
            })?;
            bench.record(&format!("attn_flash[{}]", kname.unwrap()), &shape, flops, ms);
        }
        b.choose_flash_kernel(None)?;
        for algo in [AttnAlgo::Flash, AttnAlgo::Naive] {
            if algo == AttnAlgo::Naive && (s != 8192 || d != 128) {
                continue; // 4 GiB of scores per head at 32K: the baseline is shown at 8192 only
            }
            let p = AttnParams::causal(0, 0, algo);
            let ms = bench.time(|i| {
                let [q, k, v] = &qkv[i % sets];
                b.attention(q, k, v, &p).map(drop)
            })?;
            let name = if algo == AttnAlgo::Flash { "attn_flash" } else { "attn_naive" };
            bench.record(name, &shape, flops, ms);
        }
    }
    Ok(())
}

/// A MoE expert shape: `t` tokens routed top-`k` over `e` experts, hidden `h`, expert FFN `f`.
struct MoeShape {
    key: &'static str,
    t: usize,
    e: usize,
    k: usize,
    h: usize,
    f: usize,
    /// Also time gate/up + SwiGLU + down, unfused and fused.
    mlp: bool,
}

/// DeepSeek-V2-Lite (64 experts, top-6, hidden 2048, expert FFN 1408) and DeepSeek-V3's expert
/// shapes (256 experts, top-8, hidden 7168, expert FFN 2048), 16384 tokens each.
const MOE_SHAPES: [MoeShape; 2] = [
    MoeShape { key: "v2lite", t: 16384, e: 64, k: 6, h: 2048, f: 1408, mlp: true },
    MoeShape { key: "v3", t: 16384, e: 256, k: 8, h: 7168, f: 2048, mlp: true },
];

/// Grouped GEMMs on the offsets of a real routing (random logits, softmax top-k, device-side
/// permutation); the offsets of each shape go to `offsets` (keyed by `MoeShape::key`) for the peer.
fn moe(bench: &mut Bench, s: &MoeShape, offsets: &mut serde_json::Map<String, serde_json::Value>) -> Result<()> {
    let b = bench.b;
    let (t, e, k, h, f) = (s.t, s.e, s.k, s.h, s.f);
    let x = rand(b, &[t, h], DType::Bf16, 40, 1.0)?;
    let logits = rand(b, &[t, e], DType::F32, 41, 1.0)?;
    let rp = RouterParams { gate: Gate::Softmax, top_k: k, n_group: 1, topk_group: 1, norm_topk: false, scaling: 1.0 };
    let r = b.route(&logits, &rp, None)?;
    let p = b.permute(&x, &r.ids, e)?;
    layer_passes(bench, s, &x, &r)?;
    drop((x, logits, r));
    offsets.insert(s.key.into(), serde_json::json!(b.download_i32(&p.offsets)?));
    let rows = t * k;
    let w1 = rand(b, &[e, 2 * f, h], DType::Bf16, 42, 0.02)?;
    let w2 = rand(b, &[e, h, f], DType::Bf16, 43, 0.02)?;
    let xs = [p.x, rand(b, &[rows, h], DType::Bf16, 44, 1.0)?];
    let f1 = 2.0 * rows as f64 * (2 * f) as f64 * h as f64;
    let f2 = 2.0 * rows as f64 * h as f64 * f as f64;
    let a = [rand(b, &[rows, f], DType::Bf16, 45, 1.0)?, rand(b, &[rows, f], DType::Bf16, 46, 1.0)?];
    let gate_up = format!("{rows}x{}x{h}, {e} experts", 2 * f);
    let down = format!("{rows}x{h}x{f}, {e} experts");
    if bench.variants {
        // Every kernel at V2-Lite; the sm_90a ones only at the larger V3 shape.
        let small = s.e <= 64;
        let kernels: Vec<_> =
            bench.listed(GROUPED_KERNELS, |g| g.name).into_iter().filter(|g| small || g.sm90a).collect();
        for gk in kernels {
            if gk.sm90a && b.arch() != "sm_90a" {
                continue;
            }
            b.choose_grouped_kernel(Some(gk.name))?;
            if gk.tma.is_some_and(|o| o.swiglu) {
                let ms = bench.time(|i| b.grouped_matmul_swiglu(&xs[i % 2], &w1, &p.offsets).map(drop))?;
                bench.record(&format!("grouped_gemm_gate_up_swiglu[{}]", gk.name), &gate_up, f1, ms);
                continue;
            }
            let ms = bench.time(|i| b.grouped_matmul(&xs[i % 2], &w1, &p.offsets).map(drop))?;
            bench.record(&format!("grouped_gemm_gate_up[{}]", gk.name), &gate_up, f1, ms);
            let ms = bench.time(|i| b.grouped_matmul(&a[i % 2], &w2, &p.offsets).map(drop))?;
            bench.record(&format!("grouped_gemm_down[{}]", gk.name), &down, f2, ms);
        }
        b.choose_grouped_kernel(None)?;
    }
    let ms = bench.time(|i| b.grouped_matmul(&xs[i % 2], &w1, &p.offsets).map(drop))?;
    bench.record("grouped_gemm_gate_up", &gate_up, f1, ms);
    let ms = bench.time(|i| b.grouped_matmul(&a[i % 2], &w2, &p.offsets).map(drop))?;
    bench.record("grouped_gemm_down", &down, f2, ms);
    if s.mlp {
        let ms = bench.time(|i| {
            let gu = b.grouped_matmul(&xs[i % 2], &w1, &p.offsets)?;
            let act = b.swiglu(&gu, None)?;
            b.grouped_matmul(&act, &w2, &p.offsets).map(drop)
        })?;
        bench.record("moe_expert_mlp", &format!("{rows} rows, gate/up + swiglu + down"), f1 + f2, ms);
        let ms = bench.time(|i| {
            let act = b.grouped_matmul_swiglu(&xs[i % 2], &w1, &p.offsets)?;
            b.grouped_matmul(&act, &w2, &p.offsets).map(drop)
        })?;
        bench.record("moe_expert_mlp[fused swiglu]", &format!("{rows} rows, gate/up + swiglu + down"), f1 + f2, ms);
    }
    if b.arch() == "sm_90a" {
        let g = Grouped { offsets: &p.offsets, xs: &xs, acts: &a, w1: &w1, w2: &w2, gate_up, down, f1, f2 };
        moe_fp8(bench, &g, rows)?;
    }
    Ok(())
}

/// The layer's passes around the grouped GEMMs: dispatch in bf16 and in FP8 (the t tokens quantised,
/// then their e4m3 rows gathered), the 1 x 128 quantiser alone, combine with and without the shared
/// experts' add.
fn layer_passes(bench: &mut Bench, s: &MoeShape, x: &Tensor, r: &Routing) -> Result<()> {
    let b = bench.b;
    let (t, e, k, h) = (s.t, s.e, s.k, s.h);
    let rows = (t * k) as f64;
    let ms = bench.time(|_| b.permute(x, &r.ids, e).map(drop))?;
    bench.record_bytes("moe_dispatch", &format!("{t}x{h} bf16, top-{k}"), rows * h as f64 * 4.0, ms);
    if b.arch() == "sm_90a" {
        let ms = bench.time(|_| b.permute_fp8(&b.quantize_blocks(x, Blocks::Rows)?, &r.ids, e).map(drop))?;
        bench.record_bytes("moe_dispatch_fp8", &format!("{t}x{h} bf16 -> e4m3, top-{k}"), rows * h as f64 * 2.0, ms);
        let xs = [rand(b, &[t * k, h], DType::Bf16, 47, 1.0)?, rand(b, &[t * k, h], DType::Bf16, 48, 1.0)?];
        let ms = bench.time(|i| b.quantize_blocks(&xs[i % 2], Blocks::Rows).map(drop))?;
        bench.record_bytes("quantize_rows", &format!("{}x{h} bf16 -> e4m3", t * k), rows * h as f64 * 3.0, ms);
    }
    let p = b.permute(x, &r.ids, e)?;
    let shared = rand(b, &[t, h], DType::Bf16, 49, 1.0)?;
    let ms = bench.time(|_| b.unpermute(&p.x, &p.row_of, &r.weights).map(drop))?;
    bench.record_bytes("moe_combine", &format!("{}x{h} -> {t}", t * k), (rows + t as f64) * h as f64 * 2.0, ms);
    let ms = bench.time(|_| b.unpermute_add(&p.x, &p.row_of, &r.weights, &shared).map(drop))?;
    let bytes = (rows + 2.0 * t as f64) * h as f64 * 2.0;
    bench.record_bytes("moe_combine[+shared]", &format!("{}x{h} -> {t}", t * k), bytes, ms);
    drop(p);
    Ok(())
}

/// One MoE shape's grouped GEMM operands (bf16) and row labels.
struct Grouped<'a> {
    offsets: &'a Tensor,
    xs: &'a [Tensor; 2],
    acts: &'a [Tensor; 2],
    w1: &'a Tensor,
    w2: &'a Tensor,
    gate_up: String,
    down: String,
    f1: f64,
    f2: f64,
}

/// The block-scaled FP8 grouped GEMMs on the same operands, quantised (1 x 128 rows, 128 x 128
/// weights) before timing; the expert MLP row quantises its rows in the timed call, as the layer does.
fn moe_fp8(bench: &mut Bench, g: &Grouped, rows: usize) -> Result<()> {
    let b = bench.b;
    let q = |t: &Tensor, blocks| b.quantize_blocks(t, blocks);
    let xq = [q(&g.xs[0], Blocks::Rows)?, q(&g.xs[1], Blocks::Rows)?];
    let aq = [q(&g.acts[0], Blocks::Rows)?, q(&g.acts[1], Blocks::Rows)?];
    let (w1, w2) = (q(g.w1, Blocks::Tiles)?, q(g.w2, Blocks::Tiles)?);
    let off = g.offsets;
    let kernels: Vec<Option<&str>> = if bench.variants {
        bench.listed(FP8_KERNELS, |k| k.name).into_iter().map(|k| Some(k.name)).collect()
    } else {
        vec![None]
    };
    for name in kernels {
        b.choose_fp8_kernel(name)?;
        let tag = name.map(|n| format!("[{n}]")).unwrap_or_default();
        if name.is_none_or(|n| !n.contains("swiglu")) {
            let ms = bench.time(|i| b.grouped_matmul_fp8(&xq[i % 2], &w1, off, false).map(drop))?;
            bench.record(&format!("grouped_gemm_fp8_gate_up{tag}"), &g.gate_up, g.f1, ms);
            let ms = bench.time(|i| b.grouped_matmul_fp8(&aq[i % 2], &w2, off, false).map(drop))?;
            bench.record(&format!("grouped_gemm_fp8_down{tag}"), &g.down, g.f2, ms);
        }
        if name.is_none_or(|n| n.contains("swiglu")) {
            let ms = bench.time(|i| b.grouped_matmul_fp8(&xq[i % 2], &w1, off, true).map(drop))?;
            let tag = if tag.is_empty() { "[fused swiglu]".to_string() } else { tag };
            bench.record(&format!("grouped_gemm_fp8_gate_up{tag}"), &g.gate_up, g.f1, ms);
        }
    }
    b.choose_fp8_kernel(None)?;
    let ms = bench.time(|i| {
        let act = b.grouped_matmul_fp8(&q(&g.xs[i % 2], Blocks::Rows)?, &w1, off, true)?;
        b.grouped_matmul_fp8(&q(&act, Blocks::Rows)?, &w2, off, false).map(drop)
    })?;
    let what = format!("{rows} rows, quantise + gate/up + swiglu + quantise + down");
    bench.record("moe_expert_mlp_fp8", &what, g.f1 + g.f2, ms);
    Ok(())
}

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let (mut iters, mut json, mut only, mut offsets, mut variants) = (20usize, None, None, None, false);
    let (mut kernels, mut attn_seq) = (vec![], vec![]);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--iters" => iters = args.next().and_then(|v| v.parse().ok()).expect("--iters N"),
            "--json" => json = args.next(),
            "--only" => only = args.next(),
            "--offsets" => offsets = args.next(),
            "--variants" => variants = true,
            "--kernels" => {
                variants = true;
                kernels = args.next().expect("--kernels a,b").split(',').map(String::from).collect();
            }
            "--attn-seq" => {
                let list = args.next().expect("--attn-seq S,S");
                attn_seq = list.split(',').map(|v| v.parse().expect("--attn-seq takes lengths")).collect();
            }
            _ => panic!("unknown argument {a}; see the header of examples/ops_bench.rs"),
        }
    }
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_default_env()).init();
    }
    let b = CudaBackend::new(0)?;
    println!("device: {} ({})", b.device_name(), b.arch());
    let mut bench =
        Bench { b: &b, iters, variants, kernels, attn_seq, json: json.map(|p| std::fs::File::create(p).unwrap()) };
    let want = |k: &str| only.as_deref().is_none_or(|o| o.split(',').any(|x| x == k));
    if want("gemm") || want("fp8") {
        gemms(&mut bench)?;
    }
    if want("attn") {
        attention(&mut bench)?;
    }
    for (key, s) in [("llama", 8192), ("llama32k", 32_768)] {
        if want(key) {
            llama(&mut bench, s)?;
        }
    }
    let mut offs = serde_json::Map::new();
    for s in &MOE_SHAPES {
        if want("moe") || want(&format!("moe_{}", s.key)) {
            moe(&mut bench, s, &mut offs)?;
        }
    }
    if let Some(path) = offsets {
        std::fs::write(path, serde_json::Value::Object(offs).to_string()).unwrap();
    }
    let m = b.memory();
    let gib = |x: usize| x as f64 / (1u64 << 30) as f64;
    println!("device memory: {:.2} GiB in use, peak {:.2} GiB", gib(m.in_use), gib(m.peak));
    Ok(())
}

/// The kernels of `table` that `--kernels` lists, in the order it lists them (so that a second run
/// with the list reversed times them in the other order); the whole table when it lists none.
fn listed<'t, K>(kernels: &[String], table: &'t [K], name: impl Fn(&K) -> &str) -> Vec<&'t K> {
    if kernels.is_empty() {
        return table.iter().collect();
    }
    let name = &name;
    kernels.iter().flat_map(|n| table.iter().filter(move |k| name(k) == n)).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn kernels_run_in_the_order_listed() {
        let table = ["a", "b", "c"];
        let names = |l: &[&str]| l.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let run = |l: &[&str]| super::listed(&names(l), &table, |k| k).into_iter().copied().collect::<Vec<_>>();
        assert_eq!(run(&[]), ["a", "b", "c"]);
        assert_eq!(run(&["c", "a"]), ["c", "a"]);
        assert_eq!(run(&["a", "c"]), ["a", "c"]);
        assert_eq!(run(&["x", "b"]), ["b"]);
    }
}
