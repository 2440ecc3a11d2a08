//! `Tensor<'ctx>`: a copyable handle on a tensor that lives in a [`Context`].

use std::ffi::CStr;
use std::fmt;
use std::marker::PhantomData;
use std::ptr::NonNull;

use super::context::Context;
use super::sys;
use crate::quant::GgmlType;

/// A handle on a ggml tensor (its metadata lives in a [`Context`]; its data,
/// if any, in a backend buffer). `Copy`, pointer-sized, and bound to the
/// borrow of its context so that it cannot outlive it.
///
/// Compare handles with [`Tensor::same_as`]. (No `PartialEq`: its `ne`
/// method would shadow [`Tensor::ne`] on `&Tensor` receivers.)
#[derive(Clone, Copy)]
pub struct Tensor<'ctx> {
    raw: NonNull<sys::ggml_tensor>,
    _ctx: PhantomData<&'ctx Context>,
}

impl<'ctx> Tensor<'ctx> {
    /// Wraps a pointer returned by ggml; `None` for null.
    ///
    /// # Safety
    /// `raw` must be null or point to a tensor whose metadata stays valid for
    /// `'ctx`, and every tensor it references (sources, view source) must
    /// stay valid for `'ctx` too.
    #[inline]
    pub(crate) unsafe fn from_raw(raw: *mut sys::ggml_tensor) -> Option<Self> {
        NonNull::new(raw).map(|raw| Tensor {
            raw,
            _ctx: PhantomData,
        })
    }

    /// The raw pointer, for the rest of the wrapper.
    #[inline]
    pub(crate) fn as_ptr(self) -> *mut sys::ggml_tensor {
        self.raw.as_ptr()
    }

    /// Copies the C struct out (a few hundred bytes; no reference into ggml's
    /// memory is kept).
    #[inline]
    fn read(self) -> sys::ggml_tensor {
        // SAFETY: the handle's lifetime guarantees the tensor's metadata is
        // alive; reading it by value creates no lasting reference, and all
        // ggml objects are used from one thread (handles are !Send).
        unsafe { self.raw.as_ptr().read() }
    }

    /// Whether both handles refer to the same tensor.
    #[inline]
    pub fn same_as(self, other: Tensor<'_>) -> bool {
        self.raw == other.raw
    }

    /// Elements per dimension, innermost first.
    #[inline]
    pub fn ne(self) -> [i64; 4] {
        // SAFETY: see `read`; only the `ne` field is copied.
        unsafe { (*self.raw.as_ptr()).ne }
    }

    /// Byte strides per dimension (`nb[0]` is the block size in bytes).
    #[inline]
    pub fn nb(self) -> [usize; 4] {
        // SAFETY: see `read`; only the `nb` field is copied.
        unsafe { (*self.raw.as_ptr()).nb }
    }

    #[inline]
    pub(crate) fn raw_type(self) -> sys::ggml_type {
        // SAFETY: see `read`; only the `type_` field is copied.
        unsafe { (*self.raw.as_ptr()).type_ }
    }

    /// The element type.
    #[inline]
    pub fn ty(self) -> GgmlType {
        let raw = self.raw_type();
        // Tensors are only created through this wrapper from a `GgmlType`, and
        // ggml derives result types from its inputs, so every id is known.
        debug_assert!(
            GgmlType::from_id(raw).is_some(),
            "unknown ggml type id {raw}"
        );
        GgmlType::from_id(raw).unwrap_or(GgmlType::F32)
    }

    /// Number of elements (product of `ne`).
    #[inline]
    pub fn n_elements(self) -> usize {
        // SAFETY: the tensor is alive (see `read`); ggml only reads `ne`.
        let n = unsafe { sys::ggml_nelements(self.as_ptr()) };
        usize::try_from(n).unwrap_or(0)
    }

    /// Bytes spanned by the tensor's data (its extent, for views with strides).
    #[inline]
    pub fn n_bytes(self) -> usize {
        // SAFETY: the tensor is alive; ggml only reads `type`, `ne` and `nb`.
        unsafe { sys::ggml_nbytes(self.as_ptr()) }
    }

    /// Bytes per block of the element type (per element for plain types).
    #[inline]
    pub fn element_size(self) -> usize {
        // SAFETY: the tensor is alive; ggml only reads `type`.
        unsafe { sys::ggml_element_size(self.as_ptr()) }
    }

    /// Number of dimensions, ignoring trailing dimensions of size 1 (at least 1).
    #[inline]
    pub fn n_dims(self) -> usize {
        // SAFETY: the tensor is alive; ggml only reads `ne`.
        let n = unsafe { sys::ggml_n_dims(self.as_ptr()) };
        usize::try_from(n).unwrap_or(1)
    }

    /// Whether the elements are laid out densely in the natural order.
    #[inline]
    pub fn is_contiguous(self) -> bool {
        // SAFETY: the tensor is alive; ggml only reads `type`, `ne` and `nb`.
        unsafe { sys::ggml_is_contiguous(self.as_ptr()) }
    }

