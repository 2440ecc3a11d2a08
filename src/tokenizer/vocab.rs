//! Per-token facts derived from a [`VocabSpec`]: kinds, lookup texts, scores, and the
//! special-token roles llama.cpp infers from token texts.

use crate::gguf::keys;
use std::collections::HashMap;

use super::{TokenizerError, VocabSpec};

/// GGUF `tokenizer.ggml.token_type` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TokenKind {
    Normal,
    Unknown,
    Control,
    UserDefined,
    Unused,
    Byte,
    /// 0 or any value GGUF does not define.
    Undefined,
}

impl TokenKind {
    /// Maps a GGUF token type id (1 NORMAL .. 6 BYTE) to a kind.
    pub fn from_gguf(value: i32) -> TokenKind {
        match value {
            1 => TokenKind::Normal,
            2 => TokenKind::Unknown,
            3 => TokenKind::Control,
            4 => TokenKind::UserDefined,
            5 => TokenKind::Unused,
            6 => TokenKind::Byte,
            _ => TokenKind::Undefined,
        }
    }

    /// Tokens that are matched verbatim in input text before the model sees it
    /// (llama.cpp's special-token partition: CONTROL, USER_DEFINED and UNKNOWN).
    pub fn is_matched_verbatim(self) -> bool {
        matches!(
            self,
            TokenKind::Control | TokenKind::UserDefined | TokenKind::Unknown
        )
    }
}

/// Texts llama.cpp treats as end-of-turn markers when `tokenizer.ggml.eot_token_id` is absent,
/// in order of preference.
const EOT_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|end_of_text|>",
    "<EOT>",
];

/// Texts that end generation in addition to EOS/EOT (chat and tool-use formats).
const EOG_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|eom_id|>",
    "<|im_end|>",
    "<|end|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|end_of_text|>",
    "<EOT>",
];

/// The vocabulary in the shape the builders need.
pub(crate) struct VocabTable {
    /// Raw vocab strings exactly as stored in the file.
    pub pieces: Vec<String>,
    /// Matching text for empty entries: a placeholder no input can produce (llama.cpp does
    /// the same), so ids stay aligned and lookups stay unambiguous.
    empty_placeholders: HashMap<usize, String>,
    pub kinds: Vec<TokenKind>,
    /// One score per token (0 where the file has none).
    pub scores: Vec<f32>,
    pub bos_id: Option<u32>,
    pub eos_id: Option<u32>,
    pub eot_id: Option<u32>,
    pub unk_id: Option<u32>,
    /// Ids that end generation, sorted.
    pub eog_ids: Vec<u32>,
}

