//! llama.cpp's placement flags (`-ngl`, `-sm`, `-mg`, `-ts`, `-dev`,
//! `-nkvo`, `-mmp`) for the single-engine commands, their parsing (shared
//! with the bench commands' comma lists) and `--list-devices`.

use super::UsageError;
use crate::ggml::{Device, DeviceKind};
use crate::model::placement::{device_list, DeviceChoice, PlacementSpec, SplitMode, ALL_LAYERS};

/// `-sm`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum SplitModeArg {
    None,
    Layer,
}

impl From<SplitModeArg> for SplitMode {
    fn from(s: SplitModeArg) -> SplitMode {
        match s {
            SplitModeArg::None => SplitMode::None,
            SplitModeArg::Layer => SplitMode::Layer,
        }
    }
}

#[derive(clap::Args, Debug, Clone)]
pub struct PlacementArgs {
    /// Layers to offload to GPUs (`-ngl`): the last N repeating layers, and
    /// the output layer when N exceeds their count; 99 = all. Without a GPU
    /// backend everything runs on the CPU.
    #[arg(long = "n-gpu-layers", value_name = "N", default_value_t = ALL_LAYERS)]
    pub n_gpu_layers: u32,
    /// How offloaded layers spread over several devices (`-sm`): layer or none.
    #[arg(long = "split-mode", value_enum, default_value_t = SplitModeArg::Layer)]
    pub split_mode: SplitModeArg,
    /// The device for everything offloaded with `-sm none` (`-mg`), an index
    /// into the devices used.
    #[arg(long = "main-gpu", value_name = "I", default_value_t = 0)]
    pub main_gpu: usize,
    /// Devices to offload to (`-dev`), comma-separated names from
    /// `--list-devices`, or `none` [default: every GPU].
    #[arg(long = "device", value_name = "NAME[,NAME]")]
    pub device: Option<String>,
    /// Share of the offloaded layers per device (`-ts`), e.g. `3,1`
    /// [default: by free memory].
    #[arg(long = "tensor-split", value_name = "A,B,...")]
    pub tensor_split: Option<String>,
    /// Keep the KV cache in host memory (`-nkvo`), also as `-nkvo 0|1`.
    #[arg(long = "no-kv-offload", value_name = "0|1", num_args = 0..=1, default_missing_value = "1", value_parser = parse_flag)]
    pub no_kv_offload: Option<bool>,
    /// Use CPU weights in place in the memory-mapped file (`-mmp 0|1`);
    /// 0 copies them into memory of their own.
    #[arg(long = "mmap", value_name = "0|1", value_parser = parse_flag, default_value = "1")]
    pub mmap: bool,
    /// List the devices ggml offers here and exit.
    #[arg(long = "list-devices")]
    pub list_devices: bool,
    // Read ahead of clap (`rpc::connect_from_argv`); declared for help and checks.
    #[allow(dead_code)]
    #[command(flatten)]
    pub rpc: super::rpc::RpcArgs,
}

/// `0|1` (also `true|false`, `on|off`).
pub fn parse_flag(s: &str) -> Result<bool, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "on" | "yes" => Ok(true),
        "0" | "false" | "off" | "no" => Ok(false),
        other => Err(format!("expected 0 or 1, got '{other}'")),
    }
}

impl PlacementArgs {
    /// The placement as a spec, with device names checked against the registry.
    pub fn spec(&self) -> Result<PlacementSpec, UsageError> {
        let devices = match &self.device {
            None => DeviceChoice::Auto,
            Some(s) => parse_devices(s, &[',', '/'])?,
        };
        let tensor_split = match &self.tensor_split {
            None => Vec::new(),
            Some(s) => parse_tensor_split(s, &[',', '/'])?,
        };
        Ok(PlacementSpec {
            n_gpu_layers: self.n_gpu_layers,
            split_mode: self.split_mode.into(),
            main_gpu: self.main_gpu,
            devices,
            tensor_split,
        })
    }

