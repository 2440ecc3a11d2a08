//! Devices and backends: what runs a graph.

use std::ffi::{c_int, c_void, CStr};
use std::fmt;
use std::ptr::NonNull;

use super::buffer::{is_read_only_buft, BufferType};
use super::error::{GgmlError, Result};
use super::graph::Graph;
use super::runtime::ensure_init;
use super::sys;

/// ggml's upper bound on compute threads (GGML_MAX_N_THREADS).
pub const MAX_THREADS: usize = 512;

fn c_string(ptr: *const std::ffi::c_char) -> String {
    if ptr.is_null() {
        return String::new();
    }
    // SAFETY: callers pass strings returned by ggml for live objects.
    unsafe { CStr::from_ptr(ptr) }
        .to_string_lossy()
        .into_owned()
}

/// What kind of device a [`Device`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceKind {
    Cpu,
    Gpu,
    IntegratedGpu,
    Accelerator,
    Meta,
    Other(u32),
}

/// A compute device known to ggml's backend registry (the CPU, and GPUs
/// when the crate is built with `cuda`, `metal` or `vulkan`). Devices are
/// owned by the registry for the whole process.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Device {
    raw: NonNull<sys::ggml_backend_device>,
}

impl Device {
    /// # Safety
    /// `raw` must be null or a device of ggml's registry (they are never freed).
    pub(crate) unsafe fn from_raw(raw: sys::ggml_backend_dev_t) -> Option<Device> {
        NonNull::new(raw).map(|raw| Device { raw })
    }

    #[inline]
    pub(crate) fn as_ptr(self) -> sys::ggml_backend_dev_t {
        self.raw.as_ptr()
    }

    /// Every registered device, in registry order.
    pub fn all() -> Vec<Device> {
        ensure_init();
        // SAFETY: no arguments; reads the static registry.
        let n = unsafe { sys::ggml_backend_dev_count() };
        (0..n)
            // SAFETY: `i` < the device count; devices live for the process.
            .filter_map(|i| unsafe { Device::from_raw(sys::ggml_backend_dev_get(i)) })
            .collect()
    }

    /// The CPU device, if the CPU backend is registered.
    pub fn cpu() -> Option<Device> {
        ensure_init();
        // SAFETY: reads the static registry; devices live for the process.
        unsafe {
            Device::from_raw(sys::ggml_backend_dev_by_type(
                sys::GGML_BACKEND_DEVICE_TYPE_CPU,
            ))
        }
    }

    /// The devices layers can be offloaded to: GPUs, or where there are none,
    /// integrated GPUs (as llama.cpp picks them), in registry order.
    pub fn offload_targets() -> Vec<Device> {
        let all = Device::all();
        let gpus: Vec<Device> = all
            .iter()
            .copied()
            .filter(|d| d.kind() == DeviceKind::Gpu)
            .collect();
        if !gpus.is_empty() {
            return gpus;
        }
        all.into_iter()
            .filter(|d| d.kind() == DeviceKind::IntegratedGpu)
            .collect()
    }

    /// The registered device called `name` (case-insensitive), if any.
    pub fn by_name(name: &str) -> Option<Device> {
        Device::all()
            .into_iter()
            .find(|d| d.name().eq_ignore_ascii_case(name))
    }

    /// The backend family's name ("CPU", "Vulkan", "CUDA", "Metal", "RPC"…).
    pub fn backend_name(self) -> String {
        // SAFETY: the device is alive; its registry lives for the process.
        let reg = unsafe { sys::ggml_backend_dev_backend_reg(self.as_ptr()) };
        if reg.is_null() {
            return self.name();
        }
        // SAFETY: `reg` is a live registry; ggml returns a name it owns.
        c_string(unsafe { sys::ggml_backend_reg_name(reg) })
    }

    /// Short name ("CPU", "CUDA0", ...).
    pub fn name(self) -> String {
        // SAFETY: the device is alive for the process.
        c_string(unsafe { sys::ggml_backend_dev_name(self.as_ptr()) })
    }

    /// Human-readable description (CPU model, GPU name).
    pub fn description(self) -> String {
        // SAFETY: the device is alive for the process.
        c_string(unsafe { sys::ggml_backend_dev_description(self.as_ptr()) })
    }

    /// `(free, total)` memory in bytes, as the device reports it.
    pub fn memory(self) -> (usize, usize) {
        let (mut free, mut total) = (0usize, 0usize);
        let _rpc = super::rpc::call_guard();
        // SAFETY: the device is alive; ggml writes the two out-parameters.
        unsafe { sys::ggml_backend_dev_memory(self.as_ptr(), &mut free, &mut total) };
        (free, total)
    }

