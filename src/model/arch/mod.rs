//! Everything that differs between architectures, one file each: the GGUF
//! keys an architecture reads beyond the shared ones, its tensors (roles,
//! shapes, which are optional), its RoPE style and its forward graph. The
//! blocks they share (norms, attention over the KV cache, gated FFNs) are in
//! `model::blocks`, the shared tensor shapes in `model::layout`.
//!
//! Adding a llama-shaped architecture: a file here with its
//! `llama::LlamaFamily` value (or an [`Architecture`] of its own, as Gemma 3
//! has), a variant of [`Arch`] and its line in [`Arch::def`] (the match is
//! exhaustive, so the compiler asks for it), and tests.

mod gemma2;
mod gemma3;
mod gpt_oss;
mod llama;
mod mistral3;
mod phi3;
mod qwen2;
mod qwen3;
mod qwen3moe;

use super::blocks::{Builder, KvLayer};
use super::hparams::{Hparams, HparamsError};
use super::layout::TensorSpec;
use super::weights::Weights;
use super::ModelError;
use crate::ggml::Tensor;
use crate::gguf::GgufFile;
use serde::Serialize;
use std::fmt;

/// Architectures rbench can run (`general.architecture`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    Llama,
    Qwen2,
    Qwen3,
    Qwen3Moe,
    Gemma2,
    Gemma3,
    Phi3,
    Mistral3,
    #[serde(rename = "gpt-oss")]
    GptOss,
}

impl Arch {
    pub const ALL: [Arch; 9] = [
        Arch::Llama,
        Arch::Qwen2,
        Arch::Qwen3,
        Arch::Qwen3Moe,
        Arch::Gemma2,
        Arch::Gemma3,
        Arch::Phi3,
        Arch::Mistral3,
        Arch::GptOss,
    ];

    /// The registry: each architecture's definition.
    pub fn def(self) -> &'static dyn Architecture {
        match self {
            Arch::Llama => &llama::LLAMA,
            Arch::Qwen2 => &qwen2::QWEN2,
            Arch::Qwen3 => &qwen3::QWEN3,
            Arch::Qwen3Moe => &qwen3moe::QWEN3MOE,
            Arch::Gemma2 => &gemma2::GEMMA2,
            Arch::Gemma3 => &gemma3::GEMMA3,
            Arch::Phi3 => &phi3::Phi3,
            Arch::Mistral3 => &mistral3::MISTRAL3,
            Arch::GptOss => &gpt_oss::GptOss,
        }
    }

    /// The `general.architecture` string.
    pub fn name(self) -> &'static str {
        self.def().name()
    }

    pub fn from_name(name: &str) -> Option<Arch> {
        Arch::ALL.into_iter().find(|a| a.name() == name)
    }

    pub fn supported_list() -> String {
        Arch::ALL.map(Arch::name).join(", ")
    }

    pub fn rope_style(self) -> RopeStyle {
        self.def().rope_style()
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Which dimensions RoPE rotates together.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RopeStyle {
    /// Adjacent pairs (0, 1), (2, 3), … (ggml's mode 0: Llama, Mistral).
    Normal,
    /// The two halves of the rotated dimensions (ggml's NEOX mode: Qwen,
    /// Gemma, GPT-NeoX).
    Neox,
}

/// One architecture. No method has a default: every architecture says
/// what it does.
pub trait Architecture: Sync {
    /// `general.architecture`, also the prefix of its own GGUF keys.
    fn name(&self) -> &'static str;

    fn rope_style(&self) -> RopeStyle;

    /// `rope.freq_base` when the file has none.
    fn default_rope_base(&self) -> f32;

    /// Reads what only this architecture has (sliding windows, its own
    /// attention scale, …) into `hp`, which holds the shared fields.
    fn read_hparams(&self, f: &GgufFile, hp: &mut Hparams) -> Result<(), HparamsError>;

    /// Every tensor a model of this shape carries, in the order llama.cpp's
    /// converters write them; `tied_output`: the output projection reuses
    /// the token embedding.
    fn tensors(&self, hp: &Hparams, tied_output: bool) -> Vec<TensorSpec>;

    /// Adds the forward pass to `b`'s graph; returns the logits
    /// `[n_vocab, n_outputs]`.
    fn build<'g>(
        &self,
        b: &mut Builder<'g>,
        w: &'g Weights,
        cache: &[KvLayer<'g>],
    ) -> Result<Tensor<'g>, ModelError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_rope_styles_are_the_reference_ones() {
        for arch in Arch::ALL {
            assert_eq!(Arch::from_name(arch.name()), Some(arch));
        }
        assert_eq!(Arch::from_name("mamba"), None);
        assert_eq!(Arch::Llama.rope_style(), RopeStyle::Normal);
        for arch in [
            Arch::Qwen2,
            Arch::Qwen3,
            Arch::Qwen3Moe,
            Arch::Gemma2,
            Arch::Gemma3,
            Arch::Phi3,
            Arch::GptOss,
        ] {
            assert_eq!(arch.rope_style(), RopeStyle::Neox, "{arch}");
        }
    }
}
