//! `Gallocr`: ggml's graph allocator, which sizes one compute buffer for a
//! graph and places all intermediate tensors in it, reusing memory.

use std::fmt;
use std::ptr::NonNull;
use std::rc::Rc;

use super::buffer::BufferType;
use super::context::Context;
use super::error::{GgmlError, Result};
use super::graph::Graph;
use super::runtime::ensure_init;
use super::sys;

/// The allocator and its compute buffer; freed when the [`Gallocr`] and
/// every context holding tensors placed by it are gone.
struct GallocrInner {
    raw: NonNull<sys::ggml_gallocr>,
}

impl Drop for GallocrInner {
    fn drop(&mut self) {
        // SAFETY: the allocator came from ggml_gallocr_new and is freed once,
        // after every context whose tensors point into its buffer (they pin it).
        unsafe { sys::ggml_gallocr_free(self.raw.as_ptr()) }
    }
}

/// A graph allocator over one buffer type.
///
/// Typical use: `reserve` once with the largest graph (sizes the buffer),
/// then per step build a graph in a fresh [`Context`](super::Context),
/// `alloc_graph` it, set inputs, compute, read outputs, drop the context.
///
/// `alloc_graph` points the graph's tensors into the allocator's buffer,
/// which a later `reserve`/`alloc_graph` may reallocate. So the graph's
/// context keeps the allocator alive, and the allocator refuses to
/// `reserve` or `alloc_graph` again while such a context is alive
/// ([`GgmlError::GallocrInUse`]).
pub struct Gallocr {
    inner: Rc<GallocrInner>,
}

impl Gallocr {
    /// An allocator for buffers of type `buft` (use [`BufferType::cpu`] for
    /// the CPU backend).
    pub fn new(buft: BufferType) -> Result<Gallocr> {
        ensure_init();
        // SAFETY: the buffer type lives for the process.
        let raw = unsafe { sys::ggml_gallocr_new(buft.as_ptr()) };
        let raw = NonNull::new(raw)
            .ok_or_else(|| GgmlError::Gallocr("could not create the allocator".into()))?;
        Ok(Gallocr {
            inner: Rc::new(GallocrInner { raw }),
        })
    }

    /// Sizes (and allocates) the buffer for `graph` without placing its
    /// tensors; later graphs no larger than this allocate without growing it.
    pub fn reserve(&mut self, graph: &Graph<'_>) -> Result<()> {
        ensure_unpinned(&self.inner)?;
        // SAFETY: the allocator and the graph (with all its tensors) are
        // alive; no live tensor points into the buffer this may reallocate
        // (no context pins the allocator).
        let ok = unsafe { sys::ggml_gallocr_reserve(self.inner.raw.as_ptr(), graph.as_ptr()) };
        if !ok {
            return Err(GgmlError::Gallocr(format!(
                "could not allocate a compute buffer for {} nodes",
                graph.n_nodes()
            )));
        }
        Ok(())
    }

    /// Gives every tensor of `graph` that has no memory yet a place in the
    /// buffer (growing it if needed). Such tensors must belong to the graph's
    /// own context, which from now on keeps this allocator alive and in use.
    pub fn alloc_graph(&mut self, graph: &Graph<'_>) -> Result<()> {
        ensure_unpinned(&self.inner)?;
        let ctx = check_own_tensors(graph)?;
        // SAFETY: the allocator and the graph (with all its tensors) are
        // alive; no live tensor points into the buffer this may reallocate
        // (no context pins the allocator), and every tensor it will point
        // into the buffer belongs to `ctx`, which pins the allocator below.
        let ok = unsafe { sys::ggml_gallocr_alloc_graph(self.inner.raw.as_ptr(), graph.as_ptr()) };
        if !ok {
            return Err(GgmlError::Gallocr(format!(
                "could not allocate a graph of {} nodes",
                graph.n_nodes()
            )));
        }
        ctx.pin(self.inner.clone());
        Ok(())
    }

    /// Size of the compute buffer in bytes (0 before the first reserve/alloc).
    pub fn buffer_size(&self) -> usize {
        // SAFETY: the allocator is alive and has exactly one buffer (id 0).
        unsafe { sys::ggml_gallocr_get_buffer_size(self.inner.raw.as_ptr(), 0) }
    }

    /// Whether a live graph context still uses this allocator's buffer.
    pub fn in_use(&self) -> bool {
        Rc::strong_count(&self.inner) > 1
    }
}

/// [`GgmlError::GallocrInUse`] while a graph context still pins `inner`
/// (its tensors point into buffers a new allocation may move).
pub(super) fn ensure_unpinned<T>(inner: &Rc<T>) -> Result<()> {
    if Rc::strong_count(inner) > 1 {
        return Err(GgmlError::GallocrInUse);
    }
    Ok(())
}

/// The graph's context, once every member still without memory is found
/// to belong to it (that context then pins what allocates them).
pub(super) fn check_own_tensors<'g>(graph: &'g Graph<'_>) -> Result<&'g Context> {
    let ctx = graph.context();
    for t in graph.members() {
        if !t.has_data() && !ctx.owns(t) {
            return Err(GgmlError::ForeignTensor { name: t.name() });
        }
    }
    Ok(ctx)
}

impl fmt::Debug for Gallocr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Gallocr")
            .field("buffer_size", &self.buffer_size())
            .field("in_use", &self.in_use())
            .finish()
    }
}
