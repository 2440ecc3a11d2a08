//! rbench: a GGUF-based local LLM runner and benchmark.
//!
//! Rust owns the model (file format, hyperparameters, graphs, KV cache,
//! scheduling); ggml only supplies tensor kernels and backends.

pub mod analyze;
pub mod bench;
pub mod build_info;
pub mod cli;
pub mod engine;
pub mod format;
pub mod ggml;
pub mod gguf;
pub mod kernels;
pub mod kv;
pub mod load;
pub mod model;
pub mod quant;
pub mod report;
pub mod serve;
pub mod system;
pub mod tokenizer;
