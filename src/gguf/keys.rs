//! The GGUF metadata keys rbench reads and writes, in one table. Keys of an
//! architecture's own (`llama.embedding_length`) are a suffix here, joined to
//! the architecture's name by [`arch_key`].

// general.*
pub const GENERAL_ARCHITECTURE: &str = "general.architecture";
pub const GENERAL_TYPE: &str = "general.type";
pub const GENERAL_NAME: &str = "general.name";
pub const GENERAL_FILE_TYPE: &str = "general.file_type";
pub const GENERAL_SIZE_LABEL: &str = "general.size_label";
pub const GENERAL_QUANTIZATION_VERSION: &str = "general.quantization_version";
pub const GENERAL_ALIGNMENT: &str = "general.alignment";

// rbench's synthetic models.
pub const SYNTHETIC: &str = "rbench.synthetic";
pub const SYNTHETIC_PRESET: &str = "rbench.synthetic.preset";
pub const SYNTHETIC_SEED: &str = "rbench.synthetic.seed";
pub const SYNTHETIC_VERSION: &str = "rbench.synthetic.version";

// tokenizer.*
pub const TOKENIZER_MODEL: &str = "tokenizer.ggml.model";
pub const TOKENIZER_PRE: &str = "tokenizer.ggml.pre";
pub const TOKENIZER_TOKENS: &str = "tokenizer.ggml.tokens";
pub const TOKENIZER_SCORES: &str = "tokenizer.ggml.scores";
pub const TOKENIZER_TOKEN_TYPE: &str = "tokenizer.ggml.token_type";
pub const TOKENIZER_MERGES: &str = "tokenizer.ggml.merges";
pub const TOKENIZER_BOS_ID: &str = "tokenizer.ggml.bos_token_id";
pub const TOKENIZER_EOS_ID: &str = "tokenizer.ggml.eos_token_id";
pub const TOKENIZER_EOT_ID: &str = "tokenizer.ggml.eot_token_id";
pub const TOKENIZER_UNK_ID: &str = "tokenizer.ggml.unknown_token_id";
pub const TOKENIZER_PAD_ID: &str = "tokenizer.ggml.padding_token_id";
pub const TOKENIZER_ADD_BOS: &str = "tokenizer.ggml.add_bos_token";
pub const TOKENIZER_ADD_SPACE_PREFIX: &str = "tokenizer.ggml.add_space_prefix";
pub const TOKENIZER_CHAT_TEMPLATE: &str = "tokenizer.chat_template";

// `<arch>.*` suffixes.
pub const CONTEXT_LENGTH: &str = "context_length";
pub const EMBEDDING_LENGTH: &str = "embedding_length";
pub const BLOCK_COUNT: &str = "block_count";
pub const FEED_FORWARD_LENGTH: &str = "feed_forward_length";
pub const VOCAB_SIZE: &str = "vocab_size";
pub const EXPERT_COUNT: &str = "expert_count";
pub const EXPERT_USED_COUNT: &str = "expert_used_count";
pub const EXPERT_FEED_FORWARD_LENGTH: &str = "expert_feed_forward_length";
pub const HEAD_COUNT: &str = "attention.head_count";
pub const HEAD_COUNT_KV: &str = "attention.head_count_kv";
pub const KEY_LENGTH: &str = "attention.key_length";
pub const VALUE_LENGTH: &str = "attention.value_length";
pub const RMS_EPSILON: &str = "attention.layer_norm_rms_epsilon";
pub const SLIDING_WINDOW: &str = "attention.sliding_window";
pub const SLIDING_WINDOW_PATTERN: &str = "attention.sliding_window_pattern";
pub const ROPE_DIMENSION_COUNT: &str = "rope.dimension_count";
pub const ROPE_FREQ_BASE: &str = "rope.freq_base";
pub const ROPE_FREQ_BASE_SWA: &str = "rope.freq_base_swa";
pub const ROPE_SCALING_TYPE: &str = "rope.scaling.type";
pub const ROPE_SCALING_FACTOR: &str = "rope.scaling.factor";
pub const ROPE_SCALING_ATTN_FACTOR: &str = "rope.scaling.attn_factor";
pub const ROPE_SCALING_ORIG_CTX: &str = "rope.scaling.original_context_length";
pub const ROPE_SCALING_YARN_LOG_MUL: &str = "rope.scaling.yarn_log_multiplier";
pub const ROPE_SCALING_YARN_BETA_FAST: &str = "rope.scaling.yarn_beta_fast";
pub const ROPE_SCALING_YARN_BETA_SLOW: &str = "rope.scaling.yarn_beta_slow";
pub const ATTENTION_TEMPERATURE_SCALE: &str = "attention.temperature_scale";
pub const FINAL_LOGIT_SOFTCAPPING: &str = "final_logit_softcapping";
pub const ATTN_LOGIT_SOFTCAPPING: &str = "attn_logit_softcapping";

/// `<arch>.<suffix>`, e.g. `llama.embedding_length`.
pub fn arch_key(arch: &str, suffix: &str) -> String {
    format!("{arch}.{suffix}")
}
