//! One test body per op, run on every backend other than the CPU reference that
//! this machine has (the CUDA backend where a GPU is present): each op on fresh
//! random inputs, compared with the CPU reference. Outputs are poisoned first
//! where the backend reuses freed memory (a NaN-filled block is freed just before
//! the op), so an element the op failed to write shows up as NaN.
//!
//! Tolerances (relative L2 error against the reference): 0 for copies, fills
//! and adds (same rounding on both sides); 1e-5 for f32 outputs of
//! exp/sqrt-based ops; 1e-2 for bf16 outputs and GEMMs (bf16 rounding of a
//! different accumulation order); 2e-2 for attention (the flash kernel rounds
//! probabilities to bf16 before P x V).

use rwm_dist::backend::cpu::CpuBackend;
use rwm_dist::backend::cuda::CudaBackend;
use rwm_dist::backend::*;
use rwm_dist::rng;
use rwm_dist::tensor::{DType, Tensor};
use std::sync::{Arc, OnceLock};

/// Printed past the test harness's output capture, so that it shows in a plain `cargo test`.
fn skipped(why: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "SKIPPED: no CUDA device ({why})");
}

/// The CUDA backend, or None once its absence is reported SKIPPED.
fn cuda_backend() -> Option<CudaBackend> {
    CudaBackend::new(0).map_err(|e| skipped(&e.to_string())).ok()
}

/// The CUDA backend on an sm_90a GPU, or None once `what` (its Hopper-only kernels) is reported SKIPPED.
fn sm90a_backend(what: &str) -> Option<CudaBackend> {
    let b = cuda_backend()?;
    if b.arch() != "sm_90a" {
        use std::io::Write;
        let _ = writeln!(std::io::stderr(), "SKIPPED: {what} run on sm_90a only, this GPU is {}", b.arch());
        return None;
    }
    Some(b)
}

fn under_test() -> Vec<Arc<dyn Backend>> {
    static CUDA: OnceLock<Option<Arc<dyn Backend>>> = OnceLock::new();
    let cuda = CUDA.get_or_init(|| cuda_backend().map(|b| Arc::new(b) as Arc<dyn Backend>));
    cuda.iter().cloned().collect()
}

fn cpu() -> CpuBackend {
    CpuBackend::new()
}

/// A seed that differs on every call and every run; printed with failures.
fn fresh_seed() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
    rng::splitmix64(t ^ N.fetch_add(1, Ordering::Relaxed).wrapping_mul(0x9E37))
}

fn data(seed: u64, n: usize, std: f32) -> Vec<f32> {
    rng::fill_uniform(seed, n, std)
}

/// The same host values on the reference and on `b`.
fn both(b: &dyn Backend, v: &[f32], shape: &[usize], dt: DType) -> (Tensor, Tensor) {
    (cpu().upload(v, shape, dt).unwrap(), b.upload(v, shape, dt).unwrap())
}

/// Frees a NaN-filled block so that the next allocations of a caching allocator reuse it.
fn poison(b: &dyn Backend, bytes: usize) {
    drop(b.random(&[bytes / 4], DType::F32, 1, f32::NAN).unwrap());
}

fn rel_l2(got: &[f32], want: &[f32]) -> f64 {
    rwm_dist::harness::stats::errors(got, want).1
}

#[track_caller]
fn assert_close(what: &str, got: &[f32], want: &[f32], tol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let bad = got.iter().zip(want).position(|(g, w)| g.is_nan() && !w.is_nan());
    assert!(bad.is_none(), "{what}: NaN (unwritten?) at element {} of {}", bad.unwrap(), got.len());
    let e = rel_l2(got, want);
    assert!(e <= tol, "{what}: relative L2 error {e:.3e} > {tol:.0e}");
}

fn get(b: &dyn Backend, t: &Tensor) -> Vec<f32> {
    b.download(t).unwrap()
}

#[test]
fn random_matches_host_rng_bit_for_bit() {
    for b in under_test() {
        for (n, dt) in [(1usize, DType::F32), (1000, DType::F32), (123_457, DType::F32), (4099, DType::Bf16)] {
            let seed = fresh_seed();
            let want = get(&cpu(), &cpu().random(&[n], dt, seed, 0.7).unwrap());
            let got = get(&*b, &b.random(&[n], dt, seed, 0.7).unwrap());
            let diff = got.iter().zip(&want).position(|(g, w)| g.to_bits() != w.to_bits());
            assert!(diff.is_none(), "{} seed {seed} n {n}: element {:?} differs", dt.name(), diff);
        }
    }
}

#[test]
fn upload_download_zeros() {
    for b in under_test() {
        let seed = fresh_seed();
        let v = data(seed, 777, 3.0);
        for dt in [DType::F32, DType::Bf16] {
            let (c, g) = both(&*b, &v, &[7, 111], dt);
            assert_eq!(get(&*b, &g), get(&cpu(), &c), "{} round trip", dt.name());
        }
        let ints: Vec<i32> = v.iter().map(|x| (x * 1000.0) as i32).collect();
        assert_eq!(b.download_i32(&b.upload_i32(&ints, &[777]).unwrap()).unwrap(), ints);
        poison(&*b, 1 << 20);
        assert!(get(&*b, &b.zeros(&[300, 7], DType::Bf16).unwrap()).iter().all(|x| *x == 0.0));
        assert!(b.download_i32(&b.zeros(&[1001], DType::I32).unwrap()).unwrap().iter().all(|x| *x == 0));
    }
}

#[test]
fn quantize_fp8_matches_reference() {
    for b in under_test() {
        for (n, dt, std) in [(4096usize, DType::F32, 1.0f32), (10_001, DType::Bf16, 0.02), (33, DType::F32, 300.0)] {
            let seed = fresh_seed();
            let (c, g) = both(&*b, &data(seed, n, std), &[n], dt);
            poison(&*b, n * 8);
            let want = get(&cpu(), &cpu().quantize_fp8(&c).unwrap());
            let got = get(&*b, &b.quantize_fp8(&g).unwrap());
            // Same scale and same e4m3 codes, except where x / scale sits on a rounding
            // boundary (the host rounds via log2): at most one e4m3 step there.
            let amax = want.iter().fold(0f32, |m, x| m.max(x.abs()));
            let mut off = 0;
            for (x, y) in got.iter().zip(&want) {
                assert!(!x.is_nan(), "seed {seed}: NaN");
                if x != y {
                    off += 1;
                    assert!((x - y).abs() <= y.abs() / 8.0 + amax / 448.0 * 2f32.powi(-9), "seed {seed}: {x} vs {y}");
                }
            }
            assert!(off * 1000 <= n, "seed {seed}: {off} of {n} codes differ");
            assert_eq!(got.iter().fold(0f32, |m, x| m.max(x.abs())), amax, "seed {seed}: amax");
        }
    }
}

