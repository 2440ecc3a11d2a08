//! Block formats of ggml's tensor types: layouts, Rust dequantization,
//! quantizers, and llama.cpp's file-type names.

mod types;

pub use types::{GgmlType, QK_K};
