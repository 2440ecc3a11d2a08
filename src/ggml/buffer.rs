//! Buffer types and backend buffers: where tensor data lives.

use std::ffi::{c_void, CStr};
use std::fmt;
use std::ptr::NonNull;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use super::backend::Device;
use super::context::Context;
use super::error::{GgmlError, Result};
use super::runtime::ensure_init;
use super::sys;
use super::tensor::Tensor;
use crate::quant::GgmlType;

/// ggml's CPU buffers need their base aligned like this (TENSOR_ALIGNMENT).
const HOST_BUFFER_ALIGN: usize = 32;

/// The buffer type of buffers made over borrowed host memory ("CPU_Mapped"),
/// recorded when the first one is made; such buffers are read-only here.
static MAPPED_BUFT: AtomicUsize = AtomicUsize::new(0);

fn c_string(ptr: *const std::ffi::c_char) -> String {
    if ptr.is_null() {
        return String::new();
    }
    // SAFETY: callers pass names returned by ggml, NUL-terminated strings
    // owned by ggml objects that are alive during the call.
    unsafe { CStr::from_ptr(ptr) }
        .to_string_lossy()
        .into_owned()
}

/// A kind of memory a backend can allocate buffers in ("CPU", "CPU_REPACK",
/// "CUDA0", ...). Buffer types are process-wide objects owned by ggml.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct BufferType {
    raw: NonNull<sys::ggml_backend_buffer_type>,
}

impl BufferType {
    /// The default (device memory) buffer type of `device`.
    pub fn from_device(device: Device) -> Option<BufferType> {
        device.buffer_type()
    }

    /// Plain host memory for the CPU backend.
    pub fn cpu() -> BufferType {
        ensure_init();
        // SAFETY: no arguments; returns a pointer to a static object.
        let raw = unsafe { sys::ggml_backend_cpu_buffer_type() };
        // ggml returns the address of a static, never null.
        BufferType {
            raw: NonNull::new(raw).unwrap_or(NonNull::dangling()),
        }
    }

    /// Wraps a buffer type pointer from ggml.
    ///
    /// # Safety
    /// `raw` must be null or a buffer type that lives for the whole process
    /// (ggml's buffer types are static or owned by the backend registry).
    pub(crate) unsafe fn from_raw(raw: sys::ggml_backend_buffer_type_t) -> Option<BufferType> {
        NonNull::new(raw).map(|raw| BufferType { raw })
    }

    #[inline]
    pub(crate) fn as_ptr(self) -> sys::ggml_backend_buffer_type_t {
        self.raw.as_ptr()
    }

    /// ggml's name for it.
    pub fn name(self) -> String {
        // SAFETY: the buffer type lives for the process; ggml returns its name.
        c_string(unsafe { sys::ggml_backend_buft_name(self.as_ptr()) })
    }

    /// Alignment of tensor data in its buffers.
    pub fn alignment(self) -> usize {
        // SAFETY: the buffer type lives for the process.
        unsafe { sys::ggml_backend_buft_get_alignment(self.as_ptr()) }
    }

    /// Largest single buffer it can allocate.
    pub fn max_size(self) -> usize {
        // SAFETY: the buffer type lives for the process.
        unsafe { sys::ggml_backend_buft_get_max_size(self.as_ptr()) }
    }

    /// Whether its memory is plain host memory the CPU can read directly.
    pub fn is_host(self) -> bool {
        // SAFETY: the buffer type lives for the process.
        unsafe { sys::ggml_backend_buft_is_host(self.as_ptr()) }
    }

    /// Whether it is one of the CPU backend's extra (repacking) types.
    pub fn is_cpu_extra(self) -> bool {
        cpu_extra_raw().contains(&(self.as_ptr() as usize))
    }

    /// The device it belongs to (none for the plain CPU type).
    pub fn device(self) -> Option<Device> {
        // SAFETY: the buffer type lives for the process.
        let dev = unsafe { sys::ggml_backend_buft_get_device(self.as_ptr()) };
        // SAFETY: devices are owned by the backend registry for the process.
        unsafe { Device::from_raw(dev) }
    }
}

impl fmt::Debug for BufferType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BufferType({})", self.name())
    }
}

