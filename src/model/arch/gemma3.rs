//! Gemma 3: embeddings scaled by sqrt(n_embd), per-head q/k norms, norms
//! after attention and after the FFN, GELU-gated FFN, sliding-window layers
//! (with their own RoPE base) and a global layer every sixth, NEOX RoPE,
//! optional final logit soft-capping. The family's description
//! ([`GemmaFamily`]) and graph also serve Gemma 2.

use super::{Architecture, RopeStyle};
use crate::ggml::Tensor;
use crate::gguf::{keys, GgufFile};
use crate::model::blocks::{Builder, KvLayer};
use crate::model::hparams::{opt_f32, opt_u32, Hparams, HparamsError};
use crate::model::layout::{self, Role, TensorSpec};
use crate::model::weights::Weights;
use crate::model::ModelError;

/// A member of the Gemma family: one graph, differing in what this describes.
pub(super) struct GemmaFamily {
    pub name: &'static str,
    pub default_rope_base: f32,
    /// Per-head RMS norms of queries and keys (Gemma 3).
    pub qk_norms: bool,
    /// Sliding window when the file names none; 0 = no window.
    pub default_window: u32,
    /// Every how many layers one is global, when the file does not say.
    pub default_swa_period: u32,
    /// RoPE base of the windowed layers when the file does not say; `None`:
    /// the global layers' base.
    pub default_rope_base_swa: Option<f32>,
    /// Soft-caps of attention scores and final logits when the file does
    /// not say (Gemma 2: 50 and 30).
    pub default_softcaps: Option<(f32, f32)>,
    /// The windowed layers share the global layers' RoPE scaling (Gemma 2);
    /// else they stay unscaled (Gemma 3).
    pub swa_layers_scaled: bool,
    /// Layer count of the size whose queries are scaled by
    /// 1/sqrt(n_embd / n_head) instead of 1/sqrt(head dim) (the 27B).
    pub layers_of_27b: u32,
}

pub(super) const GEMMA3: GemmaFamily = GemmaFamily {
    name: "gemma3",
    default_rope_base: 1_000_000.0,
    qk_norms: true,
    default_window: 0,
    default_swa_period: 6,
    default_rope_base_swa: Some(10_000.0),
    default_softcaps: None,
    swa_layers_scaled: false,
    layers_of_27b: 62,
};

impl Architecture for GemmaFamily {
    fn name(&self) -> &'static str {
        self.name
    }

    fn rope_style(&self) -> RopeStyle {
        RopeStyle::Neox
    }

    fn default_rope_base(&self) -> f32 {
        self.default_rope_base
    }

    fn read_hparams(&self, f: &GgufFile, hp: &mut Hparams) -> Result<(), HparamsError> {
        let k = |suffix: &str| keys::arch_key(self.name(), suffix);
        hp.n_swa = opt_u32(f, &k(keys::SLIDING_WINDOW))?.unwrap_or(self.default_window);
        hp.swa_period =
            opt_u32(f, &k(keys::SLIDING_WINDOW_PATTERN))?.unwrap_or(self.default_swa_period);
        if !self.swa_layers_scaled {
            hp.rope_freq_scale_swa = 1.0;
        }
        hp.rope_freq_base_swa = opt_f32(f, &k(keys::ROPE_FREQ_BASE_SWA))?
            .or(self.default_rope_base_swa)
            .unwrap_or(hp.rope_freq_base);
        if let Some((attn, final_logits)) = self.default_softcaps {
            let attn = opt_f32(f, &k(keys::ATTN_LOGIT_SOFTCAPPING))?.unwrap_or(attn);
            hp.attn_logit_softcap = Some(attn).filter(|v| *v > 0.0);
            if opt_f32(f, &k(keys::FINAL_LOGIT_SOFTCAPPING))?.is_none() {
                hp.final_logit_softcap = Some(final_logits);
            }
        }
        if hp.n_layer == self.layers_of_27b {
            hp.attn_scale = 1.0 / ((hp.n_embd / hp.n_head) as f32).sqrt();
        }
        Ok(())
    }

    fn tensors(&self, hp: &Hparams, tied_output: bool) -> Vec<TensorSpec> {
        let mut out = vec![layout::token_embd(hp)];
        for il in 0..hp.n_layer {
            out.extend(layout::attn_norm_qkv(hp, il));
            if self.qk_norms {
                out.extend(layout::qk_norms(hp, il));
            }
            out.push(layout::attn_output(hp, il));
            out.push(layout::layer_norm(
                hp,
                il,
                "post_attention_norm",
                Role::AttnPostNorm,
            ));
            out.extend(layout::ffn_norm_gated(hp, il));
            out.push(layout::layer_norm(
                hp,
                il,
                "post_ffw_norm",
                Role::FfnPostNorm,
            ));
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
        let ctx = b.ctx;
        let hp = b.hp;
        let x = ctx.get_rows(w.global(Role::TokenEmbd)?, b.inputs.tokens)?;
        let mut x = ctx.scale(x, (hp.n_embd as f32).sqrt())?;
        let n_layer = hp.n_layer as usize;
        for (il, lw) in w.layers.iter().enumerate() {
            let h = b.norm(x, w.layer(lw, Role::AttnNorm)?)?;
            let (mut q, mut k, v) = b.qkv(h, w, lw)?;
            if self.qk_norms {
                q = b.norm(q, w.layer(lw, Role::AttnQNorm)?)?;
                k = b.norm(k, w.layer(lw, Role::AttnKNorm)?)?;
            }
            let q = b.rope(q, il as u32, None)?;
            let k = b.rope(k, il as u32, None)?;
            // Gemma scales queries itself; attention then uses scale 1.
            let q = ctx.scale(q, hp.attn_scale)?;
            let attn = b.attention(il as u32, q, k, v, cache[il], 1.0)?;
            let mut attn = b.matmul(w.layer(lw, Role::AttnOut)?, attn)?;
            if il + 1 == n_layer {
                attn = b.select_outputs(attn)?;
                x = b.select_outputs(x)?;
            }
            let attn = b.norm(attn, w.layer(lw, Role::AttnPostNorm)?)?;
            let x_attn = ctx.add(attn, x)?;
            let h = b.norm(x_attn, w.layer(lw, Role::FfnNorm)?)?;
            let f = b.ffn(h, w, lw, true)?;
            let f = b.norm(f, w.layer(lw, Role::FfnPostNorm)?)?;
            x = ctx.add(f, x_attn)?;
        }
        let x = b.norm(x, w.global(Role::OutputNorm)?)?;
        let mut logits = b.matmul(w.global(Role::Output)?, x)?;
        if let Some(cap) = hp.final_logit_softcap {
            logits = ctx.scale(ctx.tanh(ctx.scale(logits, 1.0 / cap)?)?, cap)?;
        }
        Ok(logits)
    }
}
