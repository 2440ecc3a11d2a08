//! The `gpt2` tokenizer model: byte-level BPE with ranked merges and a regex pre-tokenizer
//! chosen by `tokenizer.ggml.pre` (patterns as llama.cpp uses them for each name).

use std::collections::HashMap;
use std::sync::OnceLock;

use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence as PreTokenizerSequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{PreTokenizerWrapper, SplitDelimiterBehavior};

use super::vocab::VocabTable;
use super::TokenizerError;

/// Contractions, letters, digits, other symbols, whitespace (GPT-2's original split).
const GPT2_WORDS: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)";
/// Llama 3: case-insensitive contractions, a letter run with one leading non-letter,
/// digits in groups of up to three, punctuation runs with trailing newlines, whitespace.
const LLAMA3_WORDS: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Qwen 2: as Llama 3 but every digit on its own.
const QWEN2_WORDS: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// Qwen 3.5: as Qwen 2, with combining marks joining letter runs.
const QWEN35_WORDS: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Seed-Coder: as Qwen 2, but punctuation runs never take line breaks.
const SEED_CODER_WORDS: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1}| ?[^\s\p{L}\p{N}\r\n]+|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Mistral's Tekken: an upper-case run followed by lower-case letters, or an
/// upper-case run alone, each with one leading non-letter; digits one by
/// one; punctuation runs with trailing line breaks or slashes. Written with
/// llama.cpp's "letter that is not a-z / A-Z" lookaheads for \p{Lu}/\p{Ll}
/// (it runs them on text whose non-ASCII letters all look alike), so every
/// non-ASCII letter counts as both cases, as there.
const TEKKEN_WORDS: &str = r"[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))*((?=[\p{L}])([^A-Z]))+|[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))+((?=[\p{L}])([^A-Z]))*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// GPT-4o (o200k; also Llama 4): Tekken's letter runs with optional
/// contractions, digits in groups of up to three.
const GPT4O_WORDS: &str = r"[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))*((?=[\p{L}])([^A-Z]))+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))+((?=[\p{L}])([^A-Z]))*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// DeepSeek V3: digit groups of up to three, CJK runs, then words.
const DEEPSEEK3_SPLITS: &[&str] = &[
    r"\p{N}{1,3}",
    "[一-龥぀-ゟ゠-ヿ]+",
    r##"[!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"##,
];
/// DeepSeek LLM: line breaks, Latin/Greek/Cyrillic/… letter runs with an
/// optional leading space, ASCII and full-width punctuation runs, trailing
/// whitespace, CJK runs, digit runs.
const DEEPSEEK_LLM_SPLITS: &[&str] = &[
    "[\r\n]",
    "\\s?[A-Za-zµÀ-ÖØ-öø-ƺƼ-ƿǄ-ʓʕ-ʯͰ-ͳͶͷͻ-ͽͿΆΈ-ΊΌΎ-ΡΣ-ϵϷ-ҁҊ-ԯԱ-ՖႠ-ჅᎠ-Ᏽᏸ-ᏽᲐ-ᲺᲽ-Ჿᴀ-ᴫᵫ-ᵷᵹ-ᶚḀ-ἕἘ-Ἕἠ-ὅὈ-Ὅὐ-ὗὙὛὝὟ-ώᾀ-ᾴᾶ-ᾼιῂ-ῄῆ-ῌῐ-ΐῖ-Ίῠ-Ῥῲ-ῴῶ-ῼℂℇℊ-ℓℕℙ-ℝℤΩℨK-ℭℯ-ℴℹℼ-ℿⅅ-ⅉⅎↃↄⰀ-ⱻⱾ-ⳤⳫ-ⳮⳲⳳꙀ-ꙭꚀ-ꚛꜢ-ꝯꝱ-ꞇꞋ-ꞎꭰ-ꮿﬀ-ﬆﬓ-ﬗＡ-Ｚａ-ｚ𐐀-𐑏𐒰-𐓓𐓘-𐓻𐲀-𐲲𐳀-𐳲𑢠-𑣟𞤀-𞥃]+",
    "\\s?[!-/:-~！-／：-～‘-‟　-。]+",
    "\\s+$",
    "[一-龥ࠀ-一가-퟿]+",
    "\\p{N}+",
];

/// Pre-tokenizer names we accept, grouped by the splitting they share.
const LLAMA3_NAMES: &[&str] = &["llama3", "llama-v3", "llama-bpe", "falcon3", "pixtral"];
const QWEN2_NAMES: &[&str] = &["qwen2", "deepseek-r1-qwen", "megrez", "stablelm2"];
const GPT2_NAMES: &[&str] = &["gpt-2", "phi-2", "mpt", "olmo"];
const DIGIT_GPT2_NAMES: &[&str] = &[
    "starcoder",
    "refact",
    "smollm",
    "codeshell",
    "command-r",
    "exaone",
];
const GPT4O_NAMES: &[&str] = &["gpt-4o", "llama4"];

