//! The real test model (Gemma 3 270M Q4_K_M), when present.

mod common;

use std::io::Write;
use std::time::Instant;

use rbench::gguf::{GgufFile, GgufWriter, SharedBytes, TensorSource, Value, ValueType};
use rbench::quant::GgmlType;

#[test]
fn gemma3_270m_opens_fast_with_expected_metadata_and_tensors() {
    let Some(path) = common::test_model("gguf_model") else {
        return;
    };
    let start = Instant::now();
    let f = GgufFile::open(&path).unwrap();
    eprintln!(
        "GgufFile::open took {:.1} ms ({f:?})",
        start.elapsed().as_secs_f64() * 1e3
    );
    assert!(start.elapsed().as_secs_f64() < 1.0, "open is too slow");
    assert!(f.bytes().is_mapped());

    assert_eq!(f.version(), 3);
    assert_eq!(f.architecture(), Some("gemma3"));
    assert_eq!(f.get_u32("gemma3.block_count"), Some(18));
    assert_eq!(f.get_u32("gemma3.embedding_length"), Some(640));
    assert_eq!(f.get_f32("gemma3.rope.freq_base"), Some(1_000_000.0));
    assert_eq!(f.get_bool("tokenizer.ggml.add_bos_token"), Some(true));
    assert_eq!(f.get_str("tokenizer.ggml.model"), Some("llama"));
    assert_eq!(f.metadata().len(), 33);
    assert_eq!(f.metadata()[0].0, "general.architecture");

    let vocab = 262_144;
    match f.get("tokenizer.ggml.tokens") {
        Some(Value::Array { elem, items }) => {
            assert_eq!(*elem, ValueType::String);
            assert_eq!(items.len(), vocab);
            assert_eq!(
                items[..3],
                [
                    Value::from("<pad>"),
                    Value::from("<eos>"),
                    Value::from("<bos>")
                ]
            );
        }
        other => panic!("unexpected tokens {:?}", other.map(Value::value_type)),
    }
    let scores = f.get_array("tokenizer.ggml.scores").unwrap();
    assert_eq!(scores.len(), vocab);
    assert!(scores.iter().all(|s| s.value_type() == ValueType::F32));
    assert_eq!(
        f.get_array("tokenizer.ggml.token_type").unwrap().len(),
        vocab
    );

    assert_eq!(f.tensors().len(), 236);
    assert_eq!(f.tensor_data_size(), 246_587_904);
    assert_eq!(f.alignment(), 32);
    assert_eq!(f.data_offset() % 32, 0);
    let embd = f.tensor("token_embd.weight").unwrap();
    assert_eq!(embd.dims, [640, vocab as u64]);
    assert_eq!(embd.ggml_type, GgmlType::Q8_0);
    assert_eq!(f.tensor_data(embd).len() as u64, embd.n_bytes);
    for layer in 0..18 {
        assert!(f.tensor(&format!("blk.{layer}.attn_q.weight")).is_some());
    }
    assert!(f.tensor("blk.18.attn_q.weight").is_none());
}

/// Compares a stream against the expected bytes as it is written.
struct CompareWriter {
    expected: SharedBytes,
    pos: usize,
    first_mismatch: Option<usize>,
}

impl Write for CompareWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let end = self.pos + buf.len();
        let expected = self
            .expected
            .get(self.pos..end.min(self.expected.len()))
            .unwrap_or(&[]);
        if self.first_mismatch.is_none() && expected != buf {
            let at = expected
                .iter()
                .zip(buf)
                .position(|(a, b)| a != b)
                .unwrap_or(expected.len());
            self.first_mismatch = Some(self.pos + at);
        }
        self.pos = end;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn gemma3_270m_rewritten_by_the_writer_is_byte_identical() {
    let Some(path) = common::test_model("gguf_model") else {
        return;
    };
    let f = GgufFile::open(&path).unwrap();
    let mut w = GgufWriter::new();
    for (k, v) in f.metadata() {
        w.add_kv(k.clone(), v.clone());
    }
    for t in f.tensors() {
        let bytes = f.bytes().clone();
        let start = f.tensor_data_offset(t) as usize;
        // Streamed: each tensor is copied from the map only while it is written.
        let fill = move |buf: &mut [u8]| buf.copy_from_slice(&bytes[start..start + buf.len()]);
        w.add_tensor(
            t.name.clone(),
            &t.dims,
            t.ggml_type,
            TensorSource::Fill(Box::new(fill)),
        )
        .unwrap();
    }
    let mut out = CompareWriter {
        expected: f.bytes().clone(),
        pos: 0,
        first_mismatch: None,
    };
    w.write_to(&mut out).unwrap();
    assert_eq!(out.first_mismatch, None);
    assert_eq!(out.pos as u64, f.file_size());
}
