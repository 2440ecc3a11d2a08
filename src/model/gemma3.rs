//! Gemma 3: embeddings scaled by sqrt(n_embd), per-head q/k norms, norms
//! after attention and after the FFN, GELU-gated FFN, sliding-window layers
//! (with their own RoPE base) and a global layer every sixth.

use super::blocks::{Builder, KvLayer};
use super::weights::Weights;
use super::ModelError;
use crate::ggml::Tensor;

fn required<T>(v: Option<T>, what: &str) -> Result<T, ModelError> {
    v.ok_or_else(|| ModelError::Internal(format!("gemma3 layer without {what}")))
}

pub fn build<'g>(
    b: &mut Builder<'g>,
    w: &'g Weights,
    cache: &[KvLayer<'g>],
) -> Result<Tensor<'g>, ModelError> {
    let ctx = b.ctx;
    let hp = b.hp;
    let x = ctx.get_rows(w.get(w.tok_embd)?, b.inputs.tokens)?;
    let mut x = ctx.scale(x, (hp.n_embd as f32).sqrt())?;
    let n_layer = hp.n_layer as usize;
    for (il, lw) in w.layers.iter().enumerate() {
        let h = b.norm(x, w.get(lw.attn_norm)?)?;
        let (q, k, v) = b.qkv(h, w, lw)?;
        let q = b.norm(q, w.get(required(lw.q_norm, "attn_q_norm")?)?)?;
        let k = b.norm(k, w.get(required(lw.k_norm, "attn_k_norm")?)?)?;
        let q = b.rope(q, il as u32, None)?;
        let k = b.rope(k, il as u32, None)?;
        // Gemma scales queries itself; attention then uses scale 1.
        let q = ctx.scale(q, hp.attn_scale)?;
        let attn = b.attention(il as u32, q, k, v, cache[il], 1.0)?;
        let mut attn = b.matmul(w.get(lw.wo)?, attn)?;
        if il + 1 == n_layer {
            attn = b.select_outputs(attn)?;
            x = b.select_outputs(x)?;
        }
        let attn = b.norm(
            attn,
            w.get(required(lw.attn_post_norm, "post_attention_norm")?)?,
        )?;
        let x_attn = ctx.add(attn, x)?;
        let h = b.norm(x_attn, w.get(lw.ffn_norm)?)?;
        let f = b.ffn(h, w, lw, true)?;
        let f = b.norm(f, w.get(required(lw.ffn_post_norm, "post_ffw_norm")?)?)?;
        x = ctx.add(f, x_attn)?;
    }
    let x = b.norm(x, w.get(w.output_norm)?)?;
    let mut logits = b.matmul(w.get(w.output)?, x)?;
    if let Some(cap) = hp.final_logit_softcap {
        logits = ctx.scale(ctx.tanh(ctx.scale(logits, 1.0 / cap)?)?, cap)?;
    }
    Ok(logits)
}
