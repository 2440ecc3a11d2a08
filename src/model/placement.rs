//! Where each layer lives: llama-bench's placement flags (`-ngl`, `-sm`,
//! `-mg`, `-ts`, `-dev`) resolved against the devices ggml registered.
//!
//! As in llama.cpp: the token embedding stays on the CPU; `-ngl N` puts the
//! last N repeating layers on devices, and the output layer (final norm and
//! projection) too when N exceeds the layer count (99 = everything). With
//! `-sm layer` the offloaded layers are cut into consecutive runs, one per
//! device, in proportion to `-ts` (default: each device's free memory);
//! with `-sm none` they all go to the main device `-mg`.

use crate::ggml::{BufferType, Device};

/// llama-bench's default `-ngl`: every layer.
pub const ALL_LAYERS: u32 = 99;

/// `-sm`: how offloaded layers are spread over several devices.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SplitMode {
    /// Everything offloaded goes to the main device (`-mg`).
    None,
    /// Consecutive runs of layers per device, by `-ts`.
    #[default]
    Layer,
}

impl SplitMode {
    pub fn name(self) -> &'static str {
        match self {
            SplitMode::None => "none",
            SplitMode::Layer => "layer",
        }
    }
}

/// Which devices to use: `-dev`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum DeviceChoice {
    /// Every GPU ggml registered (integrated ones only where there is no other).
    #[default]
    Auto,
    /// `-dev none`: the CPU only.
    None,
    /// These devices, by name, in this order.
    Named(Vec<String>),
}

impl DeviceChoice {
    /// llama-bench's spelling: `auto`, `none` or names joined by `/`.
    pub fn label(&self) -> String {
        match self {
            DeviceChoice::Auto => "auto".into(),
            DeviceChoice::None => "none".into(),
            DeviceChoice::Named(names) => names.join("/"),
        }
    }
}

/// The placement flags as given.
#[derive(Clone, Debug, PartialEq)]
pub struct PlacementSpec {
    /// `-ngl`: repeating layers to offload (more than the layer count also
    /// offloads the output layer).
    pub n_gpu_layers: u32,
    pub split_mode: SplitMode,
    /// `-mg`: index into the chosen devices.
    pub main_gpu: usize,
    pub devices: DeviceChoice,
    /// `-ts`: share of layers per device (empty: by free memory).
    pub tensor_split: Vec<f32>,
}

impl Default for PlacementSpec {
    fn default() -> Self {
        PlacementSpec {
            n_gpu_layers: ALL_LAYERS,
            split_mode: SplitMode::Layer,
            main_gpu: 0,
            devices: DeviceChoice::Auto,
            tensor_split: Vec::new(),
        }
    }
}

impl PlacementSpec {
    /// Everything on the CPU.
    pub fn cpu() -> PlacementSpec {
        PlacementSpec {
            n_gpu_layers: 0,
            devices: DeviceChoice::None,
            ..PlacementSpec::default()
        }
    }

