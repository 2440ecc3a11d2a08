//! `rbench sysinfo`: the hardware facts results are saved with, and a
//! measured memory read bandwidth (the ceiling of token generation).

use super::progress::Progress;
use super::UsageError;
use crate::format::bytes;
use crate::report::saved::BuildFacts;
use crate::system::{measure_read_bandwidth, BandwidthTest, Hardware};
use serde::Serialize;

#[derive(clap::Args, Debug)]
pub struct SysinfoArgs {
    /// Output format: md (key: value lines) or json.
    #[arg(short = 'o', long = "output", default_value = "md", value_parser = ["md", "json"])]
    pub output: String,
    /// A quicker, smaller bandwidth test (256 MiB, best of 3).
    #[arg(long)]
    pub quick: bool,
    /// Skip the bandwidth test.
    #[arg(long = "no-bandwidth")]
    pub no_bandwidth: bool,
    /// Threads of the all-threads bandwidth test [default: logical cores].
    #[arg(short = 't', long = "threads")]
    pub threads: Option<usize>,
}

#[derive(Serialize)]
struct Sysinfo {
    hardware: Hardware,
    build: BuildFacts,
    /// ggml's devices: the CPU, and GPUs of the backends built in.
    devices: Vec<DeviceFacts>,
}

#[derive(Serialize)]
struct DeviceFacts {
    name: String,
    description: String,
    backend: String,
    kind: String,
    memory_free: usize,
    memory_total: usize,
}

fn devices() -> Vec<DeviceFacts> {
    crate::ggml::Device::all()
        .into_iter()
        .map(|d| {
            let (free, total) = d.memory();
            DeviceFacts {
                name: d.name(),
                description: d.description(),
                backend: d.backend_name(),
                kind: format!("{:?}", d.kind()),
                memory_free: free,
                memory_total: total,
            }
        })
        .collect()
}

pub fn run(args: SysinfoArgs) -> anyhow::Result<()> {
    if args.threads == Some(0) || args.threads.is_some_and(|t| t > crate::ggml::MAX_THREADS) {
        return Err(UsageError(format!(
            "-t must be within 1..={}",
            crate::ggml::MAX_THREADS
        ))
        .into());
    }
    let mut hardware = Hardware::detect();
    if !args.no_bandwidth {
        let test = if args.quick {
            BandwidthTest::QUICK
        } else {
            BandwidthTest::THOROUGH
        };
        let threads = args.threads.unwrap_or(hardware.logical_cores);
        let _spin = Progress::spinner("measuring memory read bandwidth");
        hardware.memory_bandwidth = Some(measure_read_bandwidth(
            test,
            threads,
            hardware.ram_available_bytes,
        ));
    }
    let info = Sysinfo {
        hardware,
        build: BuildFacts::current(),
        devices: devices(),
    };
    if args.output == "json" {
        outln!("{}", serde_json::to_string_pretty(&info)?);
        return Ok(());
    }
    let h = &info.hardware;
    let unknown = || "unknown".to_string();
    outln!(
        "cpu              : {}",
        h.cpu_model.clone().unwrap_or_else(unknown)
    );
    outln!(
        "cores            : {} physical, {} logical",
        h.physical_cores.map_or_else(unknown, |c| c.to_string()),
        h.logical_cores
    );
    outln!("simd (ggml)      : {}", h.cpu_features.join(" "));
    outln!(
        "ram              : {} total, {} available",
        h.ram_total_bytes.map_or_else(unknown, bytes),
        h.ram_available_bytes.map_or_else(unknown, bytes)
    );
    outln!(
        "os               : {}",
        h.os.clone().unwrap_or_else(unknown)
    );
    outln!(
        "kernel           : {}",
        h.kernel.clone().unwrap_or_else(unknown)
    );
    outln!("backend          : {}", h.backend);
    outln!(
        "gpu              : {}",
        h.gpu.clone().unwrap_or_else(|| "none".into())
    );
    for line in super::placement_args::device_lines() {
        outln!("device           : {line}");
    }
    let b = &info.build;
    outln!(
        "rbench           : {} (commit {}, ggml {}, {}, {})",
        b.rbench_version,
        b.git_commit,
        b.ggml_version,
        b.target,
        b.profile
    );
    if let Some(bw) = &h.memory_bandwidth {
        outln!(
            "memory read      : {:.2} GB/s 1 thread, {:.2} GB/s {} threads (best of {} passes over {})",
            bw.single_thread_gbs,
            bw.all_threads_gbs,
            bw.threads,
            bw.passes,
            bytes(bw.buffer_bytes)
        );
    }
    Ok(())
}