/// Addresses of the CPU backend's extra buffer types, looked up once.
fn cpu_extra_raw() -> &'static [usize] {
    static EXTRA: OnceLock<Vec<usize>> = OnceLock::new();
    EXTRA.get_or_init(|| {
        ensure_init();
        let mut out = Vec::new();
        // SAFETY: no arguments; the CPU registry is a static object.
        let reg = unsafe { sys::ggml_backend_cpu_reg() };
        if reg.is_null() {
            return out;
        }
        // SAFETY: `reg` is the live CPU registry.
        if unsafe { sys::ggml_backend_reg_dev_count(reg) } == 0 {
            return out;
        }
        // SAFETY: index 0 < the device count checked above.
        let dev = unsafe { sys::ggml_backend_reg_dev_get(reg, 0) };
        // SAFETY: `reg` is live and the name is a NUL-terminated literal.
        let proc_addr = unsafe {
            sys::ggml_backend_reg_get_proc_address(
                reg,
                c"ggml_backend_dev_get_extra_bufts".as_ptr(),
            )
        };
        if proc_addr.is_null() || dev.is_null() {
            return out;
        }
        // SAFETY: ggml documents this entry point of the CPU registry as a
        // `ggml_backend_dev_get_extra_bufts_t`; both are plain C function
        // pointers of the same size.
        let get_extra: unsafe extern "C" fn(
            sys::ggml_backend_dev_t,
        ) -> *mut sys::ggml_backend_buffer_type_t =
            unsafe { std::mem::transmute::<*mut c_void, _>(proc_addr) };
        // SAFETY: `dev` is the CPU device; the function returns a static,
        // null-terminated array of buffer types.
        let mut p = unsafe { get_extra(dev) };
        while !p.is_null() {
            // SAFETY: `p` points into that array, before or at its terminator.
            let buft = unsafe { *p };
            if buft.is_null() {
                break;
            }
            out.push(buft as usize);
            // SAFETY: the terminator has not been reached, so p+1 is in bounds.
            p = unsafe { p.add(1) };
        }
        out
    })
}

/// The CPU backend's extra buffer types on this machine (e.g. "CPU_REPACK",
/// which stores Q4_0/Q4_K/IQ4_NL/... weights interleaved for much faster
/// matmuls). Place a weight in one only if [`weight_supported`] says so.
pub fn cpu_extra_buffer_types() -> Vec<BufferType> {
    cpu_extra_raw()
        .iter()
        // SAFETY: extra buffer types are static objects of the CPU backend.
        .filter_map(|&addr| unsafe {
            BufferType::from_raw(addr as sys::ggml_backend_buffer_type_t)
        })
        .collect()
}

pub(crate) fn is_read_only_buft(buft: sys::ggml_backend_buffer_type_t) -> bool {
    let mapped = MAPPED_BUFT.load(Ordering::Relaxed);
    mapped != 0 && mapped == buft as usize
}

pub(crate) fn is_cpu_extra_buft(buft: sys::ggml_backend_buffer_type_t) -> bool {
    cpu_extra_raw().contains(&(buft as usize))
}

/// The op a weight is used in, for [`weight_supported`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WeightOp {
    /// As the first operand of `mul_mat` (projections, FFN, output head).
    MulMat,
    /// As the table of `get_rows` (token embeddings).
    GetRows,
    /// As the stacked experts of `mul_mat_id`, two experts per token.
    MulMatId,
}

