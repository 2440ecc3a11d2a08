//! Qwen2 (and Qwen2.5): the llama graph with biases on the Q, K and V
//! projections and NEOX RoPE.

use super::llama::LlamaFamily;
use super::RopeStyle;
use crate::model::layout;

pub(super) const QWEN2: LlamaFamily = LlamaFamily {
    name: "qwen2",
    rope_style: RopeStyle::Neox,
    default_rope_base: 1_000_000.0,
    after_qkv: layout::qkv_biases,
    rope_freqs: false,
    attn_temperature: false,
    experts_required: false,
};