impl VocabTable {
    /// Takes the per-token arrays out of `spec` (they are large) and checks them.
    pub fn new(spec: &mut VocabSpec) -> Result<VocabTable, TokenizerError> {
        let n_tokens = spec.tokens.len();
        if n_tokens == 0 {
            return Err(TokenizerError::EmptyVocab);
        }
        check_len(keys::TOKENIZER_SCORES, spec.scores.len(), n_tokens)?;
        check_len(keys::TOKENIZER_TOKEN_TYPE, spec.token_types.len(), n_tokens)?;

        let pieces = std::mem::take(&mut spec.tokens);
        let empty_placeholders: HashMap<usize, String> = pieces
            .iter()
            .enumerate()
            .filter(|(_, t)| t.is_empty())
            .map(|(i, _)| (i, format!("[EMPTY_{i}]")))
            .collect();
        let mut kinds: Vec<TokenKind> = if spec.token_types.is_empty() {
            vec![TokenKind::Normal; n_tokens]
        } else {
            spec.token_types
                .iter()
                .map(|&t| TokenKind::from_gguf(t))
                .collect()
        };
        let scores = if spec.scores.is_empty() {
            vec![0.0; n_tokens]
        } else {
            std::mem::take(&mut spec.scores)
        };

        let check_id = |what: &'static str,
                        id: Option<u32>|
         -> Result<Option<u32>, TokenizerError> {
            match id {
                Some(id) if id as usize >= n_tokens => Err(TokenizerError::SpecialIdOutOfRange {
                    what,
                    id,
                    n_vocab: n_tokens,
                }),
                other => Ok(other),
            }
        };
        let bos_id = check_id("BOS", spec.bos_id)?;
        let eos_id = check_id("EOS", spec.eos_id)?;
        let unk_id = check_id("UNK", spec.unk_id)?;
        check_id("PAD", spec.pad_id)?;
        let mut eot_id = check_id("EOT", spec.eot_id)?;

        // Last occurrence wins for duplicate strings, as in llama.cpp's text -> id map.
        let find = |text: &str| pieces.iter().rposition(|p| p == text).map(|i| i as u32);
        if eot_id.is_none() {
            eot_id = EOT_TEXTS.iter().find_map(|t| find(t));
        }
        let mut eog_ids: Vec<u32> = EOG_TEXTS
            .iter()
            .filter_map(|t| find(t))
            .chain(eos_id)
            .chain(eot_id)
            .collect();
        eog_ids.sort_unstable();
        eog_ids.dedup();
        // End-of-generation markers must never be split into pieces of text, whatever
        // type the converter gave them (llama.cpp upgrades them to CONTROL as well).
        for &id in &eog_ids {
            if let Some(kind) = kinds.get_mut(id as usize) {
                if !kind.is_matched_verbatim() {
                    *kind = TokenKind::Control;
                }
            }
        }

        Ok(VocabTable {
            pieces,
            empty_placeholders,
            kinds,
            scores,
            bos_id,
            eos_id,
            eot_id,
            unk_id,
            eog_ids,
        })
    }

    /// The text token `id` is matched by (its piece, or the placeholder of an empty one).
    pub fn text(&self, id: usize) -> Option<&str> {
        match self.empty_placeholders.get(&id) {
            Some(placeholder) => Some(placeholder),
            None => self.pieces.get(id).map(String::as_str),
        }
    }

    /// The matching texts of all tokens, in id order.
    pub fn texts(&self) -> impl Iterator<Item = &str> + '_ {
        (0..self.pieces.len()).filter_map(|id| self.text(id))
    }
}

/// Per-token arrays may be absent (empty) but never partial.
fn check_len(what: &'static str, got: usize, n_tokens: usize) -> Result<(), TokenizerError> {
    if got == 0 || got == n_tokens {
        Ok(())
    } else {
        Err(TokenizerError::LengthMismatch {
            what,
            got,
            n_tokens,
        })
    }
}

/// The byte a `<0xNN>` token stands for.
pub(crate) fn byte_token_value(text: &str) -> Option<u8> {
    let hex = text.strip_prefix("<0x")?.strip_suffix('>')?;
    if hex.len() != 2 {
        return None;
    }
    u8::from_str_radix(hex, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_token_values_parse_only_exact_form() {
        assert_eq!(byte_token_value("<0x0A>"), Some(10));
        assert_eq!(byte_token_value("<0xff>"), Some(255));
        assert_eq!(byte_token_value("<0xE4>"), Some(0xE4));
        assert_eq!(byte_token_value("<0x1>"), None);
        assert_eq!(byte_token_value("<0x123>"), None);
        assert_eq!(byte_token_value("0x41"), None);
        assert_eq!(byte_token_value("<0xZZ>"), None);
    }

    #[test]
    fn token_kinds_follow_gguf_numbering() {
        assert_eq!(TokenKind::from_gguf(1), TokenKind::Normal);
        assert_eq!(TokenKind::from_gguf(2), TokenKind::Unknown);
        assert_eq!(TokenKind::from_gguf(3), TokenKind::Control);
        assert_eq!(TokenKind::from_gguf(4), TokenKind::UserDefined);
        assert_eq!(TokenKind::from_gguf(5), TokenKind::Unused);
        assert_eq!(TokenKind::from_gguf(6), TokenKind::Byte);
        assert_eq!(TokenKind::from_gguf(0), TokenKind::Undefined);
        assert_eq!(TokenKind::from_gguf(-7), TokenKind::Undefined);
    }
}
