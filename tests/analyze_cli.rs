//! `rbench analyze` end to end with the release binary on the sample datasets in
//! `datasets/`: every shape, field paths, gzip, JSON arrays, bad lines, empty outputs,
//! the JSON report's fields, `--emit-args`, `--plot`, and usage errors.

mod common;

use common::{rbench, test_model};
use serde_json::Value;
use std::path::PathBuf;

fn dataset(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("datasets")
        .join(name)
        .display()
        .to_string()
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs `rbench analyze FILE -o json ARGS...` and parses the report.
fn analyze_json(file: &str, extra: &[&str]) -> Value {
    let mut args = vec!["analyze", file, "-o", "json"];
    args.extend_from_slice(extra);
    let out = rbench(&args);
    assert!(out.status.success(), "{args:?} failed: {}", stderr(&out));
    serde_json::from_slice(&out.stdout).expect("report is JSON")
}

/// The estimate rule, written again here: ceil(characters / 4).
fn estimate(text: &str) -> u64 {
    (text.chars().count() as u64).div_ceil(4)
}

/// Nearest-rank percentile of sorted values.
fn nearest_rank(sorted: &[u64], q: f64) -> u64 {
    let rank = ((q / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank - 1]
}

/// Checks a report's length statistics against lengths computed by the test.
fn assert_stats(stats: &Value, mut lengths: Vec<u64>, what: &str) {
    lengths.sort_unstable();
    let n = lengths.len() as f64;
    let mean = lengths.iter().sum::<u64>() as f64 / n;
    let var = lengths
        .iter()
        .map(|&v| (v as f64 - mean).powi(2))
        .sum::<f64>()
        / (n - 1.0).max(1.0);
    assert_eq!(stats["count"], lengths.len() as u64, "{what} count");
    assert!(
        (stats["mean"].as_f64().unwrap() - mean).abs() < 1e-9,
        "{what} mean"
    );
    assert!(
        (stats["std"].as_f64().unwrap() - var.sqrt()).abs() < 1e-9,
        "{what} std"
    );
    assert_eq!(stats["min"], lengths[0], "{what} min");
    assert_eq!(stats["max"], *lengths.last().unwrap(), "{what} max");
    for q in [50, 75, 90, 95, 99] {
        assert_eq!(
            stats[format!("p{q}")],
            nearest_rank(&lengths, q as f64),
            "{what} p{q}"
        );
    }
}

fn jsonl_records(name: &str) -> Vec<Value> {
    std::fs::read_to_string(dataset(name))
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// A record's prompt and output text, as the test reads its shape.
type Fields = fn(&Value) -> (String, String);

/// Every simple shape: detected, all records matched, estimated lengths exact.
#[test]
fn each_shape_is_detected_and_counted() {
    let cases: [(&str, &str, Fields); 4] = [
        ("alpaca.jsonl", "alpaca", |r| {
            let input = r["input"].as_str().unwrap_or("");
            let instruction = r["instruction"].as_str().unwrap();
            let prompt = if input.is_empty() {
                instruction.to_string()
            } else {
                format!("{instruction}\n\n{input}")
            };
            (prompt, r["output"].as_str().unwrap().to_string())
        }),
        ("prompt_completion.jsonl", "prompt/completion", |r| {
            (
                r["prompt"].as_str().unwrap().into(),
                r["completion"].as_str().unwrap().into(),
            )
        }),
        ("prompt_response.jsonl", "prompt/response", |r| {
            (
                r["prompt"].as_str().unwrap().into(),
                r["response"].as_str().unwrap().into(),
            )
        }),
        ("question_answer.jsonl", "question/answer", |r| {
            (
                r["question"].as_str().unwrap().into(),
                r["answer"].as_str().unwrap().into(),
            )
        }),
    ];
    for (file, shape, fields) in cases {
        let report = analyze_json(&dataset(file), &["-t", "2"]);
        let records = jsonl_records(file);
        assert_eq!(report["shape"], shape, "{file}");
        assert_eq!(report["records"], records.len() as u64, "{file}");
        assert_eq!(report["skipped"], 0, "{file}");
        assert_eq!(report["estimate"], true, "{file}");
        assert!(report["tokenizer"]
            .as_str()
            .unwrap()
            .starts_with("estimate"));
        let (prompts, outputs): (Vec<u64>, Vec<u64>) = records
            .iter()
            .map(|r| {
                let (p, o) = fields(r);
                (estimate(&p), estimate(&o))
            })
            .unzip();
        assert_stats(&report["prompt_tokens"], prompts, file);
        assert_stats(&report["output_tokens"], outputs, file);
    }
}

/// Chat shapes: prompt = earlier messages joined by a blank line (no model, no template).
#[test]
fn chat_shapes_split_at_the_last_answer() {
    let report = analyze_json(&dataset("messages.jsonl"), &[]);
    assert_eq!(report["shape"], "messages");
    assert_eq!(report["records"], 5);
    let mut prompts = Vec::new();
    let mut outputs = Vec::new();
    for r in jsonl_records("messages.jsonl") {
        let msgs = r["messages"].as_array().unwrap();
        let (last, before) = msgs.split_last().unwrap();
        let text = |m: &Value| match &m["content"] {
            Value::String(s) => s.clone(),
            Value::Array(parts) => parts.iter().map(|p| p["text"].as_str().unwrap()).collect(),
            _ => unreachable!(),
        };
        let joined: Vec<String> = before.iter().map(text).collect();
        prompts.push(estimate(&joined.join("\n\n")));
        outputs.push(estimate(&text(last)));
    }
    assert_stats(&report["prompt_tokens"], prompts, "messages prompt");
    assert_stats(&report["output_tokens"], outputs, "messages output");

    // ShareGPT comes as one JSON array.
    let report = analyze_json(&dataset("sharegpt.json"), &[]);
    assert_eq!(report["shape"], "sharegpt");
    assert_eq!(report["format"], "json_array");
    assert_eq!(report["records"], 4);
    let array: Value =
        serde_json::from_str(&std::fs::read_to_string(dataset("sharegpt.json")).unwrap()).unwrap();
    let outputs: Vec<u64> = array
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let turns = r["conversations"].as_array().unwrap();
            estimate(turns.last().unwrap()["value"].as_str().unwrap())
        })
        .collect();
    assert_stats(&report["output_tokens"], outputs, "sharegpt output");
}

#[test]
fn field_paths_select_nested_fields() {
    let file = dataset("nested_fields.jsonl");
    // No known shape: a clear error that names the flags.
    let out = rbench(&["analyze", &file]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("--prompt-field"), "{}", stderr(&out));

    let report = analyze_json(
        &file,
        &[
            "--prompt-field",
            "data.query",
            "--output-field",
            "data.reply.text",
        ],
    );
    assert_eq!(report["shape"], "fields data.query/data.reply.text");
    assert_eq!(report["records"], 4);
    let outputs: Vec<u64> = jsonl_records("nested_fields.jsonl")
        .iter()
        .map(|r| estimate(r["data"]["reply"]["text"].as_str().unwrap()))
        .collect();
    assert_stats(&report["output_tokens"], outputs, "nested output");

    // Fields also override a detected shape.
    let report = analyze_json(
        &dataset("question_answer.jsonl"),
        &["--prompt-field", "answer", "--output-field", "question"],
    );
    assert_eq!(
        report["prompt_tokens"]["max"],
        analyze_json(&dataset("question_answer.jsonl"), &[])["output_tokens"]["max"]
    );
}

#[test]
fn gzip_gives_the_same_report() {
    let plain = analyze_json(&dataset("question_answer.jsonl"), &[]);
    let gz = analyze_json(&dataset("question_answer.jsonl.gz"), &[]);
    assert_eq!(gz["format"], "jsonl+gzip");
    for key in [
        "records",
        "prompt_tokens",
        "output_tokens",
        "recommendation",
        "tiers",
    ] {
        assert_eq!(plain[key], gz[key], "{key}");
    }
}

#[test]
fn bad_lines_and_empty_outputs_are_counted_and_reported() {
    let report = analyze_json(&dataset("problems.jsonl"), &[]);
    assert_eq!(report["shape"], "question/answer");
    assert_eq!(report["records"], 6);
    assert_eq!(report["empty_outputs"], 2);
    assert_eq!(report["skipped"], 6);
    assert_eq!(report["skipped_by_reason"]["bad_json"], 3);
    assert_eq!(report["skipped_by_reason"]["no_match"], 3);
    let lines: Vec<u64> = report["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["line"].as_u64().unwrap())
        .collect();
    assert_eq!(lines, [2, 4, 5, 6, 10, 12]);
    let reasons = report["problems"].to_string();
    assert!(reasons.contains("UTF-8") && reasons.contains("is a number, not a string"));
    // Empty outputs count in prompt statistics only.
    assert_eq!(report["prompt_tokens"]["count"], 6);
    assert_eq!(report["output_tokens"]["count"], 4);

    // The text report lists them with line numbers.
    let out = rbench(&["analyze", &dataset("problems.jsonl")]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("line 12: not valid UTF-8"), "{text}");
    assert!(text.contains("2 records with an empty output"), "{text}");
    assert!(text.contains("ESTIMATE"), "{text}");
}

/// The JSON report has the field names and a recommendation that follows the rules.
#[test]
fn json_report_fields_and_recommendation_rules() {
    let report = analyze_json(&dataset("alpaca.jsonl"), &[]);
    for key in [
        "records",
        "skipped",
        "shape",
        "tokenizer",
        "prompt_tokens",
        "output_tokens",
        "recommendation",
        "tiers",
    ] {
        assert!(report.get(key).is_some(), "missing {key}");
    }
    for key in [
        "count", "mean", "std", "min", "p50", "p75", "p90", "p95", "p99", "max",
    ] {
        assert!(report["output_tokens"].get(key).is_some(), "missing {key}");
    }
    let p95 = report["prompt_tokens"]["p95"].as_u64().unwrap();
    let n_prompt = report["recommendation"]["n_prompt"].as_u64().unwrap();
    assert!(n_prompt.is_power_of_two() && n_prompt >= p95 && n_prompt >= 32);
    assert!(n_prompt / 2 < p95.max(32));

    let tiers = report["tiers"].as_array().unwrap();
    let names: Vec<&str> = tiers.iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["Conservative", "Recommended", "Comprehensive"]);
    for (tier, q) in tiers.iter().zip(["p75", "p90", "p99"]) {
        let p = report["output_tokens"][q].as_u64().unwrap() as f64;
        let n = tier["n_predict"].as_u64().unwrap();
        assert!(n.is_power_of_two());
        // Nearest in log scale: within half a doubling of the percentile.
        assert!(
            (p.max(1.0).log2() - (n as f64).log2()).abs() <= 0.5,
            "{tier}"
        );
        assert!(tier.get("coverage").is_some());
    }
    assert_eq!(report["recommendation"]["n_predict"], tiers[1]["n_predict"]);
    assert_eq!(report["recommendation"]["coverage"], tiers[1]["coverage"]);

    let out = rbench(&["analyze", &dataset("alpaca.jsonl"), "--emit-args"]);
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("-p {n_prompt} -n {}", tiers[1]["n_predict"])
    );
}

