//! `rbench parallel`: planning (n_ctx and KV bytes from the worker count),
//! the run's JSON, and clear refusals — on synthetic models, so it is quick.

mod common;

use common::rbench;
use serde_json::{json, Value};

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn json(out: &std::process::Output) -> Value {
    assert!(out.status.success(), "{}", stderr(out));
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

#[test]
fn dry_run_sizes_the_cache_from_the_worker_count() {
    let out = rbench(&[
        "parallel",
        "-m",
        "synth:qwen2-1.5b",
        "--workers",
        "8",
        "-p",
        "128",
        "-n",
        "4096",
        "--dry-run",
        "-o",
        "json",
    ]);
    let v = json(&out);
    assert_eq!(v["n_ctx"], 34816);
    // 28 layers × 256 KV width × 2 bytes (f16) × (K + V) × 34816 cells
    assert_eq!(v["kv_cache_bytes"], 998_244_352u64);
    assert_eq!(v["per_sequence_cells"], 4352);
    assert!(v["model_bytes"].as_u64().unwrap() > 500_000_000);
    assert!(v["compute_buffer_bytes_estimate"].as_u64().unwrap() > 0);
    // q8_0 caches: 34 bytes per 32 values instead of 64.
    let q8 = json(&rbench(&[
        "parallel",
        "-m",
        "synth:qwen2-1.5b",
        "--workers",
        "8",
        "-p",
        "128",
        "-n",
        "4096",
        "--dry-run",
        "-o",
        "json",
        "-ctk",
        "q8_0",
        "-ctv",
        "q8_0",
    ]));
    assert_eq!(q8["kv_cache_bytes"], 28u64 * 272 * 2 * 34816);
    // The markdown plan says the same in words.
    let md = rbench(&[
        "parallel",
        "-m",
        "synth:qwen2-1.5b",
        "--workers",
        "1,2,4,8",
        "-p",
        "128",
        "-n",
        "4096",
        "--dry-run",
    ]);
    let text = String::from_utf8_lossy(&md.stdout);
    assert!(
        text.contains("n_ctx 34816") && text.contains("952.00 MiB"),
        "{text}"
    );
}

#[test]
fn a_run_reports_every_worker_count_with_scaling_and_latency() {
    let dir = tempfile::tempdir().unwrap();
    let save = dir.path().join("par.json");
    let out = rbench(&[
        "parallel",
        "-m",
        "synth:llama-15m",
        "--workers",
        "1,2,4",
        "-p",
        "16",
        "-n",
        "8",
        "-t",
        "1",
        "-o",
        "json",
        "--save",
        save.to_str().unwrap(),
    ]);
    let v = json(&out);
    let saved: Value = serde_json::from_str(&std::fs::read_to_string(&save).unwrap()).unwrap();
    assert_eq!(saved["schema"], 1);
    assert_eq!(saved["kind"], "parallel");
    assert_eq!(saved["result"], v, "--save keeps what -o json prints");
    let runs = v["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 3);
    // Without --requests: 4 per worker of the largest count, for every count.
    assert_eq!(v["workload"]["requests"], 16);
    assert_eq!(v["workload"]["arrival"], "burst");
    assert_eq!(v["workload"]["latency_clock"], "admission");
    for (run, w) in runs.iter().zip([1u64, 2, 4]) {
        assert_eq!(run["workers"], w);
        assert_eq!(run["requests"], 16);
        assert_eq!(run["output_tokens"], 8 * 16);
        assert_eq!(run["prompt_tokens"], 16 * 16);
        assert!(run["kv_cells"].as_u64().unwrap() >= 23 * w);
        let memory = &run["memory"];
        assert!(
            memory["peak_rss_bytes"].as_u64().unwrap() > 1 << 20,
            "{memory}"
        );
        assert!(memory["kv_bytes"].as_u64().unwrap() > 0, "{memory}");
        assert!(
            memory["compute_buffer_bytes"].as_u64().unwrap() > 0,
            "{memory}"
        );
        for key in [
            "prompt_tps",
            "gen_tps",
            "overall_tps",
            "speedup",
            "efficiency",
        ] {
            assert!(run[key].as_f64().unwrap() > 0.0, "{key} in {run}");
        }
        for key in ["ttft_ms", "tpot_ms", "itl_ms", "e2e_ms"] {
            let l = &run[key];
            let p = |q: &str| l[q].as_f64().unwrap();
            assert!(
                p("p50") > 0.0 && p("p50") <= p("p95") && p("p95") <= p("p99"),
                "{key}: {l}"
            );
        }
        assert_eq!(run["ttft_ms"]["n"], 16);
        assert_eq!(run["itl_ms"]["n"], 16 * 7);
    }
    assert_eq!(runs[0]["speedup"], 1.0);
    assert!(v["recommendation"]["offline"]["workers"].is_u64());
    assert_eq!(v["n_ctx"], 4 * 256);
    assert_eq!(v["kernels"], "rbench");

    // The markdown report has both tables and the analysis.
    let md = rbench(&[
        "parallel",
        "-m",
        "synth:llama-15m",
        "--workers",
        "1,2",
        "-p",
        "16",
        "-n",
        "8",
        "-t",
        "1",
        "--requests",
        "5",
        "--shared-prefix",
        "8",
    ]);
    assert!(md.status.success(), "{}", stderr(&md));
    let text = String::from_utf8_lossy(&md.stdout);
    for needle in [
        "| Workers | Prompt Tokens | Output Tokens | Total KV | Prompt t/s | Generation t/s | Overall t/s | Speedup | Efficiency |",
        "TTFT ms",
        "Shared prefix",
        "Offline throughput",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in\n{text}");
    }
    // 5 requests, each 8 generated tokens, for both worker counts.
    assert!(text.contains("| 40 "), "{text}");
}

/// Poisson arrivals, ±50% lengths, an SLO and two repetitions: latency
/// counts from arrival, every request of both repetitions is a sample, and
/// lengths vary around -p / -n within the jitter.
#[test]
fn arrivals_lengths_slo_and_repetitions_shape_the_run() {
    let out = rbench(&[
        "parallel",
        "-m",
        "synth:llama-15m",
        "--workers",
        "1,2",
        "-p",
        "16",
        "-n",
        "8",
        "-t",
        "1",
        "--requests",
        "12",
        "--arrival",
        "poisson",
        "--rate",
        "400",
        "--length-jitter",
        "0.5",
        "--slo",
        "ttft=60000,tpot=60000",
        "-r",
        "2",
        "-o",
        "json",
    ]);
    let v = json(&out);
    let w = &v["workload"];
    assert_eq!(
        (
            &w["arrival"],
            &w["rate"],
            &w["latency_clock"],
            &w["repetitions"]
        ),
        (
            &json!("poisson"),
            &json!(400.0),
            &json!("arrival"),
            &json!(2)
        )
    );
    assert_eq!(w["slo"]["ttft_ms"], 60000.0);
    for run in v["runs"].as_array().unwrap() {
        assert_eq!(run["requests"], 12);
        assert_eq!(run["ttft_ms"]["n"], 24, "both repetitions pooled");
        assert_eq!(run["gen_tps_runs"].as_array().unwrap().len(), 2);
        // Output lengths within 8 ± 50%, not all the same.
        let out_tokens = run["output_tokens"].as_u64().unwrap();
        assert!((4 * 12..=12 * 12).contains(&out_tokens), "{out_tokens}");
        assert_ne!(out_tokens, 8 * 12, "lengths vary");
        assert!(run["n_prompt"].as_u64().unwrap() <= 24);
        // Generous bounds: every request is good.
        assert_eq!(run["good_requests"], 12);
        assert!(run["goodput_rps"].as_f64().unwrap() > 0.0);
    }
    let md = rbench(&[
        "parallel",
        "-m",
        "synth:llama-15m",
        "--workers",
        "1",
        "-p",
        "16",
        "-n",
        "8",
        "-t",
        "1",
        "--requests",
        "8",
        "--slo",
        "e2el=60000",
        "-r",
        "2",
    ]);
    assert!(md.status.success(), "{}", stderr(&md));
    let text = String::from_utf8_lossy(&md.stdout);
    for needle in [
        "Goodput req/s",
        "(8 / 8)",
        "Peak RSS",
        "E2E ms",
        "per repetition",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in\n{text}");
    }
}

#[test]
fn impossible_requests_are_refused_with_the_reason() {
    let cases: &[(&[&str], i32, &str)] = &[
        (&["--workers", "0"], 2, "--workers"),
        (&["-n", "0"], 2, "-n/--n-predict"),
        (&["-p", "0"], 2, "-p/--n-prompt"),
        (&["--requests", "0"], 2, "--requests"),
        (&["-t", "0"], 2, "-t/--threads"),
        (&["--tpot-budget", "0"], 2, "--tpot-budget"),
        (&["--ttft-budget", "0"], 2, "--ttft-budget"),
        (&["--arrival", "poisson"], 2, "needs --rate"),
        (
            &["--arrival", "poisson", "--rate", "0"],
            2,
            "--rate must be",
        ),
        (&["--rate", "5"], 2, "--rate applies to --arrival poisson"),
        (&["--arrival", "uniform"], 2, "--arrival"),
        (&["--length-jitter", "1.5"], 2, "--length-jitter"),
        (&["-r", "0"], 2, "-r/--repetitions"),
        (&["--slo", "ttft=fast"], 2, "--slo ttft:fast"),
        (&["--slo", "latency=5"], 2, "is not ttft, tpot or e2el"),
        (&["-ctk", "q4_7"], 2, "cache-type-k"),
        (
            &["-c", "100", "--workers", "4"],
            2,
            "cannot hold 4 sequences",
        ),
        (&["--from-analysis", "/nonexistent/a.json"], 1, "a.json"),
        // 250 workers × a million tokens: far more KV than this machine has.
        (
            &["--workers", "250", "-n", "1000000"],
            1,
            "not enough memory",
        ),
    ];
    for (args, code, needle) in cases {
        let mut all = vec!["parallel", "-m", "synth:llama-15m"];
        all.extend_from_slice(args);
        let out = rbench(&all);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(*code), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
    }
    let out = rbench(&[
        "parallel",
        "-m",
        "synth:llama-15m",
        "--workers",
        "250",
        "-n",
        "1000000",
    ]);
    assert!(stderr(&out).contains("workers fit"), "{}", stderr(&out));
}

#[test]
fn analysis_results_set_prompt_and_generation_lengths() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("analysis.json");
    std::fs::write(
        &a,
        r#"{"records": 3, "recommendation": {"n_prompt": 64, "n_predict": 512, "coverage": 0.9}}"#,
    )
    .unwrap();
    let v = json(&rbench(&[
        "parallel",
        "-m",
        "synth:llama-15m",
        "--workers",
        "2",
        "--from-analysis",
        a.to_str().unwrap(),
        "--dry-run",
        "-o",
        "json",
    ]));
    assert_eq!(v["n_prompt"], 64);
    assert_eq!(v["n_predict"], 512);
    assert_eq!(v["n_ctx"], 2 * 768);
    std::fs::write(&a, r#"{"records": 3}"#).unwrap();
    let out = rbench(&[
        "parallel",
        "-m",
        "synth:llama-15m",
        "--from-analysis",
        a.to_str().unwrap(),
        "--dry-run",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("recommendation.n_prompt"),
        "{}",
        stderr(&out)
    );
}

mod scheduler {
    use rbench::engine::{
        serve, Engine, EngineConfig, Request, SamplerConfig, ScheduleConfig, ScheduleError,
        StopReason,
    };
    use rbench::model::synth::{self, SynthFtype};
    use rbench::model::weights::LoadOptions;
    use rbench::model::Model;
    use std::cell::Cell;

    fn model(dir: &std::path::Path) -> Model {
        let path = dir.join("m.gguf");
        synth::write_synthetic(
            synth::preset("llama-15m").unwrap(),
            SynthFtype::Q8_0,
            5,
            &path,
        )
        .unwrap();
        Model::load(
            &path,
            &LoadOptions {
                repack: true,
                ..Default::default()
            },
        )
        .unwrap()
    }

    fn cfg(n_slots: usize) -> ScheduleConfig {
        ScheduleConfig {
            n_slots,
            max_batch_tokens: 512,
            stop_at_eog: false,
            sampler: SamplerConfig::greedy(),
            shared_prefix: vec![],
            prefix_cache_cells: 0,
        }
    }

    fn req(len: usize, n_predict: usize) -> Request {
        Request {
            prompt: (0..len as u32).map(|i| 10 + i % 50).collect(),
            n_predict,
        }
    }

    #[test]
    fn queues_finish_in_input_order_with_each_requests_own_length() {
        let dir = tempfile::tempdir().unwrap();
        let model = model(dir.path());
        let mut engine = Engine::new(
            &model,
            EngineConfig {
                n_ctx: 1024,
                n_threads: 1,
                ..EngineConfig::default()
            },
        )
        .unwrap();
        let requests: Vec<Request> = (0..7).map(|i| req(3 + i, 1 + i)).collect();
        let mut order = Vec::new();
        let report = serve(&mut engine, &requests, &cfg(3), &|| false, &mut |c| {
            order.push(c.index)
        })
        .unwrap();
        assert_eq!(order.len(), 7);
        assert!(!report.interrupted);
        for (i, c) in report.completions.iter().enumerate() {
            assert_eq!(c.index, i);
            assert_eq!(
                c.tokens.len(),
                1 + i,
                "request {i} asked for {} tokens",
                1 + i
            );
            assert_eq!(c.prompt_tokens, 3 + i);
            assert_eq!(c.stop, StopReason::Length);
            assert!(c.token_times.windows(2).all(|w| w[0] <= w[1]));
        }
        // Never more than 3 sequences' cells at once (3 slots).
        assert!(report.peak_cells <= 3 * (9 + 7), "{}", report.peak_cells);
        let tokens: usize = report
            .steps
            .iter()
            .map(|s| s.prompt_tokens + s.gen_tokens)
            .sum();
        let prompt: usize = requests.iter().map(|r| r.prompt.len()).sum();
        let decoded: usize = requests.iter().map(|r| r.n_predict - 1).sum();
        assert_eq!(
            tokens,
            prompt + decoded,
            "every prompt token and every fed-back token decoded once"
        );
        assert_eq!(engine.kv.cells.n_used(), 0);
    }

    #[test]
    fn a_stop_request_ends_the_run_between_steps_with_what_finished() {
        let dir = tempfile::tempdir().unwrap();
        let model = model(dir.path());
        let mut engine = Engine::new(
            &model,
            EngineConfig {
                n_ctx: 1024,
                n_threads: 1,
                ..EngineConfig::default()
            },
        )
        .unwrap();
        let requests: Vec<Request> = (0..4)
            .map(|i| req(4, if i == 0 { 2 } else { 50 }))
            .collect();
        let steps = Cell::new(0);
        let stop = || {
            steps.set(steps.get() + 1);
            steps.get() > 5
        };
        let report = serve(&mut engine, &requests, &cfg(4), &stop, &mut |_| {}).unwrap();
        assert!(report.interrupted);
        assert_eq!(
            report.completions.len(),
            1,
            "only the short request finished"
        );
        assert_eq!(report.completions[0].index, 0);
        assert_eq!(engine.kv.cells.n_used(), 0, "the cache is left empty");
    }

    #[test]
    fn bad_requests_are_typed_errors() {
        let dir = tempfile::tempdir().unwrap();
        let model = model(dir.path());
        let mut engine = Engine::new(
            &model,
            EngineConfig {
                n_ctx: 256,
                n_threads: 1,
                ..EngineConfig::default()
            },
        )
        .unwrap();
        let never = || false;
        let mut err = |requests: &[Request], c: &ScheduleConfig| {
            serve(&mut engine, requests, c, &never, &mut |_| {}).unwrap_err()
        };
        assert!(matches!(
            err(&[req(2, 1)], &cfg(0)),
            ScheduleError::Slots(0)
        ));
        assert!(matches!(
            err(&[req(0, 1)], &cfg(1)),
            ScheduleError::EmptyPrompt { index: 0 }
        ));
        assert!(matches!(
            err(&[req(2, 1), req(2, 0)], &cfg(1)),
            ScheduleError::NothingToGenerate { index: 1 }
        ));
        let mut tight = cfg(4);
        tight.max_batch_tokens = 2;
        assert!(matches!(
            err(&[req(2, 1)], &tight),
            ScheduleError::BatchTooSmall { .. }
        ));
        // More cells than the cache has: the engine's KV error, cache left empty.
        let e = err(&[req(200, 100)], &cfg(1));
        assert!(e.to_string().contains("KV cache is full"), "{e}");
        assert_eq!(engine.kv.cells.n_used(), 0);
    }
}

#[test]
fn dataset_prompts_drive_the_requests_and_bad_lines_are_counted() {
    let data = concat!(env!("CARGO_MANIFEST_DIR"), "/datasets/problems.jsonl");
    let out = rbench(&[
        "parallel",
        "-m",
        "synth:llama-15m",
        "--dataset",
        data,
        "--workers",
        "2",
        "--requests",
        "4",
        "-p",
        "256",
        "-n",
        "4",
        "-t",
        "1",
        "-o",
        "json",
    ]);
    let v = json(&out);
    let err = stderr(&out);
    assert!(err.contains("6 records left out"), "{err}");
    let run = &v["runs"][0];
    assert_eq!(run["requests"], 4);
    // Each at most -n 4: the recorded answers' lengths, capped.
    let capped = run["output_tokens"].as_u64().unwrap();
    assert!((4..=16).contains(&capped), "{capped}");
    // Real prompts have their own lengths, not -p.
    let n_prompt = run["n_prompt"].as_u64().unwrap();
    assert!(n_prompt > 0 && n_prompt < 256, "{run}");
    // With room, each request generates its record's answer length (a few
    // tokens each here; -n for the one whose answer is empty), not 4 × -n.
    let out = rbench(&[
        "parallel",
        "-m",
        "synth:llama-15m",
        "--dataset",
        data,
        "--workers",
        "2",
        "--requests",
        "4",
        "-p",
        "256",
        "-n",
        "200",
        "-t",
        "1",
        "-o",
        "json",
    ]);
    let produced = json(&out)["runs"][0]["output_tokens"].as_u64().unwrap();
    assert!((200..240).contains(&produced), "{produced}");
    // Too short a -p for every prompt is an error saying what to raise.
    let out = rbench(&[
        "parallel",
        "-m",
        "synth:llama-15m",
        "--dataset",
        data,
        "--workers",
        "2",
        "-p",
        "1",
        "-n",
        "4",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("raise -p"), "{}", stderr(&out));
    // A file with no known record shape.
    let dir = tempfile::tempdir().unwrap();
    let odd = dir.path().join("odd.jsonl");
    std::fs::write(&odd, "{\"x\": 1}\nnot json\n").unwrap();
    let out = rbench(&[
        "parallel",
        "-m",
        "synth:llama-15m",
        "--dataset",
        odd.to_str().unwrap(),
        "--workers",
        "1",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("no record has a known shape"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn saved_parallel_and_analyze_results_make_a_report() {
    let dir = tempfile::tempdir().unwrap();
    let par = dir.path().join("par.json");
    let ana = dir.path().join("ana.json");
    let out = rbench(&[
        "parallel",
        "-m",
        "synth:llama-15m",
        "--workers",
        "1,2",
        "-p",
        "16",
        "-n",
        "8",
        "-t",
        "1",
        "--save",
        par.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let data = concat!(env!("CARGO_MANIFEST_DIR"), "/datasets/alpaca.jsonl");
    let out = rbench(&["analyze", data, "--save", ana.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let saved: Value = serde_json::from_str(&std::fs::read_to_string(&ana).unwrap()).unwrap();
    assert_eq!(saved["kind"], "analyze");
    assert!(saved["result"]["recommendation"]["n_prompt"].is_u64());
    // The saved analysis also drives a parallel plan.
    let plan = json(&rbench(&[
        "parallel",
        "-m",
        "synth:llama-15m",
        "--from-analysis",
        ana.to_str().unwrap(),
        "--dry-run",
        "-o",
        "json",
    ]));
    assert_eq!(
        plan["n_prompt"],
        saved["result"]["recommendation"]["n_prompt"]
    );
    let md = dir.path().join("report.md");
    let out = rbench(&[
        "report",
        par.to_str().unwrap(),
        ana.to_str().unwrap(),
        "-o",
        md.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = std::fs::read_to_string(&md).unwrap();
    for needle in [
        "Speedup",
        "Efficiency",
        "TTFT",
        "E2E",
        "Peak RSS",
        "```mermaid",
        "n-predict",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in the report");
    }
}
