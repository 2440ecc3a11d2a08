//! Files whose tensors do not match their metadata: each is refused at load,
//! before any tensor is used, with the offending tensor's name.

use rbench::gguf::{GgufFile, GgufWriter, TensorSource, Value};
use rbench::model::synth::{self, Preset, SynthFtype};
use rbench::model::weights::LoadOptions;
use rbench::model::Model;
use std::path::{Path, PathBuf};

const LAYERS: u32 = 4;

/// A llama-15m with 4 layers and a small vocabulary: loads in milliseconds.
fn small_model(dir: &Path) -> PathBuf {
    let preset = Preset {
        n_layer: LAYERS,
        n_vocab: 512,
        ..*synth::preset("llama-15m").unwrap()
    };
    let path = dir.join("small.gguf");
    synth::write_synthetic(&preset, SynthFtype::Q8_0, 5, &path).unwrap();
    path
}

/// `src` rewritten with `block_count` set to `n_layer` and tensors passed
/// through `tensor` (None drops one; new dims get zero-filled data).
fn rewrite(
    src: &Path,
    name: &str,
    n_layer: u32,
    tensor: impl Fn(&str, &[u64]) -> Option<Vec<u64>>,
) -> PathBuf {
    let f = GgufFile::open(src).unwrap();
    let mut w = GgufWriter::new();
    for (k, v) in f.metadata() {
        let v = if k.ends_with(".block_count") {
            Value::U32(n_layer)
        } else {
            v.clone()
        };
        w.add_kv(k.clone(), v);
    }
    for t in f.tensors() {
        if let Some(dims) = tensor(&t.name, &t.dims) {
            let n: u64 = dims.iter().product();
            let mut data = f.tensor_data(t).to_vec();
            data.resize(t.ggml_type.bytes_for(n).unwrap() as usize, 0);
            w.add_tensor(
                t.name.clone(),
                &dims,
                t.ggml_type,
                TensorSource::Bytes(data),
            )
            .unwrap();
        }
    }
    let dst = src.with_file_name(name);
    w.write_file(&dst).unwrap();
    dst
}

fn load_error(path: &Path) -> String {
    match Model::load(path, &LoadOptions::default()) {
        Ok(_) => panic!("{} was accepted", path.display()),
        Err(e) => e.to_string(),
    }
}

/// Keeps every tensor as it is.
fn same(_: &str, dims: &[u64]) -> Option<Vec<u64>> {
    Some(dims.to_vec())
}

#[test]
fn the_unmodified_small_model_loads() {
    let dir = tempfile::tempdir().unwrap();
    let src = small_model(dir.path());
    let copy = rewrite(&src, "copy.gguf", LAYERS, same);
    let m = Model::load(&copy, &LoadOptions::default()).unwrap();
    assert_eq!(m.hparams.n_layer, LAYERS);
}

#[test]
fn more_layers_declared_than_stored_names_the_first_missing_tensor() {
    let dir = tempfile::tempdir().unwrap();
    let src = small_model(dir.path());
    let err = load_error(&rewrite(&src, "more.gguf", LAYERS + 2, same));
    assert!(
        err.contains("tensor 'blk.4.") && err.contains("missing"),
        "{err}"
    );
}

#[test]
fn fewer_layers_declared_than_stored_names_an_extra_tensor() {
    let dir = tempfile::tempdir().unwrap();
    let src = small_model(dir.path());
    let err = load_error(&rewrite(&src, "fewer.gguf", LAYERS - 2, same));
    assert!(
        err.contains("tensor 'blk.2.") && err.contains("declares 2 layers"),
        "{err}"
    );
}

#[test]
fn a_missing_tensor_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let src = small_model(dir.path());
    let path = rewrite(&src, "no_embd.gguf", LAYERS, |n, d| {
        (n != "token_embd.weight").then(|| d.to_vec())
    });
    let err = load_error(&path);
    assert!(
        err.contains("tensor 'token_embd.weight' is missing"),
        "{err}"
    );
}

#[test]
fn a_wrong_shape_is_named_with_both_shapes() {
    let dir = tempfile::tempdir().unwrap();
    let src = small_model(dir.path());
    let path = rewrite(&src, "shape.gguf", LAYERS, |n, d| {
        Some(if n == "output_norm.weight" {
            vec![d[0] * 2]
        } else {
            d.to_vec()
        })
    });
    let err = load_error(&path);
    assert!(
        err.contains("tensor 'output_norm.weight' has shape [576]")
            && err.contains("expected [288]"),
        "{err}"
    );
}

#[test]
fn a_tensor_running_past_the_end_of_the_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let src = small_model(dir.path());
    let f = GgufFile::open(&src).unwrap();
    // Cut in the middle of the largest tensor, whichever it is.
    let t = f.tensors().iter().max_by_key(|t| t.n_bytes).unwrap();
    let cut = f.tensor_data_offset(t) + t.n_bytes / 2;
    let bytes = std::fs::read(&src).unwrap();
    let path = dir.path().join("cut.gguf");
    std::fs::write(&path, &bytes[..cut as usize]).unwrap();
    let err = load_error(&path);
    assert!(
        err.contains(&format!("tensor '{}'", t.name)) && err.contains("tensor data"),
        "{err}"
    );
}
