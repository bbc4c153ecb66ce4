//! The step-time model against the binary: `calibrate` writes a rates file that `estimate
//! --time` reads (CPU); the loopback link fitted to one multi-rank run predicts another (CPU,
//! recorded runs); on a GPU, every target's one-GPU prediction within 15% of its measured
//! median (SKIPPED without one).

mod common;
use common::{rwm, text};
use rwm_dist::harness::target::Size;
use rwm_dist::layout::ParallelDims;
use rwm_dist::step_time::{Link, Links, Rates, predict, work};
use rwm_dist::tensor::DType;
use std::path::Path;

#[test]
fn estimate_time_reads_a_cpu_calibration_and_refuses_a_bad_file() {
    let dir = tempfile::tempdir().unwrap();
    let rates = dir.path().join("rates.json");
    let r = rates.to_str().unwrap();
    let o = rwm(&["calibrate", "--backend", "cpu", "--profile", "quick", "-o", r]);
    assert!(o.status.success(), "{:?}", text(&o));
    let o = rwm(&["estimate", "--target", "gpt4", "--time", "--rates", r]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}{err}");
    assert!(out.contains("measured rates of cpu") && out.contains("ms per step"), "{out}");
    // Several ranks on one GPU need the loopback link, which a fresh calibration has not.
    let o = rwm(&["estimate", "--target", "gpt4", "--cp", "2", "--time", "--rates", r, "--one-gpu"]);
    let (out, _) = text(&o);
    assert!(out.contains("no `loopback` link"), "{out}");
    std::fs::write(&rates, "{\"gpu\": 1}").unwrap();
    let o = rwm(&["estimate", "--target", "gpt4", "--time", "--rates", r]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).1.contains("rates.json"), "{:?}", text(&o));
}

#[test]
fn the_rack_sweep_ranks_layouts_that_fit_first() {
    // GPT-4 dimensions with 8 of its 120 layers at 32K: EP 1 cannot hold the experts.
    let topo = concat!(env!("CARGO_MANIFEST_DIR"), "/topology/gb200-nvl72.toml");
    let o = rwm(&[
        "estimate",
        "--target",
        "gpt4",
        "--set",
        "gpt4.preset=full",
        "--set",
        "gpt4.layers=8",
        "--seq-len",
        "32768",
        "--world",
        "24",
        "--ep",
        "8",
        "--cp",
        "3",
        "--topology",
        topo,
        "--time",
    ]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "the layout asked for fits: {out}{err}");
    assert!(out.contains("NVIDIA GB200 datasheet") && out.contains("every layout of 24 ranks"), "{out}");
    let rows: Vec<&str> = out.lines().filter(|l| l.starts_with("  cp ") || l.starts_with("* cp ")).collect();
    assert_eq!(rows.len(), 8 * 4, "cp in 1,2,3,4,6,8,12,24 x ep in 1,2,4,8: {out}");
    assert!(rows.iter().any(|l| l.starts_with('*')), "the asked layout is marked: {out}");
    // Fitting rows come before the rest.
    let fits: Vec<bool> = rows.iter().map(|l| l.contains(" yes ")).collect();
    assert!(fits.windows(2).all(|w| w[0] || !w[1]), "{out}");
    assert!(fits.contains(&true) && fits.contains(&false), "{out}");
}

/// Median ms of `variant` in a results file.
fn median(path: &Path, variant: &str) -> f64 {
    let text = std::fs::read_to_string(path).unwrap();
    let rec = text
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|v| v["variant"] == variant && v["rank"] == 0)
        .unwrap_or_else(|| panic!("{variant} in {}", path.display()));
    assert_eq!(rec["status"], "ok", "{rec}");
    rec["median_ms"].as_f64().unwrap()
}

