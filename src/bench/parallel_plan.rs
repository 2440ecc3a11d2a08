//! What a parallel run will need, known before any weight is loaded: the
//! context (cells) for the largest worker count, the KV cache, the model and
//! an estimate of the compute buffer, against the memory available.

use crate::format::bytes;
use crate::gguf::GgufFile;
use crate::kv::sizing::{self, SizingError};
use crate::model::hparams::Hparams;
use crate::model::memory::{self, MemoryInfo};
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
    pub total_bytes: u64,
    pub mem_available_bytes: Option<u64>,
    pub fits: bool,
    /// The most workers whose caches fit beside the model (None: memory unknown).
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
}

fn model_shape(spec: &str) -> Result<ModelShape, ModelError> {
    if let Some(parsed) = synth::parse_spec(spec) {
        let (preset, ftype) = parsed?;
        let hparams = preset.hparams();
        let model_bytes = preset
            .tensors()
            .iter()
            .map(|t| {
                let ty = synth::tensor_type(t, ftype, hparams.n_layer, preset.tied_output);
                ty.bytes_for(t.dims.iter().product()).unwrap_or(0)
            })
            .sum();
        return Ok(ModelShape {
            hparams,
            model_bytes,
        });
    }
    let file = GgufFile::open(std::path::Path::new(spec))?;
    Ok(ModelShape {
        hparams: Hparams::from_gguf(&file)?,
        model_bytes: file.tensor_data_size(),
    })
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
        let total = shape.model_bytes + kv_bytes + compute;
        let available = MemoryInfo::detect().available;
        let max_fit = available.map(|a| {
            let budget = a.saturating_sub(shape.model_bytes + compute);
            sizing::max_workers_within(budget, &kv_shape, per_seq)
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
            total_bytes: total,
            mem_available_bytes: available,
            fits: available.is_none_or(|a| total <= a),
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
            format!(
                "memory: KV cache {} (K {} + V {}, all layers) + model {} + compute ≈ {} = {}",
                bytes(self.kv_cache_bytes),
                self.type_k,
                self.type_v,
                bytes(self.model_bytes),
                bytes(self.compute_buffer_bytes_estimate),
                bytes(self.total_bytes)
            ),
        ];
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
}
