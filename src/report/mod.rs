//! Results people keep and read: the saved-result envelope (`--save`), the
//! Markdown report with SVG charts (`rbench report`), and `rbench compare`.
//!
//! See [`saved`] for the API measuring commands call to save their results.

pub mod analysis;
pub mod charts;
pub mod compare;
pub mod markdown;
pub mod saved;
pub mod views;

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid JSON: {0}")]
    Json(#[source] serde_json::Error),
    #[error("saved-result schema {0} is not supported by this rbench (it reads schema 1); re-run the measurement with --save, or use a newer rbench")]
    Schema(u64),
    #[error("not a saved result (no \"schema\" field): make one with `rbench bench --save FILE.json` (or pp/tg/parallel/analyze/perplexity --save)")]
    NotSaved,
    #[error("{path}: {source}")]
    InFile {
        path: PathBuf,
        #[source]
        source: Box<ReportError>,
    },
    #[error("{kind} result: {message}")]
    Shape { kind: &'static str, message: String },
    #[error("drawing chart {name}: {message}")]
    Chart { name: String, message: String },
    #[error("{0}")]
    Mismatch(String),
}

impl ReportError {
    /// Names the file an error came from (I/O errors already do).
    pub fn in_file(self, path: &std::path::Path) -> ReportError {
        match self {
            e @ (ReportError::Io { .. } | ReportError::InFile { .. }) => e,
            e => ReportError::InFile {
                path: path.to_path_buf(),
                source: Box::new(e),
            },
        }
    }
}
