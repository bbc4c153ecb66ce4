//! GB200 readiness without a GPU: every kernels/*.cu compiles with NVRTC, with the headers and
//! options the CUDA backend uses, for every architecture it is declared to run on
//! (src/backend/cuda/arch.rs: sm_80, sm_90a, sm_100a), and the hot kernels spill no more than
//! tests/kernel_spills.toml allows. ptxas's registers and spills of the hot kernels are printed.
//!
//! NVRTC needs no GPU: PyPI's `nvidia-cuda-nvrtc` wheel is enough, found through
//! LD_LIBRARY_PATH (.ci/run installs it). Without it the test prints SKIPPED, unless
//! RWM_REQUIRE_NVRTC=1 (CI), where that is a failure.

use rwm_dist::backend::cuda::FLASH_KERNELS;
use rwm_dist::backend::cuda::arch::{self, Arch, CLAIMED, HOT_FILES, KERNEL_FILES};
use rwm_dist::backend::cuda::compile;
use rwm_dist::backend::cuda::ptxas::{self, SpillTable, Usage};
use std::sync::Mutex;
use std::time::Instant;

struct Outcome {
    file: &'static str,
    arch: Arch,
    secs: f64,
    result: Result<Vec<Usage>, String>,
}

/// Compiles every (file, arch) pair, on as many threads as there are cores.
fn compile_all(jobs: &[(&'static str, Arch)]) -> Vec<Outcome> {
    let next = Mutex::new(jobs.iter());
    let out = Mutex::new(Vec::new());
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(jobs.len());
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                // The queue's lock is held only while taking a job.
                let take = || next.lock().unwrap().next().copied();
                while let Some((file, arch)) = take() {
                    let t0 = Instant::now();
                    let result =
                        compile::compile_checked(file, arch).map(|c| ptxas::parse(&c.log)).map_err(|e| e.to_string());
                    let secs = t0.elapsed().as_secs_f64();
                    out.lock().unwrap().push(Outcome { file, arch, secs, result });
                }
            });
        }
    });
    let mut out = out.into_inner().unwrap();
    out.sort_by_key(|o| (o.file, o.arch.cc()));
    out
}

/// The warp-specialised kernels (1 producer and 2 or 3 consumer warpgroups of 128 threads) move registers
/// with setmaxnreg; a block keeps the registers it launched with (ptxas's count x its threads), so the
/// producer's `dec` plus the consumers' `inc` must fit in them, or the consumers' setmaxnreg.inc waits
/// forever: a hang no compiler reports (session 5: 32 + 2 x 240 against 168 x 384 at launch). The flash
/// kernel names its split (F3_DEC, F3_INC by consumer warpgroups; its host table the warpgroups of each
/// instantiation); the grouped GEMMs write theirs in the asm, with two consumers.
fn register_split_excess(file: &str, u: &Usage) -> Option<String> {
    let path = format!("{}/kernels/{file}", env!("CARGO_MANIFEST_DIR"));
    let src = std::fs::read_to_string(&path).ok()?;
    let numbers_after = |key: &str| -> Vec<u32> {
        let Some(i) = src.find(key) else { return vec![] };
        let rest = &src[i + key.len()..];
        let line = &rest[..rest.find(['\n', ';']).unwrap_or(rest.len())];
        line.split(|c: char| !c.is_ascii_digit()).filter_map(|x| x.parse().ok()).collect()
    };
    let (dec, inc, consumers) = if file == "flash_attention_sm90.cu" {
        let base = u.kernel.trim_end_matches("_f32o");
        let Some(fk) = FLASH_KERNELS.iter().find(|k| k.name == base) else {
            return Some(format!("{file}: {}: not in FLASH_KERNELS, its warpgroups unknown", u.kernel));
        };
        let consumers = (fk.warps / 4 - 1) as u32;
        let (decs, incs) = (numbers_after("F3_DEC = "), numbers_after("F3_INC[2] = "));
        match (decs.first(), incs.get(consumers as usize - 2)) {
            (Some(&d), Some(&i)) => (d, i, consumers),
            _ => return Some(format!("{file}: no F3_DEC or F3_INC for {consumers} consumer warpgroups")),
        }
    } else {
        // The largest of every setmaxnreg of the file (each kernel's, as written in its asm).
        let max_of = |op: &str| {
            let key = format!("setmaxnreg.{op}.sync.aligned.u32 ");
            src.match_indices(&key)
                .filter_map(|(i, _)| src[i + key.len()..].split(|c: char| !c.is_ascii_digit()).next()?.parse().ok())
                .max()
        };
        (max_of("dec")?, max_of("inc")?, 2)
    };
    let (need, have) = (128 * dec + 128 * consumers * inc, 128 * (consumers + 1) * u.registers);
    (need > have).then(|| {
        format!(
            "{file}: {}: setmaxnreg {dec} + {consumers} x {inc} needs {need} registers, the block has {have}",
            u.kernel
        )
    })
}