#[test]
fn rows_and_concat_copy_exactly() {
    for b in under_test() {
        let seed = fresh_seed();
        let v = data(seed, 50 * 3 * 8, 1.0);
        for dt in [DType::Bf16, DType::F32] {
            let (c, g) = both(&*b, &v, &[50, 3, 8], dt);
            poison(&*b, 1 << 16);
            let (cr, gr) = (cpu().rows(&c, 13, 21).unwrap(), b.rows(&g, 13, 21).unwrap());
            assert_eq!(gr.shape(), &[21, 3, 8]);
            assert_eq!(get(&*b, &gr), get(&cpu(), &cr));
            let (c2, g2) = (cpu().rows(&c, 0, 5).unwrap(), b.rows(&g, 0, 5).unwrap());
            let want = get(&cpu(), &cpu().concat_rows(&[&cr, &c2, &c]).unwrap());
            let got = b.concat_rows(&[&gr, &g2, &g]).unwrap();
            assert_eq!(got.shape(), &[76, 3, 8]);
            assert_eq!(get(&*b, &got), want);
        }
        assert!(b.rows(&b.zeros(&[4, 2], DType::F32).unwrap(), 3, 2).is_err());
    }
}

#[test]
fn add_same_shape_and_row_broadcast() {
    for b in under_test() {
        for (shape, dt) in [(vec![33, 64], DType::Bf16), (vec![7, 13], DType::Bf16), (vec![5, 3, 9], DType::F32)] {
            let seed = fresh_seed();
            let n: usize = shape.iter().product();
            let (ca, ga) = both(&*b, &data(seed, n, 1.0), &shape, dt);
            let (cb, gb) = both(&*b, &data(seed + 1, n, 1.0), &shape, dt);
            poison(&*b, n * 8);
            assert_close("add", &get(&*b, &b.add(&ga, &gb).unwrap()), &get(&cpu(), &cpu().add(&ca, &cb).unwrap()), 0.0);
            // One row [n] added to every row: the expected values computed here on the host.
            let last = *shape.last().unwrap();
            let (_, gr) = both(&*b, &data(seed + 2, last, 1.0), &[last], dt);
            let (av, rv) = (get(&cpu(), &ca), get(&*b, &gr));
            let mut want: Vec<f32> = av.iter().enumerate().map(|(i, x)| x + rv[i % last]).collect();
            rwm_dist::tensor::round_to(dt, &mut want);
            assert_close("add row", &get(&*b, &b.add(&ga, &gr).unwrap()), &want, 0.0);
        }
    }
}

#[test]
fn embedding_gathers_rows() {
    for b in under_test() {
        let seed = fresh_seed();
        let (vocab, h) = (1000, 72);
        let (ct, gt) = both(&*b, &data(seed, vocab * h, 1.0), &[vocab, h], DType::Bf16);
        let ids: Vec<i32> = (0..37).map(|i| (rng::splitmix64(seed + i) % vocab as u64) as i32).collect();
        let (ci, gi) = (cpu().upload_i32(&ids, &[37]).unwrap(), b.upload_i32(&ids, &[37]).unwrap());
        poison(&*b, 1 << 16);
        let got = get(&*b, &b.embedding(&gt, &gi).unwrap());
        assert_close("embedding", &got, &get(&cpu(), &cpu().embedding(&ct, &ci).unwrap()), 0.0);
    }
}

#[test]
fn matmul_bf16_f32_fp8() {
    for b in under_test() {
        let cases = [
            (1usize, 64usize, 32usize, DType::Bf16, DType::Bf16),
            (37, 100, 72, DType::Bf16, DType::F32),
            (128, 256, 512, DType::Bf16, DType::Bf16),
            (3, 5, 7, DType::F32, DType::F32),
            (65, 48, 96, DType::F8, DType::Bf16),
            (256, 128, 1024, DType::F8, DType::F32),
        ];
        for (m, n, k, dt, out) in cases {
            let seed = fresh_seed();
            let (cx, gx) = both(&*b, &data(seed, m * k, 1.0), &[m, k], dt);
            let (cw, gw) = both(&*b, &data(seed + 1, n * k, 0.05), &[n, k], dt);
            poison(&*b, m * n * 8);
            let got = b.matmul(&gx, &gw, out).unwrap();
            assert_eq!((got.shape(), got.dtype()), (&[m, n][..], out));
            let want = get(&cpu(), &cpu().matmul(&cx, &cw, out).unwrap());
            let tol = if dt == DType::F32 { 1e-5 } else { 1e-2 };
            assert_close(
                &format!("matmul {m}x{n}x{k} {} -> {} seed {seed}", dt.name(), out.name()),
                &get(&*b, &got),
                &want,
                tol,
            );
        }
        // bf16 activations against an fp8 weight are quantised on the way in.
        let seed = fresh_seed();
        let (cx, gx) = both(&*b, &data(seed, 32 * 64, 1.0), &[32, 64], DType::Bf16);
        let (cw, gw) = both(&*b, &data(seed + 1, 16 * 64, 1.0), &[16, 64], DType::F8);
        let want = get(&cpu(), &cpu().matmul(&cpu().quantize_fp8(&cx).unwrap(), &cw, DType::F32).unwrap());
        assert_close("matmul bf16 x fp8", &get(&*b, &b.matmul(&gx, &gw, DType::F32).unwrap()), &want, 1e-2);
    }
}

/// Expert offsets with some experts empty, from `counts`.
fn offsets_of(counts: &[usize]) -> Vec<i32> {
    let mut o = vec![0i32];
    for c in counts {
        o.push(o.last().unwrap() + *c as i32);
    }
    o
}

fn check_grouped(b: &dyn Backend, counts: &[usize], n: usize, k: usize) {
    let seed = fresh_seed();
    let (r, e) = (counts.iter().sum::<usize>(), counts.len());
    let off = offsets_of(counts);
    let (cx, gx) = both(b, &data(seed, r * k, 1.0), &[r, k], DType::Bf16);
    let (cw, gw) = both(b, &data(seed + 1, e * n * k, 0.05), &[e, n, k], DType::Bf16);
    let (co, go) = (cpu().upload_i32(&off, &[e + 1]).unwrap(), b.upload_i32(&off, &[e + 1]).unwrap());
    poison(b, r * n * 8);
    let got = get(b, &b.grouped_matmul(&gx, &gw, &go).unwrap());
    let want = get(&cpu(), &cpu().grouped_matmul(&cx, &cw, &co).unwrap());
    assert_close(&format!("grouped {counts:?} n {n} k {k} seed {seed}"), &got, &want, 1e-2);
}

