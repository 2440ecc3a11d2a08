//! Batch invariance of continuous batching on the real model (greedy): a
//! sequence's completion does not depend on what else shares its steps.
//!
//! Exactly: copies decoded together, prompts of different lengths batched,
//! chunked, queued, slots reused and shared prefixes all give the tokens of
//! the sequence decoded alone. That holds because batch-invariant engines
//! compute every weight matmul with rbench's kernels, whose per-column
//! arithmetic does not depend on the number of columns, and run attention
//! one query row at a time. (With ggml's matmul kernels, which it picks by
//! column count and which round differently, this test fails: 8 copies of a
//! prompt part from the single sequence at a 0.10-logit near-tie.) A
//! scheduling bug (wrong position, a mask leaking across sequences, a reused
//! slot keeping old cells) diverges too.

mod common;

use rbench::engine::sampler::argmax;
use rbench::engine::{
    serve, Completion, Engine, EngineConfig, GenerateConfig, Request, SamplerConfig, ScheduleConfig,
};
use rbench::kernels::Kernels;
use rbench::model::synth::{self, SynthFtype};
use rbench::model::weights::LoadOptions;
use rbench::model::Model;

const PROMPTS: [&str; 4] = [
    "The capital of France is",
    "def add(a, b):\n",
    "Water boils at a temperature of",
    "The three primary colors are red,",
];
const N_PREDICT: usize = 16;

fn engine(model: &Model, n_ctx: usize) -> Engine<'_> {
    Engine::new(
        model,
        EngineConfig {
            n_ctx,
            n_threads: 2,
            batch_invariant: true,
            ..EngineConfig::default()
        },
    )
    .unwrap()
}

fn schedule(n_slots: usize, shared_prefix: Vec<u32>) -> ScheduleConfig {
    ScheduleConfig {
        n_slots,
        max_batch_tokens: 2048,
        stop_at_eog: false,
        sampler: SamplerConfig::greedy(),
        shared_prefix,
        prefix_cache_cells: 0,
    }
}

fn run(engine: &mut Engine<'_>, requests: &[Request], cfg: &ScheduleConfig) -> Vec<Completion> {
    let mut seen = 0;
    let report = serve(engine, requests, cfg, &|| false, &mut |_| seen += 1).unwrap();
    assert_eq!(seen, requests.len());
    assert_eq!(report.completions.len(), requests.len());
    assert_eq!(engine.kv.cells.n_used(), 0, "serve leaves the cache empty");
    for (i, c) in report.completions.iter().enumerate() {
        assert_eq!(c.index, i, "completions come back in input order");
        assert_eq!(c.tokens.len(), N_PREDICT);
        assert_eq!(c.token_times.len(), N_PREDICT);
    }
    report.completions
}

fn requests(model: &Model, prompts: &[&str]) -> Vec<Request> {
    prompts
        .iter()
        .map(|p| Request {
            prompt: model.tokenizer.encode(p, true).unwrap(),
            n_predict: N_PREDICT,
        })
        .collect()
}

/// Greedy decode of one sequence alone; returns the tokens and, per step,
/// the gap between the best and second-best logit.
fn alone_with_gaps(engine: &mut Engine<'_>, prompt: &[u32]) -> (Vec<u32>, Vec<f32>) {
    let cfg = GenerateConfig {
        stop_at_eog: false,
        ..GenerateConfig::greedy(N_PREDICT)
    };
    let mut generation = engine.generate(prompt, cfg).unwrap();
    let (mut tokens, mut gaps) = (Vec::new(), Vec::new());
    while let Some(token) = generation.next() {
        tokens.push(token.unwrap());
        // The margin of the pick, from the logits it was sampled from.
        let row = generation.logits().unwrap();
        let best = argmax(row);
        let second = row
            .iter()
            .enumerate()
            .filter(|(j, _)| *j as u32 != best)
            .map(|(_, v)| *v)
            .fold(f32::NEG_INFINITY, f32::max);
        gaps.push(row[best as usize] - second);
    }
    (tokens, gaps)
}

/// Batched tokens equal the single-sequence ones exactly.
fn assert_matches(what: &str, batched: &[u32], alone: &(Vec<u32>, Vec<f32>)) {
    let (tokens, gaps) = alone;
    if let Some(i) = batched.iter().zip(tokens).position(|(a, b)| a != b) {
        panic!(
            "{what}: token {i} differs ({} vs {}; single-sequence gap there {:.4} logits)\n batched {batched:?}\n alone   {tokens:?}",
            batched[i], tokens[i], gaps[i]
        );
    }
}

