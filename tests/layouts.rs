//! Parallel layouts through the binary: `estimate`, `topo show` and `run --dry-run` accept
//! and refuse the same layouts with the same message, and the layouts they accept run on
//! the CPU thread world, every rank checked against one rank alone.

mod common;

use common::rwm;
use serde_json::Value;

const NVL72: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/topology/gb200-nvl72.toml");
const DGX_X3: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/topology/dgx-h100-x3.toml");

/// Exit code and the `layout: …` line of stderr, if any.
fn verdict(args: &[&str]) -> (Option<i32>, String) {
    let o = rwm(args);
    let err = String::from_utf8_lossy(&o.stderr);
    let line = err.lines().find_map(|l| l.split_once("layout: ").map(|(_, m)| m.to_string())).unwrap_or_default();
    (o.status.code(), line)
}

#[test]
fn estimate_topo_show_and_dry_run_agree_on_every_layout() {
    // (world, cp, ep, dp, separate, accepted); gpt4 has 16 experts.
    type Case = (usize, usize, usize, Option<usize>, bool, bool);
    let table: &[Case] = &[
        (24, 4, 8, None, false, true),
        (24, 4, 16, None, false, false),
        (8, 2, 4, None, false, true),
        (8, 4, 2, None, false, true),
        (8, 1, 4, None, false, true),
        (72, 2, 8, None, false, true),
        (16, 2, 4, None, true, true),
        (24, 5, 1, None, false, false),
        (24, 4, 32, None, false, false),
        (24, 4, 6, None, false, false),
        (24, 4, 8, Some(2), false, false),
        (24, 4, 8, None, true, false),
        (8, 0, 1, None, false, false),
    ];
    for &(world, cp, ep, dp, separate, accepted) in table {
        let mut layout: Vec<String> =
            vec!["--world".into(), world.to_string(), "--cp".into(), cp.to_string(), "--ep".into(), ep.to_string()];
        if let Some(dp) = dp {
            layout.extend(["--dp".into(), dp.to_string()]);
        }
        if separate {
            layout.extend(["--ep-layout".into(), "separate".into()]);
        }
        let l: Vec<&str> = layout.iter().map(String::as_str).collect();
        let est = verdict(&[&["estimate", "--target", "gpt4"][..], &l].concat());
        let show = verdict(&[&["topo", "show", "--topology", NVL72, "--experts", "16"][..], &l].concat());
        let dry = verdict(&[&["run", "--dry-run", "--target", "gpt4", "--topology", NVL72][..], &l].concat());
        let case = format!("world {world} cp {cp} ep {ep} dp {dp:?} separate {separate}");
        for (what, (code, msg)) in [("estimate", &est), ("topo show", &show), ("run --dry-run", &dry)] {
            assert_eq!(*code, Some(if accepted { 0 } else { 2 }), "{case}: {what} said {msg:?}");
        }
        // The layout's own verdict is word for word the same (the expert count is named
        // by each command's own key: gpt4.num_experts, --experts).
        let norm = |m: &str| m.replace("gpt4.num_experts", "EXPERTS").replace("--experts", "EXPERTS");
        assert_eq!(norm(&est.1), norm(&show.1), "{case}");
        assert_eq!(norm(&est.1), norm(&dry.1), "{case}");
        assert_eq!(accepted, est.1.is_empty(), "{case}: {est:?}");
    }
}

#[test]
fn the_issue_examples() {
    let o =
        rwm(&["run", "--dry-run", "--world", "24", "--cp", "4", "--ep", "8", "--target", "gpt4", "--topology", NVL72]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(out.contains("world 24 = tp 1 x cp 4 x dp 6, ep 8 folded over cp x dp on gb200-nvl72"), "{out}");
    assert_eq!(out.lines().filter(|l| l.trim_end().ends_with("nvl72")).count(), 24, "{out}");
    let (code, msg) =
        verdict(&["estimate", "--target", "gpt4", "--world", "24", "--tp", "4", "--cp", "4", "--ep", "8"]);
    assert_eq!(code, Some(2));
    assert!(msg.contains("tp 4 x cp 4 = 16"), "{msg}");
    // Without a topology the dry run prints every rank's coordinates and replica.
    let o = rwm(&["run", "--dry-run", "--world", "8", "--cp", "2", "--ep", "4", "--target", "gpt4"]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("world 8 = tp 1 x cp 2 x dp 4, ep 4 folded over cp x dp; 4 data replica(s); 2 EP group(s)"),
        "{out}"
    );
    // A run with tensor parallelism is refused before anything runs, by run and its dry run.
    for dry in [true, false] {
        let mut a = vec!["run", "--tp", "2", "--ranks", "2", "--target", "gpt4"];
        if dry {
            a.push("--dry-run");
        }
        let o = rwm(&a);
        assert_eq!(o.status.code(), Some(2));
        assert!(String::from_utf8_lossy(&o.stderr).contains("runs have no tensor parallelism"));
    }
}

/// `run --ranks N` (CPU threads, quick profile, one timed step): the records.
fn run_records(extra: &[&str]) -> Vec<Value> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.jsonl");
    let args = [&["run", "--iters", "1", "--warmup", "0", "--output", path.to_str().unwrap()][..], extra].concat();
    let o = rwm(&args);
    let text = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success(), "{extra:?}:\n{text}");
    std::fs::read_to_string(&path).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// Every rank present, every record checked against one rank and passing, the layout recorded.
