//! Incremental detokenization for streaming output.

use super::{Tokenizer, TokenizerError};

/// Turns generated token ids into text as soon as complete UTF-8 is available.
///
/// A character may be split over several byte-fallback tokens (`<0xE4><0xB8><0xAD>` is
/// "中"); its bytes are held back until the character is complete. Byte sequences that can
/// never become valid UTF-8 come out as U+FFFD. Unlike [`Tokenizer::decode`], no leading
/// space is removed: a stream usually continues a prompt.
pub struct StreamDecoder<'a> {
    tokenizer: &'a Tokenizer,
    pending: Vec<u8>,
}

impl<'a> StreamDecoder<'a> {
    pub(crate) fn new(tokenizer: &'a Tokenizer) -> Self {
        StreamDecoder {
            tokenizer,
            pending: Vec::new(),
        }
    }

    /// Adds one token; returns the text that became complete, if any.
    pub fn push(&mut self, id: u32) -> Result<Option<String>, TokenizerError> {
        self.tokenizer.append_piece(id, &mut self.pending)?;
        Ok(self.take_complete())
    }

    /// Emits whatever is still held back (an incomplete character becomes U+FFFD).
    pub fn flush(&mut self) -> Option<String> {
        if self.pending.is_empty() {
            return None;
        }
        let text = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        Some(text)
    }

    /// Takes the longest prefix of `pending` that is complete text.
    fn take_complete(&mut self) -> Option<String> {
        let mut out = String::new();
        loop {
            match std::str::from_utf8(&self.pending) {
                Ok(text) => {
                    out.push_str(text);
                    self.pending.clear();
                    break;
                }
                Err(e) => {
                    let valid = e.valid_up_to();
                    // The prefix up to `valid` is UTF-8 by the definition of `valid_up_to`.
                    out.push_str(&String::from_utf8_lossy(&self.pending[..valid]));
                    match e.error_len() {
                        // Incomplete character at the end: wait for more bytes.
                        None => {
                            self.pending.drain(..valid);
                            break;
                        }
                        // Bytes that no continuation can fix.
                        Some(bad) => {
                            out.push(char::REPLACEMENT_CHARACTER);
                            self.pending.drain(..valid + bad);
                        }
                    }
                }
            }
        }
        (!out.is_empty()).then_some(out)
    }
}