    /// Its kind.
    pub fn kind(self) -> DeviceKind {
        // SAFETY: the device is alive for the process.
        match unsafe { sys::ggml_backend_dev_type(self.as_ptr()) } {
            sys::GGML_BACKEND_DEVICE_TYPE_CPU => DeviceKind::Cpu,
            sys::GGML_BACKEND_DEVICE_TYPE_GPU => DeviceKind::Gpu,
            sys::GGML_BACKEND_DEVICE_TYPE_IGPU => DeviceKind::IntegratedGpu,
            sys::GGML_BACKEND_DEVICE_TYPE_ACCEL => DeviceKind::Accelerator,
            sys::GGML_BACKEND_DEVICE_TYPE_META => DeviceKind::Meta,
            other => DeviceKind::Other(other),
        }
    }

    /// Its default buffer type (device memory).
    pub fn buffer_type(self) -> Option<BufferType> {
        let _rpc = super::rpc::call_guard();
        // SAFETY: the device is alive; its buffer types live for the process.
        unsafe { BufferType::from_raw(sys::ggml_backend_dev_buffer_type(self.as_ptr())) }
    }

    /// Starts a backend (a stream) on this device.
    pub fn init_backend(self) -> Result<Backend> {
        let _rpc = super::rpc::call_guard();
        // SAFETY: the device is alive; null parameters mean defaults.
        let raw = unsafe { sys::ggml_backend_dev_init(self.as_ptr(), std::ptr::null()) };
        let raw = NonNull::new(raw).ok_or_else(|| {
            GgmlError::Backend(format!(
                "could not start a backend on device {}",
                self.name()
            ))
        })?;
        Ok(Backend { raw })
    }
}

impl fmt::Debug for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (free, total) = self.memory();
        f.debug_struct("Device")
            .field("name", &self.name())
            .field("description", &self.description())
            .field("kind", &self.kind())
            .field("memory_free", &free)
            .field("memory_total", &total)
            .finish()
    }
}

/// A backend instance on some device; runs graphs. Freed on drop.
pub struct Backend {
    raw: NonNull<sys::ggml_backend>,
}

impl Backend {
    #[inline]
    pub(crate) fn as_ptr(&self) -> sys::ggml_backend_t {
        self.raw.as_ptr()
    }

    /// The backend's name ("CPU", "CUDA0", ...).
    pub fn name(&self) -> String {
        // SAFETY: the backend is alive; ggml returns a name it owns.
        c_string(unsafe { sys::ggml_backend_name(self.as_ptr()) })
    }

    /// Its device.
    pub fn device(&self) -> Option<Device> {
        // SAFETY: the backend is alive; devices live for the process.
        unsafe { Device::from_raw(sys::ggml_backend_get_device(self.as_ptr())) }
    }

    /// Whether it is the CPU backend.
    pub fn is_cpu(&self) -> bool {
        // SAFETY: the backend is alive; ggml compares its GUID.
        unsafe { sys::ggml_backend_is_cpu(self.as_ptr()) }
    }

    /// Its default buffer type.
    pub fn default_buffer_type(&self) -> Option<BufferType> {
        // SAFETY: the backend is alive; buffer types live for the process.
        unsafe { BufferType::from_raw(sys::ggml_backend_get_default_buffer_type(self.as_ptr())) }
    }

    /// Whether it can compute on tensors in buffers of type `buft`.
    pub fn supports_buffer_type(&self, buft: BufferType) -> bool {
        // SAFETY: backend and buffer type are alive.
        unsafe { sys::ggml_backend_supports_buft(self.as_ptr(), buft.as_ptr()) }
    }

    /// Sets the number of CPU threads, for backends that have them
    /// (`1..=MAX_THREADS`).
    pub fn set_n_threads(&mut self, n_threads: usize) -> Result<()> {
        if n_threads == 0 || n_threads > MAX_THREADS {
            return Err(GgmlError::InvalidArgument(format!(
                "thread count {n_threads} is outside 1..={MAX_THREADS}"
            )));
        }
        let dev = self
            .device()
            .ok_or_else(|| GgmlError::Backend("backend has no device".into()))?;
        // SAFETY: the device is alive; its registry lives for the process.
        let reg = unsafe { sys::ggml_backend_dev_backend_reg(dev.as_ptr()) };
        if reg.is_null() {
            return Err(GgmlError::Unsupported(format!(
                "{} has no registry",
                self.name()
            )));
        }
        // SAFETY: `reg` is live; the name is a NUL-terminated literal.
        let proc_addr = unsafe {
            sys::ggml_backend_reg_get_proc_address(reg, c"ggml_backend_set_n_threads".as_ptr())
        };
        if proc_addr.is_null() {
            return Err(GgmlError::Unsupported(format!(
                "{} has no thread setting",
                self.name()
            )));
        }
        // SAFETY: registries document this entry point as a
        // `ggml_backend_set_n_threads_t`; both are plain C function pointers.
        let set: unsafe extern "C" fn(sys::ggml_backend_t, std::ffi::c_int) =
            unsafe { std::mem::transmute::<*mut c_void, _>(proc_addr) };
        // SAFETY: the backend belongs to that registry and is alive; the
        // count is within ggml's limit (so it fits a C int).
        unsafe { set(self.as_ptr(), n_threads as std::ffi::c_int) };
        Ok(())
    }

