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

    fn tokenizer() -> Tokenizer {
        let (_dir, model) = crate::model::synth::test_model(1);
        let file = crate::gguf::GgufFile::open(&model.path).unwrap();
        Tokenizer::from_gguf(&file).unwrap()
    }

    /// Token ids whose concatenated texts are `pieces`.
    fn ids_for(tok: &Tokenizer, pieces: &[&str]) -> Vec<u32> {
        pieces
            .iter()
            .map(|p| {
                (0..tok.n_vocab() as u32)
                    .find(|&id| token_text(tok, id).0 == *p)
                    .unwrap_or_else(|| panic!("no token for {p:?}"))
            })
            .collect()
    }

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
        let pieces: Vec<String> = (0..tok.n_vocab() as u32)
            .map(|id| token_text(&tok, id).0)
            .filter(|t| t.len() >= 2 && t.chars().all(|c| c.is_ascii_alphanumeric()))
            .take(4)
            .collect();
        assert_eq!(pieces.len(), 4, "the synthetic vocabulary has word pieces");
        let p: Vec<&str> = pieces.iter().map(String::as_str).collect();
        let ids = ids_for(&tok, &p);
        let all = p.concat();
        assert_eq!(run(&tok, &[], &ids), (all.clone(), false, 4));
        // The stop string starts in the second piece and ends in the third.
        let stop = format!("{}{}", &p[1][1..], &p[2][..1]);
        let (text, stopped, used) = run(&tok, &[&stop], &ids);
        assert!(stopped);
        assert_eq!(used, 3);
        assert_eq!(text, format!("{}{}", p[0], &p[1][..1]));
        // A stop string that never completes is given back at the end.
        let never = format!("{}#", p[3]);
        assert_eq!(run(&tok, &[&never], &ids), (all, false, 4));
    }
}