/// Whether `weight` (its type and shape) may be stored in `buft` when used
/// in `op` with F32 activations: asks the buffer type's device whether it
/// can run that op with a weight in such a buffer, the way llama.cpp picks
/// weight buffer types (first supported type of a preference list).
///
/// For the CPU extra types this is what keeps a weight out of e.g.
/// CPU_REPACK when no repacked kernel exists for its type and row count,
/// and keeps token embeddings (a `get_rows` table) out of it entirely.
pub fn weight_supported(buft: BufferType, weight: Tensor<'_>, op: WeightOp) -> bool {
    let dev = match buft.device() {
        Some(dev) => dev,
        None if buft.is_host() => match Device::cpu() {
            Some(dev) => dev,
            None => return false,
        },
        None => return false,
    };
    let Ok(probe_ctx) = Context::for_tensors(4) else {
        return false;
    };
    let ne = weight.ne();
    let Ok(w) = probe_ctx.new_tensor_4d(weight.ty(), ne[0], ne[1], ne[2], ne[3]) else {
        return false;
    };
    // A batch of 512 like llama.cpp's probe: large enough for every kernel path.
    let probe = match op {
        WeightOp::MulMat => probe_ctx
            .new_tensor_4d(GgmlType::F32, ne[0], 512, ne[2], ne[3])
            .and_then(|b| probe_ctx.mul_mat(w, b)),
        WeightOp::GetRows => probe_ctx
            .new_tensor_1d(GgmlType::I32, 512)
            .and_then(|b| probe_ctx.get_rows(w, b)),
        WeightOp::MulMatId => {
            let used = ne[2].min(2);
            probe_ctx
                .new_tensor_3d(GgmlType::F32, ne[0], used, 512)
                .and_then(|b| {
                    let ids = probe_ctx.new_tensor_2d(GgmlType::I32, used, 512)?;
                    probe_ctx.mul_mat_id(w, b, ids)
                })
        }
    };
    let Ok(probe) = probe else {
        return false;
    };
    // SAFETY: a zero-sized allocation returns a dummy buffer of this type
    // without memory (ggml_backend_buft_alloc_buffer special-cases size 0).
    let dummy = unsafe { sys::ggml_backend_buft_alloc_buffer(buft.as_ptr(), 0) };
    if dummy.is_null() {
        return false;
    }
    // SAFETY: `w` is our own probe tensor (no data, never computed); setting
    // its buffer only lets the device see which buffer type it would be in,
    // and it is reset before the dummy buffer is freed.
    unsafe {
        (*w.as_ptr()).buffer = dummy;
        let supported = sys::ggml_backend_dev_supports_op(dev.as_ptr(), probe.as_ptr());
        (*w.as_ptr()).buffer = std::ptr::null_mut();
        sys::ggml_backend_buffer_free(dummy);
        supported
    }
}

/// Owner of borrowed host memory a buffer points into.
struct HostBytes {
    _owner: Box<dyn AsRef<[u8]>>,
    /// Address and length of the owner's bytes.
    start: usize,
    len: usize,
}

/// A live ggml buffer; freed when the last [`BackendBuffer`] handle and the
/// last context pinning it are gone.
pub(crate) struct BufferInner {
    raw: NonNull<sys::ggml_backend_buffer>,
    /// Declared after `raw`: dropped after the buffer is freed in `Drop`.
    host: Option<HostBytes>,
}

impl Drop for BufferInner {
    fn drop(&mut self) {
        // SAFETY: the buffer came from ggml and is freed once, when no
        // context whose tensors point into it is left (they pin us). For
        // borrowed host memory ggml frees only its own bookkeeping.
        unsafe { sys::ggml_backend_buffer_free(self.raw.as_ptr()) }
    }
}

/// A backend buffer holding tensor data.
///
/// Contexts whose tensors point into a buffer keep it alive, so dropping
/// this handle early is harmless. All ggml objects stay on the thread that
/// made them (none of these types is `Send`).
pub struct BackendBuffer {
    inner: Rc<BufferInner>,
}

impl BackendBuffer {
    fn from_inner(inner: BufferInner) -> BackendBuffer {
        BackendBuffer {
            inner: Rc::new(inner),
        }
    }