    pub fn offload_kv(&self) -> bool {
        !self.no_kv_offload.unwrap_or(false)
    }
}

/// A device list (`none`, or names split at any of `seps`), each checked.
pub fn parse_devices(s: &str, seps: &[char]) -> Result<DeviceChoice, UsageError> {
    let s = s.trim();
    if s.eq_ignore_ascii_case("none") {
        return Ok(DeviceChoice::None);
    }
    if s.eq_ignore_ascii_case("auto") {
        return Ok(DeviceChoice::Auto);
    }
    let mut names = Vec::new();
    for name in s.split(seps).map(str::trim) {
        if name.is_empty() {
            return Err(UsageError(format!("-dev: empty device name in '{s}'")));
        }
        let Some(d) = Device::by_name(name) else {
            return Err(UsageError(format!(
                "-dev: unknown device '{name}' (devices here: {}; see --list-devices)",
                device_list()
            )));
        };
        if d.kind() == DeviceKind::Cpu {
            return Err(UsageError(format!(
                "-dev: {} is the CPU, which holds every layer not offloaded (use -ngl 0 or -dev none for a CPU-only run)",
                d.name()
            )));
        }
        names.push(d.name());
    }
    Ok(DeviceChoice::Named(names))
}

/// `-ts` values split at any of `seps`.
pub fn parse_tensor_split(s: &str, seps: &[char]) -> Result<Vec<f32>, UsageError> {
    let mut out = Vec::new();
    for part in s.split(seps).map(str::trim) {
        let x: f32 = part
            .parse()
            .map_err(|_| UsageError(format!("-ts: '{part}' in '{s}' is not a number")))?;
        if !x.is_finite() || x < 0.0 {
            return Err(UsageError(format!(
                "-ts: shares must be at least 0, got {part}"
            )));
        }
        out.push(x);
    }
    if out.iter().all(|x| *x == 0.0) {
        return Err(UsageError(format!("-ts: '{s}' gives every device 0")));
    }
    Ok(out)
}

/// What `--list-devices` and `sysinfo` print: one line per device.
pub fn device_lines() -> Vec<String> {
    Device::all()
        .into_iter()
        .map(|d| {
            let (free, total) = d.memory();
            format!(
                "{}: {} ({}, {:?}, {} MiB free of {} MiB)",
                d.name(),
                d.description(),
                d.backend_name(),
                d.kind(),
                free >> 20,
                total >> 20
            )
        })
        .collect()
}

/// Prints the devices (llama.cpp's `--list-devices`).
pub fn print_devices() -> anyhow::Result<()> {
    outln!("Available devices:");
    for line in device_lines() {
        outln!("  {line}");
    }
    let gpus = Device::offload_targets();
    if gpus.is_empty() {
        outln!("No GPU device: every layer runs on the CPU (GPU backends come with --features cuda, metal or vulkan).");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_and_splits_parse() {
        assert_eq!(parse_flag("1"), Ok(true));
        assert_eq!(parse_flag("off"), Ok(false));
        assert!(parse_flag("2").is_err());
        assert_eq!(parse_tensor_split("3,1", &[',']).unwrap(), vec![3.0, 1.0]);
        assert_eq!(
            parse_tensor_split("1/2/0", &['/']).unwrap(),
            vec![1.0, 2.0, 0.0]
        );
        for bad in ["a,1", "-1,2", "0,0", "1,,2"] {
            assert!(parse_tensor_split(bad, &[',']).is_err(), "{bad}");
        }
    }

    #[test]
    fn device_names_are_checked() {
        assert_eq!(parse_devices("none", &[',']).unwrap(), DeviceChoice::None);
        let err = parse_devices("NoSuchGPU7", &[',']).unwrap_err();
        assert!(
            err.0.contains("unknown device 'NoSuchGPU7'") && err.0.contains("CPU"),
            "{}",
            err.0
        );
        // The CPU holds what is not offloaded; naming it is a mistake.
        assert!(parse_devices("cpu", &[',']).unwrap_err().0.contains("CPU"));
    }
}
