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

/// Weight handles by role (a table indexed by [`Role::index`]).
#[derive(Clone, Debug, Default)]
struct ByRole([Option<WeightRef>; Role::COUNT]);

impl ByRole {
    fn get(&self, role: Role) -> Option<WeightRef> {
        self.0[role.index()]
    }

    fn set(&mut self, role: Role, w: WeightRef) {
        self.0[role.index()] = Some(w);
    }
}

/// Handles of one layer's tensors, by role: what a layer has is what its
/// architecture's tensor list named (`model::arch`), checked at load.
#[derive(Clone, Debug)]
pub struct LayerWeights {
    index: u32,
    roles: ByRole,
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
    /// Tensors outside the layers (embedding, output norm and projection, RoPE factors).
    globals: ByRole,
    pub layers: Vec<LayerWeights>,
    /// Bytes copied into repacking buffers (the rest is used in place from the mapping).
    pub repacked_bytes: u64,
    pub repack_buffer: Option<String>,
    pub load_seconds: f64,
}

fn missing(role: Role, layer: Option<u32>) -> ModelError {
    match layer {
        Some(il) => ModelError::Internal(format!("layer {il} has no {role:?} tensor")),
        None => ModelError::Internal(format!("the model has no {role:?} tensor")),
    }
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

        let mut globals = ByRole::default();
        let mut layers: Vec<LayerWeights> = (0..hp.n_layer)
            .map(|index| LayerWeights {
                index,
                roles: ByRole::default(),
            })
            .collect();
        for (r, w, _) in &placed {
            match r.spec.layer {
                None => globals.set(r.spec.role, *w),
                Some(il) => layers
                    .get_mut(il as usize)
                    .ok_or_else(|| ModelError::Internal(format!("{} has no layer", r.spec.name)))?
                    .roles
                    .set(r.spec.role, *w),
            }
        }
        Ok(Weights {
            mapped,
            repacked,
            globals,
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

    /// A tensor outside the layers that the architecture requires.
    pub fn global(&self, role: Role) -> Result<Tensor<'_>, ModelError> {
        self.get(self.globals.get(role).ok_or_else(|| missing(role, None))?)
    }

    /// An optional tensor outside the layers, if the file has it.
    pub fn global_opt(&self, role: Role) -> Result<Option<Tensor<'_>>, ModelError> {
        self.get_opt(self.globals.get(role))
    }

    /// A tensor of layer `lw` that the architecture requires.
    pub fn layer(&self, lw: &LayerWeights, role: Role) -> Result<Tensor<'_>, ModelError> {
        self.get(
            lw.roles
                .get(role)
                .ok_or_else(|| missing(role, Some(lw.index)))?,
        )
    }

    /// A tensor layer `lw` may have (biases, extra norms).
    pub fn layer_opt(
        &self,
        lw: &LayerWeights,
        role: Role,
    ) -> Result<Option<Tensor<'_>>, ModelError> {
        self.get_opt(lw.roles.get(role))
    }
}
