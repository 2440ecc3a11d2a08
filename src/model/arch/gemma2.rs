//! Gemma 2: Gemma 3's graph without per-head q/k norms, a sliding window
//! (4096 by default) on every other layer with the global layers' RoPE
//! base, attention scores soft-capped at 50 and final logits at 30.

use super::gemma3::GemmaFamily;

pub(super) const GEMMA2: GemmaFamily = GemmaFamily {
    name: "gemma2",
    default_rope_base: 10_000.0,
    qk_norms: false,
    default_window: 4096,
    default_swa_period: 2,
    default_rope_base_swa: None,
    default_softcaps: Some((50.0, 30.0)),
    swa_layers_scaled: true,
    layers_of_27b: 46,
};
