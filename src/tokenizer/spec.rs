//! What the tokenizer needs from a model file, read from GGUF `tokenizer.ggml.*` keys.

use super::TokenizerError;

pub(crate) const KEY_MODEL: &str = crate::gguf::keys::TOKENIZER_MODEL;
pub(crate) const KEY_PRE: &str = crate::gguf::keys::TOKENIZER_PRE;
pub(crate) const KEY_TOKENS: &str = crate::gguf::keys::TOKENIZER_TOKENS;
pub(crate) const KEY_SCORES: &str = crate::gguf::keys::TOKENIZER_SCORES;
pub(crate) const KEY_TOKEN_TYPE: &str = crate::gguf::keys::TOKENIZER_TOKEN_TYPE;
pub(crate) const KEY_MERGES: &str = crate::gguf::keys::TOKENIZER_MERGES;
pub(crate) const KEY_BOS: &str = crate::gguf::keys::TOKENIZER_BOS_ID;
pub(crate) const KEY_EOS: &str = crate::gguf::keys::TOKENIZER_EOS_ID;
pub(crate) const KEY_EOT: &str = crate::gguf::keys::TOKENIZER_EOT_ID;
pub(crate) const KEY_UNK: &str = crate::gguf::keys::TOKENIZER_UNK_ID;
pub(crate) const KEY_PAD: &str = crate::gguf::keys::TOKENIZER_PAD_ID;
pub(crate) const KEY_ADD_BOS: &str = crate::gguf::keys::TOKENIZER_ADD_BOS;
pub(crate) const KEY_ADD_SPACE_PREFIX: &str = crate::gguf::keys::TOKENIZER_ADD_SPACE_PREFIX;
pub(crate) const KEY_CHAT_TEMPLATE: &str = crate::gguf::keys::TOKENIZER_CHAT_TEMPLATE;

/// Read access to model metadata, in the few shapes the vocabulary uses. For arrays, the outer
/// `None` means the key is absent and `Some(None)` that an element has another type.
pub(crate) trait Metadata {
    fn string(&self, key: &str) -> Option<&str>;
    fn uint(&self, key: &str) -> Option<u32>;
    fn flag(&self, key: &str) -> Option<bool>;
    fn strings(&self, key: &str) -> Option<Option<Vec<String>>>;
    fn floats(&self, key: &str) -> Option<Option<Vec<f32>>>;
    fn ints(&self, key: &str) -> Option<Option<Vec<i32>>>;
}

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
    /// Reads `tokenizer.ggml.*` from a GGUF file. A file without `tokenizer.ggml.tokens`
    /// has no tokenizer ([`TokenizerError::Missing`]).
    pub fn from_gguf(f: &crate::gguf::GgufFile) -> Result<VocabSpec, TokenizerError> {
        Self::from_metadata(f)
    }

    /// Reads the vocabulary keys; special-token ids and flags the file leaves out get
    /// llama.cpp's defaults.
    pub(crate) fn from_metadata(meta: &impl Metadata) -> Result<VocabSpec, TokenizerError> {
        let tokens = required(KEY_TOKENS, meta.strings(KEY_TOKENS), "array of strings")?;
        let model = meta
            .string(KEY_MODEL)
            .ok_or(TokenizerError::Missing(KEY_MODEL))?
            .to_string();
        let pre = meta.string(KEY_PRE).map(str::to_string);
        let scores = optional(KEY_SCORES, meta.floats(KEY_SCORES), "array of numbers")?;
        let token_types = optional(
            KEY_TOKEN_TYPE,
            meta.ints(KEY_TOKEN_TYPE),
            "array of integers",
        )?;
        let merges = optional(KEY_MERGES, meta.strings(KEY_MERGES), "array of strings")?;

        // SentencePiece vocabularies conventionally put <unk>, <s>, </s> first.
        let n_tokens = tokens.len();
        let spm_default = |id: u32| (model == "llama" && (id as usize) < n_tokens).then_some(id);
        let bos_id = meta.uint(KEY_BOS).or_else(|| spm_default(1));
        let eos_id = meta.uint(KEY_EOS).or_else(|| spm_default(2));
        let unk_id = meta.uint(KEY_UNK).or_else(|| spm_default(0));

        // GLM-4's vocabularies have no BOS for llama.cpp, whatever the file says.
        let no_bos = model == "gpt2"
            && super::bpe::pre_tokenizer_choice(pre.as_deref()).is_ok_and(|c| c.no_bos);
        let add_bos = !no_bos
            && meta
                .flag(KEY_ADD_BOS)
                .unwrap_or_else(|| Self::default_add_bos(&model, pre.as_deref()));
        let add_space_prefix = meta.flag(KEY_ADD_SPACE_PREFIX).unwrap_or(model == "llama");
        Ok(VocabSpec {
            pre,
            tokens,
            scores,
            token_types,
            merges,
            bos_id,
            eos_id,
            eot_id: meta.uint(KEY_EOT),
            unk_id,
            pad_id: meta.uint(KEY_PAD),
            add_bos,
            add_space_prefix,
            chat_template: meta.string(KEY_CHAT_TEMPLATE).map(str::to_string),
            model,
        })
    }

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

