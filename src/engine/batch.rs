//! A batch of tokens for one decode call: each token with its position, the
//! sequences it belongs to, and whether its logits are wanted.

use crate::kv::{KvError, SeqSet, TokenPlace};

#[derive(Clone, Debug, Default)]
pub struct Batch {
    pub tokens: Vec<u32>,
    pub places: Vec<TokenPlace>,
    pub want_logits: Vec<bool>,
}

impl Batch {
    pub fn new() -> Batch {
        Batch::default()
    }

    pub fn with_capacity(n: usize) -> Batch {
        Batch {
            tokens: Vec::with_capacity(n),
            places: Vec::with_capacity(n),
            want_logits: Vec::with_capacity(n),
        }
    }

    /// Adds a token at `pos` of the sequences `seqs` (a shared prefix token may
    /// belong to several).
    pub fn add(
        &mut self,
        token: u32,
        pos: i32,
        seqs: &[u32],
        want_logits: bool,
    ) -> Result<(), KvError> {
        let seqs = SeqSet::from_ids(seqs)?;
        if seqs.is_empty() {
            return Err(KvError::NoSequence);
        }
        self.tokens.push(token);
        self.places.push(TokenPlace { pos, seqs });
        self.want_logits.push(want_logits);
        Ok(())
    }

    /// A whole prompt for one sequence starting at `pos0`, logits for the last token only.
    pub fn from_prompt(tokens: &[u32], pos0: i32, seq: u32) -> Result<Batch, KvError> {
        let mut b = Batch::with_capacity(tokens.len());
        for (i, &t) in tokens.iter().enumerate() {
            b.add(t, pos0 + i as i32, &[seq], i + 1 == tokens.len())?;
        }
        Ok(b)
    }

    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    pub fn clear(&mut self) {
        self.tokens.clear();
        self.places.clear();
        self.want_logits.clear();
    }

    pub fn n_outputs(&self) -> usize {
        self.want_logits.iter().filter(|w| **w).count()
    }
}

/// Logits of the tokens that asked for them, in batch order.
#[derive(Clone, Debug, Default)]
pub struct Logits {
    pub n_vocab: usize,
    data: Vec<f32>,
    /// For each batch index, the row in `data`, if its logits were wanted.
    rows: Vec<Option<usize>>,
}

impl Logits {
    /// Makes room for the wanted rows of a new batch, reusing the memory
    /// (the rows keep stale values until the decode loop overwrites them).
    pub(crate) fn reset(&mut self, n_vocab: usize, want: &[bool]) {
        let mut next = 0;
        self.rows.clear();
        self.rows.extend(want.iter().map(|w| {
            w.then(|| {
                next += 1;
                next - 1
            })
        }));
        self.n_vocab = n_vocab;
        self.data.resize(next * n_vocab, 0.0);
    }

    /// Logits of batch entry `i`, if they were asked for.
    pub fn get(&self, i: usize) -> Option<&[f32]> {
        let row = (*self.rows.get(i)?)?;
        self.data.get(row * self.n_vocab..(row + 1) * self.n_vocab)
    }

    /// The `r`-th wanted row, counting only entries that asked for logits.
    pub fn output_row(&self, r: usize) -> Option<&[f32]> {
        self.data.get(r * self.n_vocab..(r + 1) * self.n_vocab)
    }

    /// The logits of the last entry that has them.
    pub fn last(&self) -> Option<&[f32]> {
        let row = self.rows.iter().rev().find_map(|r| *r)?;
        self.data.get(row * self.n_vocab..(row + 1) * self.n_vocab)
    }

    /// Mutable storage of output rows `first..first+n`, for the decode loop to fill.
    pub(crate) fn rows_mut(&mut self, first: usize, n: usize) -> &mut [f32] {
        &mut self.data[first * self.n_vocab..(first + n) * self.n_vocab]
    }
}
