//! The saved-result envelope (`--save FILE.json`), schema 1:
//!
//! ```json
//! {"schema": 1, "kind": "bench", "command_line": ["rbench", "bench", ...],
//!  "created": "2025-01-31T12:00:00Z", "build": {...}, "model": {...} | null,
//!  "hardware": {...}, "result": <the command's own JSON>}
//! ```
//!
//! How a measuring command saves (this is what `parallel` and `analyze` call):
//!
//! ```ignore
//! use rbench::report::saved::{self, ModelIdentity, ResultKind};
//! let model_id = Some(ModelIdentity::of(&model)?);        // None: analyze without -m
//! let result = serde_json::to_value(&my_json_result)?;   // exactly what `-o json` prints
//! saved::save(&path, ResultKind::Parallel, &saved::command_line(), model_id, result)?;
//! ```
//!
//! `save` records the build and hardware facts (with a quick memory-bandwidth
//! measurement, about half a second, which `rbench report` uses as the
//! token-generation ceiling) and writes atomically: a temporary file beside
//! the target, then a rename, so a reader never sees half a file.

use super::ReportError;
use crate::model::info::ModelInfo;
use crate::system::{BandwidthTest, Hardware};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::path::Path;

/// The schema this build writes and reads.
pub const SCHEMA: u32 = 1;

/// How much of the model file the identity hash covers.
const IDENTITY_PREFIX_BYTES: u64 = 1 << 20;

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum ResultKind {
    Bench,
    Parallel,
    Analyze,
    Perplexity,
    Load,
}

impl ResultKind {
    pub fn name(self) -> &'static str {
        match self {
            ResultKind::Bench => "bench",
            ResultKind::Parallel => "parallel",
            ResultKind::Analyze => "analyze",
            ResultKind::Perplexity => "perplexity",
            ResultKind::Load => "load",
        }
    }
}

/// rbench's build facts, owned so that they deserialize.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct BuildFacts {
    pub rbench_version: String,
    pub git_commit: String,
    pub ggml_version: String,
    pub target: String,
    #[serde(default)]
    pub target_features: Vec<String>,
    pub profile: String,
}

impl BuildFacts {
    pub fn current() -> BuildFacts {
        let b = crate::build_info::build_info();
        BuildFacts {
            rbench_version: b.rbench_version.into(),
            git_commit: b.git_commit.into(),
            ggml_version: b.ggml_version.into(),
            target: b.target.into(),
            target_features: b.target_features.iter().map(|s| s.to_string()).collect(),
            profile: b.profile.into(),
        }
    }
}

/// What identifies a model file and what a report shows about it. The
/// identity is the sha256 of the file's first MiB plus its size: cheap, and
/// different for any two real GGUF files (the header holds the metadata).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ModelIdentity {
    pub path: String,
    pub name: Option<String>,
    pub architecture: String,
    /// llama-bench's label, e.g. "gemma3 270M Q4_K - Medium".
    pub model_type: String,
    pub n_params: u64,
    /// Bytes of tensor data: what one generated token reads.
    pub model_size: u64,
    pub file_size: u64,
    pub file_type: String,
    pub synthetic: bool,
    #[serde(default)]
    pub n_layer: Option<u32>,
    #[serde(default)]
    pub n_embd: Option<u32>,
    #[serde(default)]
    pub context_length: Option<u32>,
    pub sha256_first_mib: String,
}

impl ModelIdentity {
    pub fn of(model: &crate::model::Model) -> Result<ModelIdentity, ReportError> {
        ModelIdentity::from_info(&model.path, &model.info)
    }

    pub fn from_info(path: &Path, info: &ModelInfo) -> Result<ModelIdentity, ReportError> {
        Ok(ModelIdentity {
            path: path.display().to_string(),
            name: info.name.clone(),
            architecture: info.architecture.clone(),
            model_type: info.model_type(),
            n_params: info.n_params,
            model_size: info.model_size,
            file_size: info.file_size,
            file_type: info.file_type.clone(),
            synthetic: info.synthetic,
            n_layer: Some(info.n_layer),
            n_embd: Some(info.n_embd),
            context_length: Some(info.context_length),
            sha256_first_mib: sha256_prefix(path)?,
        })
    }

    /// The short label reports use: model type, "(synthetic)" when it is.
    pub fn label(&self) -> String {
        if self.synthetic {
            format!("{} (synthetic)", self.model_type)
        } else {
            self.model_type.clone()
        }
    }
}

