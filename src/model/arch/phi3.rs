//! Phi-3 (mini, medium, 3.5-mini): pre-norm blocks with Q, K and V in one
//! matrix and the FFN's gate and up projections in one (gate rows first),
//! NEOX RoPE with LongRoPE's wavelength divisors on 128k models (the long
//! set once a sequence may outgrow the original context, else the short
//! one) and its magnitude factor, queries scaled before attention.
//!
//! llama.cpp turns Phi-3's sliding window off (its converters describe it
//! wrongly), and so does rbench: every layer attends globally.

use super::{Architecture, RopeStyle};
use crate::ggml::Tensor;
use crate::gguf::GgufFile;
use crate::model::blocks::{Builder, KvLayer};
use crate::model::hparams::{Hparams, HparamsError};
use crate::model::layout::{self, Role, TensorSpec};
use crate::model::weights::Weights;
use crate::model::ModelError;

pub struct Phi3;

impl Architecture for Phi3 {
    fn name(&self) -> &'static str {
        "phi3"
    }

    fn rope_style(&self) -> RopeStyle {
        RopeStyle::Neox
    }

    fn default_rope_base(&self) -> f32 {
        10_000.0
    }

    fn read_hparams(&self, _f: &GgufFile, hp: &mut Hparams) -> Result<(), HparamsError> {
        hp.n_swa = 0;
        Ok(())
    }

    fn tensors(&self, hp: &Hparams, tied_output: bool) -> Vec<TensorSpec> {
        let mut out = vec![layout::token_embd(hp)];
        for il in 0..hp.n_layer {
            out.extend(layout::attn_norm_qkv_fused(hp, il));
            out.push(layout::attn_output(hp, il));
            out.extend(layout::ffn_norm_fused_up(hp, il));
        }
        out.extend(layout::head(hp, tied_output));
        out.extend(layout::rope_factors_long_short(hp));
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
        let t = b.shape.n_tokens as i64;
        let (hd, n_head, n_head_kv) = (hp.head_dim_k as i64, hp.n_head as i64, hp.n_head_kv as i64);
        let (q_w, kv_w) = (hd * n_head, hd * n_head_kv);
        let factors = if b.shape.n_ctx > hp.n_ctx_orig as usize {
            w.global_opt(Role::RopeFactorsLong)?
        } else {
            w.global_opt(Role::RopeFactorsShort)?
        };
        let mut x = ctx.get_rows(w.global(Role::TokenEmbd)?, b.inputs.tokens)?;
        let n_layer = hp.n_layer as usize;
        for (il, lw) in w.layers.iter().enumerate() {
            let h = b.norm(x, w.layer(lw, Role::AttnNorm)?)?;
            let qkv = b.matmul(w.layer(lw, Role::AttnQkv)?, h)?; // [q_w + 2 kv_w, T]
            let part = |width: i64, offset: i64| -> Result<Tensor<'g>, ModelError> {
                let view = ctx.view_2d(qkv, width, t, qkv.nb()[1], (offset * 4) as usize)?;
                Ok(ctx.reshape_3d(ctx.cont(view)?, hd, width / hd, t)?)
            };
            let q = part(q_w, 0)?;
            let k = part(kv_w, q_w)?;
            let v = part(kv_w, q_w + kv_w)?;
            let q = b.rope(q, il as u32, factors)?;
            let k = b.rope(k, il as u32, factors)?;
            let q = ctx.scale(q, hp.attn_scale)?;
            let attn = b.attention(il as u32, q, k, v, cache[il], 1.0)?;
            let mut attn = b.matmul(w.layer(lw, Role::AttnOut)?, attn)?;
            if il + 1 == n_layer {
                attn = b.select_outputs(attn)?;
                x = b.select_outputs(x)?;
            }
            let x_attn = ctx.add(attn, x)?;
            let h = b.norm(x_attn, w.layer(lw, Role::FfnNorm)?)?;
            let up = b.matmul(w.layer(lw, Role::FfnUp)?, h)?; // [2 n_ff, T]
            let n_ff = hp.n_ff as i64;
            let half = |offset: i64| -> Result<Tensor<'g>, ModelError> {
                // The last layer has only the output rows left.
                let rows = up.ne()[1];
                let view = ctx.view_2d(up, n_ff, rows, up.nb()[1], (offset * 4) as usize)?;
                Ok(ctx.cont(view)?)
            };
            let act = ctx.swiglu_split(half(0)?, half(n_ff)?)?;
            let f = b.matmul(w.layer(lw, Role::FfnDown)?, act)?;
            x = ctx.add(f, x_attn)?;
        }
        let x = b.norm(x, w.global(Role::OutputNorm)?)?;
        b.matmul(w.global(Role::Output)?, x)
    }
}