    /// Runs the graph to completion.
    ///
    /// First checks what would otherwise crash or abort inside ggml: every
    /// tensor has memory, in a buffer this backend can use; no node writes
    /// into read-only host memory; the backend has a kernel for every node
    /// (types, and layouts such as repacked weights).
    pub fn compute(&mut self, graph: &Graph<'_>) -> Result<()> {
        check_graph(Some(self), graph)?;
        self.compute_checked(graph)
    }

    /// Computes a graph that already passed `check_graph` for this kind of
    /// backend, and whose members' memory cannot have changed since.
    pub(super) fn compute_checked(&mut self, graph: &Graph<'_>) -> Result<()> {
        // SAFETY: the backend and the graph are alive; every tensor of the
        // graph (and so every pointer ggml follows) is alive for the graph's
        // lifetime, has memory in a buffer the backend supports, and passed
        // the backend's own support check (the caller's duty).
        let status = unsafe { sys::ggml_backend_graph_compute(self.as_ptr(), graph.as_ptr()) };
        status_result(status)
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        // SAFETY: the backend came from ggml and is freed once.
        unsafe { sys::ggml_backend_free(self.as_ptr()) }
    }
}

impl fmt::Debug for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Backend({})", self.name())
    }
}

pub(super) fn is_view_op(op: sys::ggml_op) -> bool {
    matches!(
        op,
        sys::GGML_OP_NONE
            | sys::GGML_OP_VIEW
            | sys::GGML_OP_RESHAPE
            | sys::GGML_OP_PERMUTE
            | sys::GGML_OP_TRANSPOSE
    )
}

/// A compute status as a result.
pub(super) fn status_result(status: std::ffi::c_int) -> Result<()> {
    if status == sys::GGML_STATUS_SUCCESS {
        return Ok(());
    }
    // SAFETY: returns a static string for any status value.
    let what = c_string(unsafe { sys::ggml_status_to_string(status) });
    Err(GgmlError::Compute(format!("{what} (status {status})")))
}

/// What would crash or abort inside ggml: a member without memory, a node
/// (not a view) writing read-only host memory, and, given the one
/// `backend` to run everything, a buffer or node it cannot handle (the
/// scheduler makes those choices itself).
pub(super) fn check_graph(backend: Option<&Backend>, graph: &Graph<'_>) -> Result<()> {
    // (buffer address, read-only) of the few distinct buffers seen.
    let mut buffers: Vec<(usize, bool)> = Vec::new();
    for t in graph.members() {
        let buffer = t.data_buffer();
        if !t.has_data() || buffer.is_null() {
            return Err(GgmlError::NotAllocated { name: t.name() });
        }
        let read_only = match buffers.iter().find(|(addr, _)| *addr == buffer as usize) {
            Some(&(_, read_only)) => read_only,
            None => {
                // SAFETY: the buffer holds data of a live tensor, so it is
                // alive (contexts pin the buffers their tensors use).
                let buft = unsafe { sys::ggml_backend_buffer_get_type(buffer) };
                let cannot_use = |b: &&Backend| {
                    // SAFETY: backend and buffer type are alive.
                    !unsafe { sys::ggml_backend_supports_buft(b.as_ptr(), buft) }
                };
                if let Some(backend) = backend.filter(cannot_use) {
                    // SAFETY: the buffer is alive.
                    let buf_name = c_string(unsafe { sys::ggml_backend_buffer_name(buffer) });
                    return Err(GgmlError::Unsupported(format!(
                        "tensor '{}' is in a {buf_name} buffer, which backend {} cannot use",
                        t.name(),
                        backend.name()
                    )));
                }
                let read_only = is_read_only_buft(buft);
                buffers.push((buffer as usize, read_only));
                read_only
            }
        };
        if is_view_op(t.op()) {
            continue;
        }
        if read_only {
            return Err(GgmlError::ReadOnly { name: t.name() });
        }
        let cannot_compute = |b: &&Backend| {
            // SAFETY: backend and tensor (and its sources) are alive.
            !unsafe { sys::ggml_backend_supports_op(b.as_ptr(), t.as_ptr()) }
        };
        if let Some(backend) = backend.filter(cannot_compute) {
            let srcs: Vec<String> = (0..4)
                .filter_map(|i| t.src(i))
                .map(|s| format!("{} {:?}", s.ty(), s.ne()))
                .collect();
            return Err(GgmlError::Unsupported(format!(
                "backend {} cannot compute {} '{}' from [{}]",
                backend.name(),
                t.op_name(),
                t.name(),
                srcs.join(", ")
            )));
        }
    }
    Ok(())
}

