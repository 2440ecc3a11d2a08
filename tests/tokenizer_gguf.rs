//! `Tokenizer::from_gguf` on small GGUF files written here byte by byte.

use std::io::Write;

use rbench::gguf::GgufFile;
use rbench::tokenizer::{Tokenizer, TokenizerError, VocabSpec};

enum Val {
    Str(&'static str),
    U32(u32),
    Bool(bool),
    Strs(Vec<String>),
    F32s(Vec<f32>),
    I32s(Vec<i32>),
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// A GGUF v3 file with the given metadata and no tensors.
fn write_gguf(kvs: &[(&str, Val)]) -> tempfile::NamedTempFile {
    let mut out = b"GGUF".to_vec();
    out.extend_from_slice(&3u32.to_le_bytes());
    out.extend_from_slice(&0u64.to_le_bytes());
    out.extend_from_slice(&(kvs.len() as u64).to_le_bytes());
    for (key, val) in kvs {
        put_str(&mut out, key);
        match val {
            Val::Str(s) => {
                out.extend_from_slice(&8u32.to_le_bytes());
                put_str(&mut out, s);
            }
            Val::U32(v) => {
                out.extend_from_slice(&4u32.to_le_bytes());
                out.extend_from_slice(&v.to_le_bytes());
            }
            Val::Bool(b) => {
                out.extend_from_slice(&7u32.to_le_bytes());
                out.push(u8::from(*b));
            }
            Val::Strs(items) => {
                out.extend_from_slice(&9u32.to_le_bytes());
                out.extend_from_slice(&8u32.to_le_bytes());
                out.extend_from_slice(&(items.len() as u64).to_le_bytes());
                for s in items {
                    put_str(&mut out, s);
                }
            }
            Val::F32s(items) => {
                out.extend_from_slice(&9u32.to_le_bytes());
                out.extend_from_slice(&6u32.to_le_bytes());
                out.extend_from_slice(&(items.len() as u64).to_le_bytes());
                for v in items {
                    out.extend_from_slice(&v.to_le_bytes());
                }
            }
            Val::I32s(items) => {
                out.extend_from_slice(&9u32.to_le_bytes());
                out.extend_from_slice(&5u32.to_le_bytes());
                out.extend_from_slice(&(items.len() as u64).to_le_bytes());
                for v in items {
                    out.extend_from_slice(&v.to_le_bytes());
                }
            }
        }
    }
    // Tensor data would start at the next 32-byte boundary.
    while !out.len().is_multiple_of(32) {
        out.push(0);
    }
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(&out).unwrap();
    file.flush().unwrap();
    file
}

/// `<unk> <s> </s>`, the bytes of "h" and "é", then "▁", "h", "i", "hi" (SentencePiece style).
fn tiny_llama_kvs() -> Vec<(&'static str, Val)> {
    let tokens: Vec<String> = [
        "<unk>", "<s>", "</s>", "<0x68>", "<0xC3>", "<0xA9>", "▁", "h", "i", "hi", "▁hi",
    ]
    .iter()
    .map(|t| t.to_string())
    .collect();
    vec![
        ("general.architecture", Val::Str("llama")),
        ("tokenizer.ggml.model", Val::Str("llama")),
        ("tokenizer.ggml.tokens", Val::Strs(tokens)),
        (
            "tokenizer.ggml.scores",
            Val::F32s(vec![
                0.0, 0.0, 0.0, 0.0, 0.0, 0.0, -5.0, -5.0, -5.0, -1.0, -2.0,
            ]),
        ),
        (
            "tokenizer.ggml.token_type",
            Val::I32s(vec![2, 3, 3, 6, 6, 6, 1, 1, 1, 1, 1]),
        ),
        ("tokenizer.ggml.bos_token_id", Val::U32(1)),
        ("tokenizer.ggml.eos_token_id", Val::U32(2)),
        ("tokenizer.chat_template", Val::Str("{{ bos_token }}")),
    ]
}

#[test]
fn gguf_without_vocab_has_no_tokenizer() {
    let file = write_gguf(&[("general.architecture", Val::Str("llama"))]);
    let gguf = GgufFile::open(file.path()).unwrap();
    let err = Tokenizer::from_gguf(&gguf).unwrap_err();
    assert!(
        matches!(err, TokenizerError::Missing("tokenizer.ggml.tokens")),
        "{err:?}"
    );
    assert!(err.to_string().contains("tokenizer.ggml.tokens"));
}

#[test]
fn gguf_with_unsupported_model_names_supported_ones() {
    let mut kvs = tiny_llama_kvs();
    kvs[1] = ("tokenizer.ggml.model", Val::Str("t5"));
    let file = write_gguf(&kvs);
    let gguf = GgufFile::open(file.path()).unwrap();
    let msg = Tokenizer::from_gguf(&gguf).unwrap_err().to_string();
    assert!(
        msg.contains("t5") && msg.contains("llama") && msg.contains("gpt2"),
        "{msg}"
    );
}

#[test]
fn gguf_vocab_is_read_with_defaults() {
    let file = write_gguf(&tiny_llama_kvs());
    let gguf = GgufFile::open(file.path()).unwrap();
    let spec = VocabSpec::from_gguf(&gguf).unwrap();
    assert_eq!(spec.model, "llama");
    assert_eq!(spec.tokens.len(), 11);
    assert_eq!(spec.scores[9], -1.0);
    assert_eq!(spec.token_types[3], 6);
    // Not in the file: llama.cpp's SentencePiece defaults.
    assert!(spec.add_bos && spec.add_space_prefix);
    assert_eq!(spec.unk_id, Some(0));

    let tok = Tokenizer::from_gguf(&gguf).unwrap();
    assert_eq!(tok.chat_template(), Some("{{ bos_token }}"));
    // "hi" becomes "▁hi" with the space prefix; "▁h" is no token, so "hi" merges, then "▁hi".
    assert_eq!(tok.encode("hi", true).unwrap(), vec![1, 10]);
    assert_eq!(tok.encode("hé", false).unwrap(), vec![6, 7, 4, 5]);
    assert_eq!(tok.decode(&[1, 6, 7, 4, 5, 2]).unwrap(), "hé");
}

#[test]
fn gguf_flags_override_defaults() {
    let mut kvs = tiny_llama_kvs();
    kvs.push(("tokenizer.ggml.add_space_prefix", Val::Bool(false)));
    kvs.push(("tokenizer.ggml.add_bos_token", Val::Bool(false)));
    let file = write_gguf(&kvs);
    let gguf = GgufFile::open(file.path()).unwrap();
    let tok = Tokenizer::from_gguf(&gguf).unwrap();
    assert!(!tok.add_bos_default());
    // Without the prefix, "hi" stays "hi" and decoding keeps a leading space as written.
    assert_eq!(tok.encode("hi", false).unwrap(), vec![9]);
    assert_eq!(tok.encode(" hi", false).unwrap(), vec![10]);
    assert_eq!(tok.decode(&[10]).unwrap(), " hi");
}

#[test]
fn gguf_tokens_of_wrong_type_are_named() {
    let mut kvs = tiny_llama_kvs();
    kvs[2] = ("tokenizer.ggml.tokens", Val::F32s(vec![1.0, 2.0]));
    let file = write_gguf(&kvs);
    let gguf = GgufFile::open(file.path()).unwrap();
    let err = Tokenizer::from_gguf(&gguf).unwrap_err();
    assert!(
        matches!(
            err,
            TokenizerError::WrongType {
                key: "tokenizer.ggml.tokens",
                ..
            }
        ),
        "{err:?}"
    );
}
