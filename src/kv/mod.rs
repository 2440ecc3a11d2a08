//! The multi-sequence KV cache: a cell table (positions and sequence sets)
//! plus one K and one V buffer per layer, sized from the number of workers.

mod cache;
mod cells;
pub mod prefix;
pub mod sizing;

pub use cache::{KvCache, KvCacheError, KvShape};
pub use cells::{Cell, CellTable, SeqSet, TokenPlace, MAX_SEQS};

#[derive(Debug, thiserror::Error)]
pub enum KvError {
    #[error("the KV cache is full: {needed} new tokens need cells but only {free} of {n_ctx} are free (raise -c/--ctx or use fewer sequences)")]
    Full {
        needed: usize,
        free: usize,
        n_ctx: usize,
    },
    #[error("sequence id {seq} is out of range (at most {max} sequences)")]
    SeqOutOfRange { seq: u32, max: usize },
    #[error("a token in the batch belongs to no sequence")]
    NoSequence,
}