    /// A read-only CPU buffer over memory the caller already has (an mmap'ed
    /// GGUF file, a `Vec<u8>`, ...), without copying. `owner` is kept alive
    /// as long as the buffer. Place tensors in it with
    /// [`Context::place_tensor`] at byte offsets into `owner`'s bytes.
    ///
    /// ggml needs the buffer start 32-byte aligned; if the bytes do not start
    /// aligned, the buffer begins at the next aligned address and offsets
    /// before it are refused.
    pub fn from_host_bytes<B: AsRef<[u8]> + 'static>(owner: B) -> Result<BackendBuffer> {
        ensure_init();
        // Box first: the bytes must not move after we take their address.
        let owner: Box<dyn AsRef<[u8]>> = Box::new(owner);
        let bytes = (*owner).as_ref();
        let (start, len) = (bytes.as_ptr() as usize, bytes.len());
        let pad = start.next_multiple_of(HOST_BUFFER_ALIGN) - start;
        if pad >= len {
            return Err(GgmlError::InvalidArgument(format!(
                "{len} host bytes hold no {HOST_BUFFER_ALIGN}-byte aligned region"
            )));
        }
        let base = bytes[pad..].as_ptr().cast_mut().cast::<c_void>();
        // SAFETY: `base` is 32-byte aligned and `len - pad` bytes from it
        // belong to `owner`, which the buffer keeps alive (and never moves,
        // being boxed). ggml only reads through it: every write path
        // (tensor_set, clear, graph nodes) is refused for this buffer type.
        let raw = unsafe { sys::ggml_backend_cpu_buffer_from_ptr(base, len - pad) };
        let raw = NonNull::new(raw).ok_or_else(|| GgmlError::AllocationFailed {
            buft: "CPU_Mapped".into(),
            size: len - pad,
        })?;
        // SAFETY: `raw` is a live buffer; ggml returns its (static) type.
        let buft = unsafe { sys::ggml_backend_buffer_get_type(raw.as_ptr()) };
        MAPPED_BUFT.store(buft as usize, Ordering::Relaxed);
        let buffer = BackendBuffer::from_inner(BufferInner {
            raw,
            host: Some(HostBytes {
                _owner: owner,
                start,
                len,
            }),
        });
        buffer.set_usage_weights();
        Ok(buffer)
    }

    #[inline]
    pub(crate) fn as_ptr(&self) -> sys::ggml_backend_buffer_t {
        self.inner.raw.as_ptr()
    }

    /// Size in bytes.
    pub fn size(&self) -> usize {
        // SAFETY: the buffer is alive.
        unsafe { sys::ggml_backend_buffer_get_size(self.as_ptr()) }
    }

    /// ggml's name for it (its buffer type's name).
    pub fn name(&self) -> String {
        // SAFETY: the buffer is alive; ggml returns a name it owns.
        c_string(unsafe { sys::ggml_backend_buffer_name(self.as_ptr()) })
    }

    /// Its buffer type.
    pub fn buffer_type(&self) -> Option<BufferType> {
        // SAFETY: the buffer is alive; buffer types live for the process.
        unsafe { BufferType::from_raw(sys::ggml_backend_buffer_get_type(self.as_ptr())) }
    }

    /// Whether the CPU can read its memory directly.
    pub fn is_host(&self) -> bool {
        // SAFETY: the buffer is alive.
        unsafe { sys::ggml_backend_buffer_is_host(self.as_ptr()) }
    }

    /// Whether it wraps borrowed, read-only host memory.
    pub fn is_read_only(&self) -> bool {
        self.inner.host.is_some()
    }

    /// Sets every byte to `value` (e.g. zeroing a KV cache).
    pub fn clear(&self, value: u8) -> Result<()> {
        if self.is_read_only() {
            return Err(GgmlError::ReadOnly { name: self.name() });
        }
        // SAFETY: the buffer is alive and owns its memory; nothing else runs
        // on it concurrently (ggml objects stay on one thread).
        unsafe { sys::ggml_backend_buffer_clear(self.as_ptr(), value) };
        Ok(())
    }

    /// Marks it as holding weights (lets multi-backend schedulers prefer
    /// running ops where the weights are).
    pub fn set_usage_weights(&self) {
        // SAFETY: the buffer is alive; ggml sets one field.
        unsafe {
            sys::ggml_backend_buffer_set_usage(
                self.as_ptr(),
                sys::GGML_BACKEND_BUFFER_USAGE_WEIGHTS,
            )
        }
    }
}

impl fmt::Debug for BackendBuffer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BackendBuffer")
            .field("name", &self.name())
            .field("size", &self.size())
            .field("read_only", &self.is_read_only())
            .finish()
    }
}

/// Alignment the element type's loads need (its widest scalar field).
fn natural_alignment(ty: GgmlType) -> usize {
    match ty {
        GgmlType::F64 | GgmlType::I64 => 8,
        GgmlType::F32 | GgmlType::I32 => 4,
        GgmlType::I8 => 1,
        // f16/bf16/i16 elements, and blocks starting with an f16 scale.
        t if t.type_size().is_multiple_of(2) => 2,
        _ => 1,
    }
}