    /// The tensor's name (at most 63 bytes).
    pub fn name(self) -> String {
        let name = self.read().name;
        let bytes: Vec<u8> = name
            .iter()
            .take_while(|&&c| c != 0)
            // `c_char` is i8 on x86-64 and u8 on aarch64.
            .map(|&c| u8::from_ne_bytes(c.to_ne_bytes()))
            .collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// Sets the name; longer names are cut to 63 bytes at a character
    /// boundary, and at the first NUL if there is one.
    pub fn set_name(self, name: &str) {
        let name = name.split('\0').next().unwrap_or("");
        let mut len = name.len().min(63);
        while !name.is_char_boundary(len) {
            len -= 1;
        }
        let mut buf = [0 as std::ffi::c_char; 64];
        for (dst, &src) in buf.iter_mut().zip(&name.as_bytes()[..len]) {
            *dst = src as std::ffi::c_char;
        }
        // SAFETY: the tensor is alive and no reference into it is held;
        // writing the whole fixed-size, NUL-terminated name array is what
        // ggml_set_name does.
        unsafe { (*self.raw.as_ptr()).name = buf };
    }

    /// `set_name` that returns the handle, for chaining.
    #[inline]
    pub fn named(self, name: &str) -> Self {
        self.set_name(name);
        self
    }

    /// Marks the tensor as a graph input: the graph allocator gives it its
    /// own memory so that data written before compute is not overwritten.
    #[inline]
    pub fn set_input(self) {
        // SAFETY: the tensor is alive; ggml only sets a flag bit.
        unsafe { sys::ggml_set_input(self.as_ptr()) }
    }

    /// Marks the tensor as a graph output: its memory is never reused by
    /// later nodes, so it can be read after compute.
    #[inline]
    pub fn set_output(self) {
        // SAFETY: the tensor is alive; ggml only sets a flag bit.
        unsafe { sys::ggml_set_output(self.as_ptr()) }
    }

    /// The operation that produces this tensor ("NONE" for plain tensors;
    /// the unary/GLU kind for those ops).
    pub fn op_name(self) -> &'static str {
        // SAFETY: the tensor is alive; ggml returns a pointer into its static
        // tables of op names.
        let ptr = unsafe { sys::ggml_op_desc(self.as_ptr()) };
        if ptr.is_null() {
            return "?";
        }
        // SAFETY: non-null pointers from ggml_op_desc are static C strings.
        unsafe { CStr::from_ptr(ptr) }.to_str().unwrap_or("?")
    }

    /// Whether the tensor has memory (a buffer, or a view of one).
    #[inline]
    pub fn has_data(self) -> bool {
        !self.read().data.is_null()
    }

    #[inline]
    pub(crate) fn op(self) -> sys::ggml_op {
        // SAFETY: see `read`; only the `op` field is copied.
        unsafe { (*self.raw.as_ptr()).op }
    }

    #[inline]
    pub(crate) fn view_src_ptr(self) -> *mut sys::ggml_tensor {
        // SAFETY: see `read`; only the `view_src` field is copied.
        unsafe { (*self.raw.as_ptr()).view_src }
    }

    #[inline]
    pub(crate) fn buffer_ptr(self) -> *mut sys::ggml_backend_buffer {
        // SAFETY: see `read`; only the `buffer` field is copied.
        unsafe { (*self.raw.as_ptr()).buffer }
    }

    #[inline]
    pub(crate) fn extra_ptr(self) -> *mut std::ffi::c_void {
        // SAFETY: see `read`; only the `extra` field is copied.
        unsafe { (*self.raw.as_ptr()).extra }
    }

    /// The buffer holding the tensor's data: its own, or for a view whose
    /// buffer was not set yet, the viewed tensor's. Null if unallocated.
    pub(crate) fn data_buffer(self) -> *mut sys::ggml_backend_buffer {
        let own = self.buffer_ptr();
        let view_src = self.view_src_ptr();
        if !own.is_null() || view_src.is_null() {
            return own;
        }
        // SAFETY: the viewed tensor is a source of this live tensor, so it is
        // alive too; only its `buffer` field is copied.
        unsafe { (*view_src).buffer }
    }

    /// Whether the tensor's data is in host memory the CPU reads directly
    /// (false for device memory, CPU repacking buffers, and no memory yet).
    pub fn in_host_memory(self) -> bool {
        let buffer = self.data_buffer();
        // SAFETY: a non-null buffer holding a live tensor's data is alive.
        !buffer.is_null() && unsafe { sys::ggml_backend_buffer_is_host(buffer) }
    }

    /// The `i`-th source tensor (`i < 10`), with this handle's lifetime.
    pub(crate) fn src(self, i: usize) -> Option<Tensor<'ctx>> {
        let src = self.read().src;
        let raw = src.get(i).copied().unwrap_or(std::ptr::null_mut());
        // SAFETY: sources of a live tensor live at least as long as it.
        unsafe { Tensor::from_raw(raw) }
    }

    #[inline]
    pub(crate) fn view_offs(self) -> usize {
        // SAFETY: see `read`; only the `view_offs` field is copied.
        unsafe { (*self.raw.as_ptr()).view_offs }
    }
}

impl fmt::Debug for Tensor<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tensor")
            .field("name", &self.name())
            .field("ty", &self.ty())
            .field("ne", &self.ne())
            .field("op", &self.op_name())
            .finish()
    }
}
