//! Byte-level pre-tokenizers against llama.cpp: for each `tokenizer.ggml.pre`
//! rbench splits, a vocabulary written here (the 256 byte symbols plus merges
//! learned from the test text itself, so merges cross letter, digit, space
//! and punctuation boundaries and every split decision shows in the ids)
//! tokenizes `tests/data/pretokenizer-text.txt` (multilingual, code,
//! whitespace-heavy) to exactly the ids llama.cpp's `llama-tokenize` gave
//! on the same file, stored in `tests/data/pretokenizer-ids.json`.
//!
//! `scripts/make-pretokenizer-ids.sh` regenerates that file: it runs the
//! ignored test below to write the vocabularies, then llama-tokenize on each.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use rbench::gguf::{GgufFile, GgufWriter, Value, ValueType};
use rbench::tokenizer::Tokenizer;

/// Every pre-tokenizer checked; each must have ids in the reference file.
const PRE: &[&str] = &[
    "tekken",
    "gpt-4o",
    "llama4",
    "deepseek-v3",
    "deepseek-llm",
    "glm4",
    "qwen35",
    "command-r",
    "exaone",
    "seed-coder",
    "llama-bpe",
    "qwen2",
    "gpt-2",
    "starcoder",
];

const MERGES: usize = 400;

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

fn text() -> String {
    std::fs::read_to_string(data("pretokenizer-text.txt")).unwrap()
}

/// GPT-2's visible stand-ins for the 256 bytes.
fn byte_symbols() -> Vec<char> {
    let visible = |b: u32| (33..=126).contains(&b) || (161..=172).contains(&b) || b >= 174;
    let mut next = 256;
    (0..256u32)
        .map(|b| {
            if visible(b) {
                char::from_u32(b).unwrap()
            } else {
                next += 1;
                char::from_u32(next - 1).unwrap()
            }
        })
        .collect()
}

/// Merges learned greedily from `text` as one byte sequence: the most
/// frequent adjacent pair (ties to the smaller pair) each round.
fn learn_merges(text: &str, n: usize) -> Vec<(String, String)> {
    let symbols = byte_symbols();
    let mut seq: Vec<String> = text
        .bytes()
        .map(|b| symbols[b as usize].to_string())
        .collect();
    let mut merges = Vec::with_capacity(n);
    for _ in 0..n {
        let mut counts: HashMap<(&str, &str), usize> = HashMap::new();
        for w in seq.windows(2) {
            *counts.entry((&w[0], &w[1])).or_default() += 1;
        }
        let Some((&(a, b), _)) = counts
            .iter()
            .max_by(|x, y| x.1.cmp(y.1).then_with(|| y.0.cmp(x.0)))
        else {
            break;
        };
        let (a, b) = (a.to_string(), b.to_string());
        let mut merged = Vec::with_capacity(seq.len());
        let mut i = 0;
        while i < seq.len() {
            if i + 1 < seq.len() && seq[i] == a && seq[i + 1] == b {
                merged.push(format!("{a}{b}"));
                i += 2;
            } else {
                merged.push(seq[i].clone());
                i += 1;
            }
        }
        seq = merged;
        merges.push((a, b));
    }
    merges
}

fn strings(items: impl IntoIterator<Item = String>) -> Value {
    Value::Array {
        elem: ValueType::String,
        items: items.into_iter().map(Value::String).collect(),
    }
}

