//! Models that cannot run are refused with a clear message, never a panic;
//! synthetic models of every architecture run end to end.

mod common;

use common::rbench;
use rbench::gguf::{GgufFile, GgufWriter, TensorSource, Value};
use rbench::model::synth::{self, SynthFtype};
use std::path::{Path, PathBuf};

fn synth_file(dir: &Path, preset: &str) -> PathBuf {
    let path = dir.join(format!("{preset}.gguf"));
    synth::write_synthetic(synth::preset(preset).unwrap(), SynthFtype::Q8_0, 1, &path).unwrap();
    path
}

/// Rewrites `src` with metadata edited by `edit` and tensors renamed/reshaped by `tensor`.
fn rewrite(
    src: &Path,
    dst: &Path,
    edit: impl Fn(&str, &Value) -> Option<Value>,
    tensor: impl Fn(&str, &[u64]) -> Option<(String, Vec<u64>)>,
) {
    let f = GgufFile::open(src).unwrap();
    let mut w = GgufWriter::new();
    for (k, v) in f.metadata() {
        if let Some(v) = edit(k, v) {
            w.add_kv(k.clone(), v);
        }
    }
    for t in f.tensors() {
        if let Some((name, dims)) = tensor(&t.name, &t.dims) {
            let data = f.tensor_data(t).to_vec();
            let n: u64 = dims.iter().product();
            let bytes = t.ggml_type.bytes_for(n).unwrap() as usize;
            let mut data = data;
            data.resize(bytes, 0);
            w.add_tensor(name, &dims, t.ggml_type, TensorSource::Bytes(data))
                .unwrap();
        }
    }
    w.write_file(dst).unwrap();
}

fn run_hi(path: &Path) -> std::process::Output {
    rbench(&[
        "run",
        "-m",
        path.to_str().unwrap(),
        "-p",
        "hi",
        "-n",
        "2",
        "--temp",
        "0",
    ])
}

/// `rbench run` on `path` fails at run time (exit 1) with `needle` in its message.
fn assert_refused(path: &Path, needle: &str) {
    let out = run_hi(path);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(needle),
        "expected {needle:?} in: {}",
        stderr(&out)
    );
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn unsupported_architecture_lists_the_supported_ones() {
    let dir = tempfile::tempdir().unwrap();
    let src = synth_file(dir.path(), "llama-15m");
    let dst = dir.path().join("mamba.gguf");
    rewrite(
        &src,
        &dst,
        |k, v| {
            Some(if k == "general.architecture" {
                Value::String("mamba".into())
            } else {
                v.clone()
            })
        },
        |n, d| Some((n.to_string(), d.to_vec())),
    );
    for out in [run_hi(&dst), rbench(&["info", "-m", dst.to_str().unwrap()])] {
        assert_eq!(out.status.code(), Some(1));
        let err = stderr(&out);
        assert!(
            err.contains("unsupported architecture 'mamba'") && err.contains("gemma3"),
            "{err}"
        );
    }
}

#[test]
fn missing_tokenizer_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let src = synth_file(dir.path(), "llama-15m");
    let dst = dir.path().join("notok.gguf");
    rewrite(
        &src,
        &dst,
        |k, v| (!k.starts_with("tokenizer.")).then(|| v.clone()),
        |n, d| Some((n.to_string(), d.to_vec())),
    );
    assert_refused(&dst, "tokenizer.ggml.tokens");
}

#[test]
fn missing_or_misshapen_tensors_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let src = synth_file(dir.path(), "llama-15m");
    let dst = dir.path().join("missing.gguf");
    rewrite(
        &src,
        &dst,
        |_, v| Some(v.clone()),
        |n, d| (n != "blk.3.ffn_up.weight").then(|| (n.to_string(), d.to_vec())),
    );
    assert_refused(&dst, "blk.3.ffn_up.weight");

    let dst = dir.path().join("shape.gguf");
    rewrite(
        &src,
        &dst,
        |_, v| Some(v.clone()),
        |n, d| {
            let mut d = d.to_vec();
            if n == "blk.2.attn_q.weight" {
                d[1] /= 2;
            }
            Some((n.to_string(), d))
        },
    );
    assert_refused(&dst, "blk.2.attn_q.weight");
}

/// gpt-oss needs its window size and every layer's sinks: a file without
/// them is refused with the key or tensor named, never run without them.
#[test]
fn gpt_oss_without_window_or_sinks_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let src = synth_file(dir.path(), "gpt-oss-tiny");
    let no_window = dir.path().join("no-window.gguf");
    rewrite(
        &src,
        &no_window,
        |k, v| (k != "gpt-oss.attention.sliding_window").then(|| v.clone()),
        |n, d| Some((n.to_string(), d.to_vec())),
    );
    assert_refused(&no_window, "gpt-oss.attention.sliding_window");
    let no_sinks = dir.path().join("no-sinks.gguf");
    rewrite(
        &src,
        &no_sinks,
        |_, v| Some(v.clone()),
        |n, d| (n != "blk.1.attn_sinks.weight").then(|| (n.to_string(), d.to_vec())),
    );
    assert_refused(&no_sinks, "blk.1.attn_sinks.weight");
}

