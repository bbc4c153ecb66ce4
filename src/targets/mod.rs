//! Workloads: each model wrapped for the harness.

pub mod fit;
pub mod gpt4;
pub mod llama;
pub mod memory;
pub mod moe;
pub mod working_set;
