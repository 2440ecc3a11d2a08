//! Facts about the machine a benchmark ran on, recorded beside its results.

use serde::Serialize;

#[derive(Clone, Debug, Serialize)]
pub struct Hardware {
    pub cpu_model: Option<String>,
    pub logical_cores: usize,
    /// Distinct (package, core) pairs in /proc/cpuinfo; `None` where it does not say.
    pub physical_cores: Option<usize>,
    /// SIMD/ISA features ggml's CPU backend uses here.
    pub cpu_features: Vec<&'static str>,
    pub ram_total_bytes: Option<u64>,
    pub ram_available_bytes: Option<u64>,
}

impl Hardware {
    pub fn detect() -> Hardware {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        Hardware {
            cpu_model: cpu_model(&cpuinfo),
            logical_cores: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            physical_cores: physical_cores(&cpuinfo),
            cpu_features: crate::ggml::cpu_features(),
            ram_total_bytes: meminfo_bytes(&meminfo, "MemTotal"),
            ram_available_bytes: meminfo_bytes(&meminfo, "MemAvailable"),
        }
    }
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
    fn detects_this_machine() {
        let h = Hardware::detect();
        assert!(h.logical_cores >= 1);
        if cfg!(target_os = "linux") {
            assert!(h.ram_total_bytes.unwrap_or(0) > 0);
        }
    }
}