/// Odd sizes, empty experts (first and last too), K below one 64-wide step and not a multiple of it,
/// N not a multiple of the column tile, and (the last) more tiles than an H100/H200 has SMs, so the
/// persistent TMA kernel's blocks take several tiles each.
const GROUPED_CASES: [(&[usize], usize, usize); 6] = [
    (&[100, 0, 37, 129, 1], 72, 136),
    (&[0, 300, 0, 0, 256, 5, 0], 130, 64),
    (&[17, 3], 45, 8),
    (&[1000, 2000, 10, 500], 256, 512),
    (&[300, 0, 513, 1, 129, 0, 0, 700], 520, 200),
    (&GROUPED_MANY, 640, 192),
];
/// Experts of 18, 1 and 36 row blocks of 128: bands of 16 and 2, one, and 16, 16 and 4.
const BANDED_CASES: [(&[usize], usize, usize); 1] = [(&[2200, 40, 4500], 520, 64)];
const GROUPED_MANY: [usize; 48] = [
    0, 137, 274, 110, 247, 83, 220, 0, 193, 29, 166, 2, 139, 276, 0, 249, 85, 222, 58, 195, 31, 0, 4, 141, 278, 114,
    251, 87, 0, 60, 197, 33, 170, 6, 143, 0, 116, 253, 89, 226, 62, 199, 0, 172, 8, 145, 282, 118,
];

/// The fused gate/up GEMM + SwiGLU against the composition of the two reference ops (w [e, 2n, k]).
fn check_grouped_swiglu(b: &dyn Backend, counts: &[usize], n: usize, k: usize) {
    let seed = fresh_seed();
    let (r, e) = (counts.iter().sum::<usize>(), counts.len());
    let off = offsets_of(counts);
    let (cx, gx) = both(b, &data(seed, r * k, 1.0), &[r, k], DType::Bf16);
    let (cw, gw) = both(b, &data(seed + 1, e * 2 * n * k, 0.05), &[e, 2 * n, k], DType::Bf16);
    let (co, go) = (cpu().upload_i32(&off, &[e + 1]).unwrap(), b.upload_i32(&off, &[e + 1]).unwrap());
    poison(b, r * n * 8);
    let got = get(b, &b.grouped_matmul_swiglu(&gx, &gw, &go).unwrap());
    let want = get(&cpu(), &cpu().swiglu(&cpu().grouped_matmul(&cx, &cw, &co).unwrap(), None).unwrap());
    assert_close(&format!("grouped swiglu {counts:?} f {n} k {k} seed {seed}"), &got, &want, 1e-2);
}

#[test]
fn grouped_matmul_swiglu_matches_the_composition() {
    for b in under_test() {
        for (counts, n, k) in GROUPED_CASES {
            check_grouped_swiglu(&*b, counts, n, k);
        }
    }
}

#[test]
fn grouped_matmul_uses_each_experts_weight() {
    for b in under_test() {
        for (counts, n, k) in GROUPED_CASES {
            check_grouped(&*b, counts, n, k);
        }
    }
}

/// Block-scaled FP8 (DeepSeek-V3 scaling): both quantisers bit for bit against the reference, the
/// grouped GEMM against the reference with the same scaling (1e-2: the tensor cores' FP8
/// accumulation inside each 128-deep slice, and bf16 rounding), and its error against the bf16
/// grouped GEMM bounded by FP8_VS_BF16 and returned (printed by the caller).
fn check_grouped_fp8(b: &dyn Backend, counts: &[usize], n: usize, k: usize, swiglu: bool) -> f64 {
    let seed = fresh_seed();
    let (r, e) = (counts.iter().sum::<usize>(), counts.len());
    let nw = if swiglu { 2 * n } else { n };
    let off = offsets_of(counts);
    let (cx, gx) = both(b, &data(seed, r * k, 1.0), &[r, k], DType::Bf16);
    let (cw, gw) = both(b, &data(seed + 1, e * nw * k, 0.05), &[e, nw, k], DType::Bf16);
    let (co, go) = (cpu().upload_i32(&off, &[e + 1]).unwrap(), b.upload_i32(&off, &[e + 1]).unwrap());
    let what = format!("grouped fp8 {counts:?} n {n} k {k} swiglu {swiglu} seed {seed}");
    let (cxq, gxq) = (cpu().quantize_blocks(&cx, Blocks::Rows).unwrap(), b.quantize_blocks(&gx, Blocks::Rows).unwrap());
    let (cwq, gwq) =
        (cpu().quantize_blocks(&cw, Blocks::Tiles).unwrap(), b.quantize_blocks(&gw, Blocks::Tiles).unwrap());
    for (c, g, part) in [(&cxq, &gxq, "rows"), (&cwq, &gwq, "tiles")] {
        assert_eq!(g.scales.shape(), c.scales.shape(), "{what}: {part} scales");
        assert_close(&format!("{what}: {part} scales"), &get(b, &g.scales), &get(&cpu(), &c.scales), 0.0);
        assert_close(&format!("{what}: {part} values"), &get(b, &g.q), &get(&cpu(), &c.q), 0.0);
    }
    poison(b, r * nw * 8);
    let got = get(b, &b.grouped_matmul_fp8(&gxq, &gwq, &go, swiglu).unwrap());
    let want = get(&cpu(), &cpu().grouped_matmul_fp8(&cxq, &cwq, &co, swiglu).unwrap());
    assert_close(&what, &got, &want, 1e-2);
    let bf16 = cpu().grouped_matmul(&cx, &cw, &co).unwrap();
    let bf16 = get(&cpu(), &if swiglu { cpu().swiglu(&bf16, None).unwrap() } else { bf16 });
    let err = rel_l2(&got, &bf16);
    assert!(err > 1e-3 && err <= FP8_VS_BF16, "{what}: error against bf16 {err:.3e}");
    err
}

/// Relative L2 error of e4m3 operands (3 mantissa bits, about 3.6% rms per value) against bf16.
const FP8_VS_BF16: f64 = 0.06;

