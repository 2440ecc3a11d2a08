//! Facts about the machine a benchmark ran on, recorded beside its results,
//! and a memory read-bandwidth test: token generation reads every weight once
//! per token, so this bandwidth is its ceiling.

use serde::{Deserialize, Serialize};
use std::time::Instant;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Hardware {
    pub cpu_model: Option<String>,
    pub logical_cores: usize,
    /// Distinct (package, core) pairs in /proc/cpuinfo; `None` where it does not say.
    pub physical_cores: Option<usize>,
    /// SIMD/ISA features ggml's CPU backend uses here.
    pub cpu_features: Vec<String>,
    pub ram_total_bytes: Option<u64>,
    pub ram_available_bytes: Option<u64>,
    /// Size of the last-level CPU cache (sysfs); a model smaller than this
    /// can generate from cache, faster than memory bandwidth allows.
    #[serde(default)]
    pub last_level_cache_bytes: Option<u64>,
    /// `PRETTY_NAME` of /etc/os-release, else the OS family.
    #[serde(default)]
    pub os: Option<String>,
    /// Kernel release (`uname -r`).
    #[serde(default)]
    pub kernel: Option<String>,
    /// The compute backend results were measured on; rbench runs on "CPU".
    #[serde(default = "cpu_backend")]
    pub backend: String,
    /// A GPU used by the backend; `None` on the CPU backend.
    #[serde(default)]
    pub gpu: Option<String>,
    /// Measured memory read bandwidth, when a command measured it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_bandwidth: Option<MemoryBandwidth>,
}

fn cpu_backend() -> String {
    "CPU".to_string()
}

impl Hardware {
    pub fn detect() -> Hardware {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let os_release = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
        Hardware {
            cpu_model: cpu_model(&cpuinfo),
            logical_cores: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            physical_cores: physical_cores(&cpuinfo),
            cpu_features: crate::ggml::cpu_features()
                .into_iter()
                .map(str::to_string)
                .collect(),
            ram_total_bytes: meminfo_bytes(&meminfo, "MemTotal"),
            ram_available_bytes: meminfo_bytes(&meminfo, "MemAvailable"),
            last_level_cache_bytes: last_level_cache(),
            os: os_pretty_name(&os_release).or_else(|| Some(std::env::consts::OS.to_string())),
            kernel: kernel_release(),
            backend: cpu_backend(),
            gpu: None,
            memory_bandwidth: None,
        }
    }

    /// `detect()` plus a measured memory bandwidth.
    pub fn detect_with_bandwidth(test: BandwidthTest) -> Hardware {
        let mut h = Hardware::detect();
        let threads = h.logical_cores;
        h.memory_bandwidth = Some(measure_read_bandwidth(test, threads, h.ram_available_bytes));
        h
    }
}

/// Best-of-passes read bandwidth with one thread and with all threads, GB/s (10^9 bytes/s).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct MemoryBandwidth {
    pub single_thread_gbs: f64,
    pub all_threads_gbs: f64,
    pub threads: usize,
    pub buffer_bytes: u64,
    pub passes: usize,
}

/// Size and repetitions of the bandwidth test.
#[derive(Clone, Copy, Debug)]
pub struct BandwidthTest {
    pub buffer_bytes: u64,
    pub passes: usize,
}

impl BandwidthTest {
    /// `rbench sysinfo`: 512 MiB (far past any last-level cache), best of 5.
    pub const THOROUGH: BandwidthTest = BandwidthTest {
        buffer_bytes: 512 << 20,
        passes: 5,
    };
    /// Beside a saved result: 256 MiB, best of 3 (about half a second).
    pub const QUICK: BandwidthTest = BandwidthTest {
        buffer_bytes: 256 << 20,
        passes: 3,
    };
}

/// Reads a buffer much larger than the caches `passes` times, with one thread
/// and with `threads` threads each summing its own slice, and keeps the best
/// pass of each (the least disturbed by other work on the machine). The
/// buffer shrinks to a quarter of the available memory when that is smaller.
pub fn measure_read_bandwidth(
    test: BandwidthTest,
    threads: usize,
    available_bytes: Option<u64>,
) -> MemoryBandwidth {
    let cap = available_bytes.map_or(u64::MAX, |a| a / 4);
    let bytes = test.buffer_bytes.min(cap).max(1 << 20);
    let words = usize::try_from(bytes / 8).unwrap_or(1 << 17);
    // Written, not zero-allocated: untouched zero pages all map to one
    // physical page and would read from cache.
    let buffer: Vec<u64> = (0..words as u64)
        .map(|i| i.wrapping_mul(0x9E37_79B9))
        .collect();
    let threads = threads.max(1);
    let passes = test.passes.max(1);
    let single = best_pass(&buffer, 1, passes);
    let all = if threads == 1 {
        single
    } else {
        best_pass(&buffer, threads, passes)
    };
    // Three decimals: more would be noise, and they survive a JSON round trip.
    let round = |gbs: f64| (gbs * 1000.0).round() / 1000.0;
    MemoryBandwidth {
        single_thread_gbs: round(single),
        all_threads_gbs: round(all),
        threads,
        buffer_bytes: (words * 8) as u64,
        passes,
    }
}

