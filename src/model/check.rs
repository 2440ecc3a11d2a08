//! Matching a file's tensors against what its architecture needs, before any
//! of them is used: a missing tensor, a wrong shape or an unusable type is
//! refused with the tensor's name.

use super::hparams::Hparams;
use super::layout::{expected_tensors, TensorSpec};
use crate::gguf::{GgufFile, TensorInfo};
use crate::quant::GgmlType;

#[derive(Debug, thiserror::Error)]
pub enum TensorCheckError {
    #[error("tensor '{name}' is missing (the {arch} architecture needs it)")]
    Missing { name: String, arch: String },
    #[error("tensor '{name}' has shape {found:?}, expected {expected:?} for this model's hyperparameters")]
    WrongShape {
        name: String,
        found: Vec<u64>,
        expected: Vec<u64>,
    },
    #[error("tensor '{name}' has type {ty}, which rbench cannot compute with")]
    UnusableType { name: String, ty: GgmlType },
    #[error("tensor '{name}' belongs to layer {layer}, but the model declares {n_layer} layers (block_count): the file does not match its metadata")]
    BeyondLayerCount {
        name: String,
        layer: u64,
        n_layer: u32,
    },
}

/// The layer number of a `blk.N.*` tensor name.
fn layer_of(name: &str) -> Option<u64> {
    let rest = name.strip_prefix("blk.")?;
    rest.split('.').next()?.parse().ok()
}

/// A layout entry together with the file's tensor for it.
#[derive(Clone, Debug)]
pub struct Resolved<'f> {
    pub spec: TensorSpec,
    pub info: &'f TensorInfo,
}

/// Types ggml's CPU backend can multiply or look up rows of; norm and bias
/// vectors must be F32.
fn usable(spec: &TensorSpec, ty: GgmlType) -> bool {
    use GgmlType::*;
    if spec.role.needs_f32() {
        return ty == F32;
    }
    if spec.role.is_vector() {
        return matches!(ty, F32 | F16 | BF16);
    }
    !matches!(ty, I8 | I16 | I32 | I64 | F64 | Q8_1 | Q8_K)
}

/// Whether the file stores its own output projection (else it reuses the embedding).
pub fn has_output_tensor(f: &GgufFile) -> bool {
    f.tensor("output.weight").is_some()
}

/// Resolves every tensor the architecture needs (and the optional ones the
/// file has), in layout order.
pub fn resolve_tensors<'f>(
    f: &'f GgufFile,
    hp: &Hparams,
) -> Result<Vec<Resolved<'f>>, TensorCheckError> {
    // A block_count lower than the file's layers would otherwise silently
    // leave layers out.
    if let Some((t, layer)) = f.tensors().iter().find_map(|t| {
        layer_of(&t.name)
            .filter(|&l| l >= u64::from(hp.n_layer))
            .map(|l| (t, l))
    }) {
        return Err(TensorCheckError::BeyondLayerCount {
            name: t.name.clone(),
            layer,
            n_layer: hp.n_layer,
        });
    }
    let tied = !has_output_tensor(f);
    expected_tensors(hp, tied)
        .into_iter()
        .filter(|spec| !spec.optional || f.tensor(&spec.name).is_some())
        .map(|spec| {
            let info = f
                .tensor(&spec.name)
                .ok_or_else(|| TensorCheckError::Missing {
                    name: spec.name.clone(),
                    arch: hp.arch.name().to_string(),
                })?;
            if info.dims != spec.dims {
                return Err(TensorCheckError::WrongShape {
                    name: spec.name.clone(),
                    found: info.dims.clone(),
                    expected: spec.dims.clone(),
                });
            }
            if !usable(&spec, info.ggml_type) {
                return Err(TensorCheckError::UnusableType {
                    name: spec.name.clone(),
                    ty: info.ggml_type,
                });
            }
            Ok(Resolved { spec, info })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_numbers_come_from_block_tensor_names() {
        assert_eq!(layer_of("blk.12.attn_q.weight"), Some(12));
        assert_eq!(layer_of("blk.0.ffn_up.weight"), Some(0));
        assert_eq!(layer_of("token_embd.weight"), None);
        assert_eq!(layer_of("blk.x.attn_q.weight"), None);
        assert_eq!(layer_of("blk."), None);
    }
}