/// Odd sizes, empty experts, K not a multiple of 128 (a partial last scale block), N not a
/// multiple of the 128-column tile (without SwiGLU), more tiles than the GPU has SMs, and experts
/// of several 256-row tiles with partial last waves (the 256-row kernels, in cuda_kernel_variants).
const GROUPED_FP8_CASES: [(&[usize], usize, usize, bool); 8] = [
    (&[100, 0, 37, 129, 1], 192, 208, true),
    (&[100, 0, 37, 129, 1], 72, 144, false),
    (&[0, 300, 0, 0, 256, 5, 0], 128, 64, true),
    (&[17, 3], 64, 16, false),
    (&[1000, 2000, 10, 500], 256, 512, false),
    (&[1000, 2000, 10, 500], 192, 384, true),
    (&GROUPED_MANY, 640, 384, false),
    (&GROUPED_MANY, 320, 256, true),
];

#[test]
fn grouped_matmul_fp8_matches_the_block_scaled_reference() {
    for b in under_test() {
        for (counts, n, k, swiglu) in GROUPED_FP8_CASES {
            let err = check_grouped_fp8(&*b, counts, n, k, swiglu);
            eprintln!("grouped fp8 n {n} k {k} swiglu {swiglu}: relative L2 error against bf16 {err:.4}");
        }
    }
}

#[test]
fn rms_norm_and_fused_add() {
    for b in under_test() {
        // On CUDA bf16 rows of h % 8 == 0 take the 16-byte kernels with 1 (h 64, 4096), 2 (8192) and
        // 4 (20480) chunks a thread; h 36 the scalar bf16 kernel.
        for (rows, h, dt, wdt) in [
            (3usize, 64usize, DType::Bf16, DType::Bf16),
            (17, 4096, DType::Bf16, DType::F32),
            (5, 8192, DType::Bf16, DType::Bf16),
            (2, 20480, DType::Bf16, DType::F32),
            (4, 36, DType::Bf16, DType::Bf16),
            (9, 100, DType::F32, DType::F32),
        ] {
            let seed = fresh_seed();
            let (cx, gx) = both(&*b, &data(seed, rows * h, 2.0), &[rows, h], dt);
            let (cr, gr) = both(&*b, &data(seed + 1, rows * h, 1.0), &[rows, h], dt);
            let (cw, gw) = both(&*b, &data(seed + 2, h, 1.0), &[h], wdt);
            let tol = if dt == DType::F32 { 1e-5 } else { 1e-2 };
            poison(&*b, rows * h * 16);
            let want = get(&cpu(), &cpu().rms_norm(&cx, &cw, 1e-5).unwrap());
            let what = format!("rows {rows} h {h} {dt:?} weight {wdt:?} seed {seed}");
            assert_close(&format!("rms_norm {what}"), &get(&*b, &b.rms_norm(&gx, &gw, 1e-5).unwrap()), &want, tol);
            let (cs, cn) = cpu().add_rms_norm(&cx, &cr, &cw, 1e-6).unwrap();
            let (gs, gn) = b.add_rms_norm(&gx, &gr, &gw, 1e-6).unwrap();
            assert_close(&format!("add_rms_norm sum {what}"), &get(&*b, &gs), &get(&cpu(), &cs), 0.0);
            assert_close(&format!("add_rms_norm normed {what}"), &get(&*b, &gn), &get(&cpu(), &cn), tol);
        }
    }
}

#[test]
fn rope_llama3_scaled() {
    let llama = rwm_dist::models::llama::LlamaConfig::llama31_8b().rope();
    let plain = RopeParams { factor: 1.0, theta: 10_000.0, ..llama };
    for b in under_test() {
        // On CUDA bf16 with d % 16 == 0 takes the 16-byte kernel: Llama's q (32 heads, a row a block)
        // and k (8 heads, 4 rows a block, the last block short), 4 heads (8 rows a block); d 24 the
        // scalar bf16 kernel.
        for (s, heads, d, start, p, dt) in [
            (5usize, 4usize, 128usize, 0usize, llama, DType::Bf16),
            (37, 32, 128, 0, llama, DType::Bf16),
            (19, 8, 128, 70_000, llama, DType::Bf16),
            (11, 3, 64, 9, plain, DType::Bf16),
            (6, 3, 24, 5, plain, DType::Bf16),
            (33, 3, 64, 100_000, llama, DType::F32),
            (7, 2, 10, 3, plain, DType::F32),
        ] {
            let seed = fresh_seed();
            let (cx, gx) = both(&*b, &data(seed, s * heads * d, 1.0), &[s, heads, d], dt);
            poison(&*b, s * heads * d * 8);
            let want = get(&cpu(), &cpu().rope(&cx, start, &p).unwrap());
            let tol = if dt == DType::F32 { 1e-5 } else { 1e-2 };
            assert_close(&format!("rope d {d} start {start}"), &get(&*b, &b.rope(&gx, start, &p).unwrap()), &want, tol);
        }
    }
}

/// `matmul_swiglu` shapes: x rows, f, k. k 20 is not a multiple of 8: cuBLASLt then the SwiGLU kernel.
const MATMUL_SWIGLU_CASES: [(&[usize], usize, usize); 5] =
    [(&[300], 192, 256), (&[64], 1408, 512), (&[2, 150], 96, 128), (&[5], 40, 24), (&[7], 16, 20)];

fn check_matmul_swiglu(b: &dyn Backend, rows: &[usize], f: usize, k: usize) {
    let seed = fresh_seed();
    let r: usize = rows.iter().product();
    let xs: Vec<usize> = rows.iter().copied().chain([k]).collect();
    let (cx, gx) = both(b, &data(seed, r * k, 1.0), &xs, DType::Bf16);
    let (cw, gw) = both(b, &data(seed + 1, 2 * f * k, 0.1), &[2 * f, k], DType::Bf16);
    poison(b, r * f * 8);
    let got = b.matmul_swiglu(&gx, &gw).unwrap();
    let want_shape: Vec<usize> = rows.iter().copied().chain([f]).collect();
    assert_eq!(got.shape(), &want_shape[..]);
    let want = get(&cpu(), &cpu().swiglu(&cpu().matmul(&cx, &cw, DType::Bf16).unwrap(), None).unwrap());
    assert_close(&format!("matmul_swiglu rows {rows:?} f {f} k {k} seed {seed}"), &get(b, &got), &want, 1e-2);
}