/// GGUF metadata. A key holding a non-array where an array belongs reads as an array
/// whose elements have the wrong type, so the error names the key.
impl Metadata for crate::gguf::GgufFile {
    fn string(&self, key: &str) -> Option<&str> {
        self.get_str(key)
    }
    fn uint(&self, key: &str) -> Option<u32> {
        self.get_u32(key)
    }
    fn flag(&self, key: &str) -> Option<bool> {
        self.get_bool(key)
    }
    fn strings(&self, key: &str) -> Option<Option<Vec<String>>> {
        let items = self.get(key)?.as_array();
        Some(items.and_then(|items| {
            items
                .iter()
                .map(|v| v.as_str().map(str::to_string))
                .collect()
        }))
    }
    fn floats(&self, key: &str) -> Option<Option<Vec<f32>>> {
        // Integer scores are accepted too, as llama.cpp does.
        let items = self.get(key)?.as_array();
        Some(items.and_then(|items| items.iter().map(|v| v.as_f32()).collect()))
    }
    fn ints(&self, key: &str) -> Option<Option<Vec<i32>>> {
        let items = self.get(key)?.as_array();
        Some(items.and_then(|items| {
            items
                .iter()
                .map(|v| v.as_i64().and_then(|i| i32::try_from(i).ok()))
                .collect()
        }))
    }
}

fn required<T>(
    key: &'static str,
    value: Option<Option<Vec<T>>>,
    expected: &'static str,
) -> Result<Vec<T>, TokenizerError> {
    match value {
        None => Err(TokenizerError::Missing(key)),
        Some(None) => Err(TokenizerError::WrongType { key, expected }),
        Some(Some(values)) => Ok(values),
    }
}

