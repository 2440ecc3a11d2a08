//! `Context`: owns a `ggml_context` (tensor metadata and graphs) and keeps
//! alive every buffer its tensors' data points into.

use std::any::Any;
use std::cell::RefCell;
use std::ffi::CString;
use std::fmt;
use std::ptr::NonNull;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::error::{GgmlError, Result};
use super::runtime::ensure_init;
use super::sys;
use super::tensor::Tensor;
use crate::quant::GgmlType;

static NEXT_CONTEXT_ID: AtomicU64 = AtomicU64::new(1);

/// One cache line of the context's memory pool; the pool is a `Vec` of these
/// so that it is allocated by Rust (failing gracefully) and suitably aligned.
#[repr(C, align(64))]
struct PoolChunk([u8; 64]);

/// A ggml context: a fixed-size pool holding tensor metadata and graphs.
///
/// Contexts made here never hold tensor *data* (`no_alloc`); data lives in
/// backend buffers (see [`alloc_ctx_tensors`](super::alloc_ctx_tensors),
/// [`Context::place_tensor`], [`Gallocr`](super::Gallocr)). The context keeps
/// those buffers alive for as long as it lives, so a [`Tensor`] handle — which
/// borrows its context — never points at freed data.
///
/// Every tensor and graph takes a fixed amount of the pool; running out is
/// reported as [`GgmlError::ContextFull`] rather than aborting.
pub struct Context {
    raw: NonNull<sys::ggml_context>,
    id: u64,
    pool_start: usize,
    pool_end: usize,
    /// Buffers and graph allocators that tensors of this context point into.
    pins: RefCell<Vec<Rc<dyn Any>>>,
    /// Declared last: freed after `ggml_free` (in `Drop`) is done with it.
    _pool: Vec<PoolChunk>,
}

/// A detached, thread-safe reference to a plain tensor (one made with
/// `new_tensor_*`) of a particular context, for storing weights and caches
/// in structs next to their [`Context`]. Turn it back into a [`Tensor`] with
/// [`Context::tensor`], which checks that it belongs to that context.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct TensorId {
    ctx_id: u64,
    addr: usize,
}

impl Context {
    /// A metadata-only context with room for `n_tensors` tensors.
    pub fn for_tensors(n_tensors: usize) -> Result<Context> {
        let mem = tensor_overhead().checked_mul(n_tensors).ok_or_else(|| {
            GgmlError::InvalidArgument(format!("{n_tensors} tensors is too many"))
        })?;
        Context::with_pool_size(mem)
    }

    /// A context for building one graph of up to `max_nodes` nodes: room for
    /// `max_nodes` tensors plus the graph itself.
    pub fn for_graph(max_nodes: usize) -> Result<Context> {
        let too_many =
            || GgmlError::InvalidArgument(format!("{max_nodes} graph nodes is too many"));
        let tensors = tensor_overhead()
            .checked_mul(max_nodes)
            .ok_or_else(too_many)?;
        let mem = tensors
            .checked_add(graph_overhead(max_nodes)?)
            .ok_or_else(too_many)?;
        Context::with_pool_size(mem)
    }

    fn with_pool_size(mem_size: usize) -> Result<Context> {
        ensure_init();
        let chunk = std::mem::size_of::<PoolChunk>();
        let n_chunks = mem_size.div_ceil(chunk).max(1);
        let mut pool: Vec<PoolChunk> = Vec::new();
        pool.try_reserve_exact(n_chunks)
            .map_err(|_| GgmlError::ContextInit { mem_size })?;
        let pool_len = pool.capacity() * chunk;
        let params = sys::ggml_init_params {
            mem_size: pool_len,
            mem_buffer: pool.as_mut_ptr().cast(),
            no_alloc: true,
        };
        // SAFETY: `mem_buffer` points to `pool_len` bytes of spare Vec capacity,
        // 64-byte aligned (ggml needs 16), which Rust never reads or moves and
        // frees only after ggml_free (field order). ggml_init only allocates
        // the small context struct itself.
        let raw = unsafe { sys::ggml_init(params) };
        let raw = NonNull::new(raw).ok_or(GgmlError::ContextInit { mem_size })?;
        let pool_start = pool.as_ptr() as usize;
        Ok(Context {
            raw,
            id: NEXT_CONTEXT_ID.fetch_add(1, Ordering::Relaxed),
            pool_start,
            pool_end: pool_start + pool_len,
            pins: RefCell::new(Vec::new()),
            _pool: pool,
        })
    }

    #[inline]
    pub(crate) fn as_ptr(&self) -> *mut sys::ggml_context {
        self.raw.as_ptr()
    }

    /// Size of the context's pool in bytes.
    pub fn mem_size(&self) -> usize {
        // SAFETY: the context is alive; ggml reads one field.
        unsafe { sys::ggml_get_mem_size(self.as_ptr()) }
    }

