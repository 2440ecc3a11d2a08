//! A model's weights as ggml tensors. Matmul weights that the CPU backend can
//! repack go into its repacking buffer type (copied once at load, as
//! llama.cpp does); everything else points straight into the mapped file.

use super::check::{resolve_tensors, Resolved};
use super::hparams::Hparams;
use super::layout::Role;
use super::ModelError;
use crate::ggml::{self, BackendBuffer, BufferType, Context, Tensor, TensorId, WeightOp};
use crate::gguf::{GgufFile, TensorInfo};

/// Which context (and so which buffer) a weight lives in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Home {
    Mapped,
    Repacked,
}

#[derive(Clone, Copy, Debug)]
pub struct WeightRef {
    home: Home,
    id: TensorId,
}

/// Handles of one layer's tensors.
#[derive(Clone, Debug)]
pub struct LayerWeights {
    pub attn_norm: WeightRef,
    pub wq: WeightRef,
    pub wk: WeightRef,
    pub wv: WeightRef,
    pub bq: Option<WeightRef>,
    pub bk: Option<WeightRef>,
    pub bv: Option<WeightRef>,
    pub q_norm: Option<WeightRef>,
    pub k_norm: Option<WeightRef>,
    pub wo: WeightRef,
    pub attn_post_norm: Option<WeightRef>,
    pub ffn_norm: WeightRef,
    pub ffn_gate: WeightRef,
    pub ffn_up: WeightRef,
    pub ffn_down: WeightRef,
    pub ffn_post_norm: Option<WeightRef>,
}

#[derive(Clone, Debug, Default)]
struct LayerSlots {
    attn_norm: Option<WeightRef>,
    wq: Option<WeightRef>,
    wk: Option<WeightRef>,
    wv: Option<WeightRef>,
    bq: Option<WeightRef>,
    bk: Option<WeightRef>,
    bv: Option<WeightRef>,
    q_norm: Option<WeightRef>,
    k_norm: Option<WeightRef>,
    wo: Option<WeightRef>,
    attn_post_norm: Option<WeightRef>,
    ffn_norm: Option<WeightRef>,
    ffn_gate: Option<WeightRef>,
    ffn_up: Option<WeightRef>,
    ffn_down: Option<WeightRef>,
    ffn_post_norm: Option<WeightRef>,
}

/// How weights are placed.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// Use the CPU backend's repacking buffer types for matmul weights.
    pub repack: bool,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions { repack: true }
    }
}

impl LoadOptions {
    /// For batch-invariant engines: rbench's kernels read the plain block
    /// layout, so with them nothing is repacked (ggml's repacked kernels
    /// sum differently by batch shape).
    /// Where this CPU's rbench kernel does not cover every kernel type (AVX2,
    /// NEON) or there is only the portable reference, ggml keeps its
    /// repacked layouts.
    pub fn for_kernels(kernels: crate::kernels::Kernels) -> LoadOptions {
        // Only a kernel for every type ggml would repack can do without it.
        let best = crate::kernels::best();
        let ours = kernels == crate::kernels::Kernels::Rbench
            && best.isa() != crate::kernels::Isa::Scalar
            && crate::kernels::KERNEL_TYPES
                .iter()
                .all(|&ty| best.supports(ty));
        LoadOptions { repack: !ours }
    }
}

pub struct Weights {
    mapped: Context,
    repacked: Context,
    pub tok_embd: WeightRef,
    pub output_norm: WeightRef,
    pub output: WeightRef,
    pub rope_freqs: Option<WeightRef>,
    pub layers: Vec<LayerWeights>,
    /// Bytes copied into repacking buffers (the rest is used in place from the mapping).
    pub repacked_bytes: u64,
    pub repack_buffer: Option<String>,
    pub load_seconds: f64,
}

fn missing(name: &str) -> ModelError {
    ModelError::Internal(format!("layout produced no tensor for {name}"))
}

