//! Our token ids must equal llama.cpp's (`llama-tokenize --ids`) on the reference file.

mod common;

use std::path::PathBuf;
use std::time::Instant;

use rbench::gguf::GgufFile;
use rbench::tokenizer::Tokenizer;

/// `shared/` sits beside the project root (or beside the main checkout for worktrees).
fn reference_rows() -> Option<Vec<(String, Vec<u32>)>> {
    const NAME: &str = "reference/tokenize-gemma3-270m.jsonl";
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let candidates = [
        root.join("../shared").join(NAME),
        root.join("../../shared").join(NAME),
    ];
    let Some(text) = candidates
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok())
    else {
        eprintln!("skipped: {NAME} not found beside the project");
        return None;
    };
    let rows = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let row: serde_json::Value = serde_json::from_str(line).unwrap();
            let ids = row["ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap() as u32)
                .collect();
            (row["text"].as_str().unwrap().to_string(), ids)
        })
        .collect();
    Some(rows)
}

fn load() -> Option<Tokenizer> {
    let path = common::test_model("tokenizer_reference")?;
    let file = GgufFile::open(&path).unwrap();
    let start = Instant::now();
    let tok = Tokenizer::from_gguf(&file).unwrap();
    eprintln!("tokenizer built in {:?}", start.elapsed());
    Some(tok)
}

#[test]
fn gemma3_ids_match_llama_cpp() {
    let Some(tok) = load() else { return };
    let Some(rows) = reference_rows() else { return };
    assert!(!rows.is_empty());
    let mut mismatches = Vec::new();
    for (text, want) in &rows {
        let got = tok.encode(text, true).unwrap();
        if &got != want {
            mismatches.push(format!(
                "{text:?}\n  llama.cpp {want:?}\n  ours      {got:?}"
            ));
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

#[test]
fn gemma3_vocab_facts() {
    let Some(tok) = load() else { return };
    assert_eq!(tok.n_vocab(), 262_144);
    assert_eq!(tok.bos_id(), Some(2));
    assert_eq!(tok.eos_id(), Some(1));
    assert!(tok.add_bos_default());
    assert_eq!(tok.token_piece(105), Some("<start_of_turn>"));
    assert_eq!(tok.token_piece(106), Some("<end_of_turn>"));
    assert!(tok.is_eog(1) && tok.is_eog(106));
    assert!(!tok.is_eog(2) && !tok.is_eog(105) && !tok.is_eog(107));
}

#[test]
fn gemma3_decode_and_stream_reproduce_text() {
    let Some(tok) = load() else { return };
    let Some(rows) = reference_rows() else { return };
    for (text, ids) in rows {
        let decoded = tok.decode(&ids).unwrap();
        // Control tokens (BOS, <start_of_turn>, ...) produce no text.
        let expected = ["<start_of_turn>", "<end_of_turn>"]
            .iter()
            .fold(text.clone(), |t, s| t.replace(s, ""));
        assert_eq!(decoded, expected);

        let mut stream = tok.stream_decoder();
        let mut streamed = String::new();
        for &id in &ids {
            if let Some(piece) = stream.push(id).unwrap() {
                streamed.push_str(&piece);
            }
        }
        assert_eq!(stream.flush(), None);
        assert_eq!(streamed, decoded);
    }
}

#[test]
fn gemma3_stream_holds_back_split_characters() {
    let Some(tok) = load() else { return };
    // "中" and "🦀" spelled as byte-fallback tokens <0xE4><0xB8><0xAD> / <0xF0><0x9F><0xA6><0x80>.
    let byte = |b: u8| {
        let piece = format!("<0x{b:02X}>");
        (0..tok.n_vocab() as u32)
            .find(|&id| tok.token_piece(id) == Some(piece.as_str()))
            .unwrap()
    };
    let mut stream = tok.stream_decoder();
    assert_eq!(stream.push(byte(0xE4)).unwrap(), None);
    assert_eq!(stream.push(byte(0xB8)).unwrap(), None);
    assert_eq!(stream.push(byte(0xAD)).unwrap().as_deref(), Some("中"));
    for b in [0xF0, 0x9F, 0xA6] {
        assert_eq!(stream.push(byte(b)).unwrap(), None);
    }
    assert_eq!(stream.push(byte(0x80)).unwrap().as_deref(), Some("🦀"));
}
