//! Qwen3 (dense): the llama graph with per-head RMS norms of queries and
//! keys (before RoPE) and NEOX RoPE.

use super::llama::LlamaFamily;
use super::RopeStyle;
use crate::model::layout;

pub(super) const QWEN3: LlamaFamily = LlamaFamily {
    name: "qwen3",
    rope_style: RopeStyle::Neox,
    default_rope_base: 1_000_000.0,
    after_qkv: layout::qk_norms,
    rope_freqs: false,
    attn_temperature: false,
    experts_required: false,
};