    /// `-ts` as llama-bench prints it (`0.00` when not given).
    pub fn tensor_split_label(&self) -> String {
        if self.tensor_split.is_empty() {
            return "0.00".into();
        }
        let parts: Vec<String> = self
            .tensor_split
            .iter()
            .map(|x| format!("{x:.2}"))
            .collect();
        parts.join("/")
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PlacementError {
    #[error("unknown device '{name}' (devices here: {available})")]
    UnknownDevice { name: String, available: String },
    #[error("-mg {main_gpu}: there are only {n} devices to choose from ({available})")]
    MainGpu {
        main_gpu: usize,
        n: usize,
        available: String,
    },
    #[error("-ts has {given} values but {n} devices are used")]
    TensorSplit { given: usize, n: usize },
    #[error("-ts values must be finite, at least 0, and not all 0")]
    TensorSplitValues,
    #[error("device {name} ({kind}) cannot hold layers")]
    NotOffloadable { name: String, kind: String },
}

/// Names and kinds of the registered devices, for error messages.
pub fn device_list() -> String {
    let names: Vec<String> = Device::all()
        .into_iter()
        .map(|d| format!("{} ({})", d.name(), d.description()))
        .collect();
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}

/// A resolved placement: the devices used and each layer's device.
#[derive(Clone, Debug, PartialEq)]
pub struct Placement {
    pub spec: PlacementSpec,
    /// Devices holding layers, in the order given (the CPU is implied).
    pub devices: Vec<Device>,
    /// Per repeating layer: index into `devices`, `None` = CPU.
    layers: Vec<Option<usize>>,
    /// The output layer's device.
    output: Option<usize>,
}

impl Placement {
    /// Everything on the CPU.
    pub fn cpu(n_layer: usize) -> Placement {
        Placement {
            spec: PlacementSpec::cpu(),
            devices: Vec::new(),
            layers: vec![None; n_layer],
            output: None,
        }
    }

    /// Resolves `spec` for a model of `n_layer` repeating layers against
    /// the devices ggml registered.
    pub fn resolve(spec: &PlacementSpec, n_layer: usize) -> Result<Placement, PlacementError> {
        let devices = match &spec.devices {
            DeviceChoice::None => Vec::new(),
            DeviceChoice::Auto => Device::offload_targets(),
            DeviceChoice::Named(names) => {
                let mut out = Vec::with_capacity(names.len());
                for name in names {
                    let d = Device::by_name(name).ok_or_else(|| PlacementError::UnknownDevice {
                        name: name.clone(),
                        available: device_list(),
                    })?;
                    if d.buffer_type().is_none() || d.kind() == crate::ggml::DeviceKind::Cpu {
                        return Err(PlacementError::NotOffloadable {
                            name: d.name(),
                            kind: format!("{:?}", d.kind()),
                        });
                    }
                    out.push(d);
                }
                out
            }
        };
        let free: Vec<f32> = devices.iter().map(|d| d.memory().0 as f32).collect();
        Placement::assign(spec, n_layer, devices, &free)
    }

    /// The layer assignment for `devices` (`free`: their free bytes, the
    /// default split weights).
    fn assign(
        spec: &PlacementSpec,
        n_layer: usize,
        devices: Vec<Device>,
        free: &[f32],
    ) -> Result<Placement, PlacementError> {
        let (layers, output) = layer_devices(spec, n_layer, devices.len(), free)?;
        Ok(Placement {
            spec: spec.clone(),
            devices,
            layers,
            output,
        })
    }

    /// The device of repeating layer `il` (`None`: the CPU).
    pub fn layer_device(&self, il: usize) -> Option<Device> {
        self.layers
            .get(il)
            .copied()
            .flatten()
            .map(|i| self.devices[i])
    }

    /// The output layer's device (`None`: the CPU).
    pub fn output_device(&self) -> Option<Device> {
        self.output.map(|i| self.devices[i])
    }

    /// Buffer type for weights of layer `il` on a device, `None` on the CPU.
    pub fn layer_buffer_type(&self, il: usize) -> Option<BufferType> {
        self.layer_device(il).and_then(Device::buffer_type)
    }

    /// Repeating layers on devices, plus one for the output layer.
    pub fn n_offloaded(&self) -> usize {
        self.layers.iter().filter(|l| l.is_some()).count() + usize::from(self.output.is_some())
    }

    /// Whether anything runs off the CPU.
    pub fn uses_devices(&self) -> bool {
        self.n_offloaded() > 0
    }

    /// The devices actually holding layers, in `devices` order.
    pub fn used_devices(&self) -> Vec<Device> {
        (0..self.devices.len())
            .filter(|i| self.layers.contains(&Some(*i)) || self.output == Some(*i))
            .map(|i| self.devices[i])
            .collect()
    }

    /// llama-bench's `backends` field: "CPU", or the offload backends
    /// ("Vulkan", "CUDA", "Metal", "RPC") in use, comma-separated.
    pub fn backends_label(&self) -> String {
        let mut names: Vec<String> = Vec::new();
        for d in self.used_devices() {
            let n = d.backend_name();
            if !names.contains(&n) {
                names.push(n);
            }
        }
        if names.is_empty() {
            "CPU".into()
        } else {
            names.join(",")
        }
    }

    /// llama-bench's `gpu_info`: descriptions of the devices used.
    pub fn gpu_info(&self) -> String {
        let names: Vec<String> = self
            .used_devices()
            .into_iter()
            .map(|d| d.description())
            .collect();
        names.join(", ")
    }

    /// One line per device: which layers it holds.
    pub fn summary(&self) -> String {
        let n_layer = self.layers.len();
        let mut parts = Vec::new();
        let cpu_layers = self.layers.iter().filter(|l| l.is_none()).count();
        let out_cpu = if self.output.is_none() {
            " + output"
        } else {
            ""
        };
        parts.push(format!("CPU: {cpu_layers}/{n_layer} layers{out_cpu}"));
        for (i, d) in self.devices.iter().enumerate() {
            let n = self.layers.iter().filter(|l| **l == Some(i)).count();
            let out = if self.output == Some(i) {
                " + output"
            } else {
                ""
            };
            if n > 0 || !out.is_empty() {
                parts.push(format!("{}: {n}/{n_layer} layers{out}", d.name()));
            }
        }
        parts.join("; ")
    }
}

/// Each repeating layer's device index (`None`: CPU), and the output
/// layer's: layers `n_layer - ngl ..` are offloaded (index `n_layer` is the
/// output layer), each to the first device whose cumulative share passes
/// the layer's point in the offloaded run.
fn layer_devices(
    spec: &PlacementSpec,
    n_layer: usize,
    n_devices: usize,
    free: &[f32],
) -> Result<(Vec<Option<usize>>, Option<usize>), PlacementError> {
    let Some(split) = layer_split(spec, n_devices, free)? else {
        return Ok((vec![None; n_layer], None));
    };
    let n_offload = (spec.n_gpu_layers as usize).min(n_layer + 1);
    let first = (n_layer + 1) - n_offload;
    let device_of = |il: usize| -> Option<usize> {
        if il < first {
            return None;
        }
        let at = (il - first) as f32 / n_offload as f32;
        Some(
            split
                .iter()
                .position(|&edge| at < edge)
                .unwrap_or(split.len() - 1),
        )
    };
    Ok(((0..n_layer).map(device_of).collect(), device_of(n_layer)))
}

/// Cumulative shares of the offloaded layers per device (each in (0, 1],
/// the last 1), or `None` when nothing is offloaded.
fn layer_split(
    spec: &PlacementSpec,
    n_devices: usize,
    free: &[f32],
) -> Result<Option<Vec<f32>>, PlacementError> {
    if n_devices == 0 || spec.n_gpu_layers == 0 {
        return Ok(None);
    }
    if spec.split_mode == SplitMode::None || n_devices == 1 {
        if spec.main_gpu >= n_devices {
            return Err(PlacementError::MainGpu {
                main_gpu: spec.main_gpu,
                n: n_devices,
                available: device_list(),
            });
        }
        // Everything on the main device: shares 0 before it, 1 from it on.
        let split = (0..n_devices)
            .map(|i| if i < spec.main_gpu { 0.0 } else { 1.0 })
            .collect();
        return Ok(Some(split));
    }
    let weights: Vec<f32> = if spec.tensor_split.is_empty() {
        free.to_vec()
    } else {
        // llama.cpp ignores trailing values beyond the devices; more is a typo here.
        if spec.tensor_split.len() > n_devices {
            return Err(PlacementError::TensorSplit {
                given: spec.tensor_split.len(),
                n: n_devices,
            });
        }
        let mut w = spec.tensor_split.clone();
        w.resize(n_devices, 0.0);
        w
    };
    if weights.iter().any(|w| !w.is_finite() || *w < 0.0) {
        return Err(PlacementError::TensorSplitValues);
    }
    let total: f32 = weights.iter().sum();
    if total <= 0.0 {
        if spec.tensor_split.is_empty() {
            // No memory figures: split evenly.
            return Ok(Some(
                (1..=n_devices)
                    .map(|i| i as f32 / n_devices as f32)
                    .collect(),
            ));
        }
        return Err(PlacementError::TensorSplitValues);
    }
    let mut acc = 0.0;
    let mut split: Vec<f32> = weights
        .iter()
        .map(|w| {
            acc += w / total;
            acc
        })
        .collect();
    if let Some(last) = split.last_mut() {
        *last = 1.0;
    }
    Ok(Some(split))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(ngl: u32, sm: SplitMode, mg: usize, ts: &[f32]) -> PlacementSpec {
        PlacementSpec {
            n_gpu_layers: ngl,
            split_mode: sm,
            main_gpu: mg,
            devices: DeviceChoice::Auto,
            tensor_split: ts.to_vec(),
        }
    }

    /// Layer indices as device numbers (-1 = CPU), for `n_dev` equal devices.
    fn assignment(s: &PlacementSpec, n_layer: usize, n_dev: usize) -> (Vec<i32>, i32) {
        let (layers, out) = layer_devices(s, n_layer, n_dev, &vec![1.0; n_dev]).unwrap();
        let num = |d: Option<usize>| d.map_or(-1, |i| i as i32);
        (layers.into_iter().map(num).collect(), num(out))
    }

    #[test]
    fn ngl_offloads_the_last_layers_then_the_output() {
        let (layers, out) = assignment(&spec(2, SplitMode::Layer, 0, &[]), 4, 1);
        assert_eq!((layers, out), (vec![-1, -1, -1, 0], 0));
        let (layers, out) = assignment(&spec(4, SplitMode::Layer, 0, &[]), 4, 1);
        assert_eq!((layers, out), (vec![-1, 0, 0, 0], 0));
        // 5 = every repeating layer plus the output; 99 clamps to that.
        for ngl in [5, 99] {
            let (layers, out) = assignment(&spec(ngl, SplitMode::Layer, 0, &[]), 4, 1);
            assert_eq!((layers, out), (vec![0, 0, 0, 0], 0));
        }
        let (layers, out) = assignment(&spec(0, SplitMode::Layer, 0, &[]), 4, 1);
        assert_eq!((layers, out), (vec![-1; 4], -1));
    }

    #[test]
    fn layer_split_follows_the_shares() {
        // 7 layers + output over two devices, 1:1 → 4 and 4.
        let (layers, out) = assignment(&spec(99, SplitMode::Layer, 0, &[1.0, 1.0]), 7, 2);
        assert_eq!(layers, vec![0, 0, 0, 0, 1, 1, 1]);
        assert_eq!(out, 1);
        // 3:1 → 6 and 2.
        let (layers, out) = assignment(&spec(99, SplitMode::Layer, 0, &[3.0, 1.0]), 7, 2);
        assert_eq!(layers, vec![0, 0, 0, 0, 0, 0, 1]);
        assert_eq!(out, 1);
        // A zero share gets nothing.
        let (layers, _) = assignment(&spec(99, SplitMode::Layer, 0, &[0.0, 1.0]), 7, 2);
        assert_eq!(layers, vec![1; 7]);
    }

    #[test]
    fn split_mode_none_uses_the_main_device() {
        let (layers, out) = assignment(&spec(99, SplitMode::None, 1, &[]), 4, 3);
        assert_eq!((layers, out), (vec![1; 4], 1));
        let err = layer_split(&spec(99, SplitMode::None, 3, &[]), 3, &[1.0; 3]).unwrap_err();
        assert!(matches!(
            err,
            PlacementError::MainGpu {
                main_gpu: 3,
                n: 3,
                ..
            }
        ));
    }

    #[test]
    fn bad_tensor_splits_are_refused() {
        let s = spec(99, SplitMode::Layer, 0, &[1.0, 1.0, 1.0]);
        assert!(matches!(
            layer_split(&s, 2, &[1.0; 2]),
            Err(PlacementError::TensorSplit { given: 3, n: 2 })
        ));
        for ts in [[0.0, 0.0], [-1.0, 2.0], [f32::NAN, 1.0]] {
            let s = spec(99, SplitMode::Layer, 0, &ts);
            assert_eq!(
                layer_split(&s, 2, &[1.0; 2]),
                Err(PlacementError::TensorSplitValues)
            );
        }
        // No free-memory figures at all: an even split.
        let s = spec(99, SplitMode::Layer, 0, &[]);
        assert_eq!(layer_split(&s, 2, &[0.0; 2]).unwrap(), Some(vec![0.5, 1.0]));
    }

    #[test]
    fn without_devices_everything_stays_on_the_cpu() {
        let p = Placement::resolve(&PlacementSpec::cpu(), 6).unwrap();
        assert!(!p.uses_devices());
        assert_eq!(p.backends_label(), "CPU");
        assert_eq!(p.summary(), "CPU: 6/6 layers + output");
        assert_eq!(p, Placement::cpu(6));
        let err = Placement::resolve(
            &PlacementSpec {
                devices: DeviceChoice::Named(vec!["NoSuchGPU0".into()]),
                ..PlacementSpec::default()
            },
            6,
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("unknown device 'NoSuchGPU0'")
                && err.to_string().contains("CPU"),
            "{err}"
        );
    }
}
