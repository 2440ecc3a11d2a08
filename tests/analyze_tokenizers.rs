//! `rbench analyze` with the other token sources: a model file whose vocabulary carries a
//! chat template (chat prompts are rendered with it, without BOS), and a Hugging Face
//! `tokenizer.json` given with `--tokenizer`.

mod common;

use common::{rbench, test_model};
use rbench::gguf::{GgufFile, GgufWriter, Value as GgufValue};
use rbench::tokenizer::Tokenizer;
use serde_json::Value;
use std::path::PathBuf;

fn dataset(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("datasets")
        .join(name)
        .display()
        .to_string()
}

fn analyze_json(args: &[&str]) -> Value {
    let out = rbench(args);
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("report is JSON")
}

/// Gemma's turn format, as a Jinja template.
const TEMPLATE: &str = "{{ bos_token }}{% for message in messages %}\
{% if message['role'] == 'assistant' %}{% set role = 'model' %}{% else %}{% set role = message['role'] %}{% endif %}\
<start_of_turn>{{ role }}\n{{ message['content'] | trim }}<end_of_turn>\n{% endfor %}\
{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}";

/// The same format written out by hand.
fn gemma_prompt(history: &[(String, String)]) -> String {
    let mut s = String::new();
    for (role, content) in history {
        let role = if role == "assistant" { "model" } else { role };
        s += &format!("<start_of_turn>{role}\n{}<end_of_turn>\n", content.trim());
    }
    s + "<start_of_turn>model\n"
}

#[test]
fn chat_prompts_use_the_models_template() {
    let Some(model) = test_model("chat_prompts_use_the_models_template") else {
        return;
    };
    // The test model's vocabulary, without tensors, plus a chat template.
    let source = GgufFile::open(&model).unwrap();
    let mut writer = GgufWriter::new();
    for (key, value) in source.metadata() {
        if key.starts_with("tokenizer.") || key.starts_with("general.") {
            writer.add_kv(key.clone(), value.clone());
        }
    }
    writer.add_kv(
        "tokenizer.chat_template",
        GgufValue::String(TEMPLATE.into()),
    );
    let dir = tempfile::tempdir().unwrap();
    let vocab = dir.path().join("vocab-with-template.gguf");
    writer.write_file(&vocab).unwrap();
    let tok = Tokenizer::from_gguf(&GgufFile::open(&vocab).unwrap()).unwrap();
    assert_eq!(tok.chat_template(), Some(TEMPLATE));

    let file = dataset("messages.jsonl");
    let mut expected = Vec::new();
    let mut joined = Vec::new();
    for line in std::fs::read_to_string(&file).unwrap().lines() {
        let r: Value = serde_json::from_str(line).unwrap();
        let msgs = r["messages"].as_array().unwrap();
        let history: Vec<(String, String)> = msgs[..msgs.len() - 1]
            .iter()
            .map(|m| {
                let content = match &m["content"] {
                    Value::String(s) => s.clone(),
                    parts => parts
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|p| p["text"].as_str().unwrap())
                        .collect(),
                };
                (m["role"].as_str().unwrap().to_string(), content)
            })
            .collect();
        let count = |text: &str| tok.encode(text, false).unwrap().len() as u64;
        expected.push(count(&gemma_prompt(&history)));
        let contents: Vec<&str> = history.iter().map(|(_, c)| c.as_str()).collect();
        joined.push(count(&contents.join("\n\n")));
    }
    expected.sort_unstable();
    joined.sort_unstable();

    let vocab = vocab.to_str().unwrap();
    let report = analyze_json(&["analyze", &file, "-m", vocab, "-o", "json"]);
    assert_eq!(report["prompt_format"], "the model's chat template");
    assert_eq!(report["prompt_tokens"]["min"], expected[0]);
    assert_eq!(report["prompt_tokens"]["max"], *expected.last().unwrap());
    assert_eq!(report["prompt_tokens"]["p50"], expected[2]);
    let sum: u64 = expected.iter().sum();
    assert!((report["prompt_tokens"]["mean"].as_f64().unwrap() - sum as f64 / 5.0).abs() < 1e-9);

    let report = analyze_json(&[
        "analyze",
        &file,
        "-m",
        vocab,
        "--no-chat-template",
        "-o",
        "json",
    ]);
    assert_eq!(report["prompt_format"], "joined (--no-chat-template)");
    assert_eq!(report["prompt_tokens"]["max"], *joined.last().unwrap());
    assert_eq!(report["prompt_tokens"]["min"], joined[0]);
}

/// A word-level tokenizer.json: one token per whitespace-separated word or punctuation run.
#[test]
fn tokenizer_json_counts_words() {
    use tokenizers::models::wordlevel::WordLevel;
    use tokenizers::pre_tokenizers::whitespace::Whitespace;
    let vocab = [("[UNK]".to_string(), 0u32), ("the".to_string(), 1)]
        .into_iter()
        .collect();
    let model = WordLevel::builder()
        .vocab(vocab)
        .unk_token("[UNK]".into())
        .build()
        .unwrap();
    let mut tok = tokenizers::Tokenizer::new(model);
    tok.with_pre_tokenizer(Some(Whitespace {}));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokenizer.json");
    tok.save(&path, false).unwrap();

    let data = dir.path().join("qa.jsonl");
    std::fs::write(
        &data,
        "{\"question\":\"How are you?\",\"answer\":\"Fine, thanks.\"}\n\
         {\"question\":\"One two three four five\",\"answer\":\"six\"}\n",
    )
    .unwrap();
    let report = analyze_json(&[
        "analyze",
        data.to_str().unwrap(),
        "--tokenizer",
        path.to_str().unwrap(),
        "-o",
        "json",
    ]);
    assert_eq!(report["estimate"], false);
    assert_eq!(report["tokenizer"], path.to_str().unwrap());
    // "How are you ?" = 4, "One two three four five" = 5; "Fine , thanks ." = 4, "six" = 1.
    assert_eq!(report["prompt_tokens"]["min"], 4);
    assert_eq!(report["prompt_tokens"]["max"], 5);
    assert_eq!(report["output_tokens"]["min"], 1);
    assert_eq!(report["output_tokens"]["max"], 4);

    let out = rbench(&[
        "analyze",
        data.to_str().unwrap(),
        "--tokenizer",
        dir.path().join("missing.json").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing.json"));
}