#[test]
fn batched_sequences_decode_as_they_do_alone() {
    let Some(path) = common::test_model("batched_sequences_decode_as_they_do_alone") else {
        return;
    };
    let model = Model::load(&path, &LoadOptions::for_kernels(Kernels::default())).unwrap();
    let mut engine = engine(&model, 8 * 256);
    let reqs = requests(&model, &PROMPTS);
    let alone: Vec<(Vec<u32>, Vec<f32>)> = reqs
        .iter()
        .map(|r| alone_with_gaps(&mut engine, &r.prompt))
        .collect();
    // The scheduler's own single-slot run is the plain decode loop.
    let single = run(&mut engine, &reqs[..1], &schedule(1, vec![]));
    assert_eq!(single[0].tokens, alone[0].0);
    // What the tokens are is the llama.cpp parity tests' business
    // (tests/inference_reference.rs); here they only have to be repeated.

    // The same prompt in 8 slots: 8 identical completions.
    let eight: Vec<Request> = (0..8).map(|_| reqs[0].clone()).collect();
    let together = run(&mut engine, &eight, &schedule(8, vec![]));
    for c in &together {
        assert_eq!(
            c.tokens, together[0].tokens,
            "slot {} differs from slot 0",
            c.index
        );
    }
    assert_matches("8 copies", &together[0].tokens, &alone[0]);

    // Prompts of different lengths together.
    let lens: Vec<usize> = reqs.iter().map(|r| r.prompt.len()).collect();
    assert!(lens.windows(2).any(|w| w[0] != w[1]), "{lens:?}");
    let mixed = run(&mut engine, &reqs, &schedule(4, vec![]));
    for c in &mixed {
        assert_matches(PROMPTS[c.index], &c.tokens, &alone[c.index]);
    }
    // More requests than slots: finished slots take the next request; and a
    // request served twice in one run gives the same tokens both times.
    let many: Vec<Request> = (0..10).map(|i| reqs[i % reqs.len()].clone()).collect();
    let queued = run(&mut engine, &many, &schedule(3, vec![]));
    for c in &queued {
        let k = c.index % reqs.len();
        assert_matches(&format!("queued request {}", c.index), &c.tokens, &alone[k]);
    }
    // Prompts chunked over several steps (8 tokens per step).
    let mut small = schedule(4, vec![]);
    small.max_batch_tokens = 8;
    let chunked = run(&mut engine, &reqs, &small);
    for c in &chunked {
        assert_matches(
            &format!("chunked {}", PROMPTS[c.index]),
            &c.tokens,
            &alone[c.index],
        );
    }
}

#[test]
fn a_shared_prefix_gives_the_completions_of_the_whole_prompt() {
    let Some(path) =
        common::test_model("a_shared_prefix_gives_the_completions_of_the_whole_prompt")
    else {
        return;
    };
    let model = Model::load(&path, &LoadOptions::for_kernels(Kernels::default())).unwrap();
    let mut engine = engine(&model, 8 * 256);
    let prefix = model
        .tokenizer
        .encode("You are a helpful assistant. Answer briefly.\n", true)
        .unwrap();
    let suffixes: Vec<Vec<u32>> = PROMPTS
        .iter()
        .map(|p| model.tokenizer.encode(p, false).unwrap())
        .collect();
    let split: Vec<Request> = suffixes
        .iter()
        .map(|s| Request {
            prompt: s.clone(),
            n_predict: N_PREDICT,
        })
        .collect();
    let shared = run(&mut engine, &split, &schedule(2, prefix.clone()));
    for c in &shared {
        let whole: Vec<u32> = prefix.iter().chain(&suffixes[c.index]).copied().collect();
        let alone = alone_with_gaps(&mut engine, &whole);
        assert_matches(
            &format!("shared prefix + {:?}", PROMPTS[c.index]),
            &c.tokens,
            &alone,
        );
    }
}