#[test]
fn plot_marks_the_cut_offs() {
    let dir = tempfile::tempdir().unwrap();
    let svg = dir.path().join("lengths.svg");
    let out = rbench(&[
        "analyze",
        &dataset("alpaca.jsonl"),
        "--plot",
        svg.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = std::fs::read_to_string(&svg).unwrap();
    assert!(text.starts_with("<svg") && text.trim_end().ends_with("</svg>"));
    let report = analyze_json(&dataset("alpaca.jsonl"), &[]);
    let n_prompt = report["recommendation"]["n_prompt"].as_u64().unwrap();
    assert!(text.contains(&format!("n-prompt {n_prompt}")), "{text}");
    assert!(text.contains("Recommended n-predict"));
    assert!(text.matches("<rect").count() > 3);
}

#[test]
fn usage_errors_exit_2_and_runtime_errors_exit_1() {
    let file = dataset("alpaca.jsonl");
    for args in [
        vec!["analyze", file.as_str(), "-t", "0"],
        vec!["analyze", file.as_str(), "--prompt-field", "a"],
        vec![
            "analyze",
            file.as_str(),
            "--prompt-field",
            "a..b",
            "--output-field",
            "c",
        ],
        vec!["analyze", file.as_str(), "-o", "xml"],
        vec!["analyze", file.as_str(), "--max-record-bytes", "0"],
        vec!["analyze", file.as_str(), "--emit-args", "-o", "json"],
    ] {
        let out = rbench(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
    }
    let out = rbench(&["analyze", "/nonexistent/data.jsonl"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("/nonexistent/data.jsonl"));
}

/// With the real tokenizer: each record's counts equal `rbench tokenize --no-bos` of its
/// prompt and output.
#[test]
fn model_counts_match_rbench_tokenize() {
    let Some(model) = test_model("model_counts_match_rbench_tokenize") else {
        return;
    };
    let model = model.to_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let count = |text: &str| -> u64 {
        let path = dir.path().join("text.txt");
        std::fs::write(&path, text).unwrap();
        let out = rbench(&[
            "tokenize",
            "-m",
            model,
            "-f",
            path.to_str().unwrap(),
            "--no-bos",
            "--ids",
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
        let ids: Vec<u64> = serde_json::from_slice(&out.stdout).unwrap();
        ids.len() as u64
    };
    let (prompts, outputs): (Vec<u64>, Vec<u64>) = jsonl_records("prompt_response.jsonl")
        .iter()
        .map(|r| {
            (
                count(r["prompt"].as_str().unwrap()),
                count(r["response"].as_str().unwrap()),
            )
        })
        .unzip();
    let report = analyze_json(&dataset("prompt_response.jsonl"), &["-m", model]);
    assert_eq!(report["estimate"], false);
    assert_eq!(report["tokenizer"], model);
    assert_stats(&report["prompt_tokens"], prompts, "prompt");
    assert_stats(&report["output_tokens"], outputs, "output");
}