/// `matmul_swiglu` (on sm_90a the grouped TMA kernel's SwiGLU epilogue as one expert) against the
/// reference's matmul then SwiGLU.
#[test]
fn matmul_swiglu_matches_the_composition() {
    for b in under_test() {
        for (rows, f, k) in MATMUL_SWIGLU_CASES {
            check_matmul_swiglu(&*b, rows, f, k);
        }
        // w must hold gate and up rows: an odd count is refused, naming the op.
        let (x, w) = (b.zeros(&[4, 16], DType::Bf16).unwrap(), b.zeros(&[7, 16], DType::Bf16).unwrap());
        assert!(b.matmul_swiglu(&x, &w).unwrap_err().to_string().contains("matmul_swiglu"));
    }
}

#[test]
fn swiglu_two_inputs_and_fused() {
    for b in under_test() {
        // bf16 with f % 8 == 0 takes the 16-byte kernel on CUDA, f = 36 the scalar one.
        for (m, f, dt) in [(9usize, 1408usize, DType::Bf16), (5, 36, DType::Bf16), (4, 33, DType::F32)] {
            let seed = fresh_seed();
            let tol = if dt == DType::F32 { 1e-5 } else { 1e-2 };
            let (cg, gg) = both(&*b, &data(seed, m * f, 3.0), &[m, f], dt);
            let (cu, gu) = both(&*b, &data(seed + 1, m * f, 1.0), &[m, f], dt);
            poison(&*b, m * f * 8);
            let want = get(&cpu(), &cpu().swiglu(&cg, Some(&cu)).unwrap());
            assert_close("swiglu", &get(&*b, &b.swiglu(&gg, Some(&gu)).unwrap()), &want, tol);
            let (cf, gf) = both(&*b, &data(seed + 2, m * 2 * f, 3.0), &[m, 2 * f], dt);
            let want = get(&cpu(), &cpu().swiglu(&cf, None).unwrap());
            let got = b.swiglu(&gf, None).unwrap();
            assert_eq!(got.shape(), &[m, f]);
            assert_close("swiglu fused", &get(&*b, &got), &want, tol);
        }
    }
}

fn check_attention(b: &dyn Backend, sq: usize, sk: usize, hq: usize, hkv: usize, d: usize, p: AttnParams) {
    let seed = fresh_seed();
    let (cq, gq) = both(b, &data(seed, sq * hq * d, 1.0), &[sq, hq, d], DType::Bf16);
    let (ck, gk) = both(b, &data(seed + 1, sk * hkv * d, 1.0), &[sk, hkv, d], DType::Bf16);
    let (cv, gv) = both(b, &data(seed + 2, sk * hkv * d, 1.0), &[sk, hkv, d], DType::Bf16);
    poison(b, sq * hq * d * 8);
    let want = cpu().attention(&cq, &ck, &cv, &AttnParams { algo: AttnAlgo::Naive, ..p }).unwrap();
    let got = b.attention(&gq, &gk, &gv, &p).unwrap();
    let what = format!("attention {:?} sq {sq} sk {sk} hq {hq} hkv {hkv} d {d} seed {seed}", p);
    assert_close(&what, &get(b, &got.out), &get(&cpu(), &want.out), 2e-2);
    // The f32 output (context-parallel partials): same values, one rounding fewer.
    let f32_out = b.attention(&gq, &gk, &gv, &AttnParams { f32_out: true, ..p }).unwrap();
    assert_eq!(f32_out.out.dtype(), DType::F32, "{what}");
    assert_close(&format!("{what} f32 out"), &get(b, &f32_out.out), &get(&cpu(), &want.out), 2e-2);
    let (gl, wl) = (get(b, &got.lse), get(&cpu(), &want.lse));
    for (i, (x, y)) in gl.iter().zip(&wl).enumerate() {
        if *y == f32::NEG_INFINITY {
            assert_eq!(*x, f32::NEG_INFINITY, "{what}: lse {i} should be -inf");
        } else {
            assert!((x - y).abs() <= 2e-3 * y.abs().max(1.0), "{what}: lse {i}: {x} vs {y}");
        }
    }
}

#[test]
fn attention_naive_and_flash() {
    for b in under_test() {
        for algo in [AttnAlgo::Naive, AttnAlgo::Flash] {
            let p = |causal, q_offset, k_offset| AttnParams { causal, q_offset, k_offset, algo, f32_out: false };
            check_attention(&*b, 150, 150, 4, 2, 128, p(true, 0, 0));
            check_attention(&*b, 200, 333, 4, 1, 128, p(false, 0, 0));
            // A later query chunk against earlier keys (context parallelism).
            check_attention(&*b, 70, 170, 2, 2, 128, p(true, 100, 0));
            // Keys after the first queries: rows 0..49 see no key (zero output, lse -inf).
            check_attention(&*b, 130, 90, 2, 1, 64, p(true, 0, 50));
            check_attention(&*b, 257, 257, 8, 2, 64, p(true, 0, 0));
            // Head dim without a flash kernel: the naive path.
            check_attention(&*b, 20, 20, 2, 2, 16, p(true, 0, 0));
        }
    }
}

/// Many key tiles and stages at d = 128 (on sm_90a the TMA kernel, its default) and 64: lengths that are
/// not multiples of a tile, sq != sk, the context-parallel ring's offsets both ways, 3 KV heads.
#[test]
fn attention_long_and_odd_lengths() {
    for b in under_test() {
        let p = |causal, q_offset, k_offset| AttnParams {
            causal,
            q_offset,
            k_offset,
            algo: AttnAlgo::Flash,
            f32_out: false,
        };
        check_attention(&*b, 1000, 1000, 4, 1, 128, p(true, 0, 0));
        // The last queries of a longer sequence against all of its keys.
        check_attention(&*b, 300, 1500, 4, 2, 128, p(true, 1200, 0));
        check_attention(&*b, 777, 1100, 2, 1, 128, p(false, 0, 0));
        // Keys from position 300: queries 0..299 see none (zero rows, lse -inf).
        check_attention(&*b, 640, 513, 2, 2, 128, p(true, 0, 300));
        check_attention(&*b, 700, 700, 6, 3, 128, p(true, 0, 0));
        check_attention(&*b, 1000, 1000, 4, 2, 64, p(true, 0, 0));
        check_attention(&*b, 300, 1500, 6, 3, 64, p(true, 1200, 0));
        check_attention(&*b, 777, 1100, 2, 1, 64, p(false, 0, 0));
        check_attention(&*b, 640, 513, 2, 2, 64, p(true, 0, 300));
    }
}

