//! Tokenizer built from a GGUF vocabulary: a `tokenizers::Tokenizer` that reproduces
//! llama.cpp's token ids, plus llama.cpp-style detokenization and streaming decode.
//!
//! Text is first split at special tokens (CONTROL, USER_DEFINED and UNKNOWN types are matched
//! verbatim), then each fragment goes through the model: `llama` vocabularies become a BPE
//! whose merges come from the token scores (see [`spm`]), `gpt2` vocabularies a byte-level
//! BPE with their own merges and pre-tokenizer regexes (see [`bpe`]).
//!
//! Special tokens are found leftmost-first, longest at each position; llama.cpp instead takes
//! longer tokens first across the whole text. The two differ only where two special tokens
//! overlap in the text (a suffix of one is a prefix of another). In Gemma's vocabulary that
//! happens only inside runs of one repeated character, where both rules split alike.

mod bpe;
mod error;
mod spec;
mod spm;
mod stream;
mod vocab;

pub use error::TokenizerError;
pub use spec::VocabSpec;
pub use stream::StreamDecoder;
pub use vocab::TokenKind;

use tokenizers::processors::template::TemplateProcessing;
use tokenizers::AddedToken;

use vocab::VocabTable;

/// Values of `tokenizer.ggml.model` we can build.
pub const SUPPORTED_MODELS: &[&str] = &["llama", "gpt2"];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ModelFamily {
    /// SentencePiece-style: '▁' for spaces, `<0xNN>` byte fallback.
    Spm,
    /// Byte-level BPE: every byte has a visible stand-in character.
    ByteLevel,
}

/// A tokenizer for one model's vocabulary.
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    family: ModelFamily,
    pieces: Vec<String>,
    kinds: Vec<TokenKind>,
    bos_id: Option<u32>,
    eos_id: Option<u32>,
    eot_id: Option<u32>,
    eog_ids: Vec<u32>,
    add_bos: bool,
    add_space_prefix: bool,
    chat_template: Option<String>,
    /// Why text cannot be encoded (an unknown `tokenizer.ggml.pre`): the
    /// vocabulary still decodes ids and names its special tokens, so
    /// commands that feed token ids (benchmarks) still run.
    text_problem: Option<TokenizerError>,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("family", &self.family)
            .field("n_vocab", &self.pieces.len())
            .field("bos_id", &self.bos_id)
            .field("eos_id", &self.eos_id)
            .field("eot_id", &self.eot_id)
            .field("add_bos", &self.add_bos)
            .finish_non_exhaustive()
    }
}

impl Tokenizer {
    /// Builds the tokenizer for a vocabulary.
    pub fn from_spec(mut spec: VocabSpec) -> Result<Tokenizer, TokenizerError> {
        let family = match spec.model.as_str() {
            "llama" => ModelFamily::Spm,
            "gpt2" => ModelFamily::ByteLevel,
            other => return Err(TokenizerError::UnsupportedModel(other.to_string())),
        };
        let table = VocabTable::new(&mut spec)?;
        let mut text_problem = None;
        let mut inner = match family {
            ModelFamily::Spm => spm::build(&table, spec.add_space_prefix)?,
            ModelFamily::ByteLevel => {
                let choice = match bpe::pre_tokenizer_choice(spec.pre.as_deref()) {
                    Ok(choice) => choice,
                    // Keep the vocabulary for ids; refuse text (see `encode`).
                    Err(e @ TokenizerError::UnsupportedPre(_)) => {
                        text_problem = Some(e);
                        bpe::pre_tokenizer_choice(None)?
                    }
                    Err(e) => return Err(e),
                };
                bpe::build(&table, &spec.merges, &choice)?
            }
        };
        add_verbatim_tokens(&mut inner, &table);
        if spec.add_bos {
            if let Some(processor) = bos_template(&table) {
                inner.with_post_processor(Some(processor));
            }
        }

        let VocabTable {
            pieces,
            kinds,
            bos_id,
            eos_id,
            eot_id,
            eog_ids,
            ..
        } = table;
        Ok(Tokenizer {
            inner,
            family,
            pieces,
            kinds,
            bos_id,
            eos_id,
            eot_id,
            eog_ids,
            add_bos: spec.add_bos,
            // Only SentencePiece vocabularies mark word starts with a space.
            add_space_prefix: family == ModelFamily::Spm && spec.add_space_prefix,
            chat_template: spec.chat_template,
            text_problem,
        })
    }

