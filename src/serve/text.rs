//! A request's output text as it streams: tokens detokenized incrementally
//! (split UTF-8 held back by the tokenizer's [`StreamDecoder`]) and stop
//! strings found even when they span tokens: text that might be the start
//! of a stop string is held back until it is known not to be.

use crate::tokenizer::{StreamDecoder, Tokenizer, TokenizerError};

/// Output text of one request.
pub struct TextStream<'t> {
    decoder: StreamDecoder<'t>,
    stops: Vec<String>,
    /// Decoded text not yet handed out.
    held: String,
    stopped: bool,
}

/// What one token added.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Delta {
    /// Text that is final (may be empty).
    pub text: String,
    /// A stop string was found: generation should end; the stop string and
    /// anything after it are not part of the output.
    pub stopped: bool,
}

impl<'t> TextStream<'t> {
    pub fn new(tokenizer: &'t Tokenizer, stops: Vec<String>) -> TextStream<'t> {
        TextStream {
            decoder: tokenizer.stream_decoder(),
            stops: stops.into_iter().filter(|s| !s.is_empty()).collect(),
            held: String::new(),
            stopped: false,
        }
    }

    /// Adds a generated token. After a stop, further tokens add nothing.
    pub fn push(&mut self, token: u32) -> Result<Delta, TokenizerError> {
        if self.stopped {
            return Ok(Delta::default());
        }
        if let Some(text) = self.decoder.push(token)? {
            self.held.push_str(&text);
        }
        Ok(self.release())
    }

    /// The end of generation: whatever was held back is final.
    pub fn finish(&mut self) -> String {
        if self.stopped {
            return String::new();
        }
        if let Some(text) = self.decoder.flush() {
            self.held.push_str(&text);
        }
        let delta = self.release();
        if delta.stopped {
            return delta.text;
        }
        let mut text = delta.text;
        text.push_str(&std::mem::take(&mut self.held));
        text
    }

    fn release(&mut self) -> Delta {
        let found = self
            .stops
            .iter()
            .filter_map(|s| self.held.find(s.as_str()))
            .min();
        if let Some(at) = found {
            self.stopped = true;
            let text = self.held[..at].to_string();
            self.held.clear();
            return Delta {
                text,
                stopped: true,
            };
        }
        // Keep back the longest tail that some stop string starts with.
        let keep = self
            .held
            .char_indices()
            .map(|(i, _)| i)
            .find(|&i| {
                let tail = &self.held[i..];
                self.stops.iter().any(|s| s.starts_with(tail))
            })
            .map_or(0, |i| self.held.len() - i);
        let cut = self.held.len() - keep;
        let text = self.held[..cut].to_string();
        self.held.drain(..cut);
        Delta {
            text,
            stopped: false,
        }
    }
}

/// A token's text and bytes as it appears in output (for logprobs).
pub fn token_text(tokenizer: &Tokenizer, id: u32) -> (String, Vec<u8>) {
    let mut bytes = Vec::new();
    if tokenizer.append_piece(id, &mut bytes).is_err() {
        return (String::new(), Vec::new());
    }
    (String::from_utf8_lossy(&bytes).into_owned(), bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokenizer::VocabSpec;

    const WORDS: [&str; 5] = ["▁the", "▁cat", "▁sat", "▁on", "▁mat"];

    /// Byte tokens at 3 + b, then the words at 259.. (SentencePiece style).
    fn tokenizer() -> Tokenizer {
        let mut tokens = vec!["<unk>".to_string(), "<s>".into(), "</s>".into()];
        let mut types = vec![2, 3, 3];
        tokens.extend((0..=255u8).map(|b| format!("<0x{b:02X}>")));
        types.extend([6; 256]);
        tokens.extend(WORDS.iter().map(|w| w.to_string()));
        types.extend([1; WORDS.len()]);
        Tokenizer::from_spec(VocabSpec {
            model: "llama".into(),
            scores: vec![0.0; tokens.len()],
            tokens,
            token_types: types,
            bos_id: Some(1),
            eos_id: Some(2),
            unk_id: Some(0),
            ..VocabSpec::default()
        })
        .unwrap()
    }

    fn word(w: &str) -> u32 {
        259 + WORDS.iter().position(|x| *x == w).unwrap() as u32
    }

    fn byte(b: u8) -> u32 {
        3 + b as u32
    }

    /// Text out, whether a stop string ended it, tokens taken.
    fn run(tok: &Tokenizer, stops: &[&str], ids: &[u32]) -> (String, bool, usize) {
        let mut s = TextStream::new(tok, stops.iter().map(|s| s.to_string()).collect());
        let mut out = String::new();
        for (n, &id) in ids.iter().enumerate() {
            let d = s.push(id).unwrap();
            out.push_str(&d.text);
            if d.stopped {
                return (out, true, n + 1);
            }
        }
        out.push_str(&s.finish());
        (out, false, ids.len())
    }

    #[test]
    fn stop_strings_are_found_across_tokens_and_cut() {
        let tok = tokenizer();
        let ids: Vec<u32> = WORDS.iter().map(|w| word(w)).collect();
        let all = " the cat sat on mat";
        assert_eq!(run(&tok, &[], &ids), (all.to_string(), false, 5));
        // "t s" starts in "▁cat" and ends in "▁sat".
        assert_eq!(run(&tok, &["t s"], &ids), (" the ca".to_string(), true, 3));
        // The earliest of several stop strings wins.
        assert_eq!(
            run(&tok, &["mat", "he c"], &ids),
            (" t".to_string(), true, 2)
        );
        // A stop string that never completes is given back at the end.
        assert_eq!(run(&tok, &[" mat!"], &ids), (all.to_string(), false, 5));
        // Text held back for a possible stop string is released once it cannot be one.
        let mut s = TextStream::new(&tok, vec![" sat down".into()]);
        assert_eq!(s.push(word("▁cat")).unwrap().text, " cat");
        assert_eq!(s.push(word("▁sat")).unwrap().text, "");
        assert_eq!(s.push(word("▁on")).unwrap().text, " sat on");
    }

    #[test]
    fn split_characters_wait_for_their_last_byte() {
        let tok = tokenizer();
        // "中" is E4 B8 AD, one byte token each.
        let ids = [
            word("▁cat"),
            byte(0xE4),
            byte(0xB8),
            byte(0xAD),
            word("▁on"),
        ];
        let mut s = TextStream::new(&tok, vec![]);
        let texts: Vec<String> = ids.iter().map(|&id| s.push(id).unwrap().text).collect();
        assert_eq!(texts, [" cat", "", "", "中", " on"]);
        assert_eq!(run(&tok, &["中"], &ids), (" cat".to_string(), true, 4));
        assert_eq!(token_text(&tok, byte(b'A')), ("A".to_string(), vec![b'A']));
    }
}
