//! Qwen3-MoE (Qwen3-30B-A3B, Qwen3-235B-A22B): Qwen3's attention (per-head
//! q/k norms, NEOX RoPE) with a mixture-of-experts FFN in every layer:
//! soft-max routing to the top `expert_used_count` experts, whose weights
//! are renormalised.

use super::llama::LlamaFamily;
use super::RopeStyle;
use crate::model::layout;

pub(super) const QWEN3MOE: LlamaFamily = LlamaFamily {
    name: "qwen3moe",
    rope_style: RopeStyle::Neox,
    default_rope_base: 1_000_000.0,
    after_qkv: layout::qk_norms,
    rope_freqs: false,
    attn_temperature: false,
    experts_required: true,
};