#[test]
fn attn_merge_combines_by_lse() {
    for b in under_test() {
        let (sq, hq, d) = (19usize, 3usize, 128usize);
        let seed = fresh_seed();
        let mk = |s: u64| {
            let mut l = data(s, hq * sq, 3.0);
            l[(s % 7) as usize] = f32::NEG_INFINITY;
            l
        };
        let (la, lb) = (mk(seed), mk(seed + 1));
        let mut lb = lb;
        lb[0] = f32::NEG_INFINITY;
        let mut la = la;
        la[0] = f32::NEG_INFINITY; // row 0 of head 0: neither side saw a key
        let part = |be: &dyn Backend, o: &[f32], l: &[f32]| AttnOut {
            out: be.upload(o, &[sq, hq, d], DType::Bf16).unwrap(),
            lse: be.upload(l, &[hq, sq], DType::F32).unwrap(),
        };
        let (oa, ob) = (data(seed + 2, sq * hq * d, 1.0), data(seed + 3, sq * hq * d, 1.0));
        let want = cpu().attn_merge(&part(&cpu(), &oa, &la), &part(&cpu(), &ob, &lb)).unwrap();
        poison(&*b, 1 << 20);
        let got = b.attn_merge(&part(&*b, &oa, &la), &part(&*b, &ob, &lb)).unwrap();
        assert_close("merge out", &get(&*b, &got.out), &get(&cpu(), &want.out), 1e-2);
        let (gl, wl) = (get(&*b, &got.lse), get(&cpu(), &want.lse));
        assert_eq!(gl[0], f32::NEG_INFINITY);
        let finite: Vec<(f32, f32)> =
            gl.iter().zip(&wl).filter(|(_, w)| w.is_finite()).map(|(g, w)| (*g, *w)).collect();
        let (g, w): (Vec<f32>, Vec<f32>) = finite.into_iter().unzip();
        assert_close("merge lse", &g, &w, 1e-5);
    }
}

#[test]
fn route_softmax_grouped_and_sigmoid_bias() {
    let p = |gate, top_k, n_group, topk_group, norm_topk, scaling| RouterParams {
        gate,
        top_k,
        n_group,
        topk_group,
        norm_topk,
        scaling,
    };
    for b in under_test() {
        let cases = [
            (1000usize, 64usize, p(Gate::Softmax, 6, 1, 1, false, 1.0), false),
            (333, 160, p(Gate::Softmax, 6, 8, 3, false, 16.0), false),
            (517, 256, p(Gate::Sigmoid, 8, 8, 4, true, 2.5), true),
            (64, 16, p(Gate::Sigmoid, 2, 1, 1, true, 1.0), true),
        ];
        for (t, e, rp, with_bias) in cases {
            let seed = fresh_seed();
            let (cl, gl) = both(&*b, &data(seed, t * e, 2.0), &[t, e], DType::F32);
            let bias = data(seed + 1, e, 0.05);
            let (cb, gb) = both(&*b, &bias, &[e], DType::F32);
            let (cbo, gbo) = if with_bias { (Some(&cb), Some(&gb)) } else { (None, None) };
            poison(&*b, t * e * 16);
            let want = cpu().route(&cl, &rp, cbo).unwrap();
            let got = b.route(&gl, &rp, gbo).unwrap();
            let what = format!("route {rp:?} t {t} e {e} seed {seed}");
            let (wp, gp) = (get(&cpu(), &want.probs), get(&*b, &got.probs));
            assert_close(&format!("{what} probs"), &gp, &wp, 1e-5);
            let (wi, gi) = (cpu().download_i32(&want.ids).unwrap(), b.download_i32(&got.ids).unwrap());
            // The ids agree except where two candidates' scores tie to within rounding.
            let sel = |tok: usize, x: i32| wp[tok * e + x as usize] + if with_bias { bias[x as usize] } else { 0.0 };
            let mut differ = 0;
            for (slot, (x, y)) in gi.iter().zip(&wi).enumerate() {
                if x != y {
                    let tok = slot / rp.top_k;
                    assert!((sel(tok, *x) - sel(tok, *y)).abs() < 1e-5, "{what}: slot {slot}: expert {x} vs {y}");
                    differ += 1;
                }
            }
            assert!(differ * 100 <= gi.len(), "{what}: {differ} ids differ");
            if differ == 0 {
                let (ww, gw) = (get(&cpu(), &want.weights), get(&*b, &got.weights));
                assert_close(&format!("{what} weights"), &gw, &ww, 1e-5);
            }
        }
    }
}

/// Random expert ids with some experts never chosen.
fn random_ids(seed: u64, t: usize, k: usize, e: usize) -> Vec<i32> {
    (0..t * k).map(|i| (rng::splitmix64(seed ^ i as u64) % (e as u64 - 2)) as i32 + 1).collect()
}

#[test]
fn permute_groups_stably_and_unpermute_scatters_back() {
    for b in under_test() {
        // (20000, 6, 8): 469 chunks, more than one block of perm_scan takes at once; 600 experts:
        // more than its threads. h = 72, 8, 16: the 16-byte unpermute; h = 4, 6: the scalar one.
        let cases = [(1000usize, 6usize, 64usize, 72usize), (5, 2, 3, 8), (3000, 8, 256, 16), (1, 1, 4, 4)];
        for (t, k, e, h) in cases.into_iter().chain([(20000, 6, 8, 8), (2000, 4, 600, 6)]) {
            let seed = fresh_seed();
            let ids = random_ids(seed, t, k, e);
            let (ci, gi) = (cpu().upload_i32(&ids, &[t, k]).unwrap(), b.upload_i32(&ids, &[t, k]).unwrap());
            let (cx, gx) = both(&*b, &data(seed, t * h, 1.0), &[t, h], DType::Bf16);
            poison(&*b, t * k * h * 8);
            let want = cpu().permute(&cx, &ci, e).unwrap();
            let got = b.permute(&gx, &gi, e).unwrap();
            let what = format!("permute t {t} k {k} e {e} seed {seed}");
            assert_eq!(b.download_i32(&got.offsets).unwrap(), cpu().download_i32(&want.offsets).unwrap(), "{what}");
            assert_eq!(b.download_i32(&got.row_of).unwrap(), cpu().download_i32(&want.row_of).unwrap(), "{what}");
            assert_close(&what, &get(&*b, &got.x), &get(&cpu(), &want.x), 0.0);

            let (cy, gy) = both(&*b, &data(seed + 1, t * k * h, 1.0), &[t * k, h], DType::Bf16);
            let (cw, gw) = both(&*b, &data(seed + 2, t * k, 1.0), &[t, k], DType::F32);
            let (cs, gs) = both(&*b, &data(seed + 3, t * h, 1.0), &[t, h], DType::Bf16);
            let (want_p, got_p) = (want, got);
            let want = get(&cpu(), &cpu().unpermute_add(&cy, &want_p.row_of, &cw, &cs).unwrap());
            let got = get(&*b, &b.unpermute_add(&gy, &got_p.row_of, &gw, &gs).unwrap());
            assert_close(&format!("un{what} + shared"), &got, &want, 1e-2);
            // The fused add rounds as the two ops do: equal to the backend's own unpermute, then add.
            let routed = b.unpermute(&gy, &got_p.row_of, &gw).unwrap();
            let two = get(&*b, &b.add(&routed, &gs).unwrap());
            let want = get(&cpu(), &cpu().unpermute(&cy, &want_p.row_of, &cw).unwrap());
            assert_close(&format!("un{what}"), &get(&*b, &routed), &want, 1e-2);
            assert_close(&format!("un{what} + shared, fused"), &got, &two, 0.0);
        }
    }
}

