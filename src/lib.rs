//! rwm-dist: realistic LLM building blocks (Llama 3.1 8B, DeepSeek MoE, a
//! GPT-4-style MoE with context parallelism), timed and checked on one device or many.

pub mod backend;
pub mod comm;
pub mod ops;
pub mod rng;
pub mod tensor;
pub mod topology;
pub mod world;