#[test]
fn run_batch_mode_prints_completions_in_input_order() {
    let Some(path) = common::test_model("run_batch_mode_prints_completions_in_input_order") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let prompts = dir.path().join("prompts.jsonl");
    // Two prompts, the second holding a newline, in three slots with a repeat.
    std::fs::write(
        &prompts,
        "\"The capital of France is\"\n\"def add(a, b):\\n\"\n\n\"The capital of France is\"\n",
    )
    .unwrap();
    // `run --prompts-file FILE` in greedy jsonl mode with `slots`, its lines.
    let batch = |file: &std::path::Path, slots: &str| -> Vec<serde_json::Value> {
        let out = common::rbench(&[
            "run",
            "-m",
            path.to_str().unwrap(),
            "--prompts-file",
            file.to_str().unwrap(),
            "--parallel",
            slots,
            "-n",
            "12",
            "--temp",
            "0",
            "-t",
            "2",
            "-o",
            "jsonl",
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let lines = batch(&prompts, "3");
    assert_eq!(lines.len(), 3);
    // Each prompt run alone in the same mode gives its line: batch mode is
    // batch-invariant, so the order and the texts are checked exactly.
    let alone = |prompt: &str| {
        let file = dir.path().join("one.jsonl");
        std::fs::write(
            &file,
            format!("{}\n", serde_json::to_string(prompt).unwrap()),
        )
        .unwrap();
        let lines = batch(&file, "1");
        assert_eq!(lines.len(), 1);
        lines[0]["completion"].as_str().unwrap().to_string()
    };
    let france = alone("The capital of France is");
    let add = alone("def add(a, b):\n");
    assert_ne!(france, add);
    let expect = [
        ("The capital of France is", &france),
        ("def add(a, b):\n", &add),
        ("The capital of France is", &france),
    ];
    for (line, (prompt, completion)) in lines.iter().zip(expect) {
        assert_eq!(line["prompt"], prompt);
        assert_eq!(
            line["completion"].as_str().unwrap(),
            completion,
            "{prompt:?}"
        );
    }
}

/// One answer per prompt: the five greedy reference prompts, each twice,
/// through batch mode with 8 slots give exactly what `run -p` gives for each
/// prompt alone (both run the batch-invariant engine).
#[test]
fn run_p_and_batch_mode_give_one_answer_per_prompt() {
    let Some(path) = common::test_model("run_p_and_batch_mode_give_one_answer_per_prompt") else {
        return;
    };
    let model = path.to_str().unwrap();
    let reference = std::fs::read_to_string(common::reference_data("greedy-gemma3-270m.jsonl"))
        .expect("reference data");
    let prompts: Vec<String> = reference
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["prompt"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(prompts.len(), 5);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("prompts.jsonl");
    let lines: String = prompts
        .iter()
        .chain(&prompts)
        .map(|p| serde_json::to_string(p).unwrap() + "\n")
        .collect();
    std::fs::write(&file, lines).unwrap();
    let common_flags = ["-n", "32", "--temp", "0", "-t", "2"];
    let mut args = vec!["run", "-m", model, "--prompts-file", file.to_str().unwrap()];
    args.extend(["--parallel", "8", "-o", "jsonl"]);
    args.extend(common_flags);
    let out = common::rbench(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let batch: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(batch.len(), 10);
    for prompt in &prompts {
        let mut args = vec!["run", "-m", model, "-p", prompt.as_str()];
        args.extend(common_flags);
        let out = common::rbench(&args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8(out.stdout).unwrap();
        let alone = stdout.strip_suffix('\n').unwrap_or(&stdout);
        let answers: Vec<&str> = batch
            .iter()
            .filter(|l| l["prompt"] == prompt.as_str())
            .map(|l| l["completion"].as_str().unwrap())
            .collect();
        assert_eq!(answers, [alone, alone], "{prompt:?}");
    }
}

/// The same exactness on synthetic Llama models of the K-quant mixes
/// (Q4_K / Q5_K / Q6_K weights, which the test model has few of): the
/// super-block kernels' per-column sums do not depend on the batch either.
#[test]
fn k_quant_models_batch_exactly() {
    batch_exactly("llama-125m", &[SynthFtype::Q4KM, SynthFtype::Q5KM]);
}

/// Mixtures of experts too: ggml's `mul_mat_id` computes each token's
/// expert products on their own, whatever else the batch routes there.
#[test]
fn expert_models_batch_exactly() {
    batch_exactly("mixtral-tiny", &[SynthFtype::Q4KM]);
}

/// gpt-oss's sinks and windows leave rbench's per-token attention kernel
/// for ggml's row-by-row one, which must be batch-invariant as well; its
/// MXFP4 experts go through `mul_mat_id`.
#[test]
fn sink_models_batch_exactly() {
    batch_exactly("gpt-oss-tiny", &[SynthFtype::Mxfp4Moe]);
}

fn batch_exactly(preset: &str, ftypes: &[SynthFtype]) {
    let preset = synth::preset(preset).unwrap();
    for &ftype in ftypes {
        let path = synth::ensure_cached(preset, ftype).unwrap();
        let model = Model::load(&path, &LoadOptions::for_kernels(Kernels::default())).unwrap();
        let mut engine = engine(&model, 4 * 256);
        let reqs = requests(&model, &PROMPTS);
        let alone: Vec<(Vec<u32>, Vec<f32>)> = reqs
            .iter()
            .map(|r| alone_with_gaps(&mut engine, &r.prompt))
            .collect();
        let batched = run(&mut engine, &reqs, &schedule(PROMPTS.len(), vec![]));
        for (i, (b, a)) in batched.iter().zip(&alone).enumerate() {
            assert_matches(&format!("{} prompt {i}", ftype.name()), &b.tokens, a);
        }
    }
}
