//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Command, Output};

/// The real test model, when present (RBENCH_TEST_MODEL or the fetch script's
/// default location). Prints why a test is skipped otherwise; under CI
/// (`CI` set), where `.ci/run` fetches it, a missing model fails the test.
pub fn test_model(test: &str) -> Option<PathBuf> {
    let path = std::env::var_os("RBENCH_TEST_MODEL")
        .map(PathBuf::from)
        .or_else(|| {
            dirs::home_dir().map(|h| h.join(".cache/rbench-models/gemma-3-270m-q4_k_m.gguf"))
        });
    match path {
        Some(p) if p.is_file() => Some(p),
        _ if std::env::var_os("CI").is_some() => panic!(
            "{test}: test model not found under CI (.ci/run fetches it; RBENCH_TEST_MODEL: {:?})",
            std::env::var_os("RBENCH_TEST_MODEL")
        ),
        _ => {
            eprintln!(
                "skipped {test}: test model not found (run scripts/fetch-test-model.sh or set RBENCH_TEST_MODEL)"
            );
            None
        }
    }
}

/// Reference data made with llama.cpp, vendored under `tests/data/`.
pub fn reference_data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

/// Runs the rbench binary with `args`.
pub fn rbench(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rbench"))
        .args(args)
        .env("RBENCH_CACHE_DIR", cache_dir())
        .output()
        .expect("failed to start rbench")
}

/// A cache dir for synthetic models shared by the tests of one target dir.
pub fn cache_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("rbench-cache");
    std::fs::create_dir_all(&dir).expect("cache dir");
    dir
}

/// The stdout of a run that must have succeeded (its stderr in the panic).
pub fn success_stdout(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

/// llama.cpp's perplexity test text, part of every Debian.
pub fn gpl3() -> PathBuf {
    let text = PathBuf::from("/usr/share/common-licenses/GPL-3");
    assert!(text.is_file(), "{} is part of every Debian", text.display());
    text
}

/// PPL over the first `chunks` chunks of GPL-3 at `-c 256` with `extra`
/// flags, and the run's stderr.
pub fn gpl3_perplexity(model: &std::path::Path, chunks: usize, extra: &[&str]) -> (f64, String) {
    let text = gpl3();
    let chunks = chunks.to_string();
    let mut args = vec![
        "perplexity",
        "-m",
        model.to_str().unwrap(),
        "-f",
        text.to_str().unwrap(),
        "-c",
        "256",
        "--chunks",
        &chunks,
        "--json",
    ];
    args.extend_from_slice(extra);
    let out = rbench(&args);
    let v: serde_json::Value = serde_json::from_str(&success_stdout(&out)).unwrap();
    (
        v["ppl"].as_f64().unwrap(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
