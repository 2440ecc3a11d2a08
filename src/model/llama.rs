//! The llama family graph: Llama 2/3, Mistral, Qwen2 (QKV biases) and Qwen3
//! (per-head q/k norms). Pre-norm blocks with SwiGLU FFNs.

use super::blocks::{Builder, KvLayer};
use super::weights::Weights;
use super::ModelError;
use crate::ggml::Tensor;

/// Builds the forward pass; returns the logits `[n_vocab, n_outputs]`.
pub fn build<'g>(
    b: &mut Builder<'g>,
    w: &'g Weights,
    cache: &[KvLayer<'g>],
) -> Result<Tensor<'g>, ModelError> {
    let ctx = b.ctx;
    let hp = b.hp;
    let freq_factors = w.get_opt(w.rope_freqs)?;
    let mut x = ctx.get_rows(w.get(w.tok_embd)?, b.inputs.tokens)?;
    let n_layer = hp.n_layer as usize;
    for (il, lw) in w.layers.iter().enumerate() {
        let h = b.norm(x, w.get(lw.attn_norm)?)?;
        let (mut q, mut k, v) = b.qkv(h, w, lw)?;
        if let (Some(qn), Some(kn)) = (w.get_opt(lw.q_norm)?, w.get_opt(lw.k_norm)?) {
            q = b.norm(q, qn)?;
            k = b.norm(k, kn)?;
        }
        let q = b.rope(q, il as u32, freq_factors)?;
        let k = b.rope(k, il as u32, freq_factors)?;
        let attn = b.attention(il as u32, q, k, v, cache[il], hp.attn_scale)?;
        let mut attn = b.matmul(w.get(lw.wo)?, attn)?;
        if il + 1 == n_layer {
            attn = b.select_outputs(attn)?;
            x = b.select_outputs(x)?;
        }
        let x_attn = ctx.add(attn, x)?;
        let h = b.norm(x_attn, w.get(lw.ffn_norm)?)?;
        let f = b.ffn(h, w, lw, false)?;
        x = ctx.add(f, x_attn)?;
    }
    let x = b.norm(x, w.get(w.output_norm)?)?;
    b.matmul(w.get(w.output)?, x)
}
