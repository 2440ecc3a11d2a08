//! Block formats of ggml's tensor types: layouts, Rust dequantization,
//! quantizers, random valid blocks, and llama.cpp's file-type names.

pub mod blocks;
mod dequant;
mod ftype;
mod quantize;
mod random;
mod types;

pub use dequant::{dequantize, dequantize_to_vec, RUST_DEQUANT_TYPES};
pub use ftype::{
    file_type_from_name, file_type_is_guessed, file_type_main_type, file_type_name, type_mix,
    TypeMix, TypeMixRow,
};
pub use quantize::{quantize, quantize_into, RUST_QUANTIZE_TYPES};
pub use random::{fill_random_blocks, random_blocks, RANDOM_BLOCK_TYPES};
pub use types::{GgmlType, QK_K};

/// Errors of the quant module.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum QuantError {
    #[error("no Rust implementation for type {0}")]
    Unsupported(GgmlType),
    #[error("{n_elements} elements is not a whole number of {ty} blocks ({block_size} each)")]
    PartialBlock {
        ty: GgmlType,
        n_elements: usize,
        block_size: usize,
    },
    #[error("{n_elements} elements of {ty} take {expected_bytes} bytes, got {actual_bytes}")]
    LengthMismatch {
        ty: GgmlType,
        n_elements: usize,
        expected_bytes: u64,
        actual_bytes: usize,
    },
    #[error("{n_bytes} bytes is not a whole number of {ty} blocks")]
    NotWholeBlocks { ty: GgmlType, n_bytes: usize },
    #[error("a {0} block did not parse")]
    BadBlock(GgmlType),
    #[error("cannot quantize a non-finite value ({value}) at index {index}")]
    NonFinite { index: usize, value: f32 },
}