fn new_like<'c>(ctx: &'c Context, info: &TensorInfo, name: &str) -> Result<Tensor<'c>, ModelError> {
    let d: Vec<i64> = info.dims.iter().map(|&x| x as i64).collect();
    let t = match d.as_slice() {
        [a] => ctx.new_tensor_1d(info.ggml_type, *a)?,
        [a, b] => ctx.new_tensor_2d(info.ggml_type, *a, *b)?,
        [a, b, c] => ctx.new_tensor_3d(info.ggml_type, *a, *b, *c)?,
        [a, b, c, e] => ctx.new_tensor_4d(info.ggml_type, *a, *b, *c, *e)?,
        _ => {
            return Err(ModelError::Internal(format!(
                "tensor {name} has {} dims",
                d.len()
            )))
        }
    };
    t.set_name(name);
    Ok(t)
}

impl Weights {
    pub fn load(file: &GgufFile, hp: &Hparams, opts: &LoadOptions) -> Result<Weights, ModelError> {
        let start = std::time::Instant::now();
        let resolved = resolve_tensors(file, hp)?;
        let tied = !super::check::has_output_tensor(file);
        let n = resolved.len() + 2;
        let mapped = Context::for_tensors(n)?;
        let repacked = Context::for_tensors(n)?;
        let probes = Context::for_tensors(n)?;

        let extra: Option<BufferType> = if opts.repack {
            ggml::cpu_extra_buffer_types().into_iter().next()
        } else {
            None
        };

        // Decide each tensor's home, then create it in that context.
        let mut placed: Vec<(Resolved<'_>, WeightRef, String)> = Vec::with_capacity(n);
        let mut plan: Vec<(Resolved<'_>, String, bool)> = Vec::with_capacity(n);
        for r in resolved {
            let wants_repack = !r.spec.role.is_vector() && r.spec.role != Role::TokenEmbd;
            let name = r.spec.name.clone();
            plan.push((r, name, wants_repack));
        }
        if tied {
            if let Some(embd) = plan.iter().find(|(r, _, _)| r.spec.role == Role::TokenEmbd) {
                let mut out = embd.0.clone();
                out.spec.role = Role::Output;
                plan.push((out, "output.weight (tied to token_embd)".to_string(), true));
            }
        }
        for (r, name, wants_repack) in plan {
            let mut home = Home::Mapped;
            if wants_repack {
                if let Some(buft) = extra {
                    let probe = new_like(&probes, r.info, &name)?;
                    if ggml::weight_supported(buft, probe, WeightOp::MulMat) {
                        home = Home::Repacked;
                        let t = new_like(&repacked, r.info, &name)?;
                        placed.push((
                            r,
                            WeightRef {
                                home,
                                id: repacked.tensor_id(t)?,
                            },
                            name,
                        ));
                        continue;
                    }
                }
            }
            let t = new_like(&mapped, r.info, &name)?;
            placed.push((
                r,
                WeightRef {
                    home,
                    id: mapped.tensor_id(t)?,
                },
                name,
            ));
        }

        // Mapped tensors point into the file; repacked ones are copied (and repacked) once.
        let file_buffer = BackendBuffer::from_host_bytes(file.bytes().clone())?;
        for (r, w, _) in placed.iter().filter(|(_, w, _)| w.home == Home::Mapped) {
            let t = mapped.tensor(w.id)?;
            mapped.place_tensor(t, &file_buffer, file.tensor_data_offset(r.info) as usize)?;
        }
        let mut repacked_bytes = 0u64;
        let mut repack_buffer = None;
        if let Some(buft) = extra {
            if placed.iter().any(|(_, w, _)| w.home == Home::Repacked) {
                ggml::alloc_ctx_tensors(&repacked, buft)?.set_usage_weights();
                repack_buffer = Some(buft.name());
                for (r, w, _) in placed.iter().filter(|(_, w, _)| w.home == Home::Repacked) {
                    let t = repacked.tensor(w.id)?;
                    ggml::tensor_set(t, file.tensor_data(r.info), 0)?;
                    repacked_bytes += r.info.n_bytes;
                }
            }
        }

        let mut tok_embd = None;
        let mut output_norm = None;
        let mut output = None;
        let mut slots = vec![LayerSlots::default(); hp.n_layer as usize];
        for (r, w, _) in &placed {
            let n_slots = slots.len();
            let slot = |il: Option<u32>| -> Result<usize, ModelError> {
                il.map(|i| i as usize)
                    .filter(|i| *i < n_slots)
                    .ok_or_else(|| ModelError::Internal(format!("{} has no layer", r.spec.name)))
            };
            let w = Some(*w);
            match r.spec.role {
                Role::TokenEmbd => tok_embd = w,
                Role::OutputNorm => output_norm = w,
                Role::Output => output = w,
                role => {
                    let l = &mut slots[slot(r.spec.layer)?];
                    match role {
                        Role::AttnNorm => l.attn_norm = w,
                        Role::AttnQ => l.wq = w,
                        Role::AttnK => l.wk = w,
                        Role::AttnV => l.wv = w,
                        Role::AttnQBias => l.bq = w,
                        Role::AttnKBias => l.bk = w,
                        Role::AttnVBias => l.bv = w,
                        Role::AttnQNorm => l.q_norm = w,
                        Role::AttnKNorm => l.k_norm = w,
                        Role::AttnOut => l.wo = w,
                        Role::AttnPostNorm => l.attn_post_norm = w,
                        Role::FfnNorm => l.ffn_norm = w,
                        Role::FfnGate => l.ffn_gate = w,
                        Role::FfnUp => l.ffn_up = w,
                        Role::FfnDown => l.ffn_down = w,
                        Role::FfnPostNorm => l.ffn_post_norm = w,
                        Role::TokenEmbd | Role::OutputNorm | Role::Output => {}
                    }
                }
            }
        }
        let layers = slots
            .into_iter()
            .enumerate()
            .map(|(il, s)| {
                let req = |w: Option<WeightRef>, what: &str| {
                    w.ok_or_else(|| missing(&format!("blk.{il}.{what}")))
                };
                Ok(LayerWeights {
                    attn_norm: req(s.attn_norm, "attn_norm")?,
                    wq: req(s.wq, "attn_q")?,
                    wk: req(s.wk, "attn_k")?,
                    wv: req(s.wv, "attn_v")?,
                    bq: s.bq,
                    bk: s.bk,
                    bv: s.bv,
                    q_norm: s.q_norm,
                    k_norm: s.k_norm,
                    wo: req(s.wo, "attn_output")?,
                    attn_post_norm: s.attn_post_norm,
                    ffn_norm: req(s.ffn_norm, "ffn_norm")?,
                    ffn_gate: req(s.ffn_gate, "ffn_gate")?,
                    ffn_up: req(s.ffn_up, "ffn_up")?,
                    ffn_down: req(s.ffn_down, "ffn_down")?,
                    ffn_post_norm: s.ffn_post_norm,
                })
            })
            .collect::<Result<Vec<_>, ModelError>>()?;

        // Llama 3 style RoPE frequency factors, when the file has them.
        let rope_freqs = match file.tensor("rope_freqs.weight") {
            Some(info) if info.ggml_type == crate::quant::GgmlType::F32 => {
                let t = new_like(&mapped, info, "rope_freqs.weight")?;
                mapped.place_tensor(t, &file_buffer, file.tensor_data_offset(info) as usize)?;
                Some(WeightRef {
                    home: Home::Mapped,
                    id: mapped.tensor_id(t)?,
                })
            }
            _ => None,
        };

        Ok(Weights {
            mapped,
            repacked,
            tok_embd: tok_embd.ok_or_else(|| missing("token_embd.weight"))?,
            output_norm: output_norm.ok_or_else(|| missing("output_norm.weight"))?,
            output: output.ok_or_else(|| missing("output.weight"))?,
            rope_freqs,
            layers,
            repacked_bytes,
            repack_buffer,
            load_seconds: start.elapsed().as_secs_f64(),
        })
    }

    /// The tensor behind a handle.
    pub fn get(&self, w: WeightRef) -> Result<Tensor<'_>, ModelError> {
        let ctx = match w.home {
            Home::Mapped => &self.mapped,
            Home::Repacked => &self.repacked,
        };
        Ok(ctx.tensor(w.id)?)
    }

    pub fn get_opt(&self, w: Option<WeightRef>) -> Result<Option<Tensor<'_>>, ModelError> {
        w.map(|w| self.get(w)).transpose()
    }
}