#[test]
fn one_gpu_predictions_are_within_15_percent() {
    if let Err(e) = rwm_dist::backend::cuda::CudaBackend::new(0) {
        eprintln!("SKIPPED: no CUDA device ({e})");
        return;
    }
    // RWM_STEP_TIME_DIR keeps the rates and records (device runs commit them).
    let tmp = tempfile::tempdir().unwrap();
    let dir = std::env::var("RWM_STEP_TIME_DIR").map(std::path::PathBuf::from).unwrap_or(tmp.path().into());
    std::fs::create_dir_all(&dir).unwrap();
    let rates = dir.join("rates.json");
    let o = rwm(&["calibrate", "--backend", "cuda", "-o", rates.to_str().unwrap()]);
    let (out, err) = text(&o);
    std::fs::write(dir.join("calibrate.log"), format!("{out}{err}")).unwrap();
    assert!(o.status.success(), "{out}{err}");
    let r = Rates::load(&rates).unwrap();
    let links = Links::uniform(Link::new("none", 1.0, 0.0), 1);
    let mut worst: f64 = 0.0;
    let mut table = String::new();
    for (target, variants) in [("llama", "optimized,fp8"), ("moe", "optimized"), ("gpt4", "optimized")] {
        let file = dir.join(format!("{target}.jsonl"));
        let args = ["run", "--backend", "cuda", "--profile", "bench", "--target", target, "--variant", variants];
        let rest = ["--warmup", "1", "--iters", "5", "--output", file.to_str().unwrap()];
        let o = rwm(&args.iter().chain(&rest).copied().collect::<Vec<_>>());
        assert!(o.status.success(), "{target}: {:?}", text(&o));
        let cfg = (rwm_dist::targets::find(target).unwrap().config)(Size::Bench);
        for v in variants.split(',') {
            let w = work::for_target(cfg.as_ref(), &ParallelDims::single(), v, DType::Bf16).unwrap();
            let p = predict(&w, &r, &links, 1);
            let (pred, meas) = (p.step_s * 1e3, median(&file, v));
            let err = pred / meas - 1.0;
            worst = worst.max(err.abs());
            table.push_str(&format!(
                "{target:<6} {v:<10} predicted {pred:>9.3} ms measured {meas:>9.3} ms {:+.1}%\n",
                100.0 * err
            ));
        }
    }
    eprintln!("{table}");
    std::fs::write(dir.join("one-gpu-table.txt"), &table).unwrap();
    assert!(worst <= 0.15, "a one-GPU prediction is off by more than 15%:\n{table}");
}

/// The loopback link fitted by `calibrate --link-from` to one run of 14 layouts of 2, 4 and 8
/// ranks on one H200 (session 4's serial-context run A; records cut to the fields the fit
/// reads) predicts a second run of the same layouts (run B) within 10%.
#[test]
fn the_loopback_link_fitted_to_one_run_predicts_another() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/loopback");
    let files = |run: &str| -> Vec<std::path::PathBuf> {
        let mut f: Vec<_> = std::fs::read_dir(fixtures.join(run)).unwrap().map(|e| e.unwrap().path()).collect();
        f.sort();
        f
    };
    let dir = tempfile::tempdir().unwrap();
    let rates = dir.path().join("rates.json");
    std::fs::copy(fixtures.join("rates-h200.json"), &rates).unwrap();
    let mut args = vec!["calibrate".to_string(), "-o".into(), rates.to_str().unwrap().into(), "--link-from".into()];
    args.extend(files("a").iter().map(|p| p.to_str().unwrap().to_string()));
    let o = rwm(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let (out, err) = text(&o);
    assert!(o.status.success() && out.contains("fitted to the steps of 14 run(s)"), "{out}{err}");
    let r = Rates::load(&rates).unwrap();
    let link = r.loopback.as_ref().expect("the fit is in the rates file");
    let b = rwm_dist::step_time::calibrate::measured(&files("b")).unwrap();
    assert_eq!(b.len(), 14);
    let mut table = String::new();
    let mut worst: f64 = 0.0;
    for x in &b {
        let p = predict(&x.work, &r, &Links::loopback(link, x.world, x.dims), x.world);
        let err = p.step_s * 1e3 / x.ms - 1.0;
        worst = worst.max(err.abs());
        table.push_str(&format!("{:<40} {:>8.2} ms {:>8.2} ms {:+.1}%\n", x.name, p.step_s * 1e3, x.ms, 100.0 * err));
    }
    assert!(worst <= 0.10, "a layout of run B is off by more than 10%:\n{table}");
}
