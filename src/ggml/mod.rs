//! Safe wrapper over ggml: with the mmap reader and the kernels (`crate::kernels`),
//! the only place that holds `unsafe`.
//!
//! # Objects and who owns what
//!
//! - [`Context`] owns a ggml context: a fixed pool of tensor *metadata* and
//!   graphs. Size it with [`Context::for_tensors`] (weights, KV cache) or
//!   [`Context::for_graph`] (one forward pass). Contexts never hold tensor
//!   data; running out of pool space is an error, not an abort.
//! - [`Tensor<'ctx>`](Tensor) is a `Copy` handle borrowing its context.
//!   Ops are methods on the context the *result* goes into
//!   (`ctx.mul_mat(w, x)?`); inputs may come from any context, and the result
//!   borrows all of them, so no handle outlives the tensors it references.
//!   To keep weights in a struct next to their context, store a
//!   [`TensorId`] and get the handle back with [`Context::tensor`].
//! - Tensor data lives in a [`BackendBuffer`]: [`alloc_ctx_tensors`] gives all
//!   tensors of a context memory of one [`BufferType`];
//!   [`BackendBuffer::from_host_bytes`] + [`Context::place_tensor`] point
//!   tensors into memory you already have (an mmap'ed GGUF file) without
//!   copying, read-only; a [`Gallocr`] places a graph's intermediates in a
//!   reused compute buffer. **A context keeps alive every buffer (and graph
//!   allocator) its tensors point into**, so handles never see freed data.
//! - [`Graph<'ctx>`](Graph) lives in a context and cannot outlive any tensor
//!   added to it. [`CpuBackend`] / [`Backend`] compute it after checking
//!   that every tensor has memory the backend can use, that nothing writes
//!   into read-only memory, and that the backend supports every op.
//! - Buffer types, devices and the log are process-wide ggml objects.
//!
//! All these types stay on the thread that made them (they are not `Send`);
//! ggml parallelises compute internally ([`CpuBackend::set_n_threads`]).
//!
//! # Building graphs
//!
//! Write graph-building helpers as functions with one lifetime for the
//! context and all tensors (closures cannot express it):
//!
//! ```ignore
//! fn ffn<'a>(ctx: &'a Context, x: Tensor<'a>, w: &Weights<'a>) -> Result<Tensor<'a>> {
//!     let gate = ctx.mul_mat(w.gate, x)?;
//!     let up = ctx.mul_mat(w.up, x)?;
//!     ctx.mul_mat(w.down, ctx.swiglu_split(gate, up)?)
//! }
//! ```
//!
//! A decode step: `Context::for_graph(n)` → ops → `Graph::new` +
//! `build_forward_expand` (expand cache writes such as `set_rows` before the
//! attention that reads the cache: nodes run in expansion order) →
//! [`Gallocr::alloc_graph`] → `tensor_set_*` on inputs → `compute` →
//! `tensor_get_*` on outputs → drop the context (which releases the
//! allocator for the next step). A decode loop whose steps have one shape
//! builds the graph once in a [`KeptGraph`] instead, which owns its context
//! and holds the contexts of the weights and caches it reads; each step then
//! only sets the inputs and computes.
//!
//! # What is checked
//!
//! ggml aborts the process on a failed assertion. The wrapper checks
//! beforehand what ggml asserts on when building tensors and graphs
//! (shapes, broadcasting, capacities, bounds of views and data copies) and
//! returns [`GgmlError`] instead. What only data can tell — row indices of
//! `get_rows`/`set_rows` — is still checked by ggml itself (an abort).

mod backend;
mod buffer;
mod context;
mod custom;
mod custom_attention;
mod data;
mod error;
mod gallocr;
mod graph;
mod kept;
mod ops;
pub mod rpc;
mod runtime;
mod sched;
mod tensor;
#[cfg(test)]
mod tests;

pub use backend::{Backend, CpuBackend, Device, DeviceKind, MAX_THREADS};
pub use buffer::{
    alloc_ctx_tensors, cpu_extra_buffer_types, weight_supported, BackendBuffer, BufferType,
    WeightOp,
};
pub use context::{tensor_overhead, Context, TensorId};
pub use custom::rbench_weight_problem;
pub use custom_attention::attention_problem;
pub use data::{
    tensor_get, tensor_get_f32, tensor_get_f32_into, tensor_get_i32, tensor_set, tensor_set_f16,
    tensor_set_f32, tensor_set_i32,
};
pub use error::{GgmlError, Result};
pub use gallocr::Gallocr;
pub use graph::Graph;
pub use kept::KeptGraph;
pub use ops::RopeMode;
pub use runtime::{commit, cpu_features, set_log_verbose, time_us, version};
pub use sched::Scheduler;
pub use tensor::Tensor;

pub mod sys;
pub mod traits;