    /// Why this tokenizer cannot encode text, if it cannot (its
    /// `tokenizer.ggml.pre` is one rbench does not split like llama.cpp).
    /// Token ids still decode.
    pub fn text_problem(&self) -> Option<&TokenizerError> {
        self.text_problem.as_ref()
    }

    /// Reads the vocabulary of a GGUF file and builds its tokenizer.
    pub fn from_gguf(f: &crate::gguf::GgufFile) -> Result<Tokenizer, TokenizerError> {
        Tokenizer::from_spec(VocabSpec::from_gguf(f)?)
    }

    /// Text to token ids. Special-token texts in `text` (e.g. `<start_of_turn>`) become single
    /// tokens; `add_bos` puts BOS first.
    pub fn encode(&self, text: &str, add_bos: bool) -> Result<Vec<u32>, TokenizerError> {
        if let Some(TokenizerError::UnsupportedPre(name)) = &self.text_problem {
            return Err(TokenizerError::UnsupportedPre(name.clone()));
        }
        let encoding = self
            .inner
            .encode_fast(text, false)
            .map_err(TokenizerError::library)?;
        let mut ids = Vec::with_capacity(encoding.len() + 1);
        if add_bos {
            ids.push(self.bos_id.ok_or(TokenizerError::NoBos)?);
        }
        ids.extend_from_slice(encoding.get_ids());
        Ok(ids)
    }

    /// Token ids to text. BOS, EOS and other control tokens produce nothing; bytes that are
    /// not valid UTF-8 become U+FFFD. With `add_space_prefix`, the space that encoding put
    /// in front of the text is removed again.
    pub fn decode(&self, ids: &[u32]) -> Result<String, TokenizerError> {
        let mut bytes = Vec::new();
        let mut strip_space = self.add_space_prefix;
        for &id in ids {
            let start = bytes.len();
            self.append_piece(id, &mut bytes)?;
            if strip_space && bytes.len() > start {
                if bytes.get(start) == Some(&b' ') {
                    bytes.remove(start);
                }
                strip_space = false;
            }
        }
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// The raw vocabulary string of a token (e.g. "▁the", "<0x0A>", "<start_of_turn>").
    pub fn token_piece(&self, id: u32) -> Option<&str> {
        self.pieces.get(id as usize).map(String::as_str)
    }

    /// The GGUF type of a token.
    pub fn token_kind(&self, id: u32) -> Option<TokenKind> {
        self.kinds.get(id as usize).copied()
    }

    pub fn n_vocab(&self) -> usize {
        self.pieces.len()
    }

    pub fn bos_id(&self) -> Option<u32> {
        self.bos_id
    }

    pub fn eos_id(&self) -> Option<u32> {
        self.eos_id
    }

    /// End of turn (e.g. Gemma's `<end_of_turn>`), from the file or recognized by its text.
    pub fn eot_id(&self) -> Option<u32> {
        self.eot_id
    }

    /// Whether prompts of this model start with BOS by default.
    pub fn add_bos_default(&self) -> bool {
        self.add_bos
    }

    /// Whether generation stops at this token: EOS, EOT and the other end markers llama.cpp
    /// recognizes by text (`<|eot_id|>`, `<|im_end|>`, `<end_of_turn>`, ...).
    pub fn is_eog(&self, id: u32) -> bool {
        self.eog_ids.binary_search(&id).is_ok()
    }

    pub fn chat_template(&self) -> Option<&str> {
        self.chat_template.as_deref()
    }

    /// The underlying `tokenizers` tokenizer (its `encode(text, true)` adds BOS when the
    /// model does by default).
    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }

    /// A decoder for generated tokens that emits text only once it is complete UTF-8.
    pub fn stream_decoder(&self) -> StreamDecoder<'_> {
        StreamDecoder::new(self)
    }

    /// Appends the bytes a token stands for in output text (llama.cpp's token-to-piece
    /// without special tokens): control, unknown and unused tokens stand for nothing.
    pub(crate) fn append_piece(&self, id: u32, out: &mut Vec<u8>) -> Result<(), TokenizerError> {
        let out_of_range = || TokenizerError::IdOutOfRange {
            id,
            n_vocab: self.pieces.len(),
        };
        let piece = self.pieces.get(id as usize).ok_or_else(out_of_range)?;
        let kind = self.kinds.get(id as usize).ok_or_else(out_of_range)?;
        match kind {
            TokenKind::Control | TokenKind::Unknown | TokenKind::Unused | TokenKind::Undefined => {}
            TokenKind::UserDefined => out.extend_from_slice(piece.as_bytes()),
            TokenKind::Byte => match vocab::byte_token_value(piece) {
                Some(byte) => out.push(byte),
                None => out.extend_from_slice(piece.as_bytes()),
            },
            TokenKind::Normal => match self.family {
                ModelFamily::Spm => {
                    out.extend_from_slice(piece.replace(spm::SPACE_MARK, " ").as_bytes())
                }
                ModelFamily::ByteLevel => bpe::byte_level_decode(piece, out),
            },
        }
        Ok(())
    }
}

/// Registers the tokens that are matched verbatim in input text. CONTROL and UNKNOWN tokens
/// are special (skipped when decoding); USER_DEFINED ones are ordinary text.
fn add_verbatim_tokens(inner: &mut tokenizers::Tokenizer, table: &VocabTable) {
    let mut special = Vec::new();
    let mut user_defined = Vec::new();
    for (piece, kind) in table.pieces.iter().zip(&table.kinds) {
        // An empty token can't be matched (and its placeholder must not be).
        if piece.is_empty() || !kind.is_matched_verbatim() {
            continue;
        }
        if *kind == TokenKind::UserDefined {
            user_defined.push(AddedToken::from(piece.clone(), false).normalized(false));
        } else {
            special.push(AddedToken::from(piece.clone(), true).normalized(false));
        }
    }
    inner.add_special_tokens(&special);
    inner.add_tokens(&user_defined);
}