/// The FP8 dispatch: tokens quantised per 1 x 128 block, then their e4m3 rows and scales gathered;
/// bit for bit the reference's, and the reference's quantisation of the permuted bf16 rows.
#[test]
fn permute_fp8_gathers_the_quantised_rows() {
    for b in under_test() {
        if b.quantize_blocks(&b.zeros(&[1, 16], DType::Bf16).unwrap(), Blocks::Rows).is_err() {
            continue; // no FP8 on this GPU (the quantisers' own test says so)
        }
        // K not a multiple of 128 (a partial last scale block), and 469 chunks of slots.
        for (t, k, e, h) in [(1000usize, 6usize, 64usize, 208usize), (20000, 6, 8, 128), (3, 2, 4, 16)] {
            let seed = fresh_seed();
            let ids = random_ids(seed, t, k, e);
            let (ci, gi) = (cpu().upload_i32(&ids, &[t, k]).unwrap(), b.upload_i32(&ids, &[t, k]).unwrap());
            let (cx, gx) = both(&*b, &data(seed, t * h, 1.0), &[t, h], DType::Bf16);
            poison(&*b, t * k * h * 4);
            let got = b.permute_fp8(&b.quantize_blocks(&gx, Blocks::Rows).unwrap(), &gi, e).unwrap();
            let want = cpu().permute_fp8(&cpu().quantize_blocks(&cx, Blocks::Rows).unwrap(), &ci, e).unwrap();
            let what = format!("permute_fp8 t {t} k {k} e {e} h {h} seed {seed}");
            assert_eq!(b.download_i32(&got.offsets).unwrap(), cpu().download_i32(&want.offsets).unwrap(), "{what}");
            assert_eq!(b.download_i32(&got.row_of).unwrap(), cpu().download_i32(&want.row_of).unwrap(), "{what}");
            assert_eq!(got.x.scales.shape(), want.x.scales.shape(), "{what}: scales");
            assert_close(&format!("{what}: scales"), &get(&*b, &got.x.scales), &get(&cpu(), &want.x.scales), 0.0);
            assert_close(&format!("{what}: values"), &get(&*b, &got.x.q), &get(&cpu(), &want.x.q), 0.0);
            let direct = cpu().quantize_blocks(&cpu().permute(&cx, &ci, e).unwrap().x, Blocks::Rows).unwrap();
            assert_close(&format!("{what}: vs quantised after"), &get(&cpu(), &want.x.q), &get(&cpu(), &direct.q), 0.0);
            let (ws, ds) = (get(&cpu(), &want.x.scales), get(&cpu(), &direct.scales));
            assert_close(&format!("{what}: scales vs quantised after"), &ws, &ds, 0.0);
        }
    }
}

#[test]
fn moe_layer_end_to_end() {
    // route -> permute -> grouped gate/up -> swiglu -> grouped down -> unpermute, all on the device.
    for b in under_test() {
        let (t, e, h, f) = (300usize, 16usize, 64usize, 96usize);
        let rp =
            RouterParams { gate: Gate::Softmax, top_k: 4, n_group: 1, topk_group: 1, norm_topk: true, scaling: 1.0 };
        let seed = fresh_seed();
        let run = |be: &dyn Backend| -> Vec<f32> {
            let x = be.upload(&data(seed, t * h, 1.0), &[t, h], DType::Bf16).unwrap();
            // Same logits on both sides: a GEMM's rounding could flip a near-tied choice.
            let logits = be.upload(&data(seed + 1, t * e, 2.0), &[t, e], DType::F32).unwrap();
            let r = be.route(&logits, &rp, None).unwrap();
            let p = be.permute(&x, &r.ids, e).unwrap();
            let w1 = be.upload(&data(seed + 2, e * 2 * f * h, 0.1), &[e, 2 * f, h], DType::Bf16).unwrap();
            let w2 = be.upload(&data(seed + 3, e * h * f, 0.1), &[e, h, f], DType::Bf16).unwrap();
            let gu = be.grouped_matmul(&p.x, &w1, &p.offsets).unwrap();
            let a = be.swiglu(&gu, None).unwrap();
            let y = be.grouped_matmul(&a, &w2, &p.offsets).unwrap();
            get(be, &be.unpermute(&y, &p.row_of, &r.weights).unwrap())
        };
        assert_close(&format!("moe layer seed {seed}"), &run(&*b), &run(&cpu()), 2e-2);
    }
}

/// Every compiled tile configuration of the flash kernels, not only the defaults (the filter
/// `cuda_kernel_variants` also takes the grouped GEMM's, apart so that compute-sanitizer can take either).
/// RWM_TEST_KERNELS=a,b narrows it to those kernels (a sanitizer on one kernel); each is named as it starts.
#[test]
fn cuda_kernel_variants_flash() {
    let Some(b) = cuda_backend() else { return };
    let only = std::env::var("RWM_TEST_KERNELS").ok();
    let listed = |name: &str| only.as_deref().is_none_or(|l| l.split(',').any(|n| n == name));
    for fk in rwm_dist::backend::cuda::FLASH_KERNELS.iter().filter(|k| listed(k.name)) {
        eprintln!("flash variant {}", fk.name);
        if fk.sm90a() && b.arch() != "sm_90a" {
            assert!(b.choose_flash_kernel(Some(fk.name)).is_err(), "{} off sm_90a", fk.name);
            continue;
        }
        b.choose_flash_kernel(Some(fk.name)).unwrap();
        let p = |causal, q_offset, k_offset| AttnParams {
            causal,
            q_offset,
            k_offset,
            algo: AttnAlgo::Flash,
            f32_out: false,
        };
        check_attention(&b, 300, 300, 4, 2, fk.d, p(true, 0, 0));
        check_attention(&b, 100, 333, 2, 1, fk.d, p(false, 0, 0));
        check_attention(&b, 130, 200, 2, 2, fk.d, p(true, 20, 60));
        // A diagonal that no tile edge meets (a CP ring step's offsets): each warpgroup has masked tiles
        // below its first (the `_lean` kernels' masked loop) and unmasked ones under them.
        check_attention(&b, 300, 500, 4, 2, fk.d, p(true, 200, 0));
        // 3 KV heads: the `_l2` kernels' sections hold 2 KV groups, a full section then a short one.
        check_attention(&b, 300, 300, 6, 3, fk.d, p(true, 0, 0));
    }
    b.choose_flash_kernel(None).unwrap();
    assert!(b.choose_flash_kernel(Some("no_such_kernel")).is_err());
}

