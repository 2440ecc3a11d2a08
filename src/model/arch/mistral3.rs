//! Mistral 3 (Ministral 3, Mistral Small 3.x in their `mistral3` files):
//! the llama graph with YaRN RoPE scaling and Llama 4 style query
//! temperatures by position (`attention.temperature_scale`).

use super::llama::LlamaFamily;
use super::RopeStyle;

pub(super) const MISTRAL3: LlamaFamily = LlamaFamily {
    name: "mistral3",
    rope_style: RopeStyle::Normal,
    default_rope_base: 10_000.0,
    after_qkv: |_, _| Vec::new(),
    rope_freqs: true,
    attn_temperature: true,
    experts_required: false,
};