/// Every accepted `tokenizer.ggml.pre` value (a missing one means "default").
pub(crate) const SUPPORTED_PRE: &[&str] = &[
    "default",
    "llama3",
    "llama-v3",
    "llama-bpe",
    "falcon3",
    "pixtral",
    "qwen2",
    "deepseek-r1-qwen",
    "megrez",
    "stablelm2",
    "gpt-2",
    "phi-2",
    "mpt",
    "olmo",
    "starcoder",
    "refact",
    "smollm",
    "codeshell",
    "command-r",
    "exaone",
    "tekken",
    "gpt-4o",
    "llama4",
    "deepseek-v3",
    "deepseek-llm",
    "glm4",
    "qwen35",
    "seed-coder",
];

/// How a named pre-tokenizer splits text and treats whole-word tokens.
pub(crate) struct PreTokenizerChoice {
    /// Applied in order; both matches and the text between them become pieces.
    regexes: Vec<&'static str>,
    /// A piece that is itself a token is emitted as is, without running merges (Llama 3).
    ignore_merges: bool,
    /// llama.cpp adds BOS by default for this family even when the file does not say so.
    pub add_bos_default: bool,
    /// llama.cpp drops the BOS token of this family altogether (GLM-4).
    pub no_bos: bool,
}

/// Looks up the splitting for `tokenizer.ggml.pre`.
pub(crate) fn pre_tokenizer_choice(
    pre: Option<&str>,
) -> Result<PreTokenizerChoice, TokenizerError> {
    let name = pre.unwrap_or("default");
    let choice = |regexes: Vec<&'static str>, llama3: bool| PreTokenizerChoice {
        regexes,
        ignore_merges: llama3,
        add_bos_default: llama3,
        no_bos: false,
    };
    if name == "default" {
        Ok(choice(
            vec![
                r"[\p{P}\$\+<=>\^~\|]+",
                GPT2_WORDS,
                r"\p{N}+",
                "[0-9][0-9][0-9]",
            ],
            false,
        ))
    } else if LLAMA3_NAMES.contains(&name) {
        Ok(choice(vec![LLAMA3_WORDS], true))
    } else if QWEN2_NAMES.contains(&name) {
        Ok(choice(vec![QWEN2_WORDS], false))
    } else if GPT2_NAMES.contains(&name) {
        Ok(choice(vec![GPT2_WORDS], false))
    } else if DIGIT_GPT2_NAMES.contains(&name) {
        Ok(choice(vec![r"\p{N}", GPT2_WORDS], false))
    } else if name == "tekken" {
        // Tekken skips merges for whole-word tokens and wants BOS, as Llama 3.
        Ok(choice(vec![TEKKEN_WORDS], true))
    } else if GPT4O_NAMES.contains(&name) {
        Ok(choice(vec![GPT4O_WORDS], false))
    } else if name == "deepseek-v3" {
        Ok(choice(DEEPSEEK3_SPLITS.to_vec(), false))
    } else if name == "deepseek-llm" {
        Ok(choice(DEEPSEEK_LLM_SPLITS.to_vec(), false))
    } else if name == "glm4" {
        Ok(PreTokenizerChoice {
            ignore_merges: true,
            add_bos_default: false,
            no_bos: true,
            ..choice(vec![LLAMA3_WORDS], false)
        })
    } else if name == "qwen35" {
        Ok(choice(vec![QWEN35_WORDS], false))
    } else if name == "seed-coder" {
        Ok(choice(vec![SEED_CODER_WORDS], false))
    } else {
        Err(TokenizerError::UnsupportedPre(name.to_string()))
    }
}

/// Builds the model, pre-tokenizer and decoder of a `gpt2` tokenizer.
pub(crate) fn build(
    table: &VocabTable,
    merges: &[String],
    choice: &PreTokenizerChoice,
) -> Result<tokenizers::Tokenizer, TokenizerError> {
    let vocab = super::spm::vocab_map(table);
    let merges = parse_merges(merges, &vocab)?;
    let model = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .ignore_merges(choice.ignore_merges)
        .build()
        .map_err(TokenizerError::library)?;

    let mut tokenizer = tokenizers::Tokenizer::new(model);
    let mut steps: Vec<PreTokenizerWrapper> = Vec::with_capacity(choice.regexes.len() + 1);
    for regex in &choice.regexes {
        let split = Split::new(
            SplitPattern::Regex((*regex).to_string()),
            SplitDelimiterBehavior::Isolated,
            false,
        )
        .map_err(TokenizerError::library)?;
        steps.push(split.into());
    }
    // Splitting is done by the regexes above; ByteLevel only maps bytes to its visible chars.
    steps.push(ByteLevel::new(false, false, false).into());
    tokenizer.with_pre_tokenizer(Some(PreTokenizerSequence::new(steps)));
    tokenizer.with_decoder(Some(ByteLevel::new(false, false, false)));
    Ok(tokenizer)
}