fn optional<T>(
    key: &'static str,
    value: Option<Option<Vec<T>>>,
    expected: &'static str,
) -> Result<Vec<T>, TokenizerError> {
    match value {
        None => Ok(Vec::new()),
        other => required(key, other, expected),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// Metadata held in plain maps.
    #[derive(Default)]
    struct FakeMeta {
        strings: HashMap<&'static str, String>,
        uints: HashMap<&'static str, u32>,
        flags: HashMap<&'static str, bool>,
        string_arrays: HashMap<&'static str, Option<Vec<String>>>,
        float_arrays: HashMap<&'static str, Option<Vec<f32>>>,
        int_arrays: HashMap<&'static str, Option<Vec<i32>>>,
    }

    impl Metadata for FakeMeta {
        fn string(&self, key: &str) -> Option<&str> {
            self.strings.get(key).map(String::as_str)
        }
        fn uint(&self, key: &str) -> Option<u32> {
            self.uints.get(key).copied()
        }
        fn flag(&self, key: &str) -> Option<bool> {
            self.flags.get(key).copied()
        }
        fn strings(&self, key: &str) -> Option<Option<Vec<String>>> {
            self.string_arrays.get(key).cloned()
        }
        fn floats(&self, key: &str) -> Option<Option<Vec<f32>>> {
            self.float_arrays.get(key).cloned()
        }
        fn ints(&self, key: &str) -> Option<Option<Vec<i32>>> {
            self.int_arrays.get(key).cloned()
        }
    }

    fn spm_meta() -> FakeMeta {
        let mut meta = FakeMeta::default();
        meta.strings.insert(KEY_MODEL, "llama".into());
        let tokens = ["<unk>", "<s>", "</s>", "a"]
            .iter()
            .map(|t| t.to_string())
            .collect();
        meta.string_arrays.insert(KEY_TOKENS, Some(tokens));
        meta
    }

    #[test]
    fn missing_tokens_means_no_tokenizer() {
        let mut meta = spm_meta();
        meta.string_arrays.clear();
        let err = VocabSpec::from_metadata(&meta).unwrap_err();
        assert!(matches!(err, TokenizerError::Missing(KEY_TOKENS)));
        let msg = err.to_string();
        assert!(
            msg.contains("no tokenizer") && msg.contains(KEY_TOKENS),
            "{msg}"
        );
    }

    #[test]
    fn missing_model_and_wrong_types_are_named() {
        let mut meta = spm_meta();
        meta.strings.clear();
        assert!(matches!(
            VocabSpec::from_metadata(&meta),
            Err(TokenizerError::Missing(KEY_MODEL))
        ));
        let mut meta = spm_meta();
        meta.string_arrays.insert(KEY_TOKENS, None);
        assert!(matches!(
            VocabSpec::from_metadata(&meta),
            Err(TokenizerError::WrongType {
                key: KEY_TOKENS,
                ..
            })
        ));
        let mut meta = spm_meta();
        meta.float_arrays.insert(KEY_SCORES, None);
        assert!(matches!(
            VocabSpec::from_metadata(&meta),
            Err(TokenizerError::WrongType {
                key: KEY_SCORES,
                ..
            })
        ));
    }

    #[test]
    fn spm_defaults_apply_when_keys_are_absent() {
        let spec = VocabSpec::from_metadata(&spm_meta()).unwrap();
        assert_eq!(
            (spec.unk_id, spec.bos_id, spec.eos_id),
            (Some(0), Some(1), Some(2))
        );
        assert!(spec.add_bos && spec.add_space_prefix);
        assert!(spec.scores.is_empty() && spec.token_types.is_empty() && spec.merges.is_empty());
        assert_eq!(spec.eot_id, None);
    }

    #[test]
    fn file_values_override_defaults() {
        let mut meta = spm_meta();
        meta.uints.insert(KEY_BOS, 3);
        meta.uints.insert(KEY_EOT, 2);
        meta.flags.insert(KEY_ADD_BOS, false);
        meta.flags.insert(KEY_ADD_SPACE_PREFIX, false);
        meta.strings
            .insert(KEY_CHAT_TEMPLATE, "{{ messages }}".into());
        meta.int_arrays
            .insert(KEY_TOKEN_TYPE, Some(vec![2, 3, 3, 1]));
        meta.float_arrays
            .insert(KEY_SCORES, Some(vec![0.0, 0.0, 0.0, -1.0]));
        let spec = VocabSpec::from_metadata(&meta).unwrap();
        assert_eq!(spec.bos_id, Some(3));
        assert_eq!(spec.eot_id, Some(2));
        assert!(!spec.add_bos && !spec.add_space_prefix);
        assert_eq!(spec.chat_template.as_deref(), Some("{{ messages }}"));
        assert_eq!(spec.token_types, vec![2, 3, 3, 1]);
        assert_eq!(spec.scores[3], -1.0);
    }

    #[test]
    fn gpt2_gets_no_spm_defaults() {
        let mut meta = spm_meta();
        meta.strings.insert(KEY_MODEL, "gpt2".into());
        meta.strings.insert(KEY_PRE, "qwen2".into());
        let spec = VocabSpec::from_metadata(&meta).unwrap();
        assert_eq!((spec.bos_id, spec.eos_id, spec.unk_id), (None, None, None));
        assert!(!spec.add_bos && !spec.add_space_prefix);
        assert_eq!(spec.pre.as_deref(), Some("qwen2"));
    }

    #[test]
    fn bos_defaults_follow_upstream() {
        assert!(VocabSpec::default_add_bos("llama", None));
        assert!(VocabSpec::default_add_bos("gpt2", Some("llama-bpe")));
        assert!(!VocabSpec::default_add_bos("gpt2", Some("qwen2")));
        assert!(!VocabSpec::default_add_bos("gpt2", None));
        assert!(!VocabSpec::default_add_bos("bert", None));
    }
}