impl Context {
    /// Points the data of plain tensor `t` (of this context) at `offset`
    /// bytes into `buffer` — for a buffer from
    /// [`BackendBuffer::from_host_bytes`], an offset into the owner's bytes
    /// (e.g. a GGUF tensor's absolute file offset). Checks that the tensor's
    /// bytes lie inside the buffer and are aligned for its type. This
    /// context keeps `buffer` alive from now on.
    pub fn place_tensor(&self, t: Tensor<'_>, buffer: &BackendBuffer, offset: usize) -> Result<()> {
        if !self.owns(t) {
            return Err(GgmlError::ForeignTensor { name: t.name() });
        }
        if !t.view_src_ptr().is_null() {
            return Err(GgmlError::InvalidArgument(format!(
                "tensor '{}' is a view; views take the memory of the tensor they view",
                t.name()
            )));
        }
        if t.has_data() || !t.buffer_ptr().is_null() {
            return Err(GgmlError::AlreadyAllocated { name: t.name() });
        }
        // SAFETY: buffer and tensor are alive; ggml reads the tensor's shape.
        let alloc_size =
            unsafe { sys::ggml_backend_buffer_get_alloc_size(buffer.as_ptr(), t.as_ptr()) };
        // SAFETY: the buffer is alive.
        let base_ptr = unsafe { sys::ggml_backend_buffer_get_base(buffer.as_ptr()) }.cast::<u8>();
        let base = base_ptr as usize;
        let (region_start, region_len) = match &buffer.inner.host {
            Some(host) => (host.start, host.len),
            None => (base, buffer.size()),
        };
        let out_of_bounds = || GgmlError::OutOfBounds {
            name: t.name(),
            offset,
            len: alloc_size,
            size: region_len,
        };
        let addr = region_start.checked_add(offset).ok_or_else(out_of_bounds)?;
        let end = addr.checked_add(alloc_size).ok_or_else(out_of_bounds)?;
        if addr < base || end > region_start + region_len {
            return Err(out_of_bounds());
        }
        let align = natural_alignment(t.ty());
        if !addr.is_multiple_of(align) {
            return Err(GgmlError::Misaligned { addr, align });
        }
        // SAFETY: `addr` lies in the buffer's memory (checked above), so the
        // offset from `base` stays inside the same allocation; the tensor has
        // no memory yet and is not a view (what ggml_backend_tensor_alloc
        // asserts), and `addr + alloc_size` is within the buffer.
        let status = unsafe {
            sys::ggml_backend_tensor_alloc(
                buffer.as_ptr(),
                t.as_ptr(),
                base_ptr.wrapping_add(addr - base).cast(),
            )
        };
        if status != sys::GGML_STATUS_SUCCESS {
            return Err(GgmlError::Backend(format!(
                "could not place tensor '{}' (ggml status {status})",
                t.name()
            )));
        }
        self.pin(buffer.inner.clone());
        Ok(())
    }
}

/// Allocates one buffer of type `buft` for every tensor of `ctx` that has
/// no memory yet (views get the memory of what they view). `ctx` keeps the
/// buffer alive; the returned handle is for inspecting or clearing it.
///
/// Fails with [`GgmlError::NothingToAllocate`] when no tensor needs memory.
pub fn alloc_ctx_tensors(ctx: &Context, buft: BufferType) -> Result<BackendBuffer> {
    let mut needing = 0usize;
    for raw in ctx.raw_tensors() {
        // SAFETY: `raw` is a tensor of the live context `ctx`.
        let Some(t) = (unsafe { Tensor::from_raw(raw) }) else {
            continue;
        };
        let view_src = t.view_src_ptr();
        // ggml would initialise such views through a pointer into another
        // context, which may be gone by now.
        if !view_src.is_null() && !ctx.owns_ptr(view_src) {
            return Err(GgmlError::InvalidArgument(format!(
                "tensor '{}' views a tensor of another context; allocate before making such views",
                t.name()
            )));
        }
        if !t.has_data() && view_src.is_null() {
            needing += 1;
        }
    }
    if needing == 0 {
        return Err(GgmlError::NothingToAllocate);
    }
    // SAFETY: the context is alive and no_alloc; ggml sums the sizes.
    let size =
        unsafe { sys::ggml_backend_alloc_ctx_tensors_from_buft_size(ctx.as_ptr(), buft.as_ptr()) };
    let _rpc = super::rpc::call_guard();
    // SAFETY: the context is alive and no_alloc (ggml asserts that), and
    // every view in it views a tensor of the same context (checked above).
    let raw = unsafe { sys::ggml_backend_alloc_ctx_tensors_from_buft(ctx.as_ptr(), buft.as_ptr()) };
    let raw = NonNull::new(raw).ok_or_else(|| GgmlError::AllocationFailed {
        buft: buft.name(),
        size,
    })?;
    let buffer = BackendBuffer::from_inner(BufferInner { raw, host: None });
    ctx.pin(buffer.inner.clone());
    Ok(buffer)
}
