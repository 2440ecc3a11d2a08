//! Model hyperparameters, tensor layouts, synthetic models, weights and the
//! graph builders: what differs per architecture is one file in `arch/`.

pub mod arch;
pub mod blocks;
pub mod check;
pub mod hparams;
pub mod info;
pub mod layout;
pub mod memory;
pub mod placement;
pub mod synth;
pub mod weights;

pub use hparams::{Arch, Hparams, HparamsError};

use crate::gguf::{GgufError, GgufFile};
use crate::tokenizer::{Tokenizer, TokenizerError};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error(transparent)]
    Gguf(#[from] GgufError),
    #[error(transparent)]
    Hparams(#[from] HparamsError),
    #[error(transparent)]
    Tensors(#[from] check::TensorCheckError),
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
    #[error(transparent)]
    Synth(#[from] synth::SynthError),
    #[error(transparent)]
    Memory(#[from] memory::MemoryError),
    #[error("ggml: {0}")]
    Ggml(#[from] crate::ggml::GgmlError),
    #[error(transparent)]
    Placement(#[from] placement::PlacementError),
    #[error(
        "device {device} is out of memory: the weights placed on it need {} ({wanted} bytes), it has {} of {} free (lower -ngl or use -ts to move layers elsewhere)",
        crate::format::bytes(*wanted),
        crate::format::bytes(*free),
        crate::format::bytes(*total)
    )]
    DeviceMemory {
        device: String,
        wanted: u64,
        free: u64,
        total: u64,
    },
    #[error("internal error: {0}")]
    Internal(String),
}

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

/// A loaded model: file, shape, weights in ggml, tokenizer.
pub struct Model {
    pub path: PathBuf,
    pub file: GgufFile,
    pub hparams: Hparams,
    pub weights: weights::Weights,
    pub tokenizer: Tokenizer,
    pub info: info::ModelInfo,
}

impl Model {
    pub fn load(path: &Path, opts: &weights::LoadOptions) -> Result<Model, ModelError> {
        let file = GgufFile::open(path)?;
        // Only the header was read so far; loading touches the tensor data.
        memory::check_model(file.tensor_data_size(), &memory::MemoryInfo::detect())?;
        let hparams = Hparams::from_gguf(&file)?;
        let info = info::ModelInfo::from_gguf(&file)?;
        let tokenizer = Tokenizer::from_gguf(&file)?;
        let weights = weights::Weights::load(&file, &hparams, opts)?;
        Ok(Model {
            path: path.to_path_buf(),
            file,
            hparams,
            weights,
            tokenizer,
            info,
        })
    }

    /// Adds this model's forward pass to `b`'s graph; returns the logits.
    pub fn build_forward<'g>(
        &'g self,
        b: &mut blocks::Builder<'g>,
        cache: &[blocks::KvLayer<'g>],
    ) -> Result<crate::ggml::Tensor<'g>, ModelError> {
        self.hparams.arch.def().build(b, &self.weights, cache)
    }
}
