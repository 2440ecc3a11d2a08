//! Llama 2/3 (and Mistral, which is llama-shaped in GGUF; Mixtral is llama
//! with mixture-of-experts FFNs): pre-norm blocks, SwiGLU FFNs, adjacent-pair RoPE, optional Llama 3 frequency factors. The
//! family's description ([`LlamaFamily`]) and graph ([`forward`]) also serve
//! Qwen2 and Qwen3.

use super::{Architecture, RopeStyle};
use crate::ggml::Tensor;
use crate::gguf::{keys, GgufFile};
use crate::model::blocks::{Builder, KvLayer};
use crate::model::hparams::{opt_f32, Hparams, HparamsError};
use crate::model::layout::{self, Role, TensorSpec};
use crate::model::weights::Weights;
use crate::model::ModelError;

/// A member of the llama family: the llama graph ([`forward`]) and tensor
/// list, differing only in what this describes. Llama, Qwen2 and Qwen3 are
/// values of it, each in its own file.
pub(super) struct LlamaFamily {
    pub name: &'static str,
    pub rope_style: RopeStyle,
    /// `rope.freq_base` when the file has none.
    pub default_rope_base: f32,
    /// A layer's tensors between its Q/K/V projections and its attention
    /// output (biases, per-head norms), in the converters' order.
    pub after_qkv: fn(&Hparams, u32) -> Vec<TensorSpec>,
    /// Whether Llama 3's optional RoPE frequency factors are read.
    pub rope_freqs: bool,
    /// Whether queries take a temperature by position
    /// (`attention.temperature_scale`, Mistral 3).
    pub attn_temperature: bool,
    /// Whether every file of this architecture has mixture-of-experts FFNs
    /// (Qwen3-MoE). The others may have them too (Mixtral is `llama` with
    /// experts): `expert_count` decides.
    pub experts_required: bool,
}

pub(super) const LLAMA: LlamaFamily = LlamaFamily {
    name: "llama",
    rope_style: RopeStyle::Normal,
    default_rope_base: 10_000.0,
    after_qkv: |_, _| Vec::new(),
    rope_freqs: true,
    attn_temperature: false,
    experts_required: false,
};

impl Architecture for LlamaFamily {
    fn name(&self) -> &'static str {
        self.name
    }

    fn rope_style(&self) -> RopeStyle {
        self.rope_style
    }

    fn default_rope_base(&self) -> f32 {
        self.default_rope_base
    }

    fn read_hparams(&self, f: &GgufFile, hp: &mut Hparams) -> Result<(), HparamsError> {
        if self.attn_temperature {
            hp.attn_temp_scale = opt_f32(
                f,
                &keys::arch_key(self.name, keys::ATTENTION_TEMPERATURE_SCALE),
            )?
            .unwrap_or(0.0);
        }
        if self.experts_required && !hp.is_moe() {
            return Err(HparamsError::MissingKey(keys::arch_key(
                self.name,
                keys::EXPERT_COUNT,
            )));
        }
        Ok(())
    }

    fn tensors(&self, hp: &Hparams, tied_output: bool) -> Vec<TensorSpec> {
        let mut out = vec![layout::token_embd(hp)];
        for il in 0..hp.n_layer {
            out.extend(layout::attn_norm_qkv(hp, il));
            out.extend((self.after_qkv)(hp, il));
            out.push(layout::attn_output(hp, il));
            out.extend(layout::ffn_any(hp, il));
        }
        out.extend(layout::head(hp, tied_output));
        if self.rope_freqs {
            out.push(layout::rope_freqs(hp));
        }
        out
    }

    fn build<'g>(
        &self,
        b: &mut Builder<'g>,
        w: &'g Weights,
        cache: &[KvLayer<'g>],
    ) -> Result<Tensor<'g>, ModelError> {
        forward(b, w, cache)
    }
}

/// The llama family's forward pass: whatever Q/K/V biases and per-head q/k
/// norms the layers carry are applied (Qwen2, Qwen3).
pub(super) fn forward<'g>(
    b: &mut Builder<'g>,
    w: &'g Weights,
    cache: &[KvLayer<'g>],
) -> Result<Tensor<'g>, ModelError> {
    let ctx = b.ctx;
    let hp = b.hp;
    let freq_factors = w.global_opt(Role::RopeFreqs)?;
    let mut x = ctx.get_rows(w.global(Role::TokenEmbd)?, b.inputs.tokens)?;
    let n_layer = hp.n_layer as usize;
    for (il, lw) in w.layers.iter().enumerate() {
        let h = b.norm(x, w.layer(lw, Role::AttnNorm)?)?;
        let (mut q, mut k, v) = b.qkv(h, w, lw)?;
        if let (Some(qn), Some(kn)) = (
            w.layer_opt(lw, Role::AttnQNorm)?,
            w.layer_opt(lw, Role::AttnKNorm)?,
        ) {
            q = b.norm(q, qn)?;
            k = b.norm(k, kn)?;
        }
        let mut q = b.rope(q, il as u32, freq_factors)?;
        let k = b.rope(k, il as u32, freq_factors)?;
        if let Some(temp) = b.inputs.attn_temp {
            q = ctx.mul(q, temp)?;
        }
        let attn = b.attention(il as u32, q, k, v, cache[il], hp.attn_scale)?;
        let mut attn = b.matmul(w.layer(lw, Role::AttnOut)?, attn)?;
        if il + 1 == n_layer {
            attn = b.select_outputs(attn)?;
            x = b.select_outputs(x)?;
        }
        let x_attn = ctx.add(attn, x)?;
        let h = b.norm(x_attn, w.layer(lw, Role::FfnNorm)?)?;
        let f = b.ffn_any(h, w, lw, false)?;
        x = ctx.add(f, x_attn)?;
    }
    let x = b.norm(x, w.global(Role::OutputNorm)?)?;
    b.matmul(w.global(Role::Output)?, x)
}
