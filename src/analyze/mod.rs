//! Dataset analysis (`rbench analyze`): how long the prompts and outputs of a real workload
//! are in tokens, and which `-p` / `-n` to benchmark with.
//!
//! A file (JSON Lines or a JSON array, optionally gzip-compressed) is streamed record by
//! record ([`input`]); each record's prompt and output are found by its [`shape`], chat
//! prompts rendered with the model's template ([`chat`]), and both counted with the
//! tokenizer or estimated ([`pipeline`], on all cores). Only per-length tallies are kept, so
//! memory stays bounded whatever the file size. [`report`] turns the tallies into
//! statistics and the [`recommend`]ation; [`plot`] draws them.

pub mod chat;
mod error;
pub mod input;
pub mod pipeline;
pub mod plot;
pub mod prompts;
pub mod recommend;
pub mod report;
pub mod shape;

pub use error::AnalyzeError;
pub use input::{Layout, RecordReader, DEFAULT_MAX_RECORD_BYTES};
pub use pipeline::{analyze, estimate_tokens, Analysis, Counter, Options};
pub use report::{AnalysisReport, LengthStats, Recommendation};
pub use shape::{FieldPath, Shape};

use serde::{Deserialize, Serialize};

/// The token estimate used without a tokenizer.
pub const ESTIMATE_RULE: &str = "ceil(characters / 4)";

/// How many problems (bad lines, ...) a report lists with their line numbers.
pub const MAX_REPORTED_PROBLEMS: usize = 10;

/// Why a record was left out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemKind {
    /// Not UTF-8, not JSON, or nested too deeply to parse.
    BadJson,
    /// Longer than the record size limit.
    TooLong,
    /// JSON, but the prompt or output field is missing or of the wrong type.
    NoMatch,
    /// The chat template refused the conversation.
    Template,
    /// The tokenizer failed on the text.
    Tokenizer,
    /// The file's structure is broken around the record (e.g. a JSON array never closed).
    Structure,
}

/// One problem, with the line it starts on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    pub line: u64,
    pub kind: ProblemKind,
    pub reason: String,
}

/// How many records were left out, by reason.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkipCounts {
    pub bad_json: u64,
    pub too_long: u64,
    pub no_match: u64,
    pub template: u64,
    pub tokenizer: u64,
    pub structure: u64,
}

impl SkipCounts {
    pub fn add(&mut self, kind: ProblemKind) {
        *self.slot(kind) += 1;
    }

    fn slot(&mut self, kind: ProblemKind) -> &mut u64 {
        match kind {
            ProblemKind::BadJson => &mut self.bad_json,
            ProblemKind::TooLong => &mut self.too_long,
            ProblemKind::NoMatch => &mut self.no_match,
            ProblemKind::Template => &mut self.template,
            ProblemKind::Tokenizer => &mut self.tokenizer,
            ProblemKind::Structure => &mut self.structure,
        }
    }

    pub fn merge(&mut self, other: &SkipCounts) {
        for (kind, n) in other.entries() {
            *self.slot(kind) += n;
        }
    }

    fn entries(&self) -> [(ProblemKind, u64); 6] {
        [
            (ProblemKind::BadJson, self.bad_json),
            (ProblemKind::TooLong, self.too_long),
            (ProblemKind::NoMatch, self.no_match),
            (ProblemKind::Template, self.template),
            (ProblemKind::Tokenizer, self.tokenizer),
            (ProblemKind::Structure, self.structure),
        ]
    }

    pub fn total(&self) -> u64 {
        self.entries().iter().map(|e| e.1).sum()
    }

    /// "3 bad JSON, 1 too long" (or "none").
    pub fn describe(&self) -> String {
        let parts: Vec<String> = self
            .entries()
            .iter()
            .filter(|e| e.1 > 0)
            .map(|&(kind, n)| {
                let what = match kind {
                    ProblemKind::BadJson => "bad JSON",
                    ProblemKind::TooLong => "too long",
                    ProblemKind::NoMatch => "fields missing or of the wrong type",
                    ProblemKind::Template => "refused by the chat template",
                    ProblemKind::Tokenizer => "tokenizer failed",
                    ProblemKind::Structure => "broken file structure",
                };
                format!("{n} {what}")
            })
            .collect();
        if parts.is_empty() {
            "none".into()
        } else {
            parts.join(", ")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skip_counts_add_merge_and_describe() {
        let mut a = SkipCounts::default();
        assert_eq!(a.describe(), "none");
        a.add(ProblemKind::BadJson);
        a.add(ProblemKind::BadJson);
        let mut b = SkipCounts::default();
        b.add(ProblemKind::TooLong);
        a.merge(&b);
        assert_eq!(a.total(), 3);
        assert_eq!(a.describe(), "2 bad JSON, 1 too long");
    }
}
