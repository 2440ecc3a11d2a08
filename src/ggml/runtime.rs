//! Process-wide ggml state: one-time initialisation, the log sink, CPU
//! feature probes, version and clock.

use std::ffi::{c_char, c_int, c_void, CStr};
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Once;

use super::sys;

static INIT: Once = Once::new();
static VERBOSE: AtomicBool = AtomicBool::new(false);
/// Level of the last non-continuation message, so that `CONT` pieces are
/// shown or hidden together with the line they continue.
static LAST_LEVEL: AtomicU32 = AtomicU32::new(sys::GGML_LOG_LEVEL_NONE);

/// Installs our log sink and initialises the CPU backend's tables, once.
/// Every constructor of the wrapper calls this first.
pub(crate) fn ensure_init() {
    INIT.call_once(|| {
        // SAFETY: `log_sink` is an `extern "C"` function that lives for the
        // whole process and ignores its user-data pointer, so null is fine.
        unsafe { sys::ggml_log_set(Some(log_sink), std::ptr::null_mut()) };
        // SAFETY: both take no arguments; ggml_cpu_init is idempotent and
        // fills the fp16 lookup tables the CPU kernels need.
        unsafe {
            sys::ggml_time_init();
            sys::ggml_cpu_init();
        }
    });
}

/// Shows all of ggml's log (`true`) or only its warnings and errors
/// (`false`, the default). Everything goes to stderr.
pub fn set_log_verbose(verbose: bool) {
    ensure_init();
    VERBOSE.store(verbose, Ordering::Relaxed);
}

/// Whether a message at `level` is shown; `last` is the level of the line a
/// continuation (`CONT`) belongs to and is updated by non-continuations.
fn should_show(level: sys::ggml_log_level, last: &AtomicU32, verbose: bool) -> bool {
    let effective = if level == sys::GGML_LOG_LEVEL_CONT {
        last.load(Ordering::Relaxed)
    } else {
        last.store(level, Ordering::Relaxed);
        level
    };
    verbose || effective == sys::GGML_LOG_LEVEL_WARN || effective == sys::GGML_LOG_LEVEL_ERROR
}

unsafe extern "C" fn log_sink(level: sys::ggml_log_level, text: *const c_char, _user: *mut c_void) {
    if text.is_null() || !should_show(level, &LAST_LEVEL, VERBOSE.load(Ordering::Relaxed)) {
        return;
    }
    // SAFETY: ggml passes a NUL-terminated string that stays valid for the
    // duration of this call; we copy it out before returning.
    let bytes = unsafe { CStr::from_ptr(text) }.to_bytes();
    // A failed write to stderr has nowhere better to go; never panic here.
    let _ = std::io::stderr().lock().write_all(bytes);
}

type Probe = unsafe extern "C" fn() -> c_int;

/// Names of the SIMD/ISA features ggml's CPU backend was built with and
/// finds on this machine ("avx2", "fma", "neon", ...).
pub fn cpu_features() -> Vec<&'static str> {
    ensure_init();
    let probes: [(&'static str, Probe); 25] = [
        ("sse3", sys::ggml_cpu_has_sse3),
        ("ssse3", sys::ggml_cpu_has_ssse3),
        ("avx", sys::ggml_cpu_has_avx),
        ("avx_vnni", sys::ggml_cpu_has_avx_vnni),
        ("avx2", sys::ggml_cpu_has_avx2),
        ("bmi2", sys::ggml_cpu_has_bmi2),
        ("f16c", sys::ggml_cpu_has_f16c),
        ("fma", sys::ggml_cpu_has_fma),
        ("avx512", sys::ggml_cpu_has_avx512),
        ("avx512_vbmi", sys::ggml_cpu_has_avx512_vbmi),
        ("avx512_vnni", sys::ggml_cpu_has_avx512_vnni),
        ("avx512_bf16", sys::ggml_cpu_has_avx512_bf16),
        ("amx_int8", sys::ggml_cpu_has_amx_int8),
        ("neon", sys::ggml_cpu_has_neon),
        ("arm_fma", sys::ggml_cpu_has_arm_fma),
        ("fp16_va", sys::ggml_cpu_has_fp16_va),
        ("dotprod", sys::ggml_cpu_has_dotprod),
        ("matmul_int8", sys::ggml_cpu_has_matmul_int8),
        ("sve", sys::ggml_cpu_has_sve),
        ("sme", sys::ggml_cpu_has_sme),
        ("riscv_v", sys::ggml_cpu_has_riscv_v),
        ("vsx", sys::ggml_cpu_has_vsx),
        ("vxe", sys::ggml_cpu_has_vxe),
        ("wasm_simd", sys::ggml_cpu_has_wasm_simd),
        ("llamafile", sys::ggml_cpu_has_llamafile),
    ];
    probes
        .into_iter()
        // SAFETY: the probes take no arguments and only read static CPU facts.
        .filter(|(_, probe)| unsafe { probe() } != 0)
        .map(|(name, _)| name)
        .collect()
}

fn static_str(ptr: *const c_char) -> &'static str {
    if ptr.is_null() {
        return "unknown";
    }
    // SAFETY: the callers pass ggml's version/commit strings, which are
    // NUL-terminated string literals with static storage.
    unsafe { CStr::from_ptr(ptr) }.to_str().unwrap_or("unknown")
}

/// ggml's version string ("0.26.0").
pub fn version() -> &'static str {
    // SAFETY: no arguments; returns a pointer to a static string literal.
    static_str(unsafe { sys::ggml_version() })
}

/// The ggml commit the library was built from, as ggml reports it.
pub fn commit() -> &'static str {
    // SAFETY: no arguments; returns a pointer to a static string literal.
    static_str(unsafe { sys::ggml_commit() })
}

/// ggml's monotonic clock in microseconds.
pub fn time_us() -> i64 {
    ensure_init();
    // SAFETY: no arguments; the clock was initialised by ensure_init.
    unsafe { sys::ggml_time_us() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continuation_lines_follow_the_line_they_continue() {
        let last = AtomicU32::new(sys::GGML_LOG_LEVEL_NONE);
        let quiet = |level| should_show(level, &last, false);
        assert!(!quiet(sys::GGML_LOG_LEVEL_CONT));
        assert!(!quiet(sys::GGML_LOG_LEVEL_INFO));
        assert!(!quiet(sys::GGML_LOG_LEVEL_CONT));
        assert!(quiet(sys::GGML_LOG_LEVEL_WARN));
        assert!(quiet(sys::GGML_LOG_LEVEL_CONT));
        assert!(!quiet(sys::GGML_LOG_LEVEL_DEBUG));
        assert!(!quiet(sys::GGML_LOG_LEVEL_CONT));
        assert!(quiet(sys::GGML_LOG_LEVEL_ERROR));
        assert!(should_show(sys::GGML_LOG_LEVEL_DEBUG, &last, true));
    }

    #[test]
    fn version_and_clock_work() {
        assert!(version().starts_with("0."), "version {}", version());
        let t0 = time_us();
        std::thread::sleep(std::time::Duration::from_millis(2));
        assert!(time_us() - t0 >= 1000);
    }

    #[test]
    fn cpu_features_match_the_compile_target() {
        let features = cpu_features();
        if cfg!(target_feature = "avx2") {
            assert!(features.contains(&"avx2"), "{features:?}");
        }
        if cfg!(target_arch = "aarch64") {
            assert!(features.contains(&"neon"), "{features:?}");
        }
        assert!(!features.contains(&"wasm_simd"));
    }
}