    /// Bytes of the pool used so far.
    pub fn used_mem(&self) -> usize {
        // SAFETY: the context is alive; ggml reads its object list's tail.
        unsafe { sys::ggml_used_mem(self.as_ptr()) }
    }

    /// Fails unless `needed` more bytes fit in the pool (ggml would abort).
    pub(crate) fn ensure_room(&self, what: &'static str, needed: usize) -> Result<()> {
        let available = self.mem_size().saturating_sub(self.used_mem());
        if needed > available {
            return Err(GgmlError::ContextFull {
                what,
                needed,
                available,
            });
        }
        Ok(())
    }

    #[inline]
    pub(crate) fn ensure_tensor_room(&self) -> Result<()> {
        self.ensure_room("tensor", tensor_overhead())
    }

    /// Whether the tensor's metadata lives in this context's pool.
    #[inline]
    pub(crate) fn owns_ptr(&self, t: *const sys::ggml_tensor) -> bool {
        let addr = t as usize;
        addr >= self.pool_start && addr < self.pool_end
    }

    /// Whether `t` was created in this context.
    #[inline]
    pub fn owns(&self, t: Tensor<'_>) -> bool {
        self.owns_ptr(t.as_ptr())
    }

    /// Keeps `owner` (a buffer or graph allocator) alive as long as this
    /// context, because some of its tensors point into it.
    pub(crate) fn pin(&self, owner: Rc<dyn Any>) {
        let mut pins = self.pins.borrow_mut();
        let addr = Rc::as_ptr(&owner) as *const () as usize;
        if !pins
            .iter()
            .any(|p| Rc::as_ptr(p) as *const () as usize == addr)
        {
            pins.push(owner);
        }
    }

    /// Raw pointers to all tensors of this context, in creation order.
    pub(crate) fn raw_tensors(&self) -> Vec<*mut sys::ggml_tensor> {
        let mut out = Vec::new();
        // SAFETY: the context is alive; ggml walks its own object list.
        let mut t = unsafe { sys::ggml_get_first_tensor(self.as_ptr()) };
        while !t.is_null() {
            out.push(t);
            // SAFETY: `t` is a tensor of this context returned by ggml.
            t = unsafe { sys::ggml_get_next_tensor(self.as_ptr(), t) };
        }
        out
    }

    /// Wraps a tensor pointer that ggml just returned for this context.
    ///
    /// # Safety
    /// `raw` must be null or a tensor ggml just created in this context, and
    /// every tensor it references must live at least as long as the
    /// returned handle's lifetime `'a`.
    #[inline]
    pub(crate) unsafe fn wrap<'a>(
        &'a self,
        op: &'static str,
        raw: *mut sys::ggml_tensor,
    ) -> Result<Tensor<'a>> {
        // SAFETY: the tensor's metadata lives in our pool for as long as
        // `self` is borrowed; the caller vouches for what it references.
        unsafe { Tensor::from_raw(raw) }.ok_or_else(|| GgmlError::InvalidOp {
            op,
            detail: "ggml returned no tensor".into(),
        })
    }

    fn new_tensor(&self, ty: GgmlType, ne: &[i64]) -> Result<Tensor<'_>> {
        check_new_shape("new_tensor", ty, ne)?;
        self.ensure_tensor_room()?;
        let n_dims = ne.len() as i32;
        // SAFETY: the context is alive, the type id is one ggml defines, the
        // shape passed every check ggml_new_tensor asserts on, and there is
        // room in the pool; `ne` holds `n_dims` values.
        let raw = unsafe { sys::ggml_new_tensor(self.as_ptr(), ty.id(), n_dims, ne.as_ptr()) };
        // SAFETY: a tensor just made in this context, referencing nothing.
        unsafe { self.wrap("new_tensor", raw) }
    }

    /// A new 1-d tensor (no data until allocated).
    pub fn new_tensor_1d(&self, ty: GgmlType, ne0: i64) -> Result<Tensor<'_>> {
        self.new_tensor(ty, &[ne0])
    }

    /// A new 2-d tensor: `ne0` elements per row, `ne1` rows.
    pub fn new_tensor_2d(&self, ty: GgmlType, ne0: i64, ne1: i64) -> Result<Tensor<'_>> {
        self.new_tensor(ty, &[ne0, ne1])
    }

    /// A new 3-d tensor.
    pub fn new_tensor_3d(&self, ty: GgmlType, ne0: i64, ne1: i64, ne2: i64) -> Result<Tensor<'_>> {
        self.new_tensor(ty, &[ne0, ne1, ne2])
    }

    /// A new 4-d tensor.
    pub fn new_tensor_4d(
        &self,
        ty: GgmlType,
        ne0: i64,
        ne1: i64,
        ne2: i64,
        ne3: i64,
    ) -> Result<Tensor<'_>> {
        self.new_tensor(ty, &[ne0, ne1, ne2, ne3])
    }

    /// A detached id for a plain tensor of this context (one made with
    /// `new_tensor_*`; results of ops are refused because they reference
    /// tensors of other contexts whose lifetimes an id cannot carry).
    pub fn tensor_id(&self, t: Tensor<'_>) -> Result<TensorId> {
        if !self.owns(t) {
            return Err(GgmlError::ForeignTensor { name: t.name() });
        }
        if t.op() != sys::GGML_OP_NONE || !t.view_src_ptr().is_null() {
            return Err(GgmlError::InvalidArgument(format!(
                "tensor '{}' is the result of {}, only plain tensors get ids",
                t.name(),
                t.op_name()
            )));
        }
        Ok(TensorId {
            ctx_id: self.id,
            addr: t.as_ptr() as usize,
        })
    }

    /// The tensor behind `id`, if `id` came from this context.
    pub fn tensor(&self, id: TensorId) -> Result<Tensor<'_>> {
        if id.ctx_id != self.id {
            return Err(GgmlError::ForeignTensor {
                name: format!("<id of context {}>", id.ctx_id),
            });
        }
        // SAFETY: ids are only made by `tensor_id` of this very context (the
        // id number is unique per process), for plain tensors that reference
        // no other tensor; the context never frees tensors, so the address is
        // still that tensor for as long as `self` is borrowed.
        unsafe { Tensor::from_raw(id.addr as *mut sys::ggml_tensor) }
            .ok_or_else(|| GgmlError::InvalidArgument("null tensor id".into()))
    }

    /// Finds a plain tensor (one made with `new_tensor_*`) by name.
    pub fn tensor_by_name(&self, name: &str) -> Option<Tensor<'_>> {
        let c_name = CString::new(name).ok()?;
        // SAFETY: the context is alive; ggml compares names of its own
        // tensors with the NUL-terminated `c_name`.
        let raw = unsafe { sys::ggml_get_tensor(self.as_ptr(), c_name.as_ptr()) };
        // SAFETY: a tensor of this context; filtered to plain tensors below,
        // which reference no other tensor.
        let t = unsafe { Tensor::from_raw(raw) }?;
        (t.op() == sys::GGML_OP_NONE && t.view_src_ptr().is_null()).then_some(t)
    }
}

