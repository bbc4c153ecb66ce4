//! Embeds the CUDA kernel sources and records the git revision for result records.
//! The table of kernel files is generated from the kernels/ directory, so adding a
//! .cu or .cuh file needs no edit here; the crate builds (and the table is
//! embedded) on machines without CUDA.
use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

fn main() {
    embed_kernels();
    git_revision();
}

fn embed_kernels() {
    let dir = Path::new(&std::env::var("CARGO_MANIFEST_DIR").unwrap()).join("kernels");
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut files: Vec<_> =
        std::fs::read_dir(&dir).map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.path()).collect()).unwrap_or_default();
    files.retain(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("cu" | "cuh")));
    files.sort();
    let mut out = String::from("/// (file name, source) of every kernels/*.cu and *.cuh, sorted by name.\n");
    out.push_str("pub static KERNEL_SOURCES: &[(&str, &str)] = &[\n");
    for p in &files {
        println!("cargo:rerun-if-changed={}", p.display());
        let name = p.file_name().unwrap().to_str().expect("kernel file names are UTF-8");
        writeln!(out, "    ({name:?}, include_str!({:?})),", p.display().to_string()).unwrap();
    }
    out.push_str("];\n");
    let dest = Path::new(&std::env::var("OUT_DIR").unwrap()).join("kernel_sources.rs");
    std::fs::write(dest, out).expect("write kernel_sources.rs");
}

fn git_revision() {
    let rev = Command::new("git")
        .args(["describe", "--always", "--dirty", "--abbrev=12"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=RWM_GIT_REV={rev}");
    // .git is a file in worktrees; rerun when the checkout's HEAD or index moves.
    for f in [".git/HEAD", ".git/index", ".git/refs/heads", ".git/packed-refs"] {
        if Path::new(f).exists() {
            println!("cargo:rerun-if-changed={f}");
        }
    }
}
