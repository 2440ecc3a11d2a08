//! Model hyperparameters, tensor layouts, synthetic models, weights and graph builders.

pub mod check;
pub mod hparams;
pub mod info;
pub mod layout;
pub mod synth;

pub use hparams::{Arch, Hparams, HparamsError};

use std::path::PathBuf;

/// Turns a model argument into a file path: `synth:PRESET[:FTYPE]` names a
/// synthetic model, made on first use and cached; anything else is a path.
pub fn resolve_model_path(spec: &str) -> Result<PathBuf, synth::SynthError> {
    match synth::parse_spec(spec) {
        Some(parsed) => {
            let (preset, ftype) = parsed?;
            synth::ensure_cached(preset, ftype)
        }
        None => Ok(PathBuf::from(spec)),
    }
}
