//! The quant code on a real model file: every tensor type in it decodes
//! bit-identically to ggml, its type mix adds up, and our quantizers hold
//! up against ggml's on real weights.

mod common;

use rbench::ggml::traits::{ggml_quantize, ggml_to_float};
use rbench::gguf::{GgufFile, TensorInfo};
use rbench::quant::{
    dequantize_to_vec, file_type_name, quantize, type_mix, GgmlType, RUST_QUANTIZE_TYPES,
};

/// The first `n_elements` of a tensor's bytes (whole blocks).
fn tensor_bytes<'f>(f: &'f GgufFile, t: &TensorInfo, n_elements: u64) -> &'f [u8] {
    let len = t.ggml_type.bytes_for(n_elements).unwrap() as usize;
    &f.tensor_data(t)[..len]
}

#[test]
fn real_model_tensors_decode_like_ggml_and_mix_adds_up() {
    let Some(path) = common::test_model("real_model_tensors_decode_like_ggml_and_mix_adds_up")
    else {
        return;
    };
    let model = GgufFile::open(&path).unwrap();
    assert_eq!(
        model.get_u32("general.file_type").and_then(file_type_name),
        Some("Q4_K - Medium")
    );

    let mix = type_mix(model.tensors().iter().map(|t| {
        (
            t.ggml_type,
            t.n_elements,
            t.ggml_type.bytes_for(t.n_elements).unwrap(),
        )
    }));
    for row in &mix.rows {
        eprintln!(
            "{:5} tensors {:4} elements {:11} bytes {:10} share {:5.1}%",
            row.ty.name(),
            row.n_tensors,
            row.n_elements,
            row.n_bytes,
            100.0 * row.share
        );
    }
    assert_eq!(mix.total_tensors(), model.tensors().len());
    let data_bytes = model.file_size() - model.data_offset();
    // Tensors fill the data section up to alignment padding.
    assert!(mix.total_bytes() <= data_bytes && data_bytes - mix.total_bytes() < 32 * 1024);
    assert!(mix.rows.iter().any(|r| r.ty == GgmlType::Q4_K));
    assert!(mix.rows.windows(2).all(|w| w[0].n_bytes >= w[1].n_bytes));

    let mut checked = std::collections::BTreeMap::<GgmlType, u64>::new();
    for t in model.tensors() {
        if t.ggml_type == GgmlType::F32 {
            continue; // no ggml to_float; F32 is covered elsewhere
        }
        // Whole rows, up to about a million elements per tensor.
        let row = t.dims[0];
        let n = t.n_elements.min((1 << 20) / row * row).max(row);
        let bytes = tensor_bytes(&model, t, n);
        let ours = dequantize_to_vec(t.ggml_type, bytes, n as usize).unwrap();
        let mut theirs = vec![0f32; n as usize];
        ggml_to_float(t.ggml_type, bytes, &mut theirs).unwrap();
        let bad = ours
            .iter()
            .zip(&theirs)
            .filter(|(a, b)| a.to_bits() != b.to_bits())
            .count();
        assert_eq!(bad, 0, "{} ({}): {bad} values differ", t.name, t.ggml_type);
        *checked.entry(t.ggml_type).or_default() += n;
    }
    eprintln!("bit-exact elements per type: {checked:?}");
    assert!(checked.contains_key(&GgmlType::Q4_K));
}

#[test]
fn quantizers_hold_up_on_real_weights() {
    let Some(path) = common::test_model("quantizers_hold_up_on_real_weights") else {
        return;
    };
    let model = GgufFile::open(&path).unwrap();
    // Real weight values: the first FFN and attention matrices, decoded.
    for name in [
        "blk.0.ffn_up.weight",
        "blk.0.attn_q.weight",
        "blk.3.ffn_down.weight",
    ] {
        let t = model.tensor(name).unwrap();
        // Gemma's rows (640) are not whole k-quant blocks: treat the values
        // as rows of 256 on both sides.
        let n = t.n_elements.min(1 << 18) / 256 * 256;
        let x = dequantize_to_vec(t.ggml_type, tensor_bytes(&model, t, n), n as usize).unwrap();
        for ty in RUST_QUANTIZE_TYPES {
            let ours = dequantize_to_vec(ty, &quantize(ty, &x).unwrap(), x.len()).unwrap();
            let reference = ggml_quantize(ty, &x, 256).unwrap();
            let mut theirs = vec![0f32; x.len()];
            ggml_to_float(ty, &reference, &mut theirs).unwrap();
            let (e_ours, e_ggml) = (rmse(&x, &ours), rmse(&x, &theirs));
            eprintln!(
                "{name:22} ({}) -> {ty:5} rmse ours {e_ours:.4e} ggml {e_ggml:.4e} ratio {:.4}",
                t.ggml_type,
                e_ours / e_ggml
            );
            assert!(e_ours <= 1.05 * e_ggml, "{name} -> {ty}");
        }
    }
}

fn rmse(a: &[f32], b: &[f32]) -> f64 {
    let s: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| (f64::from(*x) - f64::from(*y)).powi(2))
        .sum();
    (s / a.len() as f64).sqrt()
}
