//! The engine against llama.cpp's own outputs on the real test model:
//! tokenization, greedy completions, perplexity; and clean errors.

mod common;

use common::{rbench, reference_data, test_model};
use rbench::engine::sampler::argmax;
use rbench::engine::{Batch, Engine, EngineConfig, GenerateConfig};
use rbench::kernels::Kernels;
use rbench::model::weights::LoadOptions;
use rbench::model::Model;

fn read_jsonl(name: &str) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(reference_data(name)).unwrap();
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Below this top-two margin (logits) rbench's pick may differ from
/// llama.cpp's by rounding alone. Derived from rbench's own ways of
/// computing the same logits (flash attention on or off, rbench's or
/// ggml's matmul kernels: four variants, every pair, all 160 completion
/// positions below), measured on an AMD Zen 4 (AVX-512 VNNI): where a
/// variant's margin is under 2 logits, another variant moves it by at most
/// 0.54 logits. (The largest move anywhere, 1.13, was at a margin of 5.9:
/// the moves scale with the logits.) llama.cpp is one more such variant,
/// built elsewhere, so the bound is about twice that; a wrong computation
/// moves margins of several logits and shows at many positions.
const NEAR_TIE: f32 = 1.0;

/// Margins at and above this cannot be flipped by a move below
/// [`NEAR_TIE`], so the spread check looks only below it.
const SPREAD_MARGIN: f32 = 2.0 * NEAR_TIE;

/// Where rbench's and llama.cpp's next-token choice may be compared.
struct Reference {
    prompt: String,
    /// Prompt tokens (with BOS), then llama.cpp's greedy completion.
    tokens: Vec<u32>,
    n_prompt: usize,
}

fn references(tok: &rbench::tokenizer::Tokenizer) -> Vec<Reference> {
    read_jsonl("greedy-gemma3-270m.jsonl")
        .iter()
        .map(|row| {
            let prompt = row["prompt"].as_str().unwrap();
            let completion = row["completion"].as_str().unwrap();
            let ids = tok.encode(prompt, true).unwrap();
            let mut tokens = tok.encode(&format!("{prompt}{completion}"), true).unwrap();
            assert_eq!(
                &tokens[..ids.len()],
                &ids[..],
                "prompt tokens are not a prefix for {prompt:?}"
            );
            tokens.truncate(ids.len() + row["n_predict"].as_u64().unwrap() as usize);
            Reference {
                prompt: prompt.to_string(),
                tokens,
                n_prompt: ids.len(),
            }
        })
        .collect()
}

/// rbench's logits at one completion position, teacher-forced.
struct Position {
    /// Index in the completion: the logits that predict its `index`-th token.
    index: usize,
    expected: u32,
    logits: Vec<f32>,
}

impl Position {
    /// rbench's two best tokens.
    fn top2(&self) -> (u32, u32) {
        let best = argmax(&self.logits);
        let mut rest = self.logits.clone();
        rest[best as usize] = f32::NEG_INFINITY;
        (best, argmax(&rest))
    }

    fn margin(&self) -> f32 {
        let (a, b) = self.top2();
        self.logits[a as usize] - self.logits[b as usize]
    }
}

/// Feeds prompt and llama.cpp's completion in one pass and keeps the logits
/// at every position that predicts a completion token.
fn teacher_forced(engine: &mut Engine<'_>, r: &Reference) -> Vec<Position> {
    engine.clear();
    let mut batch = Batch::new();
    for (pos, &t) in r.tokens.iter().enumerate() {
        batch
            .add(t, pos as i32, &[0], pos + 1 >= r.n_prompt)
            .unwrap();
    }
    let logits = engine.decode(&batch).unwrap();
    (r.n_prompt..r.tokens.len())
        .map(|i| Position {
            index: i - r.n_prompt,
            expected: r.tokens[i],
            logits: logits.get(i - 1).unwrap().to_vec(),
        })
        .collect()
}

fn engine_config(flash_attn: bool, kernels: Kernels) -> EngineConfig {
    EngineConfig {
        n_ctx: 256,
        flash_attn,
        kernels,
        ..EngineConfig::default()
    }
}