/// A post-processor that puts BOS first, for users of [`Tokenizer::inner`]. None when the
/// BOS text can't be written in a template (it contains the template's separators).
fn bos_template(table: &VocabTable) -> Option<TemplateProcessing> {
    let id = table.bos_id?;
    let text = table.text(id as usize)?;
    if text.contains([' ', ':']) || text.starts_with('$') {
        return None;
    }
    TemplateProcessing::builder()
        .try_single(vec![text, "$A"])
        .ok()?
        .special_tokens(vec![(text, id)])
        .build()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const BYTE_BASE: u32 = 3;

    /// A small SentencePiece-style vocabulary: `<unk>`, `<s>`, `</s>`, 256 byte tokens,
    /// then scored pieces and one control token (ids 259..=270).
    fn spm_spec(add_space_prefix: bool) -> VocabSpec {
        let mut tokens = vec!["<unk>".to_string(), "<s>".into(), "</s>".into()];
        let mut types = vec![2, 3, 3];
        let mut scores = vec![0.0, 0.0, 0.0];
        for b in 0..=255u8 {
            tokens.push(format!("<0x{b:02X}>"));
            types.push(6);
            scores.push(0.0);
        }
        let pieces: [(&str, f32, i32); 12] = [
            ("▁", -10.0, 1),           // 259
            ("h", -10.0, 1),           // 260
            ("e", -10.0, 1),           // 261
            ("l", -10.0, 1),           // 262
            ("o", -10.0, 1),           // 263
            ("ll", -1.0, 1),           // 264
            ("he", -2.0, 1),           // 265
            ("hell", -3.0, 1),         // 266
            ("hello", -4.0, 1),        // 267
            ("▁h", -0.5, 1),           // 268
            ("▁hello", -5.0, 1),       // 269
            ("<end_of_turn>", 0.0, 3), // 270
        ];
        for (text, score, kind) in pieces {
            tokens.push(text.to_string());
            scores.push(score);
            types.push(kind);
        }
        VocabSpec {
            model: "llama".into(),
            tokens,
            scores,
            token_types: types,
            bos_id: Some(1),
            eos_id: Some(2),
            unk_id: Some(0),
            add_bos: true,
            add_space_prefix,
            ..VocabSpec::default()
        }
    }

    #[test]
    fn spm_merges_follow_scores_not_length() {
        let tok = Tokenizer::from_spec(spm_spec(false)).unwrap();
        // he(-2) and ll(-1) merge, then hell(-3), then hello(-4).
        assert_eq!(tok.encode("hello", false).unwrap(), vec![267]);
        let tok = Tokenizer::from_spec(spm_spec(true)).unwrap();
        // "▁hello": ▁h(-0.5) wins first, which leaves no path to "▁hello".
        assert_eq!(
            tok.encode("hello", true).unwrap(),
            vec![1, 268, 261, 264, 263]
        );
    }

    #[test]
    fn spm_unknown_chars_fall_back_to_bytes() {
        let tok = Tokenizer::from_spec(spm_spec(false)).unwrap();
        let ids = tok.encode("hé", false).unwrap();
        assert_eq!(ids, vec![260, BYTE_BASE + 0xC3, BYTE_BASE + 0xA9]);
        assert_eq!(tok.decode(&ids).unwrap(), "hé");
    }

    #[test]
    fn spm_special_tokens_split_text_and_restart_space_prefix() {
        let tok = Tokenizer::from_spec(spm_spec(true)).unwrap();
        let ids = tok.encode("hello<end_of_turn>hello", true).unwrap();
        assert_eq!(ids, vec![1, 268, 261, 264, 263, 270, 268, 261, 264, 263]);
        // Control tokens vanish and the prefix space goes again only at the start.
        assert_eq!(tok.decode(&ids).unwrap(), "hello hello");
        assert!(tok.is_eog(270), "<end_of_turn> ends generation");
        assert!(tok.is_eog(2), "EOS ends generation");
        assert!(!tok.is_eog(1));
        assert_eq!(tok.eot_id(), Some(270));
    }

    #[test]
    fn spm_space_is_visible_mark_and_bos_optional() {
        let tok = Tokenizer::from_spec(spm_spec(false)).unwrap();
        let ids = tok.encode("h h", false).unwrap();
        assert_eq!(ids, vec![260, 268]);
        assert_eq!(tok.decode(&ids).unwrap(), "h h");
        assert_eq!(tok.encode("", true).unwrap(), vec![1]);
        assert!(tok.encode("", false).unwrap().is_empty());
        assert_eq!(tok.token_piece(268), Some("▁h"));
        assert_eq!(tok.token_piece(9999), None);
        assert_eq!(tok.n_vocab(), 271);
        assert!(tok.add_bos_default());
    }

    #[test]
    fn inner_tokenizer_agrees_with_wrapper() {
        let tok = Tokenizer::from_spec(spm_spec(true)).unwrap();
        let inner = tok.inner().encode("hello<end_of_turn>", true).unwrap();
        assert_eq!(
            inner.get_ids(),
            tok.encode("hello<end_of_turn>", true).unwrap()
        );
    }

    #[test]
    fn decode_rejects_ids_outside_vocab() {
        let tok = Tokenizer::from_spec(spm_spec(false)).unwrap();
        assert!(matches!(
            tok.decode(&[260, 271]),
            Err(TokenizerError::IdOutOfRange {
                id: 271,
                n_vocab: 271
            })
        ));
        assert!(tok.stream_decoder().push(5000).is_err());
    }

    #[test]
    fn encode_with_bos_needs_a_bos_token() {
        let mut spec = spm_spec(false);
        spec.bos_id = None;
        spec.add_bos = false;
        let tok = Tokenizer::from_spec(spec).unwrap();
        assert!(matches!(tok.encode("h", true), Err(TokenizerError::NoBos)));
        assert_eq!(tok.encode("h", false).unwrap(), vec![260]);
    }

    #[test]
    fn odd_vocabularies_give_errors_not_panics() {
        let unsupported = VocabSpec {
            model: "bert".into(),
            ..spm_spec(false)
        };
        let msg = Tokenizer::from_spec(unsupported).err().unwrap().to_string();
        assert!(
            msg.contains("bert") && msg.contains("llama") && msg.contains("gpt2"),
            "{msg}"
        );

        let mut short_scores = spm_spec(false);
        short_scores.scores.pop();
        assert!(matches!(
            Tokenizer::from_spec(short_scores),
            Err(TokenizerError::LengthMismatch {
                what: "tokenizer.ggml.scores",
                ..
            })
        ));
        let mut long_types = spm_spec(false);
        long_types.token_types.push(1);
        assert!(matches!(
            Tokenizer::from_spec(long_types),
            Err(TokenizerError::LengthMismatch {
                what: "tokenizer.ggml.token_type",
                ..
            })
        ));
        let mut bad_eos = spm_spec(false);
        bad_eos.eos_id = Some(100_000);
        assert!(matches!(
            Tokenizer::from_spec(bad_eos),
            Err(TokenizerError::SpecialIdOutOfRange { what: "EOS", .. })
        ));
        let empty = VocabSpec {
            model: "llama".into(),
            ..VocabSpec::default()
        };
        assert!(matches!(
            Tokenizer::from_spec(empty),
            Err(TokenizerError::EmptyVocab)
        ));
    }

    #[test]
    fn empty_and_duplicate_token_strings_are_tolerated() {
        let spec = VocabSpec {
            model: "llama".into(),
            tokens: ["", "a", "b", "", "ab", "ab"]
                .iter()
                .map(|t| t.to_string())
                .collect(),
            token_types: vec![3, 1, 1, 4, 1, 1],
            scores: vec![0.0, -1.0, -1.0, 0.0, -2.0, -3.0],
            ..VocabSpec::default()
        };
        let tok = Tokenizer::from_spec(spec).unwrap();
        // The later duplicate wins, as in llama.cpp.
        assert_eq!(tok.encode("ab", false).unwrap(), vec![5]);
        // The placeholder standing in for an empty token is not matchable text.
        let ids = tok.encode("[EMPTY_0]a", false).unwrap();
        assert!(!ids.contains(&0) && !ids.contains(&3), "{ids:?}");
        assert_eq!(ids.last(), Some(&1));
        assert_eq!(tok.token_piece(0), Some(""));
        assert_eq!(tok.decode(&[0, 3, 5]).unwrap(), "ab");
    }

    /// Byte-level vocabulary: ids 0..=255 are the bytes (in GPT-2's visible alphabet), then
    /// merged tokens and two control tokens.
    fn gpt2_spec(pre: &str) -> VocabSpec {
        let mut tokens: Vec<String> = (0..=255u8)
            .map(|b| {
                let mut text = Vec::new();
                bpe_char_of(b, &mut text);
                String::from_utf8(text).unwrap()
            })
            .collect();
        for t in [
            "th",
            "the",
            "Ġc",
            "at",
            "Ġcat",
            "is",
            "Ġis",
            "bc",
            "ab", // 256..=264
            "<|endoftext|>",
            "<|im_end|>", // 265, 266
        ] {
            tokens.push(t.to_string());
        }
        let mut types = vec![1; tokens.len()];
        types[265] = 3;
        types[266] = 3;
        VocabSpec {
            model: "gpt2".into(),
            pre: Some(pre.into()),
            tokens,
            token_types: types,
            merges: [
                "t h", "th e", "Ġ c", "a t", "Ġc at", "i s", "Ġ is", "b c", "a b",
            ]
            .iter()
            .map(|m| m.to_string())
            .collect(),
            bos_id: Some(265),
            eos_id: Some(265),
            ..VocabSpec::default()
        }
    }

    /// The visible character GPT-2 uses for a byte, written independently of the decoder.
    fn bpe_char_of(b: u8, out: &mut Vec<u8>) {
        let visible = (b'!'..=b'~').contains(&b) || (0xA1..=0xAC).contains(&b) || b >= 0xAE;
        let c = if visible {
            char::from(b)
        } else {
            let shift = (0..b)
                .filter(|&x| {
                    !((b'!'..=b'~').contains(&x) || (0xA1..=0xAC).contains(&x) || x >= 0xAE)
                })
                .count() as u32;
            char::from_u32(256 + shift).unwrap()
        };
        let mut buf = [0u8; 4];
        out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
    }

    #[test]
    fn gpt2_words_merge_by_rank() {
        for pre in ["llama-bpe", "qwen2", "gpt-2", "default"] {
            let tok = Tokenizer::from_spec(gpt2_spec(pre)).unwrap();
            let ids = tok.encode("the cat is\n", false).unwrap();
            assert_eq!(ids, vec![257, 260, 262, 10], "pre {pre}");
            assert_eq!(tok.decode(&ids).unwrap(), "the cat is\n");
            // "b c" outranks "a b", and no "abc" exists.
            assert_eq!(
                tok.encode("abc", false).unwrap(),
                vec![97, 263],
                "pre {pre}"
            );
        }
    }

    #[test]
    fn gpt2_special_tokens_and_raw_bytes() {
        let tok = Tokenizer::from_spec(gpt2_spec("qwen2")).unwrap();
        let ids = tok.encode("hi<|im_end|>🦀", false).unwrap();
        assert_eq!(ids, vec![104, 105, 266, 0xF0, 0x9F, 0xA6, 0x80]);
        assert_eq!(tok.decode(&ids).unwrap(), "hi🦀");
        assert!(tok.is_eog(266) && tok.is_eog(265));
        assert_eq!(tok.eot_id(), Some(266));
    }

    #[test]
    fn gpt2_pre_tokenizers_differ_on_digits() {
        // Qwen2 splits every digit, Llama 3 groups up to three: "1234" -> "123" "4".
        let qwen = Tokenizer::from_spec(gpt2_spec("qwen2")).unwrap();
        let llama3 = Tokenizer::from_spec(gpt2_spec("llama-bpe")).unwrap();
        let mut with_digit_merge = gpt2_spec("llama-bpe");
        with_digit_merge.tokens.push("12".into());
        with_digit_merge.token_types.push(1);
        with_digit_merge.merges.push("1 2".into());
        let llama3_merge = Tokenizer::from_spec(with_digit_merge.clone()).unwrap();
        with_digit_merge.pre = Some("qwen2".into());
        let qwen_merge = Tokenizer::from_spec(with_digit_merge).unwrap();
        assert_eq!(qwen.encode("1234", false).unwrap(), vec![49, 50, 51, 52]);
        assert_eq!(llama3.encode("1234", false).unwrap(), vec![49, 50, 51, 52]);
        assert_eq!(
            llama3_merge.encode("1234", false).unwrap(),
            vec![267, 51, 52]
        );
        assert_eq!(
            qwen_merge.encode("1234", false).unwrap(),
            vec![49, 50, 51, 52]
        );
    }

    #[test]
    fn gpt2_unknown_pre_is_an_error_for_text_only() {
        // The vocabulary still loads (benchmarks feed ids), text is refused.
        let tok = Tokenizer::from_spec(gpt2_spec("klingon")).unwrap();
        let err = tok.encode("hello", false).unwrap_err();
        assert!(matches!(err, TokenizerError::UnsupportedPre(ref name) if name == "klingon"));
        assert!(err.to_string().contains("`klingon`"), "{err}");
        assert!(tok.text_problem().is_some());
        assert!(!tok.decode(&[0, 1]).unwrap().is_empty());
        let known = Tokenizer::from_spec(gpt2_spec("gpt-2")).unwrap();
        assert!(known.text_problem().is_none());
    }

    #[test]
    fn stream_decoder_waits_for_complete_characters() {
        let tok = Tokenizer::from_spec(spm_spec(false)).unwrap();
        let byte = |b: u8| BYTE_BASE + u32::from(b);
        let mut stream = tok.stream_decoder();
        // 中 = E4 B8 AD
        assert_eq!(stream.push(byte(0xE4)).unwrap(), None);
        assert_eq!(stream.push(byte(0xB8)).unwrap(), None);
        assert_eq!(stream.push(byte(0xAD)).unwrap().as_deref(), Some("中"));
        // 🦀 = F0 9F A6 80, followed by a normal piece.
        for b in [0xF0, 0x9F, 0xA6] {
            assert_eq!(stream.push(byte(b)).unwrap(), None);
        }
        assert_eq!(stream.push(byte(0x80)).unwrap().as_deref(), Some("🦀"));
        assert_eq!(stream.push(268).unwrap().as_deref(), Some(" h"));
        // Control tokens add nothing.
        assert_eq!(stream.push(2).unwrap(), None);
        assert_eq!(stream.flush(), None);
    }

    #[test]
    fn stream_decoder_replaces_broken_bytes() {
        let tok = Tokenizer::from_spec(spm_spec(false)).unwrap();
        let byte = |b: u8| BYTE_BASE + u32::from(b);
        let mut stream = tok.stream_decoder();
        assert_eq!(
            stream.push(byte(0xFF)).unwrap().as_deref(),
            Some("\u{FFFD}")
        );
        // A lead byte followed by a non-continuation: the lead byte is replaced.
        assert_eq!(stream.push(byte(0xE4)).unwrap(), None);
        assert_eq!(stream.push(260).unwrap().as_deref(), Some("\u{FFFD}h"));
        // An unfinished character at the end comes out on flush.
        assert_eq!(stream.push(byte(0xF0)).unwrap(), None);
        assert_eq!(stream.flush().as_deref(), Some("\u{FFFD}"));
        assert_eq!(stream.flush(), None);
    }
}