fn best_pass(buffer: &[u64], threads: usize, passes: usize) -> f64 {
    let bytes = std::mem::size_of_val(buffer) as f64;
    let slice = buffer.len().div_ceil(threads).max(1);
    (0..passes)
        .map(|_| {
            let start = Instant::now();
            std::thread::scope(|s| {
                for part in buffer.chunks(slice) {
                    s.spawn(move || std::hint::black_box(sum_words(part)));
                }
            });
            bytes / start.elapsed().as_secs_f64().max(1e-9) / 1e9
        })
        .fold(0.0, f64::max)
}

/// A plain wrapping sum: wrapping addition is associative, so the compiler
/// vectorizes and unrolls it into independent lanes (a hand-split 8-way loop
/// measured 5x slower here, bound by its own shuffles rather than by memory).
fn sum_words(words: &[u64]) -> u64 {
    words.iter().fold(0u64, |a, &w| a.wrapping_add(w))
}

/// The largest cache of cpu0 in sysfs (its highest level).
fn last_level_cache() -> Option<u64> {
    let dir = std::fs::read_dir("/sys/devices/system/cpu/cpu0/cache").ok()?;
    dir.filter_map(|e| {
        let size = std::fs::read_to_string(e.ok()?.path().join("size")).ok()?;
        cache_size(&size)
    })
    .max()
}

/// sysfs cache sizes: "32768K", "1M", "512".
fn cache_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let (digits, unit) = match s.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => s.split_at(i),
        None => (s, ""),
    };
    let n: u64 = digits.parse().ok()?;
    let mult = match unit {
        "" => 1,
        "K" => 1 << 10,
        "M" => 1 << 20,
        "G" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(mult)
}

fn os_pretty_name(os_release: &str) -> Option<String> {
    os_release.lines().find_map(|l| {
        let v = l.strip_prefix("PRETTY_NAME=")?;
        Some(v.trim().trim_matches('"').to_string())
    })
}

fn kernel_release() -> Option<String> {
    if let Ok(s) = std::fs::read_to_string("/proc/sys/kernel/osrelease") {
        return Some(s.trim().to_string());
    }
    // Not Linux: ask uname.
    let out = std::process::Command::new("uname")
        .arg("-r")
        .output()
        .ok()?;
    let s = String::from_utf8(out.stdout).ok()?;
    (!s.trim().is_empty()).then(|| s.trim().to_string())
}

fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let (k, v) = line.split_once(':')?;
    (k.trim() == key).then(|| v.trim())
}

fn cpu_model(cpuinfo: &str) -> Option<String> {
    cpuinfo
        .lines()
        .find_map(|l| field(l, "model name").or_else(|| field(l, "Model")))
        .map(str::to_string)
}

fn physical_cores(cpuinfo: &str) -> Option<usize> {
    let mut cores = std::collections::BTreeSet::new();
    let mut package = None;
    for line in cpuinfo.lines() {
        if let Some(p) = field(line, "physical id") {
            package = Some(p.to_string());
        } else if let Some(c) = field(line, "core id") {
            cores.insert((package.clone()?, c.to_string()));
        }
    }
    (!cores.is_empty()).then_some(cores.len())
}

