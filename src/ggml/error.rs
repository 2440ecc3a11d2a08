//! The one error type of the ggml wrapper.

use crate::quant::GgmlType;

/// Everything the safe wrapper refuses or sees fail. ggml itself aborts the
/// process on a failed assertion, so the wrapper checks what ggml would
/// assert on and reports it here instead.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GgmlError {
    #[error("could not allocate a ggml context of {mem_size} bytes")]
    ContextInit { mem_size: usize },
    #[error("ggml context is full: a {what} needs {needed} bytes, {available} are left (size the context for more)")]
    ContextFull {
        what: &'static str,
        needed: usize,
        available: usize,
    },
    #[error("graph is full: it holds {size} nodes and {size} leafs, this tensor would make it {nodes} nodes and {leafs} leafs")]
    GraphFull {
        size: usize,
        nodes: usize,
        leafs: usize,
    },
    #[error("{op}: {detail}")]
    InvalidOp { op: &'static str, detail: String },
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    #[error("tensor '{name}' does not belong to this context")]
    ForeignTensor { name: String },
    #[error("tensor '{name}' has no memory yet (use alloc_ctx_tensors, Context::place_tensor or a Gallocr)")]
    NotAllocated { name: String },
    #[error("tensor '{name}' already has memory")]
    AlreadyAllocated { name: String },
    #[error("tensor '{name}': {len} bytes at offset {offset} exceed its {size} bytes")]
    OutOfBounds {
        name: String,
        offset: usize,
        len: usize,
        size: usize,
    },
    #[error("tensor '{name}' is {actual}, expected {expected}")]
    TypeMismatch {
        name: String,
        expected: &'static str,
        actual: GgmlType,
    },
    #[error("tensor '{name}' lives in read-only host memory")]
    ReadOnly { name: String },
    #[error("address {addr:#x} is not aligned to {align} bytes")]
    Misaligned { addr: usize, align: usize },
    #[error("failed to allocate a {buft} buffer of {size} bytes")]
    AllocationFailed { buft: String, size: usize },
    #[error("the context has no tensor that still needs memory")]
    NothingToAllocate,
    #[error("backend: {0}")]
    Backend(String),
    #[error("graph compute failed: {0}")]
    Compute(String),
    #[error(
        "the graph allocator is still in use by a live graph context (drop that context first)"
    )]
    GallocrInUse,
    #[error("graph allocator: {0}")]
    Gallocr(String),
    #[error("unsupported: {0}")]
    Unsupported(String),
}

/// Result with [`GgmlError`] as the default error.
pub type Result<T, E = GgmlError> = std::result::Result<T, E>;