/// Every compiled tile configuration of the grouped GEMM kernels, not only the defaults.
#[test]
fn cuda_kernel_variants_grouped() {
    let Some(b) = cuda_backend() else { return };
    for gk in rwm_dist::backend::cuda::GROUPED_KERNELS {
        if gk.sm90a && b.arch() != "sm_90a" {
            continue;
        }
        b.choose_grouped_kernel(Some(gk.name)).unwrap();
        // Kernels in bands of row blocks also get experts of several bands, the last one short.
        let banded: &[_] = if gk.tma.is_some_and(|o| o.band > 0) { &BANDED_CASES } else { &[] };
        let cases = || GROUPED_CASES.iter().chain(banded).copied();
        if gk.tma.is_some_and(|o| o.swiglu) {
            // A SwiGLU kernel runs grouped_matmul_swiglu and matmul_swiglu.
            for (counts, n, k) in cases() {
                check_grouped_swiglu(&b, counts, n, k);
            }
            for (rows, f, k) in MATMUL_SWIGLU_CASES {
                check_matmul_swiglu(&b, rows, f, k);
            }
            continue;
        }
        for (counts, n, k) in cases() {
            check_grouped(&b, counts, n, k);
        }
    }
    b.choose_grouped_kernel(None).unwrap();
    assert!(b.choose_grouped_kernel(Some("no_such_kernel")).is_err());
}

/// The persistent flash kernels (`_pers`) with their grid capped at 1 and 3 blocks, so that each block
/// walks many query tiles of several heads: the K/V stages, the Q reload, the ping-pong turns and the
/// accumulators carry across tiles; tiles with no key (offsets) in between; bf16 and f32 out, lse.
/// On its own (small shapes) so that compute-sanitizer can take it.
#[test]
fn cuda_flash_persistent_tiles() {
    let Some(b) = sm90a_backend("the persistent flash kernels") else { return };
    let p =
        |causal, q_offset, k_offset| AttnParams { causal, q_offset, k_offset, algo: AttnAlgo::Flash, f32_out: false };
    let pers: Vec<_> = rwm_dist::backend::cuda::FLASH_KERNELS.iter().filter(|k| k.persistent()).collect();
    assert!(!pers.is_empty());
    for fk in pers {
        b.choose_flash_kernel(Some(fk.name)).unwrap();
        for cap in [Some(1), Some(3), None] {
            b.cap_persistent_flash_grid(cap);
            check_attention(&b, 300, 300, 6, 3, fk.d, p(true, 0, 0));
            check_attention(&b, 100, 333, 2, 1, fk.d, p(false, 0, 0));
            check_attention(&b, 130, 200, 2, 2, fk.d, p(true, 20, 60));
            // Query tiles 0 and 1 of each head see no key (zero rows, lse -inf), between tiles that do.
            check_attention(&b, 640, 513, 2, 2, fk.d, p(true, 0, 300));
        }
    }
    b.cap_persistent_flash_grid(None);
    b.choose_flash_kernel(None).unwrap();
}

/// Every FP8 grouped GEMM instantiation (also those run only by name), on its own so that
/// compute-sanitizer can take them without the flash kernels.
#[test]
fn cuda_fp8_kernel_variants() {
    let Some(b) = sm90a_backend("the FP8 grouped GEMM") else { return };
    for fk in rwm_dist::backend::cuda::FP8_KERNELS {
        b.choose_fp8_kernel(Some(fk.name)).unwrap();
        for (counts, n, k, swiglu) in GROUPED_FP8_CASES.into_iter().filter(|c| c.3 == fk.swiglu) {
            check_grouped_fp8(&b, counts, n, k, swiglu);
        }
    }
    b.choose_fp8_kernel(None).unwrap();
    assert!(b.choose_fp8_kernel(Some("no_such_kernel")).is_err());
}

#[test]
fn cuda_unavailable_is_a_clean_error() {
    match CudaBackend::new(0) {
        // A GPU is here: an ordinal past the last one must be refused cleanly.
        Ok(b) => {
            assert_eq!(b.kind(), BackendKind::Cuda);
            assert!(matches!(CudaBackend::new(4096), Err(Error::Unavailable(_))));
        }
        Err(e) => assert!(matches!(e, Error::Unavailable(_)), "{e}"),
    }
}

#[test]
fn captured_graph_replays_the_eager_result() {
    for b in under_test() {
        let b = b.as_ref();
        let seed = fresh_seed();
        let (m, k, n) = (96, 256, 320);
        let x = b.upload(&data(seed, m * k, 1.0), &[m, k], DType::Bf16).unwrap();
        let w = b.upload(&data(seed ^ 1, n * k, 0.05), &[n, k], DType::Bf16).unwrap();
        let g = b.upload(&data(seed ^ 2, k, 0.1), &[k], DType::Bf16).unwrap();
        // Several ops with intermediates freed inside the recorded pass.
        let pass = || -> Result<Tensor> {
            let h = b.rms_norm(&x, &g, 1e-5)?;
            let y = b.matmul(&h, &w, DType::Bf16)?;
            b.swiglu(&y, None)
        };
        let eager = get(b, &pass().unwrap());
        let mut f = || pass();
        let graph = b.capture(&mut f).unwrap().expect("the CUDA backend records graphs");
        assert_close("graph after capture", &get(b, graph.output()), &eager, 0.0);
        poison(b, m * n * 4);
        for _ in 0..3 {
            graph.replay().unwrap();
        }
        assert_close("graph after replays", &get(b, graph.output()), &eager, 0.0);
    }
    assert!(cpu().capture(&mut || cpu().zeros(&[1], DType::F32)).unwrap().is_none());
}
