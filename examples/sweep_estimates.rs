//! The run budgets (device storage) of issue 16's GPU sweep, each variant's total in GiB:
//! `cargo run --release --example sweep_estimates` (no GPU needed), to compare with the records
//! under bench/results/2026-12-01-h200/estimate-sweep/.

use rwm_dist::budget::Storage;
use rwm_dist::harness::target::Size;
use rwm_dist::layout::ParallelDims;
use rwm_dist::tensor::DType;

/// (name, target, config keys, EP degree, --dtype)
type Run = (&'static str, &'static str, &'static [(&'static str, &'static str)], usize, DType);

fn main() {
    let runs: &[Run] = &[
        (
            "gpt4 S=32K L=2 E=8 bf16",
            "gpt4",
            &[("seq_len", "32768"), ("layers", "2"), ("num_experts", "8")],
            1,
            DType::Bf16,
        ),
        ("moe E=64 k=6 T=16K EP2", "moe", &[], 2, DType::Bf16),
        (
            "gpt4 S=2K L=1 E=8 bf16",
            "gpt4",
            &[("seq_len", "2048"), ("layers", "1"), ("num_experts", "8")],
            1,
            DType::Bf16,
        ),
        (
            "gpt4 S=8K L=2 E=16 bf16",
            "gpt4",
            &[("seq_len", "8192"), ("layers", "2"), ("num_experts", "16")],
            1,
            DType::Bf16,
        ),
        ("gpt4 S=8K L=4 E=8 fp8", "gpt4", &[("seq_len", "8192"), ("layers", "4"), ("num_experts", "8")], 1, DType::F8),
        (
            "gpt4 S=4K L=1 E=64 fp8",
            "gpt4",
            &[("seq_len", "4096"), ("layers", "1"), ("num_experts", "64")],
            1,
            DType::F8,
        ),
        (
            "gpt4 S=16K L=2 E=16 EP2 bf16",
            "gpt4",
            &[("seq_len", "16384"), ("layers", "2"), ("num_experts", "16")],
            2,
            DType::Bf16,
        ),
        ("moe E=64 k=6 T=16K bf16", "moe", &[], 1, DType::Bf16),
        ("moe E=8 k=2 T=16K bf16", "moe", &[("num_experts", "8"), ("top_k", "2")], 1, DType::Bf16),
        ("llama 8B L=2 S=8K bf16+fp8", "llama", &[("layers", "2")], 1, DType::Bf16),
        ("moe E=64 k=6 T=16K fp8", "moe", &[], 1, DType::F8),
        ("moe E=64 k=6 T=16K EP2 fp8", "moe", &[], 2, DType::F8),
        (
            "gpt4 S=8K L=2 E=16 fp8",
            "gpt4",
            &[("seq_len", "8192"), ("layers", "2"), ("num_experts", "16")],
            1,
            DType::F8,
        ),
        (
            "gpt4 S=8K L=2 E=16 EP2 fp8",
            "gpt4",
            &[("seq_len", "8192"), ("layers", "2"), ("num_experts", "16")],
            2,
            DType::F8,
        ),
    ];
    for (name, target, keys, ep, dtype) in runs {
        let reg = rwm_dist::targets::find(target).unwrap();
        let mut t = (reg.config)(Size::Bench);
        for (k, v) in *keys {
            t.set(k, v).unwrap();
        }
        let dims = ParallelDims::new(1, 1, *ep, 1);
        for spec in t.variants() {
            let v = spec.resolve(*dtype);
            let b = t.run_budget(&dims, &v, Storage::Device { fused_swiglu: true }).unwrap();
            println!("{name} | {} | {:.3} | {}", v.name(), b.total as f64 / (1u64 << 30) as f64, b.total);
        }
    }
}
