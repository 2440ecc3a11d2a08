//! Errors of the tokenizer module.

/// Everything that can go wrong while building a tokenizer from a vocabulary or using it.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    /// A required GGUF key is absent; for `tokenizer.ggml.tokens` this means the model has no tokenizer.
    #[error("model has no tokenizer: GGUF key `{0}` is missing")]
    Missing(&'static str),
    /// A GGUF key exists but holds a value of another type.
    #[error("GGUF key `{key}` has the wrong type (expected {expected})")]
    WrongType {
        key: &'static str,
        expected: &'static str,
    },
    /// `tokenizer.ggml.model` names a tokenizer we cannot build.
    #[error("unsupported tokenizer model `{0}` (supported: {models})", models = super::SUPPORTED_MODELS.join(", "))]
    UnsupportedModel(String),
    /// `tokenizer.ggml.pre` names a gpt2 pre-tokenizer we do not know.
    #[error("unsupported gpt2 pre-tokenizer `{0}` (supported: {names})", names = super::bpe::SUPPORTED_PRE.join(", "))]
    UnsupportedPre(String),
    /// The vocabulary has no tokens at all.
    #[error("the vocabulary is empty")]
    EmptyVocab,
    /// A per-token array (scores, token types) does not have one entry per token.
    #[error("`{what}` has {got} entries but the vocabulary has {n_tokens} tokens")]
    LengthMismatch {
        what: &'static str,
        got: usize,
        n_tokens: usize,
    },
    /// A special token id (BOS, EOS, ...) points outside the vocabulary.
    #[error("{what} token id {id} is outside the vocabulary of {n_vocab} tokens")]
    SpecialIdOutOfRange {
        what: &'static str,
        id: u32,
        n_vocab: usize,
    },
    /// A gpt2 merge entry is not of the form "left right".
    #[error("merge #{index} `{entry}` is not of the form \"left right\"")]
    BadMerge { index: usize, entry: String },
    /// A token id passed to decoding is not in the vocabulary.
    #[error("token id {id} is outside the vocabulary of {n_vocab} tokens")]
    IdOutOfRange { id: u32, n_vocab: usize },
    /// BOS was requested but the vocabulary defines none.
    #[error("a BOS token was requested but the vocabulary defines none")]
    NoBos,
    /// The `tokenizers` library refused something (its error type is a boxed trait object, kept as text).
    #[error("tokenizers: {0}")]
    Library(String),
}

impl TokenizerError {
    /// Wraps an error of the `tokenizers` crate.
    pub(crate) fn library(e: impl std::fmt::Display) -> Self {
        TokenizerError::Library(e.to_string())
    }
}
