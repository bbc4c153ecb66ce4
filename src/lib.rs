//! rwm-dist: realistic LLM building blocks (Llama 3.1 8B, DeepSeek MoE, a
//! GPT-4-style MoE with context parallelism), timed and checked on one device or many.

pub mod app;
pub mod backend;
pub mod budget;
pub mod cli;
pub mod comm;
pub mod config;
pub mod harness;
pub mod layout;
pub mod logging;
pub mod marks;
pub mod metrics;
pub mod models;
pub mod ops;
pub mod parallel;
pub mod plan;
pub mod rng;
pub mod step_time;
pub mod targets;
pub mod tensor;
pub mod topology;
pub mod watchdog;
pub mod world;

/// docs/ARCHITECTURE.md's example target, compiled by `cargo test --doc`.
#[cfg(doctest)]
#[doc = include_str!("../docs/ARCHITECTURE.md")]
pub struct ArchitectureDoc;