#[test]
fn synthetic_models_of_every_architecture_generate() {
    for preset in ["llama-15m", "qwen3-0.6b", "gemma3-270m", "gpt-oss-tiny"] {
        let out = rbench(&[
            "run",
            "-m",
            &format!("synth:{preset}"),
            "-p",
            "Hello",
            "-n",
            "4",
            "--temp",
            "0",
            "-c",
            "64",
        ]);
        assert!(out.status.success(), "{preset}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("synthetic"),
            "{preset} should be labelled synthetic"
        );
    }
}

#[test]
fn cache_types_are_checked_and_q8_0_runs() {
    let base = [
        "run",
        "-m",
        "synth:llama-15m",
        "-p",
        "Hello",
        "-n",
        "4",
        "--temp",
        "0",
        "-c",
        "64",
    ];
    let with = |extra: &[&str]| {
        let mut args = base.to_vec();
        args.extend_from_slice(extra);
        rbench(&args)
    };
    // llama-15m has heads of 48 values: not whole q8_0 blocks.
    let out = with(&["--cache-type-k", "q8_0"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("heads have 48"), "{}", stderr(&out));
    let gemma = [
        "run",
        "-m",
        "synth:gemma3-270m",
        "-p",
        "Hello",
        "-n",
        "4",
        "--temp",
        "0",
        "-c",
        "64",
    ];
    let out = rbench(
        &[
            &gemma[..],
            &["--cache-type-k", "q8_0", "--cache-type-v", "q8_0"],
        ]
        .concat(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    // Contradictory flags: a usage error, found before the model loads.
    let out = with(&["--cache-type-v", "q8_0", "--flash-attn", "off"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("needs flash attention"),
        "{}",
        stderr(&out)
    );
    let out = with(&["--cache-type-k", "q3"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--cache-type-k"), "{}", stderr(&out));
}

/// A byte-level vocabulary whose `tokenizer.ggml.pre` rbench does not split
/// like llama.cpp: benchmarks (token ids) run with a warning, commands that
/// encode text exit 1 naming the pre-tokenizer.
#[test]
fn an_unknown_pre_tokenizer_stops_text_not_benchmarks() {
    let dir = tempfile::tempdir().unwrap();
    let src = synth_file(dir.path(), "llama-15m");
    let dst = dir.path().join("kimi-k2.gguf");
    rewrite(
        &src,
        &dst,
        |k, v| {
            Some(if k == "tokenizer.ggml.model" {
                Value::String("gpt2".into())
            } else {
                v.clone()
            })
        },
        |n, d| Some((n.to_string(), d.to_vec())),
    );
    // Append the pre-tokenizer name and an (empty) merge list.
    let f = GgufFile::open(&dst).unwrap();
    let mut w = GgufWriter::new();
    for (k, v) in f.metadata() {
        w.add_kv(k.clone(), v.clone());
    }
    w.add_kv("tokenizer.ggml.pre", Value::String("kimi-k2".into()));
    w.add_kv(
        "tokenizer.ggml.merges",
        Value::Array {
            elem: rbench::gguf::ValueType::String,
            items: Vec::new(),
        },
    );
    for t in f.tensors() {
        w.add_tensor(
            t.name.clone(),
            &t.dims,
            t.ggml_type,
            TensorSource::Bytes(f.tensor_data(t).to_vec()),
        )
        .unwrap();
    }
    let model = dir.path().join("kimi-k2-pre.gguf");
    w.write_file(&model).unwrap();
    let m = model.to_str().unwrap();

    let bench = rbench(&[
        "bench", "-m", m, "-p", "16", "-n", "4", "-r", "1", "-o", "json",
    ]);
    assert!(bench.status.success(), "{}", stderr(&bench));
    assert!(stderr(&bench).contains("`kimi-k2`"), "{}", stderr(&bench));
    let rows: serde_json::Value = serde_json::from_slice(&bench.stdout).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 2);
    let parallel = rbench(&[
        "parallel",
        "-m",
        m,
        "--workers",
        "1",
        "--requests",
        "1",
        "-p",
        "8",
        "-n",
        "2",
        "-t",
        "1",
    ]);
    assert!(parallel.status.success(), "{}", stderr(&parallel));
    assert_refused(&model, "unsupported gpt2 pre-tokenizer `kimi-k2`");
    let tokenize = rbench(&["tokenize", "-m", m, "-p", "hi"]);
    assert_eq!(tokenize.status.code(), Some(1), "{}", stderr(&tokenize));
    assert!(
        stderr(&tokenize).contains("`kimi-k2`"),
        "{}",
        stderr(&tokenize)
    );
}