#[test]
fn every_kernel_compiles_for_the_architectures_it_claims() {
    if !compile::nvrtc_present() {
        let msg = "libnvrtc not found: put the nvidia-cuda-nvrtc wheel's lib/ on LD_LIBRARY_PATH (see .ci/run)";
        if std::env::var("RWM_REQUIRE_NVRTC").as_deref() == Ok("1") {
            panic!("{msg}; RWM_REQUIRE_NVRTC=1 requires it");
        }
        println!("SKIPPED: {msg}");
        return;
    }
    let (major, minor) = compile::nvrtc_version().expect("nvrtcVersion");
    let nvrtc = format!("{major}.{minor}");
    let table = SpillTable::parse(include_str!("kernel_spills.toml")).expect("tests/kernel_spills.toml");
    // Spill counts are ptxas's: compared strictly only with the NVRTC the table was measured with.
    let strict = table.nvrtc() == Some(nvrtc.as_str());
    println!(
        "NVRTC {nvrtc}; spill table measured with {:?}{}",
        table.nvrtc(),
        if strict { "" } else { " (spills only reported)" }
    );

    // The longest compiles first, so that the threads finish together.
    let mut jobs: Vec<(&'static str, Arch)> = KERNEL_FILES
        .iter()
        .flat_map(|(f, _)| CLAIMED.iter().filter(|a| arch::compiles_for(f, **a)).map(move |a| (*f, *a)))
        .collect();
    jobs.sort_by_key(|(f, _)| (!HOT_FILES.contains(f), *f));
    for a in CLAIMED {
        let skipped: Vec<_> = KERNEL_FILES.iter().filter(|(f, _)| !arch::compiles_for(f, a)).collect();
        println!("{a}: {} files; not built: {skipped:?}", KERNEL_FILES.len() - skipped.len());
    }
    let t0 = Instant::now();
    let outcomes = compile_all(&jobs);
    let mut failures = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for o in &outcomes {
        let usage = match &o.result {
            Ok(u) => u,
            Err(e) => {
                let head: Vec<&str> = e.lines().take(30).collect();
                failures.push(format!("{} does not compile for {}:\n{}", o.file, o.arch, head.join("\n")));
                continue;
            }
        };
        let hot = HOT_FILES.contains(&o.file);
        println!("{} for {}: ok, {} kernels, {:.1}s", o.file, o.arch, usage.len(), o.secs);
        if usage.is_empty() {
            failures.push(format!("{} for {}: no ptxas report in the log", o.file, o.arch));
        }
        for u in usage {
            seen.insert((o.arch.to_string(), u.kernel.clone()));
            let allowed = table.allowed(&o.arch.to_string(), &u.kernel);
            if hot || u.spills() > 0 {
                println!(
                    "  {:<34} {:>7} {:>3} regs, {:>4} B stack, spills {:>4} B stored {:>4} B loaded (allowed {allowed} B)",
                    u.kernel,
                    o.arch.to_string(),
                    u.registers,
                    u.stack,
                    u.spill_stores,
                    u.spill_loads
                );
            }
            if let Some(msg) = register_split_excess(o.file, u) {
                failures.push(msg);
            }
            if let Some(msg) = table.excess(&o.arch.to_string(), u) {
                let msg = format!("{} ({msg})", o.file);
                if strict { failures.push(msg) } else { println!("  NOTE (other NVRTC): {msg}") }
            } else if u.spills() < allowed && strict {
                println!("  NOTE: {} on {} spills {} < {allowed} bytes: lower its entry", u.kernel, o.arch, u.spills());
            }
        }
    }
    if strict {
        for (a, k, b) in table.entries() {
            if !seen.contains(&(a.to_string(), k.to_string())) {
                failures.push(format!("tests/kernel_spills.toml: [{a}] {k} = {b} names no kernel compiled for {a}"));
            }
        }
    }
    println!(
        "{} compiles on {} threads in {:.1}s",
        jobs.len(),
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        t0.elapsed().as_secs_f64()
    );
    assert!(failures.is_empty(), "{} problems:\n{}", failures.len(), failures.join("\n"));
}
