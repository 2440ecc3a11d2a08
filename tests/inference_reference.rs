//! The engine against llama.cpp's own outputs on the real test model:
//! tokenization, greedy completions, perplexity; and clean errors.

mod common;

use common::{rbench, shared_reference, test_model};
use rbench::engine::{Batch, Engine, EngineConfig, Sampler, SamplerConfig};
use rbench::model::weights::LoadOptions;
use rbench::model::Model;

fn read_jsonl(name: &str) -> Option<Vec<serde_json::Value>> {
    let path = shared_reference(name)?;
    let text = std::fs::read_to_string(path).ok()?;
    Some(
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap())
            .collect(),
    )
}

/// Greedy generation through the library API; also returns, per step, the
/// logits gap between the chosen token and `expected[step]` (0 when equal).
fn greedy(engine: &mut Engine<'_>, prompt: &[u32], expected: &[u32]) -> (Vec<u32>, Vec<f32>) {
    engine.clear();
    let mut sampler = Sampler::new(SamplerConfig::greedy());
    let logits = engine
        .decode(&Batch::from_prompt(prompt, 0, 0).unwrap())
        .unwrap();
    let mut last = logits.last().unwrap().to_vec();
    let (mut out, mut gaps) = (Vec::new(), Vec::new());
    for (pos, &want) in (prompt.len() as i32..).zip(expected) {
        let next = sampler.sample(&last, &[]);
        gaps.push(last[next as usize] - last[want as usize]);
        out.push(next);
        let mut b = Batch::new();
        b.add(next, pos, &[0], true).unwrap();
        last = engine.decode(&b).unwrap().last().unwrap().to_vec();
    }
    (out, gaps)
}

/// Where rbench and the reference part before token 16, the two candidates
/// must be within `near_tie` logits: the pick then depends on kernel rounding.
/// llama.cpp built from this very ggml (0.26.0, same flash-attention and
/// repack settings) picks exactly what rbench picks at every such step; the
/// reference file was made with another llama.cpp build, which rounds differently.
fn check_greedy(flash_attn: bool, max_near_ties: usize, near_tie: f32) {
    let Some(path) = test_model("greedy_completions_match_llama_cpp") else {
        return;
    };
    let Some(rows) = read_jsonl("greedy-gemma3-270m.jsonl") else {
        eprintln!("skipped: ../shared/reference not found");
        return;
    };
    let model = Model::load(&path, &LoadOptions::default()).unwrap();
    let cfg = EngineConfig {
        n_ctx: 256,
        flash_attn,
        ..EngineConfig::default()
    };
    let mut engine = Engine::new(&model, cfg).unwrap();
    let tok = &model.tokenizer;
    let (mut full, mut near_ties) = (0, 0);
    for row in &rows {
        let prompt_text = row["prompt"].as_str().unwrap();
        let completion = row["completion"].as_str().unwrap();
        let prompt = tok.encode(prompt_text, true).unwrap();
        let whole = tok
            .encode(&format!("{prompt_text}{completion}"), true)
            .unwrap();
        assert_eq!(
            &whole[..prompt.len()],
            &prompt[..],
            "prompt tokens are not a prefix for {prompt_text:?}"
        );
        let expected = &whole[prompt.len()..];
        let n = expected
            .len()
            .min(row["n_predict"].as_u64().unwrap() as usize);
        let (out, gaps) = greedy(&mut engine, &prompt, &expected[..n]);
        match out.iter().zip(expected).position(|(a, b)| a != b) {
            None => full += 1,
            Some(i) if i >= 16 => {}
            Some(i) => {
                // Before token 16 only a near-tie may separate us from llama.cpp.
                assert!(
                    gaps[i] <= near_tie,
                    "prompt {prompt_text:?} (flash-attn {flash_attn}) diverges at token {i} by {} logits: got {:?}, expected {completion:?}",
                    gaps[i],
                    tok.decode(&out).unwrap()
                );
                near_ties += 1;
            }
        }
    }
    eprintln!("flash-attn {flash_attn}: {full} of {} completions identical over all tokens, {near_ties} near-ties", rows.len());
    assert!(
        full * 2 > rows.len(),
        "only {full} of {} completions matched in full",
        rows.len()
    );
    assert!(
        near_ties <= max_near_ties,
        "{near_ties} completions diverge early at near-ties"
    );
}

#[test]
fn greedy_completions_match_llama_cpp_with_flash_attention() {
    // The default: 4 of 5 identical, one near-tie (0.005 logits at the 4th token).
    check_greedy(true, 1, 0.25);
}

#[test]
fn greedy_completions_match_llama_cpp_without_flash_attention() {
    // Unfused attention rounds differently: 3 of 5 identical, two near-ties (up to 0.44 logits).
    check_greedy(false, 2, 0.5);
}

#[test]
fn tokenize_command_matches_llama_tokenize() {
    let Some(path) = test_model("tokenize_command_matches_llama_tokenize") else {
        return;
    };
    let Some(rows) = read_jsonl("tokenize-gemma3-270m.jsonl") else {
        return;
    };
    for row in rows {
        let text = row["text"].as_str().unwrap();
        let out = rbench(&[
            "tokenize",
            "-m",
            path.to_str().unwrap(),
            "-p",
            text,
            "--ids",
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let printed = String::from_utf8(out.stdout).unwrap();
        let expected: Vec<String> = row["ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.to_string())
            .collect();
        assert_eq!(
            printed.trim(),
            format!("[{}]", expected.join(", ")),
            "text {text:?}"
        );
    }
}

#[test]
fn perplexity_matches_llama_perplexity() {
    let Some(path) = test_model("perplexity_matches_llama_perplexity") else {
        return;
    };
    let text = std::path::Path::new("/usr/share/common-licenses/GPL-3");
    if !text.is_file() {
        eprintln!(
            "skipped perplexity_matches_llama_perplexity: {} not found",
            text.display()
        );
        return;
    }
    let out = rbench(&[
        "perplexity",
        "-m",
        path.to_str().unwrap(),
        "-f",
        text.to_str().unwrap(),
        "-c",
        "256",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let ppl = v["ppl"].as_f64().unwrap();
    // llama-perplexity -c 256 on this file: PPL = 16.4184 +/- 0.78097 over 29 chunks.
    assert_eq!(v["n_chunks"], 29);
    assert!(
        (ppl / 16.4184 - 1.0).abs() < 0.01,
        "PPL {ppl} is not within 1% of 16.4184"
    );
}

#[test]
fn run_streams_the_greedy_completion_to_stdout() {
    let Some(path) = test_model("run_streams_the_greedy_completion_to_stdout") else {
        return;
    };
    let out = rbench(&[
        "run",
        "-m",
        path.to_str().unwrap(),
        "-p",
        "The three primary colors are",
        "-n",
        "16",
        "--temp",
        "0",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.starts_with(" red, yellow, and blue."), "{stdout:?}");
    // timings go to stderr, not stdout
    assert!(!stdout.contains("t/s"));
    assert!(String::from_utf8_lossy(&out.stderr).contains("t/s"));
}

#[test]
fn bad_requests_are_clear_errors() {
    let Some(path) = test_model("bad_requests_are_clear_errors") else {
        return;
    };
    let p = path.to_str().unwrap();
    let out = rbench(&["run", "-m", p, "-p", ""]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("empty"));

    let long = "word ".repeat(100);
    let out = rbench(&["run", "-m", p, "-p", &long, "-c", "64", "-n", "8"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("exceeds the context of 64"), "{err}");
}
