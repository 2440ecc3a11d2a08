//! The quant code on a real model file: every tensor type in it decodes
//! bit-identically to ggml, its type mix adds up, and our quantizers hold
//! up against ggml's on real weights. Reads the GGUF bytes with a tiny
//! reader of its own so as not to depend on `rbench::gguf`.

use std::path::PathBuf;

use rbench::ggml::traits::{ggml_quantize, ggml_to_float};
use rbench::quant::{
    dequantize_to_vec, file_type_name, quantize, type_mix, GgmlType, RUST_QUANTIZE_TYPES,
};

fn model_path() -> Option<PathBuf> {
    let path = std::env::var_os("RBENCH_TEST_MODEL")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/root/.cache/rbench-models/gemma-3-270m-q4_k_m.gguf"));
    path.exists().then_some(path)
}

struct Tensor {
    name: String,
    ty: GgmlType,
    n_elements: u64,
    row: u64,
    offset: u64,
}

struct Model {
    bytes: Vec<u8>,
    file_type: Option<u32>,
    data_start: usize,
    tensors: Vec<Tensor>,
}

struct Cursor<'a> {
    b: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn take(&mut self, n: usize) -> &[u8] {
        let s = &self.b[self.pos..self.pos + n];
        self.pos += n;
        s
    }
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.take(4).try_into().unwrap())
    }
    fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.take(8).try_into().unwrap())
    }
    fn string(&mut self) -> String {
        let n = self.u64() as usize;
        String::from_utf8(self.take(n).to_vec()).unwrap()
    }
    /// Skips a value of GGUF value type `ty`, returning it if it is a u32.
    fn value(&mut self, ty: u32) -> Option<u32> {
        match ty {
            0 | 1 | 7 => {
                self.take(1);
            }
            2 | 3 => {
                self.take(2);
            }
            4 | 5 => return Some(self.u32()).filter(|_| ty == 4),
            6 => {
                self.take(4);
            }
            8 => {
                self.string();
            }
            9 => {
                let elem = self.u32();
                let n = self.u64();
                for _ in 0..n {
                    self.value(elem);
                }
            }
            10..=12 => {
                self.take(8);
            }
            _ => panic!("unknown GGUF value type {ty}"),
        }
        None
    }
}

fn read_model(path: &PathBuf) -> Model {
    let bytes = std::fs::read(path).unwrap();
    let mut c = Cursor { b: &bytes, pos: 0 };
    assert_eq!(c.take(4), b"GGUF");
    assert_eq!(c.u32(), 3, "GGUF version");
    let n_tensors = c.u64();
    let n_kv = c.u64();
    let mut file_type = None;
    let mut alignment = 32u64;
    for _ in 0..n_kv {
        let key = c.string();
        let ty = c.u32();
        let v = c.value(ty);
        match key.as_str() {
            "general.file_type" => file_type = v,
            "general.alignment" => alignment = u64::from(v.unwrap()),
            _ => {}
        }
    }
    let mut tensors = Vec::new();
    for _ in 0..n_tensors {
        let name = c.string();
        let n_dims = c.u32();
        let dims: Vec<u64> = (0..n_dims).map(|_| c.u64()).collect();
        let ty = GgmlType::from_id(c.u32()).unwrap();
        let offset = c.u64();
        tensors.push(Tensor {
            name,
            ty,
            n_elements: dims.iter().product(),
            row: dims[0],
            offset,
        });
    }
    let data_start = (c.pos as u64).div_ceil(alignment) * alignment;
    Model {
        file_type,
        data_start: data_start as usize,
        tensors,
        bytes,
    }
}

impl Model {
    fn tensor_bytes(&self, t: &Tensor, n_elements: u64) -> &[u8] {
        let start = self.data_start + t.offset as usize;
        let len = t.ty.bytes_for(n_elements).unwrap() as usize;
        &self.bytes[start..start + len]
    }
}

#[test]
fn real_model_tensors_decode_like_ggml_and_mix_adds_up() {
    let Some(path) = model_path() else {
        eprintln!("skipped: test model not found");
        return;
    };
    let model = read_model(&path);
    assert_eq!(
        model.file_type.and_then(file_type_name),
        Some("Q4_K - Medium")
    );

    let mix = type_mix(
        model
            .tensors
            .iter()
            .map(|t| (t.ty, t.n_elements, t.ty.bytes_for(t.n_elements).unwrap())),
    );
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
    assert_eq!(mix.total_tensors(), model.tensors.len());
    let data_bytes = (model.bytes.len() - model.data_start) as u64;
    // Tensors fill the data section up to alignment padding.
    assert!(mix.total_bytes() <= data_bytes && data_bytes - mix.total_bytes() < 32 * 1024);
    assert!(mix.rows.iter().any(|r| r.ty == GgmlType::Q4_K));
    assert!(mix.rows.windows(2).all(|w| w[0].n_bytes >= w[1].n_bytes));

    let mut checked = std::collections::BTreeMap::<GgmlType, u64>::new();
    for t in &model.tensors {
        if t.ty == GgmlType::F32 {
            continue; // no ggml to_float; F32 is covered elsewhere
        }
        // Whole rows, up to about a million elements per tensor.
        let n = t.n_elements.min((1 << 20) / t.row * t.row).max(t.row);
        let bytes = model.tensor_bytes(t, n);
        let ours = dequantize_to_vec(t.ty, bytes, n as usize).unwrap();
        let mut theirs = vec![0f32; n as usize];
        ggml_to_float(t.ty, bytes, &mut theirs).unwrap();
        let bad = ours
            .iter()
            .zip(&theirs)
            .filter(|(a, b)| a.to_bits() != b.to_bits())
            .count();
        assert_eq!(bad, 0, "{} ({}): {bad} values differ", t.name, t.ty);
        *checked.entry(t.ty).or_default() += n;
    }
    eprintln!("bit-exact elements per type: {checked:?}");
    assert!(checked.contains_key(&GgmlType::Q4_K));
}

#[test]
fn quantizers_hold_up_on_real_weights() {
    let Some(path) = model_path() else {
        eprintln!("skipped: test model not found");
        return;
    };
    let model = read_model(&path);
    // Real weight values: the first FFN and attention matrices, decoded.
    for name in [
        "blk.0.ffn_up.weight",
        "blk.0.attn_q.weight",
        "blk.3.ffn_down.weight",
    ] {
        let t = model.tensors.iter().find(|t| t.name == name).unwrap();
        // Gemma's rows (640) are not whole k-quant blocks: treat the values
        // as rows of 256 on both sides.
        let n = t.n_elements.min(1 << 18) / 256 * 256;
        let x = dequantize_to_vec(t.ty, model.tensor_bytes(t, n), n as usize).unwrap();
        for ty in RUST_QUANTIZE_TYPES {
            let ours = dequantize_to_vec(ty, &quantize(ty, &x).unwrap(), x.len()).unwrap();
            let reference = ggml_quantize(ty, &x, 256).unwrap();
            let mut theirs = vec![0f32; x.len()];
            ggml_to_float(ty, &reference, &mut theirs).unwrap();
            let (e_ours, e_ggml) = (rmse(&x, &ours), rmse(&x, &theirs));
            eprintln!(
                "{name:22} ({}) -> {ty:5} rmse ours {e_ours:.4e} ggml {e_ggml:.4e} ratio {:.4}",
                t.ty,
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
