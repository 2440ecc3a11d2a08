//! Typed errors of the GGUF reader and writer.
//!
//! Reader errors name the problem and the byte offset in the file where it was
//! found, so that a broken file can be inspected with a hex dump.

use std::fmt;
use std::path::PathBuf;

/// The part of a GGUF file a truncation or length problem was found in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Section {
    /// Magic, version and the two counts.
    Header,
    /// The key/value pairs.
    Metadata,
    /// The tensor infos (name, shape, type, offset).
    TensorTable,
    /// The aligned data section holding the tensor bytes.
    TensorData,
}

impl fmt::Display for Section {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Section::Header => "header",
            Section::Metadata => "metadata",
            Section::TensorTable => "tensor table",
            Section::TensorData => "tensor data",
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("writing GGUF data failed: {0}")]
    Write(#[source] std::io::Error),

    #[error("bad magic {found:02x?} at offset 0, expected \"GGUF\" (47 47 55 46)")]
    BadMagic { found: [u8; 4] },

    #[error("unsupported GGUF version {version} at offset 4: {reason}")]
    UnsupportedVersion { version: u32, reason: &'static str },

    #[error("truncated {section}: {what} needs {needed} bytes at offset {offset}, file is {file_size} bytes")]
    Truncated {
        section: Section,
        what: String,
        needed: u64,
        offset: u64,
        file_size: u64,
    },

    #[error("{section}: {what} has string length {len} at offset {offset}, running past the end of the file ({file_size} bytes)")]
    StringPastEnd {
        section: Section,
        what: String,
        len: u64,
        offset: u64,
        file_size: u64,
    },

    #[error("metadata: {what} has array length {len} at offset {offset}, needing at least {min_bytes} bytes but only {remaining} remain in the file")]
    ArrayPastEnd {
        what: String,
        len: u64,
        offset: u64,
        min_bytes: u128,
        remaining: u64,
    },

    #[error("absurd {what} {count} at offset {offset}: each entry needs at least {min_entry_bytes} bytes but only {remaining} bytes remain (corrupt count or truncated file)")]
    AbsurdCount {
        what: &'static str,
        count: u64,
        min_entry_bytes: u64,
        offset: u64,
        remaining: u64,
    },

    #[error("metadata: {what} at offset {offset} is not valid UTF-8")]
    InvalidUtf8 { what: String, offset: u64 },

    #[error("metadata: kv {index} at offset {offset} has an empty key")]
    EmptyKey { index: u64, offset: u64 },

    #[error("metadata: duplicate key '{key}' at offset {offset}")]
    DuplicateKey { key: String, offset: u64 },

    #[error("metadata: {what} has unknown value type {type_id} at offset {offset}")]
    UnknownValueType {
        what: String,
        type_id: u32,
        offset: u64,
    },

    #[error("metadata: {what} has invalid bool byte {byte:#04x} at offset {offset}")]
    InvalidBool { what: String, byte: u8, offset: u64 },

    #[error("metadata: {what} at offset {offset} nests arrays deeper than {max_depth} levels")]
    NestingTooDeep {
        what: String,
        max_depth: usize,
        offset: u64,
    },

    #[error("metadata: general.alignment at offset {offset} is {value}, expected a u32 that is a non-zero power of two")]
    InvalidAlignment { value: String, offset: u64 },

    #[error("tensor table: tensor {index} name at offset {offset} is {len} bytes long, ggml allows at most {max}")]
    TensorNameTooLong {
        index: u64,
        len: u64,
        max: usize,
        offset: u64,
    },

    #[error("tensor table: duplicate tensor name '{name}' at offset {offset}")]
    DuplicateTensor { name: String, offset: u64 },

    #[error("tensor table: tensor '{name}' at offset {offset} has invalid dimensions: {reason}")]
    InvalidDims {
        name: String,
        reason: String,
        offset: u64,
    },

    #[error("tensor table: tensor '{name}' at offset {offset}: element count of dims {dims:?} overflows")]
    ElementCountOverflow {
        name: String,
        dims: Vec<u64>,
        offset: u64,
    },

    #[error("tensor table: tensor '{name}' has unknown ggml type id {type_id} at offset {offset}")]
    UnknownGgmlType {
        name: String,
        type_id: u32,
        offset: u64,
    },

    #[error("tensor table: tensor '{name}' at offset {offset}: row length {ne0} is not a multiple of the {ggml_type} block size {block_size}")]
    BlockSizeMismatch {
        name: String,
        ggml_type: crate::quant::GgmlType,
        ne0: u64,
        block_size: usize,
        offset: u64,
    },

    #[error("tensor table: tensor '{name}' data offset {data_offset} (field at offset {offset}) is not a multiple of the alignment {alignment}")]
    MisalignedTensor {
        name: String,
        data_offset: u64,
        alignment: u64,
        offset: u64,
    },

    #[error("tensor data: tensor '{name}' ({n_bytes} bytes) would start at file offset {file_offset}, outside the file ({file_size} bytes)")]
    TensorOutOfBounds {
        name: String,
        file_offset: u128,
        n_bytes: u64,
        file_size: u64,
    },

    #[error("tensor data: tensor '{name}' (bytes {start}..{end} of the data section) overlaps tensor '{other}' (bytes {other_start}..{other_end}), at file offset {offset}")]
    TensorOverlap {
        name: String,
        start: u64,
        end: u64,
        other: String,
        other_start: u64,
        other_end: u64,
        offset: u64,
    },

    // Writer errors: there is no file offset yet, they name the item instead.
    #[error("writer: invalid tensor '{name}': {reason}")]
    InvalidTensor { name: String, reason: String },

    #[error("writer: tensor '{name}' needs {expected} bytes of data, got {actual}")]
    TensorDataSize {
        name: String,
        expected: u64,
        actual: u64,
    },

    #[error("writer: invalid value for key '{key}': {reason}")]
    InvalidValue { key: String, reason: String },

    #[error("writer: alignment {alignment} is not a power of two that fits in a u32")]
    InvalidWriterAlignment { alignment: u64 },
}
