//! The `llama` tokenizer model (SentencePiece-style BPE over scores, with byte fallback),
//! expressed as a `tokenizers` BPE model.
//!
//! llama.cpp's SPM tokenizer starts from UTF-8 characters and repeatedly joins the adjacent
//! pair whose concatenation is a vocabulary token with the highest score (leftmost first on
//! ties); leftover characters that are not tokens become `<0xNN>` byte tokens. A BPE model
//! does the same when every pair (left, right) whose concatenation is a token becomes a merge,
//! ranked by the score of the concatenation. The one difference left: two *different* splits
//! of the same token competing at overlapping positions are ordered by rank here, by position
//! in llama.cpp (vanishingly rare: it needs xy == yz with all three pieces tokens).

use tokenizers::decoders::byte_fallback::ByteFallback;
use tokenizers::decoders::fuse::Fuse;
use tokenizers::decoders::sequence::Sequence as DecoderSequence;
use tokenizers::decoders::strip::Strip;
use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::normalizers::prepend::Prepend;
use tokenizers::normalizers::replace::Replace;
use tokenizers::normalizers::utils::Sequence as NormalizerSequence;
use tokenizers::{DecoderWrapper, NormalizerWrapper};

use super::vocab::{TokenKind, VocabTable};
use super::TokenizerError;

/// SentencePiece's visible space.
pub(crate) const SPACE_MARK: &str = "\u{2581}";

/// Builds the model, normalizer and decoder of a `llama` tokenizer.
pub(crate) fn build(
    table: &VocabTable,
    add_space_prefix: bool,
) -> Result<tokenizers::Tokenizer, TokenizerError> {
    let vocab = vocab_map(table);
    let merges = derive_merges(table, &vocab);
    let mut builder = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .byte_fallback(true);
    if let Some(unk) = table.unk_id.and_then(|id| table.text(id as usize)) {
        builder = builder.unk_token(unk.to_string());
    }
    let model = builder.build().map_err(TokenizerError::library)?;

    let mut tokenizer = tokenizers::Tokenizer::new(model);
    let mut normalizers: Vec<NormalizerWrapper> = vec![Replace::new(" ", SPACE_MARK)
        .map_err(TokenizerError::library)?
        .into()];
    if add_space_prefix {
        // Applied per text fragment between special tokens, as llama.cpp prefixes every
        // fragment that follows a special token (or starts the text).
        normalizers.push(Prepend::new(SPACE_MARK.to_string()).into());
    }
    tokenizer.with_normalizer(Some(NormalizerSequence::new(normalizers)));

    let mut decoders: Vec<DecoderWrapper> = vec![
        Replace::new(SPACE_MARK, " ")
            .map_err(TokenizerError::library)?
            .into(),
        ByteFallback::new().into(),
        Fuse::new().into(),
    ];
    if add_space_prefix {
        decoders.push(Strip::new(' ', 1, 0).into());
    }
    tokenizer.with_decoder(Some(DecoderSequence::new(decoders)));
    Ok(tokenizer)
}

/// Text -> id, the last id winning for duplicate strings as in llama.cpp's map.
pub(crate) fn vocab_map(table: &VocabTable) -> Vocab {
    let mut vocab = Vocab::with_capacity(table.pieces.len());
    for (id, text) in table.texts().enumerate() {
        vocab.insert(text.to_string(), id as u32);
    }
    vocab
}

/// Every split of a token into two tokens becomes a merge; merges are ranked by the
/// score of the token they produce, highest first (ties: lower id, then shorter left part).
fn derive_merges(table: &VocabTable, vocab: &Vocab) -> Vec<(String, String)> {
    let mut ids: Vec<u32> = (0..table.pieces.len() as u32)
        .filter(|&id| table.kinds.get(id as usize) != Some(&TokenKind::Unused))
        .collect();
    let score = |id: u32| table.scores.get(id as usize).copied().unwrap_or(0.0);
    ids.sort_unstable_by(|&a, &b| score(b).total_cmp(&score(a)).then(a.cmp(&b)));

    // Checking ~1M splits dominates building; the two halves of the ranked list are independent.
    let splits_of = |ids: &[u32]| -> Vec<(String, String)> {
        let mut merges = Vec::new();
        for &id in ids {
            let Some(text) = table.text(id as usize) else {
                continue;
            };
            // A duplicate string shadowed by a later id can't be produced.
            if vocab.get(text) != Some(&id) {
                continue;
            }
            for (split, _) in text.char_indices().skip(1) {
                let (left, right) = text.split_at(split);
                if vocab.contains_key(left) && vocab.contains_key(right) {
                    merges.push((left.to_string(), right.to_string()));
                }
            }
        }
        merges
    };
    let (first, second) = ids.split_at(ids.len() / 2);
    std::thread::scope(|scope| {
        let second = scope.spawn(|| splits_of(second));
        let mut merges = splits_of(first);
        match second.join() {
            Ok(rest) => merges.extend(rest),
            // Nothing in `splits_of` panics on any input; if it ever did, keep the panic.
            Err(panic) => std::panic::resume_unwind(panic),
        }
        merges
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokenizer::VocabSpec;

    fn table(tokens: &[&str], scores: &[f32]) -> VocabTable {
        let mut spec = VocabSpec {
            model: "llama".into(),
            tokens: tokens.iter().map(|t| t.to_string()).collect(),
            scores: scores.to_vec(),
            ..VocabSpec::default()
        };
        VocabTable::new(&mut spec).unwrap()
    }

    #[test]
    fn merges_are_ranked_by_score_of_result() {
        let t = table(
            &["a", "b", "c", "ab", "bc", "abc"],
            &[0.0, 0.0, 0.0, -2.0, -1.0, -3.0],
        );
        let merges = derive_merges(&t, &vocab_map(&t));
        let expect: Vec<(String, String)> = [("b", "c"), ("a", "b"), ("a", "bc"), ("ab", "c")]
            .iter()
            .map(|(l, r)| (l.to_string(), r.to_string()))
            .collect();
        assert_eq!(merges, expect);
    }

    #[test]
    fn unused_tokens_are_never_merge_targets() {
        let mut spec = VocabSpec {
            model: "llama".into(),
            tokens: ["a", "b", "ab"].iter().map(|t| t.to_string()).collect(),
            token_types: vec![1, 1, 5],
            ..VocabSpec::default()
        };
        let t = VocabTable::new(&mut spec).unwrap();
        assert!(derive_merges(&t, &vocab_map(&t)).is_empty());
    }
}
