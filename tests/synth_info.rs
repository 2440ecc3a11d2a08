//! `rbench synth` writes every preset; `rbench info` reads them back; the test
//! model reads as llama.cpp reports it; broken files fail cleanly.

mod common;

use common::{rbench, test_model};
use rbench::gguf::GgufFile;
use rbench::model::info::ModelInfo;
use rbench::model::synth::{self, SynthFtype, PRESETS};

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Writes `preset` with the CLI and checks what `info --json` reports.
fn synth_and_check(name: &str, ftype: &str) {
    let preset = synth::preset(name).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(format!("{name}.gguf"));
    let p = path.to_str().unwrap();
    let (arch, size) = name.split_once('-').unwrap();
    let out = rbench(&[
        "synth", "--arch", arch, "--size", size, "--ftype", ftype, "-o", p,
    ]);
    assert!(
        out.status.success(),
        "synth {name} failed: {}",
        stderr(&out)
    );

    let out = rbench(&["info", "-m", p, "--json"]);
    assert!(out.status.success(), "info {name} failed: {}", stderr(&out));
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["architecture"], preset.arch.name());
    assert_eq!(v["synthetic"], true);
    assert_eq!(v["n_layer"], preset.n_layer);
    assert_eq!(v["n_embd"], preset.n_embd);
    assert_eq!(v["n_head_kv"], preset.n_head_kv);
    assert_eq!(v["n_vocab"], preset.n_vocab);
    let expected_params: u64 = preset
        .tensors()
        .iter()
        .map(|t| t.dims.iter().product::<u64>())
        .sum();
    assert_eq!(v["n_params"], expected_params);
    let ft = SynthFtype::parse(ftype).unwrap();
    assert_eq!(
        v["file_type"],
        rbench::quant::file_type_name(ft.file_type_id()).unwrap()
    );

    // The human form labels it as synthetic.
    let out = rbench(&["info", "-m", p]);
    assert!(stdout(&out).contains("synthetic (random weights)"));
}

#[test]
fn synth_small_presets_read_back() {
    for name in ["llama-15m", "llama-125m", "gemma3-270m", "qwen3-0.6b"] {
        synth_and_check(name, "q4_k_m");
    }
    synth_and_check("llama-15m", "q8_0");
    synth_and_check("llama-15m", "f16");
}

#[test]
fn synth_large_presets_read_back() {
    for name in ["llama-1b", "qwen2-1.5b"] {
        synth_and_check(name, "q4_k_m");
    }
}

/// 13+ GiB on disk: run by hand with `cargo test --release -- --ignored`.
#[test]
#[ignore]
fn synth_mistral_24b_reads_back() {
    synth_and_check("mistral-24b", "q4_k_m");
}

#[test]
fn every_preset_has_a_consistent_layout() {
    for p in PRESETS {
        let hp = p.hparams();
        let specs = p.tensors();
        let per_layer = specs.iter().filter(|s| s.layer == Some(0)).count();
        // Norms, attention and FFN: 6 with Phi-3's fused QKV and gate/up, 9 and more otherwise.
        assert!(per_layer >= 6, "{}: {per_layer} tensors per layer", p.name);
        assert_eq!(
            specs.iter().filter(|s| s.layer.is_some()).count(),
            per_layer * hp.n_layer as usize
        );
    }
}

#[test]
fn synth_spec_works_as_a_model_path() {
    let out = rbench(&["info", "-m", "synth:llama-15m", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["architecture"], "llama");
    let out = rbench(&["info", "-m", "synth:no-such-model"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("llama-125m"),
        "should list presets: {}",
        stderr(&out)
    );
}

#[test]
fn test_model_info_matches_llama_cpp() {
    let Some(model) = test_model("test_model_info_matches_llama_cpp") else {
        return;
    };
    let out = rbench(&["info", "-m", model.to_str().unwrap(), "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["architecture"], "gemma3");
    assert_eq!(v["n_params"], 268_098_176u64);
    assert_eq!(v["model_size"], 246_587_904u64);
    assert_eq!(v["file_type"], "Q4_K - Medium");
    assert_eq!(v["n_layer"], 18);
    assert_eq!(v["sliding_window"], 512);

    let f = GgufFile::open(&model).unwrap();
    let info = ModelInfo::from_gguf(&f).unwrap();
    let types: Vec<&str> = info.types.iter().map(|t| t.ty.as_str()).collect();
    for t in ["q8_0", "q5_0", "q6_K", "q4_K", "f32"] {
        assert!(types.contains(&t), "type {t} missing from {types:?}");
    }
}

#[test]
fn truncated_model_is_a_clear_error_not_a_panic() {
    let Some(model) = test_model("truncated_model_is_a_clear_error_not_a_panic") else {
        return;
    };
    let bytes = std::fs::read(&model).unwrap();
    let dir = tempfile::tempdir().unwrap();
    // Inside the magic, the header, the metadata, the tensor table, and the data.
    for cut in [
        2usize,
        10,
        100,
        4_000_000,
        6_500_000,
        100_000_000,
        bytes.len() - 1,
    ] {
        let path = dir.path().join(format!("cut{cut}.gguf"));
        std::fs::write(&path, &bytes[..cut]).unwrap();
        let out = rbench(&["info", "-m", path.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(1), "cut at {cut}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(err.starts_with("error:"), "cut at {cut}: {err}");
        assert!(!err.contains("panicked"), "cut at {cut}: {err}");
    }
    let out = rbench(&["info", "-m", "/nonexistent/model.gguf"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("/nonexistent/model.gguf"));
}

#[test]
fn usage_errors_exit_2() {
    let out = rbench(&["info"]);
    assert_eq!(out.status.code(), Some(2));
    let out = rbench(&[
        "synth",
        "--arch",
        "llama",
        "--size",
        "7b",
        "-o",
        "/tmp/x.gguf",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let out = rbench(&[
        "synth",
        "--arch",
        "llama",
        "--size",
        "15m",
        "--ftype",
        "q2",
        "-o",
        "/tmp/x.gguf",
    ]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn closed_stdout_is_not_a_panic() {
    use std::io::Read;
    use std::process::{Command, Stdio};
    // Far more output than a pipe buffers (one line per character token).
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("long.txt");
    std::fs::write(&text, "abc ".repeat(50_000)).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_rbench"))
        .args([
            "tokenize",
            "-m",
            "synth:llama-15m",
            "-f",
            text.to_str().unwrap(),
        ])
        .env("RBENCH_CACHE_DIR", common::cache_dir())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Read one byte, then hang up, as `| head -c 1` would.
    let mut stdout = child.stdout.take().unwrap();
    let mut byte = [0u8; 1];
    stdout.read_exact(&mut byte).unwrap();
    drop(stdout);
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(out.status.code(), Some(0), "{err}");
}