/// How the engine under test computes.
#[derive(Clone, Copy, Debug)]
enum Mode {
    /// The default engine (`run`, `bench`, `perplexity`), flash attention on or off.
    Default { flash_attn: bool },
    /// The batch-invariant engine of `parallel` and `run --prompts-file`:
    /// every weight matmul through rbench's kernels on unrepacked weights.
    BatchInvariant,
}

/// At every completion position of every reference, rbench's argmax must be
/// llama.cpp's token unless rbench's own top-two margin is below
/// [`NEAR_TIE`] and llama.cpp's token is within it. The same verdict on any
/// CPU: nothing here counts how often a near-tie fell one way.
fn check_teacher_forced(mode: Mode) {
    let Some(path) = test_model("teacher_forced_next_tokens_match_llama_cpp") else {
        return;
    };
    let (load, cfg) = match mode {
        Mode::Default { flash_attn } => (
            LoadOptions::default(),
            engine_config(flash_attn, Kernels::default()),
        ),
        Mode::BatchInvariant => (
            LoadOptions::for_kernels(Kernels::Rbench),
            EngineConfig {
                batch_invariant: true,
                ..engine_config(true, Kernels::Rbench)
            },
        ),
    };
    let model = Model::load(&path, &load).unwrap();
    let mut engine = Engine::new(&model, cfg).unwrap();
    let tok = &model.tokenizer;
    let (mut checked, mut n_near_ties, mut failures) = (0, 0, Vec::new());
    eprintln!("{mode:?}: completion positions whose margin is under {NEAR_TIE} logits");
    for r in references(tok) {
        let mut near_ties = Vec::new();
        for p in teacher_forced(&mut engine, &r) {
            checked += 1;
            let (best, _) = p.top2();
            let margin = p.margin();
            let gap = p.logits[best as usize] - p.logits[p.expected as usize];
            let text = |t: u32| tok.decode(&[t]).unwrap();
            if margin < NEAR_TIE {
                near_ties.push(if best == p.expected {
                    format!("#{} {margin:.3}", p.index)
                } else {
                    format!(
                        "#{} {margin:.3} ({:?}, llama.cpp {:?} {gap:.3} below)",
                        p.index,
                        text(best),
                        text(p.expected)
                    )
                });
            }
            if best != p.expected && gap >= NEAR_TIE {
                failures.push(format!(
                    "{:?} #{}: rbench picks {:?} by {gap:.3} logits over llama.cpp's {:?}",
                    r.prompt,
                    p.index,
                    text(best),
                    text(p.expected)
                ));
            }
        }
        eprintln!("  {:?}: {}", r.prompt, near_ties.join(", "));
        n_near_ties += near_ties.len();
    }
    eprintln!("{mode:?}: {checked} positions, {n_near_ties} under the bound");
    assert_eq!(checked, 5 * 32, "every reference has 32 completion tokens");
    assert!(
        failures.is_empty(),
        "rbench disagrees with llama.cpp beyond a near-tie:\n{}",
        failures.join("\n")
    );
}

#[test]
fn teacher_forced_next_tokens_match_llama_cpp_with_flash_attention() {
    check_teacher_forced(Mode::Default { flash_attn: true });
}

#[test]
fn teacher_forced_next_tokens_match_llama_cpp_without_flash_attention() {
    check_teacher_forced(Mode::Default { flash_attn: false });
}

#[test]
fn teacher_forced_next_tokens_match_llama_cpp_batch_invariant() {
    check_teacher_forced(Mode::BatchInvariant);
}

