//! The GGUF reader of rbench, compiled on its own for fuzzing.
//!
//! The reader's source files are included by path rather than depending on
//! the `rbench` crate, whose ggml build would take many minutes under AFL's
//! instrumentation flags and add nothing the reader uses. The reader only
//! needs the tensor type table from `quant`, included the same way.
#![allow(dead_code)]

#[path = "../../src/gguf/mod.rs"]
pub mod gguf;

#[path = "../../src/quant/types.rs"]
mod types;

/// The reader names tensor types through `crate::quant`.
pub mod quant {
    pub use super::types::{GgmlType, QK_K};
}

/// Only consulted by `GgmlType::has_rust_dequant` (as `super::` of the type
/// table), which the reader never calls.
const RUST_DEQUANT_TYPES: &[types::GgmlType] = &[];

use gguf::{GgufFile, GgufWriter, TensorSource};

/// Parses `data`; whatever the reader accepts must be self-consistent, and
/// writing it out must give a file that reads back and writes out the same
/// bytes again (a fixed point). Panics (a finding) otherwise.
pub fn check(data: &[u8]) {
    let Ok(f) = GgufFile::from_bytes(data.to_vec()) else {
        return;
    };
    for t in f.tensors() {
        assert_eq!(
            f.tensor_data(t).len() as u64,
            t.n_bytes,
            "tensor '{}'",
            t.name
        );
        assert!(f.tensor_data_offset(t) + t.n_bytes <= f.file_size());
    }
    let first = rewrite(&f);
    let again = GgufFile::from_bytes(first.clone()).expect("a rewritten accepted file reads back");
    assert_eq!(again.tensors().len(), f.tensors().len());
    assert_eq!(again.metadata().len(), f.metadata().len());
    assert!(rewrite(&again) == first, "rewriting is not a fixed point");
}

fn rewrite(f: &GgufFile) -> Vec<u8> {
    let mut w = GgufWriter::new();
    for (k, v) in f.metadata() {
        // Display of every value must work on anything the reader accepted.
        let _ = v.to_display_string(8);
        w.add_kv(k.clone(), v.clone());
    }
    for t in f.tensors() {
        let bytes = f.tensor_data(t).to_vec();
        w.add_tensor(
            t.name.clone(),
            &t.dims,
            t.ggml_type,
            TensorSource::Bytes(bytes),
        )
        .expect("an accepted tensor info is writable");
    }
    w.to_bytes().expect("an accepted file is writable")
}
