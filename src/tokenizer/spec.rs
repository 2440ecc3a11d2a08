//! What the tokenizer needs from a model file, read from GGUF `tokenizer.ggml.*` keys.

/// Everything the tokenizer needs, as read from GGUF `tokenizer.ggml.*` keys.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct VocabSpec {
    /// `tokenizer.ggml.model`: "llama" (SentencePiece-style BPE over scores, byte fallback)
    /// or "gpt2" (byte-level BPE with merges).
    pub model: String,
    /// `tokenizer.ggml.pre`: the gpt2 pre-tokenizer name ("llama-bpe", "qwen2", "default", ...).
    pub pre: Option<String>,
    pub tokens: Vec<String>,
    /// One per token, or empty.
    pub scores: Vec<f32>,
    /// GGUF token types (1 NORMAL .. 6 BYTE), one per token, or empty.
    pub token_types: Vec<i32>,
    /// gpt2 only: "left right" per entry, in rank order.
    pub merges: Vec<String>,
    pub bos_id: Option<u32>,
    pub eos_id: Option<u32>,
    pub eot_id: Option<u32>,
    pub unk_id: Option<u32>,
    pub pad_id: Option<u32>,
    /// Whether prompts start with BOS by default.
    pub add_bos: bool,
    /// llama model: prefix text (and each fragment after a special token) with a space.
    pub add_space_prefix: bool,
    pub chat_template: Option<String>,
}

impl VocabSpec {
    /// Whether prompts start with BOS when the file has no `tokenizer.ggml.add_bos_token`:
    /// always for `llama` vocabularies; for `gpt2` only for pre-tokenizers whose models
    /// llama.cpp knows to want it (the Llama 3 family).
    pub fn default_add_bos(model: &str, pre: Option<&str>) -> bool {
        match model {
            "llama" => true,
            "gpt2" => super::bpe::pre_tokenizer_choice(pre)
                .map(|choice| choice.add_bos_default)
                .unwrap_or(false),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bos_defaults_follow_llama_cpp() {
        assert!(VocabSpec::default_add_bos("llama", None));
        assert!(VocabSpec::default_add_bos("gpt2", Some("llama-bpe")));
        assert!(!VocabSpec::default_add_bos("gpt2", Some("qwen2")));
        assert!(!VocabSpec::default_add_bos("gpt2", None));
        assert!(!VocabSpec::default_add_bos("bert", None));
    }
}