impl Drop for Context {
    fn drop(&mut self) {
        // SAFETY: the context came from ggml_init and is freed once; ggml_free
        // does not free the pool (we passed it in) nor touch any buffer.
        unsafe { sys::ggml_free(self.as_ptr()) }
    }
}

impl fmt::Debug for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Context")
            .field("id", &self.id)
            .field("mem_size", &self.mem_size())
            .field("used_mem", &self.used_mem())
            .finish()
    }
}

/// Pool bytes one tensor's metadata takes.
#[inline]
pub fn tensor_overhead() -> usize {
    // SAFETY: no arguments; returns a constant.
    unsafe { sys::ggml_tensor_overhead() }
}

/// Pool bytes a graph of `size` nodes takes.
pub(crate) fn graph_overhead(size: usize) -> Result<usize> {
    // ggml's own size arithmetic would overflow silently beyond this.
    if size > (i32::MAX as usize) / 2 {
        return Err(GgmlError::InvalidArgument(format!(
            "graph size {size} is too large"
        )));
    }
    // SAFETY: pure size arithmetic over `size`, bounded above.
    Ok(unsafe { sys::ggml_graph_overhead_custom(size, false) })
}

/// Checks a shape for a new tensor (or a view/reshape) against what ggml
/// asserts on: 1-4 dims, no negative sizes, whole blocks per row, element
/// count within `i64`, byte size within `usize`.
pub(crate) fn check_new_shape(op: &'static str, ty: GgmlType, ne: &[i64]) -> Result<()> {
    let fail = |detail: String| Err(GgmlError::InvalidOp { op, detail });
    if ne.is_empty() || ne.len() > 4 {
        return fail(format!("{} dimensions (1 to 4 allowed)", ne.len()));
    }
    if ne.iter().any(|&n| n < 0) {
        return fail(format!("negative size in {ne:?}"));
    }
    let block = ty.block_size() as i64;
    if ne[0] % block != 0 {
        return fail(format!(
            "row of {} {ty} elements is not a whole number of {block}-element blocks",
            ne[0]
        ));
    }
    let mut count = ne[0];
    for &n in &ne[1..] {
        if n > 1 {
            if i64::MAX / n <= count {
                return fail(format!("{ne:?} has too many elements"));
            }
            count *= n;
        }
    }
    let count = if ne.contains(&0) { 0 } else { count };
    match ty.bytes_for(count as u64).map(usize::try_from) {
        Some(Ok(_)) => Ok(()),
        _ => fail(format!("{ne:?} of {ty} is too large")),
    }
}
