//! Errors of dataset analysis. Problems of single records (bad JSON, missing fields) are not
//! errors: they are counted and reported while the run goes on.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum AnalyzeError {
    #[error("cannot open {path}: {source}")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Reading failed mid-stream (I/O error, corrupt or truncated gzip).
    #[error("reading {path} near line {line}: {source}")]
    Read {
        path: PathBuf,
        line: u64,
        source: std::io::Error,
    },
    /// None of the first records parses, so the file is not JSON Lines or a JSON array.
    #[error("none of the first {sampled} records is valid JSON (line {line}: {reason}); expected JSON Lines or one JSON array")]
    NotJson {
        sampled: usize,
        line: u64,
        reason: String,
    },
    /// No record in the first part of the file fits any known shape.
    #[error("no known record shape in the first {sampled} records (keys seen: {keys}); set the fields with --prompt-field F --output-field G")]
    NoShape { sampled: usize, keys: String },
    /// The file has records, but none of them gave a prompt and an output.
    #[error("no record could be used ({skipped} skipped); see the problems listed above")]
    NoRecords { skipped: u64 },
    /// Every usable record has an empty output, so output lengths say nothing.
    #[error("all {records} records have an empty output")]
    NoOutputs { records: u64 },
    #[error("a field path must be non-empty names separated by dots, got `{0}`")]
    BadFieldPath(String),
    #[error("the chat template does not compile: {0}")]
    Template(String),
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    #[error("writing the plot {path}: {source}")]
    Plot {
        path: PathBuf,
        source: std::io::Error,
    },
}
