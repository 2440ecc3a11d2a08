//! What a parallel run will need, known before any weight is loaded: the
//! context (cells) for the largest worker count, the KV cache, the model and
//! an estimate of the compute buffer, against the memory available — host
//! memory for what stays on the CPU, each device's free memory for the
//! layers (weights and KV cells) placed on it.

use crate::format::bytes;
use crate::gguf::GgufFile;
use crate::kv::sizing::{self, SizingError};
use crate::model::hparams::Hparams;
use crate::model::memory::{self, MemoryInfo};
use crate::model::placement::{Placement, PlacementError, PlacementSpec};
use crate::model::{synth, ModelError};
use crate::quant::GgmlType;
use serde::Serialize;

/// What the plan is asked for.
#[derive(Clone, Debug)]
pub struct PlanRequest<'a> {
    /// A GGUF path or `synth:PRESET[:FTYPE]` (read from its header or preset
    /// only).
    pub model: &'a str,
    pub workers: &'a [usize],
    pub n_prompt: usize,
    pub n_predict: usize,
    pub requests: Option<usize>,
    pub shared_prefix: usize,
    /// Cells in total; `None` sizes them from the largest worker count.
    pub n_ctx: Option<usize>,
    pub n_ubatch: usize,
    pub flash_attn: bool,
    pub type_k: GgmlType,
    pub type_v: GgmlType,
    /// Where layers go (`-ngl`, `-dev`, `-ts`, ...).
    pub placement: &'a PlacementSpec,
    /// Offloaded layers keep their KV cells on their device (not `-nkvo`).
    pub offload_kv: bool,
}

/// What one device will hold.
#[derive(Clone, Debug, Serialize)]
pub struct DevicePlan {
    pub device: String,
    /// Repeating layers placed on it.
    pub layers: usize,
    /// Whether it holds the output layer too.
    pub output: bool,
    pub weights_bytes: u64,
    pub kv_cache_bytes: u64,
    pub compute_buffer_bytes_estimate: u64,
    pub total_bytes: u64,
    pub free_bytes: u64,
    pub fits: bool,
}