/// Parses "left right" entries in rank order. Entries whose pieces or result are not in the
/// vocabulary can never produce a token and are skipped; the relative order of the rest
/// is what ranks them.
fn parse_merges(
    entries: &[String],
    vocab: &Vocab,
) -> Result<Vec<(String, String)>, TokenizerError> {
    let mut merges = Vec::with_capacity(entries.len());
    for (index, entry) in entries.iter().enumerate() {
        // Split at the first space after the first character: a piece may itself start with one.
        let split = entry
            .char_indices()
            .skip(1)
            .find(|&(_, c)| c == ' ')
            .map(|(i, _)| i)
            .ok_or_else(|| TokenizerError::BadMerge {
                index,
                entry: entry.clone(),
            })?;
        let (left, right) = (&entry[..split], &entry[split + 1..]);
        if right.is_empty() {
            return Err(TokenizerError::BadMerge {
                index,
                entry: entry.clone(),
            });
        }
        let joined = format!("{left}{right}");
        if vocab.contains_key(left) && vocab.contains_key(right) && vocab.contains_key(&joined) {
            merges.push((left.to_string(), right.to_string()));
        }
    }
    Ok(merges)
}

/// GPT-2's byte-level alphabet: printable Latin-1 bytes stand for themselves, the other
/// bytes are shifted to U+0100 and up in byte order.
fn byte_level_alphabet() -> &'static HashMap<char, u8> {
    static ALPHABET: OnceLock<HashMap<char, u8>> = OnceLock::new();
    ALPHABET.get_or_init(|| {
        let stands_for_itself =
            |b: u8| (b'!'..=b'~').contains(&b) || (0xA1..=0xAC).contains(&b) || b >= 0xAE;
        let mut shifted = 0u32;
        (0..=255u8)
            .map(|b| {
                let c = if stands_for_itself(b) {
                    char::from(b)
                } else {
                    shifted += 1;
                    char::from_u32(255 + shifted).unwrap_or(char::REPLACEMENT_CHARACTER)
                };
                (c, b)
            })
            .collect()
    })
}

/// The bytes a byte-level token text stands for; characters outside the alphabet are kept as UTF-8.
pub(crate) fn byte_level_decode(text: &str, out: &mut Vec<u8>) {
    let alphabet = byte_level_alphabet();
    for c in text.chars() {
        match alphabet.get(&c) {
            Some(&b) => out.push(b),
            None => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_level_alphabet_covers_every_byte_once() {
        let alphabet = byte_level_alphabet();
        assert_eq!(alphabet.len(), 256);
        assert_eq!(alphabet.get(&'\u{120}'), Some(&b' ')); // 'Ġ'
        assert_eq!(alphabet.get(&'\u{10A}'), Some(&b'\n')); // 'Ċ'
        assert_eq!(alphabet.get(&'A'), Some(&b'A'));
        let mut out = Vec::new();
        byte_level_decode("\u{120}h\u{e4}\u{10A}", &mut out);
        assert_eq!(out, vec![b' ', b'h', 0xE4, b'\n']);
    }

    #[test]
    fn merges_split_at_first_inner_space() {
        let vocab: Vocab = [("a", 0u32), ("b", 1), ("ab", 2)]
            .iter()
            .map(|(t, i)| (t.to_string(), *i))
            .collect();
        let merges = parse_merges(&["a b".into(), "x y".into()], &vocab).unwrap();
        assert_eq!(merges, vec![("a".to_string(), "b".to_string())]);
        assert!(matches!(
            parse_merges(&["ab".into()], &vocab),
            Err(TokenizerError::BadMerge { index: 0, .. })
        ));
        assert!(matches!(
            parse_merges(&["a ".into()], &vocab),
            Err(TokenizerError::BadMerge { .. })
        ));
    }

    #[test]
    fn unknown_pre_tokenizer_lists_supported_names() {
        let err = pre_tokenizer_choice(Some("nonsense")).err().unwrap();
        let msg = err.to_string();
        assert!(msg.contains("nonsense") && msg.contains("llama-bpe") && msg.contains("qwen2"));
        assert!(pre_tokenizer_choice(None).is_ok());
        assert!(
            pre_tokenizer_choice(Some("llama-bpe"))
                .unwrap()
                .add_bos_default
        );
        assert!(!pre_tokenizer_choice(Some("qwen2")).unwrap().add_bos_default);
    }
}
