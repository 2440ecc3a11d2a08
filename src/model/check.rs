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
    if spec.role.is_vector() {
        return matches!(ty, F32 | F16 | BF16);
    }
    !matches!(ty, I8 | I16 | I32 | I64 | F64 | Q8_1 | Q8_K)
}

/// Whether the file stores its own output projection (else it reuses the embedding).
pub fn has_output_tensor(f: &GgufFile) -> bool {
    f.tensor("output.weight").is_some()
}

/// Resolves every tensor the architecture needs, in layout order.
pub fn resolve_tensors<'f>(
    f: &'f GgufFile,
    hp: &Hparams,
) -> Result<Vec<Resolved<'f>>, TensorCheckError> {
    let tied = !has_output_tensor(f);
    expected_tensors(hp, tied)
        .into_iter()
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