/// What a run will need.
#[derive(Clone, Debug, Serialize)]
pub struct Plan {
    pub model: String,
    pub workers: Vec<usize>,
    pub n_prompt: usize,
    pub n_predict: usize,
    pub requests: Option<usize>,
    pub shared_prefix: usize,
    pub per_sequence_cells: usize,
    pub n_ctx: usize,
    pub kv_cache_bytes: u64,
    pub model_bytes: u64,
    pub compute_buffer_bytes_estimate: u64,
    /// Of the model and the cache, what stays in host memory.
    pub host_weights_bytes: u64,
    pub host_kv_cache_bytes: u64,
    /// What host memory holds: everything not placed on a device.
    pub total_bytes: u64,
    pub mem_available_bytes: Option<u64>,
    /// Layers placed on devices (empty: everything on the CPU).
    pub devices: Vec<DevicePlan>,
    /// Host memory and every device suffice.
    pub fits: bool,
    /// The most workers whose caches fit beside the model, in host memory
    /// and on every device (None: host memory unknown).
    pub max_workers_that_fit: Option<usize>,
    pub type_k: String,
    pub type_v: String,
}

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// The settings cannot work on any machine (a usage error).
    #[error("-c/--ctx {n_ctx} cannot hold {workers} sequences of {tokens} tokens each")]
    ContextTooSmall {
        n_ctx: usize,
        workers: usize,
        tokens: usize,
    },
    #[error(transparent)]
    Sizing(#[from] SizingError),
    #[error(transparent)]
    Placement(#[from] PlacementError),
    #[error("reading {model}: {source}")]
    Model {
        model: String,
        #[source]
        source: Box<ModelError>,
    },
}

impl PlanError {
    /// Whether the flags asked for something impossible (rather than the
    /// model file failing).
    pub fn is_usage(&self) -> bool {
        !matches!(self, PlanError::Model { .. })
    }
}

/// Shape facts of a model from its header, or from a preset without writing it.
struct ModelShape {
    hparams: Hparams,
    model_bytes: u64,
    /// Weight bytes of each repeating layer.
    layer_bytes: Vec<u64>,
    /// Weight bytes of the output layer (final norm and projection; the
    /// token embedding again when the projection is tied to it).
    output_bytes: u64,
    /// The output projection is the token embedding (copied to a device,
    /// it stays on the host as well).
    tied_output: bool,
}

impl ModelShape {
    /// Sums tensor sizes per layer from (name, bytes) pairs.
    fn new(hparams: Hparams, tensors: impl Iterator<Item = (String, u64)>) -> ModelShape {
        let mut layer_bytes = vec![0u64; hparams.n_layer as usize];
        let (mut output_bytes, mut embd_bytes, mut model_bytes) = (0, 0, 0);
        let mut has_output = false;
        for (name, n) in tensors {
            model_bytes += n;
            let layer = name
                .strip_prefix("blk.")
                .and_then(|rest| rest.split('.').next())
                .and_then(|i| i.parse::<usize>().ok());
            if let Some(slot) = layer.and_then(|il| layer_bytes.get_mut(il)) {
                *slot += n;
            } else if name.starts_with("output") {
                output_bytes += n;
                has_output |= name == "output.weight";
            } else if name == "token_embd.weight" {
                embd_bytes = n;
            }
        }
        if !has_output {
            output_bytes += embd_bytes;
        }
        ModelShape {
            hparams,
            model_bytes,
            layer_bytes,
            output_bytes,
            tied_output: !has_output,
        }
    }
}

fn model_shape(spec: &str) -> Result<ModelShape, ModelError> {
    if let Some(parsed) = synth::parse_spec(spec) {
        let (preset, ftype) = parsed?;
        let hparams = preset.hparams();
        let sizes: Vec<(String, u64)> = preset
            .tensors()
            .iter()
            .map(|t| {
                let ty = synth::tensor_type(t, ftype, preset);
                (
                    t.name.clone(),
                    ty.bytes_for(t.dims.iter().product()).unwrap_or(0),
                )
            })
            .collect();
        return Ok(ModelShape::new(hparams, sizes.into_iter()));
    }
    let file = GgufFile::open(std::path::Path::new(spec))?;
    let hparams = Hparams::from_gguf(&file)?;
    let mut shape = ModelShape::new(
        hparams,
        file.tensors().iter().map(|t| (t.name.clone(), t.n_bytes)),
    );
    // Padding between tensors counts too.
    shape.model_bytes = file.tensor_data_size();
    Ok(shape)
}

impl Plan {
    pub fn new(req: &PlanRequest<'_>) -> Result<Plan, PlanError> {
        let shape = model_shape(req.model).map_err(|source| PlanError::Model {
            model: req.model.to_string(),
            source: Box::new(source),
        })?;
        let hp = shape.hparams;
        let max_workers = req.workers.iter().copied().max().unwrap_or(1);
        // Sized so the unshared comparison run fits too: prefix in every sequence.
        let per_seq = sizing::cells_per_sequence(req.shared_prefix + req.n_prompt, req.n_predict);
        let tokens = req.shared_prefix + req.n_prompt + req.n_predict;
        let n_ctx = match req.n_ctx {
            Some(c) if c < max_workers * tokens => {
                return Err(PlanError::ContextTooSmall {
                    n_ctx: c,
                    workers: max_workers,
                    tokens,
                })
            }
            Some(c) => c,
            None => sizing::n_ctx_for_workers(max_workers, per_seq)?,
        };
        let kv_shape = sizing::kv_shape(&hp, n_ctx, req.type_k, req.type_v)?;
        let kv_bytes = kv_shape.bytes();
        let compute = memory::compute_estimate(
            &hp,
            req.n_ubatch.min(n_ctx) as u64,
            n_ctx as u64,
            req.flash_attn,
        );
        let n_layer = hp.n_layer as usize;
        let placement = Placement::resolve(req.placement, n_layer)?;
        let per_layer_kv = kv_bytes / n_layer.max(1) as u64;
        // Workers whose cells fit in `budget` when it holds `layers` of the
        // cache's layers (None: it holds none).
        let workers_within = |budget: u64, layers: usize| {
            sizing::max_workers_within(budget, &kv_shape, per_seq)
                .saturating_mul(n_layer)
                .checked_div(layers)
        };
        let mut devices = Vec::new();
        // Workers that fit on each device, scaled from the share of the
        // cache it holds.
        let mut device_max_fit: Option<usize> = None;
        let (mut offloaded_weights, mut offloaded_kv_layers) = (0u64, 0usize);
        for device in placement.used_devices() {
            let on_it: Vec<usize> = (0..n_layer)
                .filter(|&il| placement.layer_device(il) == Some(device))
                .collect();
            let output = placement.output_device() == Some(device);
            let mut weights: u64 = on_it.iter().map(|&il| shape.layer_bytes[il]).sum();
            if output {
                weights += shape.output_bytes;
            }
            let kv_layers = if req.offload_kv { on_it.len() } else { 0 };
            let kv = per_layer_kv * kv_layers as u64;
            let total = weights + kv + compute;
            let free = device.memory().0 as u64;
            if let Some(fit) = workers_within(free.saturating_sub(weights + compute), kv_layers) {
                device_max_fit = Some(device_max_fit.map_or(fit, |m| m.min(fit)));
            }
            // A tied output projection is a copy: the embedding stays on the host.
            let copy = if output && shape.tied_output {
                shape.output_bytes
            } else {
                0
            };
            offloaded_weights += weights - copy;
            offloaded_kv_layers += kv_layers;
            devices.push(DevicePlan {
                device: device.name(),
                layers: on_it.len(),
                output,
                weights_bytes: weights,
                kv_cache_bytes: kv,
                compute_buffer_bytes_estimate: compute,
                total_bytes: total,
                free_bytes: free,
                fits: total <= free,
            });
        }
        let host_weights = shape.model_bytes.saturating_sub(offloaded_weights);
        let host_kv_layers = n_layer - offloaded_kv_layers;
        let host_kv = per_layer_kv * host_kv_layers as u64;
        let total = host_weights + host_kv + compute;
        let available = MemoryInfo::detect().available;
        let max_fit = available.map(|a| {
            let budget = a.saturating_sub(host_weights + compute);
            let host = workers_within(budget, host_kv_layers).unwrap_or(usize::MAX);
            device_max_fit.map_or(host, |d| d.min(host))
        });
        Ok(Plan {
            model: req.model.to_string(),
            workers: req.workers.to_vec(),
            n_prompt: req.n_prompt,
            n_predict: req.n_predict,
            requests: req.requests,
            shared_prefix: req.shared_prefix,
            per_sequence_cells: per_seq,
            n_ctx,
            kv_cache_bytes: kv_bytes,
            model_bytes: shape.model_bytes,
            compute_buffer_bytes_estimate: compute,
            host_weights_bytes: host_weights,
            host_kv_cache_bytes: host_kv,
            total_bytes: total,
            mem_available_bytes: available,
            fits: available.is_none_or(|a| total <= a) && devices.iter().all(|d| d.fits),
            devices,
            max_workers_that_fit: max_fit,
            type_k: req.type_k.name().to_string(),
            type_v: req.type_v.name().to_string(),
        })
    }

    /// The plan in words, a line each.
    pub fn lines(&self) -> Vec<String> {
        let mut lines = vec![
            format!(
                "plan: {} workers max × {} cells per sequence ({} prompt{} + {} generated, rounded up to {}) = n_ctx {}",
                self.workers.iter().copied().max().unwrap_or(1),
                self.per_sequence_cells,
                self.n_prompt,
                if self.shared_prefix > 0 {
                    format!(" + {} shared prefix", self.shared_prefix)
                } else {
                    String::new()
                },
                self.n_predict,
                sizing::CELLS_ALIGN,
                self.n_ctx
            ),
        ];
        if self.devices.is_empty() {
            lines.push(format!(
                "memory: KV cache {} (K {} + V {}, all layers) + model {} + compute ≈ {} = {}",
                bytes(self.kv_cache_bytes),
                self.type_k,
                self.type_v,
                bytes(self.model_bytes),
                bytes(self.compute_buffer_bytes_estimate),
                bytes(self.total_bytes)
            ));
        } else {
            lines.push(format!(
                "memory: KV cache {} (K {} + V {}, all layers), model {}; host memory holds model {} + KV {} + compute ≈ {} = {}",
                bytes(self.kv_cache_bytes),
                self.type_k,
                self.type_v,
                bytes(self.model_bytes),
                bytes(self.host_weights_bytes),
                bytes(self.host_kv_cache_bytes),
                bytes(self.compute_buffer_bytes_estimate),
                bytes(self.total_bytes)
            ));
        }
        for d in &self.devices {
            lines.push(format!(
                "device {}: {} layers{}: weights {} + KV {} + compute ≈ {} = {} of {} free{}",
                d.device,
                d.layers,
                if d.output { " + output" } else { "" },
                bytes(d.weights_bytes),
                bytes(d.kv_cache_bytes),
                bytes(d.compute_buffer_bytes_estimate),
                bytes(d.total_bytes),
                bytes(d.free_bytes),
                if d.fits { "" } else { " (does not fit)" }
            ));
        }
        if let Some(a) = self.mem_available_bytes {
            lines.push(format!(
                "available: {}{}",
                bytes(a),
                match self.max_workers_that_fit {
                    Some(w) => format!("; at most {w} workers fit at this size"),
                    None => String::new(),
                }
            ));
        }
        lines
    }

    /// Why the run does not fit, with what would (when it does not).
    pub fn shortfall(&self) -> Option<String> {
        if self.fits {
            return None;
        }
        if let Some(d) = self.devices.iter().find(|d| !d.fits) {
            let advice = if d.weights_bytes + d.compute_buffer_bytes_estimate > d.free_bytes {
                "its weights alone do not fit: lower -ngl or spread layers with -ts".to_string()
            } else {
                format!(
                    "at most {} workers fit (use fewer workers, keep the cache on the host with -nkvo, lower -ngl or spread layers with -ts)",
                    self.max_workers_that_fit.unwrap_or(0)
                )
            };
            return Some(format!(
                "not enough memory on device {}: its {} layers need {} (weights {}, KV cache {}, compute ≈ {}) but it has {} free; {advice}",
                d.device,
                d.layers,
                bytes(d.total_bytes),
                bytes(d.weights_bytes),
                bytes(d.kv_cache_bytes),
                bytes(d.compute_buffer_bytes_estimate),
                bytes(d.free_bytes),
            ));
        }
        Some(format!(
            "not enough memory: the run needs {} (KV cache {} for n_ctx {}) but {} is available; \
             at most {} workers fit at {} cells each (try fewer workers, a smaller -n, or -ctk q8_0 -ctv q8_0)",
            bytes(self.total_bytes),
            bytes(self.kv_cache_bytes),
            self.n_ctx,
            bytes(self.mem_available_bytes.unwrap_or(0)),
            self.max_workers_that_fit.unwrap_or(0),
            self.per_sequence_cells
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static CPU: std::sync::LazyLock<PlacementSpec> = std::sync::LazyLock::new(PlacementSpec::cpu);

    fn request(workers: &[usize], n_ctx: Option<usize>) -> PlanRequest<'_> {
        PlanRequest {
            model: "synth:llama-15m",
            workers,
            n_prompt: 100,
            n_predict: 20,
            requests: None,
            shared_prefix: 0,
            n_ctx,
            n_ubatch: 512,
            flash_attn: true,
            type_k: GgmlType::F16,
            type_v: GgmlType::F16,
            placement: &CPU,
            offload_kv: true,
        }
    }

    #[test]
    fn cells_come_from_the_largest_worker_count_and_bytes_add_up() {
        let plan = Plan::new(&request(&[1, 4, 2], None)).unwrap();
        assert_eq!(plan.per_sequence_cells, 256);
        assert_eq!(plan.n_ctx, 4 * 256);
        assert_eq!(
            plan.total_bytes,
            plan.kv_cache_bytes + plan.model_bytes + plan.compute_buffer_bytes_estimate
        );
        assert!(plan.lines()[0].contains("n_ctx 1024"));
    }

    #[test]
    fn a_context_too_small_is_a_usage_error() {
        let e = Plan::new(&request(&[4], Some(100))).unwrap_err();
        assert!(
            e.is_usage() && e.to_string().contains("cannot hold 4 sequences"),
            "{e}"
        );
        let e = Plan::new(&PlanRequest {
            model: "/nonexistent.gguf",
            ..request(&[1], None)
        })
        .unwrap_err();
        assert!(!e.is_usage());
    }

    #[test]
    fn layer_bytes_split_the_model_by_layer() {
        let s = model_shape("synth:llama-15m").unwrap();
        assert_eq!(s.layer_bytes.len(), s.hparams.n_layer as usize);
        assert!(s.layer_bytes.iter().all(|&b| b > 0));
        assert!(s.output_bytes > 0);
        let own_output = if s.tied_output { 0 } else { s.output_bytes };
        let layers: u64 = s.layer_bytes.iter().sum();
        assert!(
            layers + own_output < s.model_bytes,
            "the embedding is outside the layers"
        );
    }

    #[test]
    fn without_devices_host_memory_holds_everything() {
        let plan = Plan::new(&request(&[2], None)).unwrap();
        assert!(plan.devices.is_empty());
        assert_eq!(plan.host_weights_bytes, plan.model_bytes);
        assert_eq!(plan.host_kv_cache_bytes, plan.kv_cache_bytes);
    }
}