/// [`NEAR_TIE`] rests on rbench's ways of computing one logit agreeing:
/// wherever a variant's top-two margin is under [`SPREAD_MARGIN`], no other
/// variant (flash attention on or off, rbench's or ggml's matmul kernels)
/// may move it by more than the bound. This is what holds the bound on
/// another CPU, whose kernels round in their own way.
#[test]
fn attention_and_kernel_choices_move_small_margins_less_than_the_near_tie_bound() {
    let Some(path) = test_model("attention_and_kernel_choices_move_margins") else {
        return;
    };
    let model = Model::load(&path, &LoadOptions::default()).unwrap();
    let refs = references(&model.tokenizer);
    let variants = [
        (true, Kernels::Rbench),
        (false, Kernels::Rbench),
        (true, Kernels::Ggml),
        (false, Kernels::Ggml),
    ];
    let runs: Vec<Vec<Position>> = variants
        .iter()
        .map(|&(fa, k)| {
            let mut engine = Engine::new(&model, engine_config(fa, k)).unwrap();
            refs.iter()
                .flat_map(|r| teacher_forced(&mut engine, r))
                .collect()
        })
        .collect();
    // Over all positions, and where the margin is small enough to matter.
    let (mut widest, mut widest_small) = ((0f32, String::new()), (0f32, String::new()));
    for (a, run_a) in runs.iter().enumerate() {
        for (b, run_b) in runs.iter().enumerate().filter(|(b, _)| *b != a) {
            for (n, (pa, pb)) in run_a.iter().zip(run_b).enumerate() {
                // The margin of a's top two, as b computes it.
                let (t1, t2) = pa.top2();
                let ma = pa.logits[t1 as usize] - pa.logits[t2 as usize];
                let mb = pb.logits[t1 as usize] - pb.logits[t2 as usize];
                let moved = (ma - mb).abs();
                let at = || {
                    format!(
                        "position {n} (margin {ma:.3}), {:?} against {:?}",
                        variants[a], variants[b]
                    )
                };
                if moved > widest.0 {
                    widest = (moved, at());
                }
                if ma < SPREAD_MARGIN && moved > widest_small.0 {
                    widest_small = (moved, at());
                }
            }
        }
    }
    eprintln!(
        "variants (flash attention, kernels) move margins by up to {:.4} logits at {}; \
         under a margin of {SPREAD_MARGIN}: {:.4} at {} (near-tie bound {NEAR_TIE})",
        widest.0, widest.1, widest_small.0, widest_small.1
    );
    assert!(
        widest_small.0 <= NEAR_TIE,
        "a margin under {SPREAD_MARGIN} moves by {:.4} logits ({}), more than the near-tie bound",
        widest_small.0,
        widest_small.1
    );
}

/// Free-running greedy generation drifts from llama.cpp after the first
/// near-tie, so past the first token it is printed, not asserted (on the test
/// machine 4 of 5 completions are llama.cpp's over all 32 tokens).
#[test]
fn greedy_completions_against_llama_cpp() {
    let Some(path) = test_model("greedy_completions_against_llama_cpp") else {
        return;
    };
    let model = Model::load(&path, &LoadOptions::default()).unwrap();
    let mut engine = Engine::new(&model, engine_config(true, Kernels::default())).unwrap();
    let tok = &model.tokenizer;
    for r in references(tok) {
        let prompt = &r.tokens[..r.n_prompt];
        let expected = &r.tokens[r.n_prompt..];
        let mut generation = engine
            .generate(prompt, GenerateConfig::greedy(expected.len()))
            .unwrap();
        // The first pick comes from the prompt's logits, as in the
        // teacher-forced check: it must be llama.cpp's unless within the bound.
        let first = generation.logits().unwrap();
        let first_gap = first[argmax(first) as usize] - first[expected[0] as usize];
        let out: Vec<u32> = generation.by_ref().map(Result::unwrap).collect();
        let same = out.iter().zip(expected).take_while(|(a, b)| a == b).count();
        eprintln!(
            "{:?}: {same} of {} tokens as llama.cpp; rbench: {:?}",
            r.prompt,
            expected.len(),
            tok.decode(&out).unwrap()
        );
        assert!(
            out[0] == expected[0] || first_gap < NEAR_TIE,
            "{:?}: the first generated token differs from llama.cpp's by {first_gap:.3} logits",
            r.prompt
        );
    }
}

#[test]
fn tokenize_command_matches_llama_tokenize() {
    let Some(path) = test_model("tokenize_command_matches_llama_tokenize") else {
        return;
    };
    let rows = read_jsonl("tokenize-gemma3-270m.jsonl");
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
    // llama.cpp continues " red, yellow, and blue."; its first two tokens
    // lead by over a logit, " yellow" only by a near-tie (0.07, see the
    // teacher-forced test), which another CPU's rounding may flip.
    assert!(stdout.starts_with(" red,"), "{stdout:?}");
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