fn check_layout(recs: &[Value], world: usize, variants: usize, degrees: (u64, u64, u64)) {
    assert_eq!(recs.len(), world * variants);
    for r in recs {
        let l = &r["layout"];
        assert_eq!(
            (l["cp"].as_u64(), l["ep"].as_u64(), l["dp"].as_u64()),
            (Some(degrees.0), Some(degrees.1), Some(degrees.2))
        );
        let c = &l["coords"];
        let rank = r["rank"].as_u64().unwrap();
        assert!(c["cp"].as_u64().unwrap() < degrees.0 && c["ep"].as_u64().unwrap() < degrees.1, "{c}");
        if r["variant"] != "balanced" {
            assert_eq!(r["reference"], "single-rank", "rank {rank} {}: {r}", r["variant"]);
            assert!(r["metrics"]["single_rank"]["rows"].as_u64().unwrap() > 0);
        }
        assert_eq!(r["status"], "ok", "rank {rank}: {}", r["error"]);
    }
}

#[test]
fn gpt4_cp2_ep4_and_cp4_ep2_on_8_thread_ranks_match_one_rank() {
    for (cp, ep, dp) in [(2, 4, 4), (4, 2, 2)] {
        let (c, e) = (cp.to_string(), ep.to_string());
        let recs = run_records(&["--target", "gpt4", "--ranks", "8", "--cp", &c, "--ep", &e, "--seq-len", "100"]);
        check_layout(&recs, 8, 2, (cp, ep, dp));
        // Each thread rank counts its own bytes: its peak is near its estimate, not the process's.
        for r in &recs {
            let (peak, est) = (r["peak_mem_bytes"].as_f64().unwrap(), r["est_mem_bytes"].as_f64().unwrap());
            assert!(peak < 1.5 * est, "rank {}: peak {peak} vs estimate {est}", r["rank"]);
        }
    }
}

#[test]
fn moe_ep4_dp2_on_8_thread_ranks_matches_one_rank() {
    let recs = run_records(&["--target", "moe", "--ranks", "8", "--ep", "4", "--seq-len", "64"]);
    check_layout(&recs, 8, 3, (1, 4, 8));
    // Routing health of the whole layer: every rank's tokens, all-reduced.
    let layer = &recs[0]["metrics"]["routing_layer"]["load"];
    let total: u64 = layer.as_array().unwrap().iter().map(|x| x.as_u64().unwrap()).sum();
    let cfg = &recs[0]["config"];
    let (k, batches) = (cfg["top_k"].as_u64().unwrap(), cfg["batches"].as_u64().unwrap());
    assert_eq!(total, 8 * 64 * k * batches, "{layer}");
}

#[test]
fn twenty_four_ranks_cp4_ep8_on_both_24_gpu_topologies() {
    for topo in [NVL72, DGX_X3] {
        let recs = run_records(&[
            "--target",
            "gpt4",
            "--ranks",
            "24",
            "--cp",
            "4",
            "--ep",
            "8",
            "--seq-len",
            "64",
            "--layers",
            "1",
            "--topology",
            topo,
        ]);
        check_layout(&recs, 24, 2, (4, 8, 6));
    }
}

#[test]
fn a_topology_too_small_for_the_ranks_is_refused() {
    let single = concat!(env!("CARGO_MANIFEST_DIR"), "/topology/dgx-h100.toml");
    let o = rwm(&["run", "--target", "gpt4", "--ranks", "16", "--cp", "2", "--topology", single]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("world size 16 does not fit topology"));
}

#[test]
fn moe_records_the_dtype_that_ran() {
    // --dtype fp8: the baseline loop stays bf16; the grouped variants run block-scaled FP8 experts,
    // gated by the FP8 bound, with a visible error against the bf16 baseline.
    let recs = run_records(&["--target", "moe", "--dtype", "fp8", "--seq-len", "64"]);
    assert_eq!(recs.len(), 3, "{recs:?}");
    for r in &recs {
        let fp8 = r["variant"] != "baseline";
        assert_eq!(r["gemm_dtype"], if fp8 { "fp8" } else { "bf16" }, "{r}");
        if fp8 {
            assert_eq!(r["tolerance"].as_f64(), Some(0.15), "{r}");
        }
    }
    let err = recs[1]["max_err"].as_f64().unwrap();
    assert!(recs[1]["variant"] == "optimized" && err > 1e-3 && err <= 0.15, "{err}");
}
