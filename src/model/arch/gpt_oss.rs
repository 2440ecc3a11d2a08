//! gpt-oss (OpenAI's open-weight MoE, 20B and 120B): pre-norm blocks with
//! biased Q/K/V/output projections, learned per-head attention sinks, a
//! sliding window (128) on every other layer starting with the first, NEOX
//! RoPE with YaRN, and a mixture-of-experts FFN in every layer whose router
//! and experts carry biases: top-k of the raw router scores, a soft-max over
//! the chosen ones, and a clamped SwiGLU (`swiglu_oai`). Its files store the
//! experts in MXFP4.

use super::{Architecture, RopeStyle};
use crate::ggml::Tensor;
use crate::gguf::{keys, GgufFile};
use crate::model::blocks::{Builder, ExpertAct, ExpertWeights, KvLayer, MoeStyle};
use crate::model::hparams::{opt_f32, opt_u32, Hparams, HparamsError};
use crate::model::layout::{self, Role, TensorSpec};
use crate::model::weights::Weights;
use crate::model::ModelError;

pub struct GptOss;

/// The experts' activation constants (llama.cpp has them fixed, as the
/// reference implementation does).
const SWIGLU_ALPHA: f32 = 1.702;
const SWIGLU_LIMIT: f32 = 7.0;

const NAME: &str = "gpt-oss";

impl Architecture for GptOss {
    fn name(&self) -> &'static str {
        NAME
    }

    fn rope_style(&self) -> RopeStyle {
        RopeStyle::Neox
    }

    fn default_rope_base(&self) -> f32 {
        150_000.0
    }

    fn read_hparams(&self, f: &GgufFile, hp: &mut Hparams) -> Result<(), HparamsError> {
        let k = |suffix: &str| keys::arch_key(NAME, suffix);
        hp.n_swa = opt_u32(f, &k(keys::SLIDING_WINDOW))?
            .ok_or_else(|| HparamsError::MissingKey(k(keys::SLIDING_WINDOW)))?;
        hp.swa_period = opt_u32(f, &k(keys::SLIDING_WINDOW_PATTERN))?.unwrap_or(2);
        hp.rope_freq_base_swa =
            opt_f32(f, &k(keys::ROPE_FREQ_BASE_SWA))?.unwrap_or(hp.rope_freq_base);
        hp.attn_sinks = true;
        if !hp.is_moe() {
            return Err(HparamsError::MissingKey(k(keys::EXPERT_COUNT)));
        }
        Ok(())
    }

    fn tensors(&self, hp: &Hparams, _tied_output: bool) -> Vec<TensorSpec> {
        let mut out = vec![layout::token_embd(hp)];
        for il in 0..hp.n_layer {
            out.extend(layout::attn_norm_qkv(hp, il));
            out.extend(layout::qkv_biases(hp, il));
            out.push(layout::attn_output(hp, il));
            out.extend(layout::attn_out_bias_sinks(hp, il));
            out.push(layout::layer_norm(
                hp,
                il,
                "post_attention_norm",
                Role::AttnPostNorm,
            ));
            out.extend(layout::moe_experts(hp, il));
            out.extend(layout::moe_biases(hp, il));
        }
        // llama.cpp requires the output projection: it is never tied.
        out.extend(layout::head(hp, false));
        out
    }

    fn build<'g>(
        &self,
        b: &mut Builder<'g>,
        w: &'g Weights,
        cache: &[KvLayer<'g>],
    ) -> Result<Tensor<'g>, ModelError> {
        let ctx = b.ctx;
        let hp = b.hp;
        let style = MoeStyle {
            weights: ExpertWeights::SoftMaxOfChosen,
            act: ExpertAct::SwigluOai {
                alpha: SWIGLU_ALPHA,
                limit: SWIGLU_LIMIT,
            },
            biases: true,
        };
        let mut x = ctx.get_rows(w.global(Role::TokenEmbd)?, b.inputs.tokens)?;
        let n_layer = hp.n_layer as usize;
        for (il, lw) in w.layers.iter().enumerate() {
            let h = b.norm(x, w.layer(lw, Role::AttnNorm)?)?;
            let (q, k, v) = b.qkv(h, w, lw)?;
            let q = b.rope(q, il as u32, None)?;
            let k = b.rope(k, il as u32, None)?;
            let sinks = w.layer(lw, Role::AttnSinks)?;
            let attn =
                b.attention_with_sinks(il as u32, q, k, v, cache[il], hp.attn_scale, Some(sinks))?;
            let mut attn = b.linear(
                w.layer(lw, Role::AttnOut)?,
                attn,
                Some(w.layer(lw, Role::AttnOutBias)?),
            )?;
            if il + 1 == n_layer {
                attn = b.select_outputs(attn)?;
                x = b.select_outputs(x)?;
            }
            let x_attn = ctx.add(attn, x)?;
            let h = b.norm(x_attn, w.layer(lw, Role::AttnPostNorm)?)?;
            let f = b.moe_ffn(h, w, lw, style)?;
            x = ctx.add(f, x_attn)?;
        }
        let x = b.norm(x, w.global(Role::OutputNorm)?)?;
        b.matmul(w.global(Role::Output)?, x)
    }
}