/// ggml's compute threads for one thread count, kept from one compute to
/// the next. Without one, ggml starts and joins its worker threads inside
/// every compute: for a decode step of a small model that is a
/// measurable part of the step.
struct ThreadPool {
    raw: NonNull<sys::ggml_threadpool>,
}

impl ThreadPool {
    fn new(n_threads: usize) -> Result<ThreadPool> {
        // SAFETY: fills a plain parameter struct (no pointers kept).
        let mut params = unsafe { sys::ggml_threadpool_params_default(n_threads as c_int) };
        params.poll = IDLE_POLL;
        // SAFETY: the parameters are initialised; ggml starts n_threads - 1
        // workers, which stay until ggml_threadpool_free.
        let raw = unsafe { sys::ggml_threadpool_new(&mut params) };
        NonNull::new(raw)
            .map(|raw| ThreadPool { raw })
            .ok_or_else(|| GgmlError::Backend("could not start ggml's compute threads".into()))
    }
}

/// How long idle workers spin before they sleep (ggml's polling level).
/// None: decode steps timed with 50 (ggml's default, which spins for up to
/// a few hundred ms after each compute) were no faster, and spinning
/// workers take a core from whatever else runs (a server's request threads,
/// parallel tests).
const IDLE_POLL: u32 = 0;

impl Drop for ThreadPool {
    fn drop(&mut self) {
        // SAFETY: made by ggml_threadpool_new, freed once; no backend uses it
        // any more (`CpuBackend` drops its backend first or has switched it
        // to another pool), so no compute is running on it.
        unsafe { sys::ggml_threadpool_free(self.raw.as_ptr()) }
    }
}

/// The CPU backend.
pub struct CpuBackend {
    /// Declared before `pool`: freed first, as it points to the pool.
    backend: Backend,
    /// `None` with one thread (ggml then starts no thread at all).
    pool: Option<ThreadPool>,
    n_threads: usize,
}

impl CpuBackend {
    /// A CPU backend using as many threads as the machine offers.
    pub fn new() -> Result<CpuBackend> {
        ensure_init();
        // SAFETY: no arguments; returns a new backend or null.
        let raw = unsafe { sys::ggml_backend_cpu_init() };
        let raw = NonNull::new(raw)
            .ok_or_else(|| GgmlError::Backend("could not start the CPU backend".into()))?;
        let mut cpu = CpuBackend {
            backend: Backend { raw },
            pool: None,
            n_threads: 0,
        };
        let n = std::thread::available_parallelism().map_or(1, |n| n.get());
        cpu.set_n_threads(n.min(MAX_THREADS))?;
        Ok(cpu)
    }

    /// Sets the number of compute threads (`1..=MAX_THREADS`).
    pub fn set_n_threads(&mut self, n_threads: usize) -> Result<()> {
        if n_threads == 0 || n_threads > MAX_THREADS {
            return Err(GgmlError::InvalidArgument(format!(
                "thread count {n_threads} is outside 1..={MAX_THREADS}"
            )));
        }
        if n_threads == self.n_threads {
            return Ok(());
        }
        let pool = if n_threads > 1 {
            Some(ThreadPool::new(n_threads)?)
        } else {
            None
        };
        let pool_ptr = pool
            .as_ref()
            .map_or(std::ptr::null_mut(), |p| p.raw.as_ptr());
        // SAFETY: a live CPU backend (ggml asserts that); the count fits a C
        // int; the pool (or none) has exactly that many threads and outlives
        // its use: it is kept in `self` until replaced here, after the
        // backend has been switched away from it.
        unsafe {
            sys::ggml_backend_cpu_set_n_threads(self.backend.as_ptr(), n_threads as c_int);
            sys::ggml_backend_cpu_set_threadpool(self.backend.as_ptr(), pool_ptr);
        }
        self.pool = pool;
        self.n_threads = n_threads;
        Ok(())
    }

    /// The number of compute threads.
    pub fn n_threads(&self) -> usize {
        self.n_threads
    }

    /// Runs the graph (see [`Backend::compute`] for the checks made first).
    pub fn compute(&mut self, graph: &Graph<'_>) -> Result<()> {
        self.backend.compute(graph)
    }

    /// See [`Backend::compute_checked`].
    pub(super) fn compute_checked(&mut self, graph: &Graph<'_>) -> Result<()> {
        self.backend.compute_checked(graph)
    }

    /// The generic backend underneath.
    pub fn backend(&self) -> &Backend {
        &self.backend
    }
}

impl fmt::Debug for CpuBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CpuBackend({} threads)", self.n_threads)
    }
}
