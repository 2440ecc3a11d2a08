//! `rbench analyze` on a real dataset nobody here wrote: OpenAI's HumanEval (fetched by
//! scripts/fetch-humaneval.sh), with the test model's tokenizer. Every statistic must equal
//! what counting each record on its own gives (the same `Tokenizer::encode(text, false)`
//! that `rbench tokenize --no-bos` prints; scripts/verify-analyze.py checks it through the
//! binary itself). Skipped when the model or the dataset is absent.

mod common;

use common::{rbench, test_model};
use rbench::gguf::GgufFile;
use rbench::tokenizer::Tokenizer;
use serde_json::Value;
use std::io::Read;
use std::path::PathBuf;

fn humaneval() -> Option<PathBuf> {
    let path = std::env::var_os("RBENCH_TEST_DATASET")
        .map(PathBuf::from)
        .or_else(|| dirs::home_dir().map(|h| h.join(".cache/rbench-datasets/HumanEval.jsonl.gz")));
    match path {
        Some(p) if p.is_file() => Some(p),
        _ => {
            eprintln!("skipped: dataset HumanEval.jsonl.gz not found (run scripts/fetch-humaneval.sh or set RBENCH_TEST_DATASET)");
            None
        }
    }
}

fn nearest_rank(sorted: &[u64], q: f64) -> u64 {
    let rank = ((q / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank - 1]
}

fn nearest_power_of_two(v: u64) -> u64 {
    let v = v.max(1);
    let low = 1u64 << (63 - v.leading_zeros());
    if (v as f64).log2() - (low as f64).log2() < 0.5 {
        low
    } else {
        low * 2
    }
}

#[test]
fn humaneval_counts_agree_with_tokenizing_each_record() {
    let Some(model) = test_model("humaneval_counts_agree_with_tokenizing_each_record") else {
        return;
    };
    let Some(data) = humaneval() else {
        return;
    };
    let tok = Tokenizer::from_gguf(&GgufFile::open(&model).unwrap()).unwrap();
    let mut text = String::new();
    flate2::read::GzDecoder::new(std::fs::File::open(&data).unwrap())
        .read_to_string(&mut text)
        .unwrap();
    let mut prompts = Vec::new();
    let mut outputs = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let r: Value = serde_json::from_str(line).unwrap();
        let count =
            |field: &str| tok.encode(r[field].as_str().unwrap(), false).unwrap().len() as u64;
        prompts.push(count("prompt"));
        outputs.push(count("canonical_solution"));
    }

    let out = rbench(&[
        "analyze",
        data.to_str().unwrap(),
        "-m",
        model.to_str().unwrap(),
        "--prompt-field",
        "prompt",
        "--output-field",
        "canonical_solution",
        "-o",
        "json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["records"], prompts.len() as u64);
    assert_eq!(report["skipped"], 0);

    for (key, values) in [
        ("prompt_tokens", &mut prompts),
        ("output_tokens", &mut outputs),
    ] {
        values.sort_unstable();
        let n = values.len() as f64;
        let mean = values.iter().sum::<u64>() as f64 / n;
        let std = (values
            .iter()
            .map(|&v| (v as f64 - mean).powi(2))
            .sum::<f64>()
            / (n - 1.0))
            .sqrt();
        let s = &report[key];
        assert!(
            (s["mean"].as_f64().unwrap() - mean).abs() < 1e-9,
            "{key} mean"
        );
        assert!((s["std"].as_f64().unwrap() - std).abs() < 1e-9, "{key} std");
        assert_eq!(s["min"], values[0]);
        assert_eq!(s["max"], *values.last().unwrap());
        for q in [50, 75, 90, 95, 99] {
            assert_eq!(
                s[format!("p{q}")],
                nearest_rank(values, q as f64),
                "{key} p{q}"
            );
        }
        eprintln!("HumanEval {key}: {s}");
    }

    // The recommendation follows the rules.
    let p95 = nearest_rank(&prompts, 95.0);
    assert_eq!(
        report["recommendation"]["n_prompt"],
        p95.next_power_of_two().max(32)
    );
    for (tier, q) in report["tiers"]
        .as_array()
        .unwrap()
        .iter()
        .zip([75.0, 90.0, 99.0])
    {
        let n = nearest_power_of_two(nearest_rank(&outputs, q));
        let covered = outputs.iter().filter(|&&o| o <= n).count() as f64 / outputs.len() as f64;
        assert_eq!(tier["n_predict"], n, "{tier}");
        assert!(
            (tier["coverage"].as_f64().unwrap() - covered).abs() < 1e-12,
            "{tier}"
        );
        eprintln!("HumanEval tier {}", tier["rationale"]);
    }
}