/// Hex sha256 of the first MiB of `path` (all of it when shorter).
pub fn sha256_prefix(path: &Path) -> Result<String, ReportError> {
    let io = |source| ReportError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let mut prefix = Vec::new();
    file.take(IDENTITY_PREFIX_BYTES)
        .read_to_end(&mut prefix)
        .map_err(io)?;
    let digest = Sha256::digest(&prefix);
    Ok(digest.iter().map(|b| format!("{b:02x}")).collect())
}

/// One saved result.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct SavedResult {
    pub schema: u32,
    pub kind: ResultKind,
    /// The exact command line, program name first.
    pub command_line: Vec<String>,
    /// RFC 3339 UTC time the result was saved.
    pub created: String,
    pub build: BuildFacts,
    /// The (first) model measured; `None` for analyze without a model.
    pub model: Option<ModelIdentity>,
    /// Further models of a multi-model `bench` run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub more_models: Vec<ModelIdentity>,
    pub hardware: Hardware,
    /// The command's own JSON result.
    pub result: serde_json::Value,
}

impl SavedResult {
    /// An envelope of this machine and build now; measures memory bandwidth.
    pub fn new(
        kind: ResultKind,
        command_line: &[String],
        model: Option<ModelIdentity>,
        result: serde_json::Value,
    ) -> SavedResult {
        SavedResult {
            schema: SCHEMA,
            kind,
            command_line: command_line.to_vec(),
            created: crate::bench::runner::rfc3339_utc(std::time::SystemTime::now()),
            build: BuildFacts::current(),
            model,
            more_models: Vec::new(),
            hardware: Hardware::detect_with_bandwidth(BandwidthTest::QUICK),
            result,
        }
    }

    /// Every model of the result, first one first.
    pub fn models(&self) -> impl Iterator<Item = &ModelIdentity> {
        self.model.iter().chain(&self.more_models)
    }

    /// Writes the envelope as pretty JSON, atomically.
    pub fn write(&self, path: &Path) -> Result<(), ReportError> {
        let json = serde_json::to_string_pretty(self).map_err(ReportError::Json)?;
        write_atomically(path, format!("{json}\n").as_bytes())
    }

