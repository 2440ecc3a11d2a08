//! Qwen3 (dense): the llama graph with per-head RMS norms of queries and
//! keys (before RoPE) and NEOX RoPE.

use super::{Architecture, RopeStyle};
use crate::ggml::Tensor;
use crate::gguf::GgufFile;
use crate::model::blocks::{Builder, KvLayer};
use crate::model::hparams::{Hparams, HparamsError};
use crate::model::layout::{self, TensorSpec};
use crate::model::weights::Weights;
use crate::model::ModelError;

pub struct Qwen3;

impl Architecture for Qwen3 {
    fn name(&self) -> &'static str {
        "qwen3"
    }

    fn rope_style(&self) -> RopeStyle {
        RopeStyle::Neox
    }

    fn default_rope_base(&self) -> f32 {
        1_000_000.0
    }

    fn read_hparams(&self, _f: &GgufFile, _hp: &mut Hparams) -> Result<(), HparamsError> {
        Ok(())
    }

    fn tensors(&self, hp: &Hparams, tied_output: bool) -> Vec<TensorSpec> {
        let mut out = vec![layout::token_embd(hp)];
        for il in 0..hp.n_layer {
            out.extend(layout::attn_norm_qkv(hp, il));
            out.extend(layout::qk_norms(hp, il));
            out.push(layout::attn_output(hp, il));
            out.extend(layout::ffn_norm_gated(hp, il));
        }
        out.extend(layout::head(hp, tied_output));
        out
    }

    fn build<'g>(
        &self,
        b: &mut Builder<'g>,
        w: &'g Weights,
        cache: &[KvLayer<'g>],
    ) -> Result<Tensor<'g>, ModelError> {
        super::llama::forward(b, w, cache)
    }
}