/// A vocabulary-only GGUF (llama hyperparameters, so llama.cpp loads it)
/// with a `gpt2` tokenizer split by `pre`; no BOS, so both sides give the
/// text's ids alone.
fn write_vocab(path: &Path, pre: &str) {
    let merges = learn_merges(&text(), MERGES);
    let mut tokens: Vec<String> = byte_symbols().iter().map(|c| c.to_string()).collect();
    tokens.extend(merges.iter().map(|(a, b)| format!("{a}{b}")));
    let mut w = GgufWriter::new();
    w.add_kv("general.architecture", Value::String("llama".into()));
    w.add_kv(
        "general.name",
        Value::String(format!("pre-tokenizer {pre}")),
    );
    for (k, v) in [
        ("llama.context_length", 4096),
        ("llama.embedding_length", 64),
        ("llama.block_count", 1),
        ("llama.feed_forward_length", 128),
        ("llama.attention.head_count", 1),
    ] {
        w.add_kv(k, Value::U32(v));
    }
    w.add_kv("llama.attention.layer_norm_rms_epsilon", Value::F32(1e-5));
    w.add_kv("tokenizer.ggml.model", Value::String("gpt2".into()));
    w.add_kv("tokenizer.ggml.pre", Value::String(pre.into()));
    let n = tokens.len();
    w.add_kv("tokenizer.ggml.tokens", strings(tokens));
    w.add_kv(
        "tokenizer.ggml.token_type",
        Value::Array {
            elem: ValueType::I32,
            items: vec![Value::I32(1); n],
        },
    );
    w.add_kv(
        "tokenizer.ggml.merges",
        strings(merges.iter().map(|(a, b)| format!("{a} {b}"))),
    );
    w.add_kv("tokenizer.ggml.add_bos_token", Value::Bool(false));
    w.write_file(path).unwrap();
}

/// llama.cpp's ids per pre-tokenizer.
fn reference_ids() -> BTreeMap<String, Vec<u32>> {
    let path = data("pretokenizer-ids.json");
    let json = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (scripts/make-pretokenizer-ids.sh writes it)",
            path.display()
        )
    });
    serde_json::from_str(&json).unwrap()
}

#[test]
fn pre_tokenizers_match_llama_tokenize() {
    let reference = reference_ids();
    let dir = tempfile::tempdir().unwrap();
    let text = text();
    let mut wrong = Vec::new();
    for pre in PRE {
        let want = reference
            .get(*pre)
            .unwrap_or_else(|| panic!("no llama.cpp ids for '{pre}' in pretokenizer-ids.json"));
        let path = dir.path().join(format!("{pre}.gguf"));
        write_vocab(&path, pre);
        let tok = Tokenizer::from_gguf(&GgufFile::open(&path).unwrap()).unwrap();
        assert!(
            tok.text_problem().is_none(),
            "{pre}: {:?}",
            tok.text_problem()
        );
        let got = tok.encode(&text, false).unwrap();
        if &got != want {
            let at = got
                .iter()
                .zip(want)
                .position(|(a, b)| a != b)
                .unwrap_or(got.len().min(want.len()));
            wrong.push(format!(
                "{pre}: {} ids against llama.cpp's {}, first difference at {at}: {:?} vs {:?}",
                got.len(),
                want.len(),
                &got[at..(at + 6).min(got.len())],
                &want[at..(at + 6).min(want.len())]
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    // The pre-tokenizers must differ on this text, or it would not test them.
    let distinct: std::collections::HashSet<&Vec<u32>> = reference.values().collect();
    assert!(
        distinct.len() >= 8,
        "only {} distinct tokenizations",
        distinct.len()
    );
}

/// Writes each vocabulary to `$RBENCH_PRETOKENIZER_DIR/<pre>.gguf` for
/// `scripts/make-pretokenizer-ids.sh`.
#[test]
#[ignore = "writes the vocabularies the reference ids are made from"]
fn write_pretokenizer_vocabularies() {
    let dir =
        PathBuf::from(std::env::var("RBENCH_PRETOKENIZER_DIR").expect("RBENCH_PRETOKENIZER_DIR"));
    std::fs::create_dir_all(&dir).unwrap();
    for pre in PRE {
        write_vocab(&dir.join(format!("{pre}.gguf")), pre);
    }
    std::fs::write(dir.join("pre.txt"), PRE.join("\n")).unwrap();
}
