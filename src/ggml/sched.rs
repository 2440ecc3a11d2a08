//! `Scheduler`: ggml's backend scheduler, which splits a graph over several
//! backends (GPUs first, the CPU last), places each node on the backend
//! holding its weights or able to run it, copies tensors between them and
//! owns one compute buffer per backend.

use std::fmt;
use std::ptr::NonNull;
use std::rc::Rc;

use super::backend::{check_graph, status_result, Backend, MAX_THREADS};
use super::error::{GgmlError, Result};
use super::gallocr::{check_own_tensors, ensure_unpinned};
use super::graph::Graph;
use super::runtime::ensure_init;
use super::sys;

/// The scheduler and the backends it points at; freed when the
/// [`Scheduler`] and every graph context allocated by it are gone.
struct SchedInner {
    raw: NonNull<sys::ggml_backend_sched>,
    /// Dropped after the scheduler (field drop runs after `Drop::drop`).
    backends: Vec<Backend>,
}

impl Drop for SchedInner {
    fn drop(&mut self) {
        // SAFETY: the scheduler came from ggml_backend_sched_new and is freed
        // once, before the backends it references (fields drop afterwards)
        // and after every context whose tensors point into its buffers.
        unsafe { sys::ggml_backend_sched_free(self.raw.as_ptr()) }
    }
}

/// Runs graphs over several backends. Like [`Gallocr`](super::Gallocr), a
/// graph context it allocated keeps it alive and blocks a new allocation
/// until that context is dropped ([`GgmlError::GallocrInUse`]).
pub struct Scheduler {
    inner: Rc<SchedInner>,
}

impl Scheduler {
    /// A scheduler over `backends`, highest priority first; the last must be
    /// the CPU backend (the fallback for ops no other backend runs).
    /// `op_offload` lets a GPU run large-batch matmuls of host weights (as
    /// llama.cpp does by default).
    pub fn new(backends: Vec<Backend>, graph_size: usize, op_offload: bool) -> Result<Scheduler> {
        ensure_init();
        match backends.last() {
            Some(b) if b.is_cpu() => {}
            _ => {
                return Err(GgmlError::InvalidArgument(
                    "the scheduler's last backend must be the CPU".into(),
                ))
            }
        }
        if graph_size == 0 {
            return Err(GgmlError::InvalidArgument(
                "graph size must be at least 1".into(),
            ));
        }
        let mut raw_backends: Vec<sys::ggml_backend_t> =
            backends.iter().map(|b| b.as_ptr()).collect();
        // SAFETY: every backend is alive and is kept alive by the returned
        // object (it owns them and frees the scheduler first); null buffer
        // types mean each backend's default; the count matches the array.
        let raw = unsafe {
            sys::ggml_backend_sched_new(
                raw_backends.as_mut_ptr(),
                std::ptr::null_mut(),
                raw_backends.len() as std::ffi::c_int,
                graph_size,
                false,
                op_offload,
            )
        };
        let raw = NonNull::new(raw)
            .ok_or_else(|| GgmlError::Backend("could not create the backend scheduler".into()))?;
        Ok(Scheduler {
            inner: Rc::new(SchedInner { raw, backends }),
        })
    }

    /// The backends, in priority order (the CPU last).
    pub fn backends(&self) -> &[Backend] {
        &self.inner.backends
    }

    /// Sets the CPU backend's thread count (`1..=MAX_THREADS`).
    pub fn set_cpu_threads(&mut self, n_threads: usize) -> Result<()> {
        if n_threads == 0 || n_threads > MAX_THREADS {
            return Err(GgmlError::InvalidArgument(format!(
                "thread count {n_threads} is outside 1..={MAX_THREADS}"
            )));
        }
        let inner = Rc::get_mut(&mut self.inner).ok_or(GgmlError::GallocrInUse)?;
        for b in inner.backends.iter_mut().filter(|b| b.is_cpu()) {
            b.set_n_threads(n_threads)?;
        }
        Ok(())
    }

    /// Sizes every backend's compute buffer for `graph` (the largest one a
    /// run will see).
    pub fn reserve(&mut self, graph: &Graph<'_>) -> Result<()> {
        ensure_unpinned(&self.inner)?;
        let _rpc = super::rpc::call_guard();
        // SAFETY: scheduler and graph are alive; no live tensor points into
        // the buffers this may reallocate (no context pins the scheduler).
        let ok =
            unsafe { sys::ggml_backend_sched_reserve(self.inner.raw.as_ptr(), graph.as_ptr()) };
        if !ok {
            return Err(GgmlError::Gallocr(format!(
                "could not allocate compute buffers for {} nodes on {}",
                graph.n_nodes(),
                self.names()
            )));
        }
        Ok(())
    }

    /// Assigns every node of `graph` to a backend and gives the tensors
    /// without memory a place in that backend's compute buffer. Such
    /// tensors must belong to the graph's context, which then keeps the
    /// scheduler alive and in use.
    pub fn alloc_graph(&mut self, graph: &Graph<'_>) -> Result<()> {
        ensure_unpinned(&self.inner)?;
        let ctx = check_own_tensors(graph)?;
        let _rpc = super::rpc::call_guard();
        // SAFETY: the scheduler is alive and no context pins it, so no live
        // tensor points into the buffers reset and reused here.
        unsafe { sys::ggml_backend_sched_reset(self.inner.raw.as_ptr()) };
        // SAFETY: scheduler and graph are alive; every tensor placed belongs
        // to `ctx`, which pins the scheduler below.
        let ok =
            unsafe { sys::ggml_backend_sched_alloc_graph(self.inner.raw.as_ptr(), graph.as_ptr()) };
        if !ok {
            return Err(GgmlError::Gallocr(format!(
                "could not allocate a graph of {} nodes on {}",
                graph.n_nodes(),
                self.names()
            )));
        }
        ctx.pin(self.inner.clone());
        Ok(())
    }

    /// Runs a graph made ready by [`alloc_graph`](Self::alloc_graph).
    pub fn compute(&mut self, graph: &Graph<'_>) -> Result<()> {
        check_graph(None, graph)?;
        let _rpc = super::rpc::call_guard();
        // SAFETY: the graph was allocated by this scheduler (checked: every
        // member has memory) and its context pins the scheduler; no node
        // writes read-only memory.
        let status = unsafe {
            sys::ggml_backend_sched_graph_compute(self.inner.raw.as_ptr(), graph.as_ptr())
        };
        status_result(status)
    }

    /// Bytes of the compute buffer of backend `i`.
    pub fn buffer_size(&self, i: usize) -> usize {
        match self.inner.backends.get(i) {
            // SAFETY: scheduler and backend are alive; the backend is one of its own.
            Some(b) => unsafe {
                sys::ggml_backend_sched_get_buffer_size(self.inner.raw.as_ptr(), b.as_ptr())
            },
            None => 0,
        }
    }

    /// Pieces the last allocated graph was split into.
    pub fn n_splits(&self) -> usize {
        // SAFETY: the scheduler is alive.
        let n = unsafe { sys::ggml_backend_sched_get_n_splits(self.inner.raw.as_ptr()) };
        n.max(0) as usize
    }

    fn names(&self) -> String {
        let names: Vec<String> = self.inner.backends.iter().map(Backend::name).collect();
        names.join(", ")
    }
}

impl fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scheduler")
            .field("backends", &self.names())
            .finish()
    }
}