/// A `Key: N kB` line of /proc/meminfo, in bytes.
pub(crate) fn meminfo_bytes(meminfo: &str, key: &str) -> Option<u64> {
    let v = meminfo.lines().find_map(|l| field(l, key))?;
    let kb: u64 = v.strip_suffix("kB").unwrap_or(v).trim().parse().ok()?;
    kb.checked_mul(1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CPUINFO: &str =
        "processor\t: 0\nmodel name\t: Test CPU @ 2GHz\nphysical id\t: 0\ncore id\t\t: 0\n\n\
processor\t: 1\nmodel name\t: Test CPU @ 2GHz\nphysical id\t: 0\ncore id\t\t: 0\n\n\
processor\t: 2\nmodel name\t: Test CPU @ 2GHz\nphysical id\t: 0\ncore id\t\t: 1\n";

    #[test]
    fn parses_cpuinfo() {
        assert_eq!(cpu_model(CPUINFO).as_deref(), Some("Test CPU @ 2GHz"));
        // Two hyperthreads share core 0.
        assert_eq!(physical_cores(CPUINFO), Some(2));
        assert_eq!(physical_cores("processor : 0\n"), None);
    }

    #[test]
    fn parses_meminfo() {
        let m = "MemTotal:       16384 kB\nMemFree: 1 kB\nMemAvailable:    8192 kB\n";
        assert_eq!(meminfo_bytes(m, "MemTotal"), Some(16384 * 1024));
        assert_eq!(meminfo_bytes(m, "MemAvailable"), Some(8192 * 1024));
        assert_eq!(meminfo_bytes(m, "SwapTotal"), None);
    }

    #[test]
    fn parses_os_release() {
        let r = "NAME=\"Debian GNU/Linux\"\nPRETTY_NAME=\"Debian GNU/Linux 13 (trixie)\"\n";
        assert_eq!(
            os_pretty_name(r).as_deref(),
            Some("Debian GNU/Linux 13 (trixie)")
        );
        assert_eq!(os_pretty_name("ID=x\n"), None);
    }

    #[test]
    fn parses_cache_sizes() {
        assert_eq!(cache_size("32768K\n"), Some(32 << 20));
        assert_eq!(cache_size("1M"), Some(1 << 20));
        assert_eq!(cache_size("512"), Some(512));
        assert_eq!(cache_size("x"), None);
        assert_eq!(cache_size("4Q"), None);
    }

    #[test]
    fn word_sum_covers_every_word() {
        let words: Vec<u64> = (1..=21).collect();
        assert_eq!(sum_words(&words), 21 * 22 / 2);
        assert_eq!(sum_words(&[]), 0);
    }

    #[test]
    fn bandwidth_is_measured() {
        let test = BandwidthTest {
            buffer_bytes: 8 << 20,
            passes: 2,
        };
        let bw = measure_read_bandwidth(test, 2, None);
        assert_eq!(bw.buffer_bytes, 8 << 20);
        assert_eq!((bw.threads, bw.passes), (2, 2));
        // Any machine reads 8 MiB faster than 0.1 GB/s and slower than 10 TB/s.
        for gbs in [bw.single_thread_gbs, bw.all_threads_gbs] {
            assert!(gbs > 0.1 && gbs < 10_000.0, "{bw:?}");
        }
        // A tiny available memory shrinks the buffer, never below 1 MiB.
        let small = measure_read_bandwidth(test, 1, Some(2 << 20));
        assert_eq!(small.buffer_bytes, 1 << 20);
    }

    #[test]
    fn hardware_round_trips_and_reads_old_rows() {
        let h = Hardware::detect();
        let back: Hardware = serde_json::from_str(&serde_json::to_string(&h).unwrap()).unwrap();
        assert_eq!(back, h);
        assert_eq!(back.backend, "CPU");
        // Rows written before os/kernel/backend existed still parse.
        let old = r#"{"cpu_model":null,"logical_cores":2,"physical_cores":null,
            "cpu_features":["avx2"],"ram_total_bytes":null,"ram_available_bytes":null}"#;
        let h: Hardware = serde_json::from_str(old).unwrap();
        assert_eq!((h.backend.as_str(), h.gpu, h.os), ("CPU", None, None));
    }

    #[test]
    fn detects_this_machine() {
        let h = Hardware::detect();
        assert!(h.logical_cores >= 1);
        if cfg!(target_os = "linux") {
            assert!(h.ram_total_bytes.unwrap_or(0) > 0);
            assert!(h.kernel.is_some());
        }
    }
}

/// Resets the process's peak resident set size (Linux: `5` into
/// `/proc/self/clear_refs`), so [`peak_rss_bytes`] then measures from now.
/// False where that is not possible.
pub fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// The process's peak resident set size (`VmHWM`), where the OS says.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status_kib(&status, "VmHWM:").map(|kib| kib * 1024)
}

/// A `Name:   123 kB` field of `/proc/self/status`, in KiB.
fn status_kib(status: &str, name: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(name))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod rss_tests {
    use super::*;

    #[test]
    fn status_fields_are_read_in_kib() {
        let status = "Name:\trbench\nVmPeak:\t  900 kB\nVmHWM:\t   1234 kB\nVmRSS:\t 1000 kB\n";
        assert_eq!(status_kib(status, "VmHWM:"), Some(1234));
        assert_eq!(status_kib(status, "VmSwap:"), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn the_peak_counts_memory_touched_after_a_reset() {
        assert!(reset_peak_rss());
        let big = vec![1u8; 64 << 20];
        std::hint::black_box(&big);
        // Other tests may reset it too, but `big` is resident either way.
        let after = peak_rss_bytes().unwrap();
        assert!(after >= big.len() as u64, "{after}");
    }
}