    /// Reads a saved result, refusing other schemas with a clear message.
    pub fn read(path: &Path) -> Result<SavedResult, ReportError> {
        let text = std::fs::read_to_string(path).map_err(|source| ReportError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        SavedResult::parse(&text).map_err(|e| e.in_file(path))
    }

    pub fn parse(text: &str) -> Result<SavedResult, ReportError> {
        let value: serde_json::Value = serde_json::from_str(text).map_err(ReportError::Json)?;
        match value.get("schema").and_then(serde_json::Value::as_u64) {
            Some(s) if s == u64::from(SCHEMA) => {}
            Some(s) => return Err(ReportError::Schema(s)),
            None => return Err(ReportError::NotSaved),
        }
        serde_json::from_value(value).map_err(ReportError::Json)
    }
}

/// The process's command line as typed (lossy for non-UTF-8), the program
/// named by its file name only so saved files do not carry build paths.
pub fn command_line() -> Vec<String> {
    std::env::args_os()
        .enumerate()
        .map(|(i, a)| {
            let p = std::path::PathBuf::from(&a);
            match (i, p.file_name()) {
                (0, Some(name)) => name.to_string_lossy().into_owned(),
                _ => a.to_string_lossy().into_owned(),
            }
        })
        .collect()
}

/// Builds the envelope and writes it to `path` atomically: the one call a
/// measuring command makes for `--save`.
pub fn save(
    path: &Path,
    kind: ResultKind,
    command_line: &[String],
    model: Option<ModelIdentity>,
    result: serde_json::Value,
) -> Result<SavedResult, ReportError> {
    let saved = SavedResult::new(kind, command_line, model, result);
    saved.write(path)?;
    Ok(saved)
}

/// Temp file in the target's directory (same file system), then rename.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), ReportError> {
    let io = |source| ReportError::Io {
        path: path.to_path_buf(),
        source,
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "result".into());
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let written = std::fs::File::create(&tmp).and_then(|mut f| {
        f.write_all(bytes)?;
        f.sync_all()
    });
    if let Err(e) = written.and_then(|()| std::fs::rename(&tmp, path)) {
        let _ = std::fs::remove_file(&tmp);
        return Err(io(e));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn identity() -> ModelIdentity {
        ModelIdentity {
            path: "/m/x.gguf".into(),
            name: Some("x".into()),
            architecture: "llama".into(),
            model_type: "llama 15M Q4_K - Medium".into(),
            n_params: 15_000_000,
            model_size: 10 << 20,
            file_size: 11 << 20,
            file_type: "Q4_K - Medium".into(),
            synthetic: true,
            n_layer: Some(6),
            n_embd: Some(288),
            context_length: Some(2048),
            sha256_first_mib: "ab".repeat(32),
        }
    }

    fn results() -> Vec<(ResultKind, Option<ModelIdentity>, serde_json::Value)> {
        vec![
            (
                ResultKind::Bench,
                Some(identity()),
                json!([{"n_prompt": 512, "n_gen": 0, "avg_ts": 1000.5, "stddev_ts": 3.0}]),
            ),
            (
                ResultKind::Parallel,
                Some(identity()),
                json!({"n_ctx": 1024, "runs": [{"workers": 1, "gen_tps": 50.0,
                       "ttft_ms": {"mean": 1.0, "p50": 1.0, "p90": 2.0, "p99": 3.0}}]}),
            ),
            (
                ResultKind::Analyze,
                None,
                json!({"records": 10, "recommendation": {"n_prompt": 256, "n_predict": 512}}),
            ),
            (
                ResultKind::Perplexity,
                Some(identity()),
                json!({"ppl": 16.43, "ppl_error": 0.78, "n_chunks": 29}),
            ),
        ]
    }

    #[test]
    fn every_kind_round_trips_through_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let argv = vec!["rbench".to_string(), "bench".into(), "--save".into()];
        for (kind, model, result) in results() {
            let path = dir.path().join(format!("{}.json", kind.name()));
            let saved = save(&path, kind, &argv, model.clone(), result.clone()).unwrap();
            let back = SavedResult::read(&path).unwrap();
            assert_eq!(back, saved);
            assert_eq!((back.kind, back.model, back.result), (kind, model, result));
            let raw: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            assert_eq!(raw["schema"], 1);
            assert_eq!(raw["kind"], kind.name());
            assert_eq!(raw["command_line"][1], "bench");
            assert!(
                raw["hardware"]["memory_bandwidth"]["all_threads_gbs"]
                    .as_f64()
                    .unwrap()
                    > 0.0
            );
            assert!(raw["build"]["rbench_version"].is_string());
        }
        // Only the four results remain: no temporary files left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 4);
    }

    #[test]
    fn other_schemas_and_plain_json_are_refused() {
        let mut v = serde_json::to_value(SavedResult {
            schema: SCHEMA,
            kind: ResultKind::Analyze,
            command_line: vec![],
            created: String::new(),
            build: BuildFacts::current(),
            model: None,
            more_models: vec![],
            hardware: Hardware::detect(),
            result: json!({}),
        })
        .unwrap();
        assert!(SavedResult::parse(&v.to_string()).is_ok());
        v["schema"] = json!(2);
        assert!(matches!(
            SavedResult::parse(&v.to_string()),
            Err(ReportError::Schema(2))
        ));
        assert!(matches!(
            SavedResult::parse("[{\"avg_ts\": 1}]"),
            Err(ReportError::NotSaved)
        ));
        assert!(SavedResult::parse("{").is_err());
    }

    #[test]
    fn identity_hash_covers_the_first_mib_only() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        let b = dir.path().join("b");
        let mut bytes = vec![7u8; (1 << 20) + 10];
        std::fs::write(&a, &bytes).unwrap();
        *bytes.last_mut().unwrap() = 8;
        std::fs::write(&b, &bytes).unwrap();
        assert_eq!(sha256_prefix(&a).unwrap(), sha256_prefix(&b).unwrap());
        bytes[0] = 0;
        std::fs::write(&b, &bytes).unwrap();
        assert_ne!(sha256_prefix(&a).unwrap(), sha256_prefix(&b).unwrap());
        // sha256("abc"), the FIPS 180-2 example.
        std::fs::write(&a, b"abc").unwrap();
        assert_eq!(
            sha256_prefix(&a).unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert!(sha256_prefix(&dir.path().join("missing")).is_err());
    }
}
