//! `--save`, `rbench report`, `rbench compare`, `rbench sysinfo` and the
//! first-run guide, end to end with the release binary. Parallel and analyze
//! results are fixtures in the JSON shapes of their issues (5 and 6), saved
//! through the library's envelope API as those commands will.

mod common;

use common::rbench;
use rbench::report::saved::{BuildFacts, ModelIdentity, ResultKind, SavedResult};
use rbench::system::{Hardware, MemoryBandwidth};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

const MODEL: &str = "synth:llama-15m";

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn run_ok(args: &[&str]) -> std::process::Output {
    let out = rbench(args);
    assert!(out.status.success(), "{args:?} failed: {}", stderr(&out));
    out
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// A tiny bench of the smallest synthetic model, saved to `path`.
fn saved_bench(path: &Path, threads: &str) {
    let p = path.to_str().unwrap();
    run_ok(&[
        "bench", "-m", MODEL, "-p", "16", "-n", "4", "-r", "2", "-t", threads, "--save", p,
    ]);
}

fn identity() -> ModelIdentity {
    ModelIdentity {
        path: "/models/fixture.gguf".into(),
        name: Some("fixture".into()),
        architecture: "llama".into(),
        model_type: "llama 1B Q4_K - Medium".into(),
        n_params: 1_235_814_400,
        model_size: 762_000_000,
        file_size: 770_000_000,
        file_type: "Q4_K - Medium".into(),
        synthetic: false,
        n_layer: Some(16),
        n_embd: Some(2048),
        context_length: Some(131072),
        sha256_first_mib: "0f".repeat(32),
    }
}

/// Saves `result` of `kind` as `rbench parallel`/`analyze` will, with a known bandwidth.
fn fixture(
    dir: &Path,
    name: &str,
    kind: ResultKind,
    model: Option<ModelIdentity>,
    result: Value,
) -> PathBuf {
    let mut hardware = Hardware::detect();
    hardware.memory_bandwidth = Some(MemoryBandwidth {
        single_thread_gbs: 12.0,
        all_threads_gbs: 20.0,
        threads: 8,
        buffer_bytes: 512 << 20,
        passes: 5,
    });
    let saved = SavedResult {
        schema: 1,
        kind,
        command_line: vec!["rbench".into(), kind.name().into()],
        created: "2025-06-01T12:00:00Z".into(),
        build: BuildFacts::current(),
        model,
        more_models: vec![],
        hardware,
        result,
    };
    let path = dir.join(name);
    saved.write(&path).unwrap();
    path
}

fn latency(mean: f64) -> Value {
    json!({"mean": mean, "p50": mean * 0.9, "p90": mean * 1.4, "p99": mean * 1.5})
}

/// Issue 5's shape, plus a field rbench does not know (ignored).
fn parallel_result(scale: f64) -> Value {
    let run = |w: u64, gen: f64, tpot: f64| {
        json!({"workers": w, "n_prompt": 128, "n_predict": 256,
               "prompt_tps": 300.0 * scale, "gen_tps": gen * scale, "overall_tps": gen * scale * 1.2,
               "speedup": gen / 20.0, "efficiency": gen / 20.0 / w as f64, "kv_cells": w * 512,
               "ttft_ms": latency(80.0 * w as f64), "tpot_ms": latency(tpot), "itl_ms": latency(tpot),
               "future_field": true})
    };
    json!({"model": "fixture.gguf", "n_ctx": 4096, "kv_cache_bytes": 134217728,
           "runs": [run(1, 20.0, 50.0), run(2, 39.0, 51.0), run(4, 70.0, 57.0), run(8, 96.0, 160.0)],
           "recommendation": {"interactive": {"workers": 4}, "batch": {"workers": 8}}})
}

fn analyze_result() -> Value {
    let stats = |scale: f64| {
        json!({"count": 1000, "mean": 150.0 * scale, "std": 80.0 * scale, "min": 3.0,
               "p50": 120.0 * scale, "p75": 200.0 * scale, "p90": 300.0 * scale,
               "p95": 380.0 * scale, "p99": 700.0 * scale, "max": 1500.0 * scale})
    };
    json!({"records": 1000, "skipped": 2, "shape": "alpaca", "tokenizer": "model",
           "prompt_tokens": stats(1.0), "output_tokens": stats(2.0),
           "recommendation": {"n_prompt": 512, "n_predict": 512, "coverage": 0.88},
           "tiers": [{"name": "Conservative", "n_predict": 512, "coverage": 0.76},
                     {"name": "Recommended", "n_predict": 512, "coverage": 0.88},
                     {"name": "Comprehensive", "n_predict": 2048, "coverage": 0.995}]})
}

/// The trimmed cells of a Markdown table line.
fn cells(line: &str) -> Vec<&str> {
    line.trim()
        .trim_matches('|')
        .split('|')
        .map(str::trim)
        .collect()
}

/// Every chart the Markdown links to exists beside it, and is SVG.
fn linked_svgs(md: &str, dir: &Path) -> Vec<PathBuf> {
    let links: Vec<PathBuf> = md
        .split("](")
        .skip(1)
        .filter_map(|s| s.split(')').next())
        .filter(|l| l.ends_with(".svg"))
        .map(|l| dir.join(l))
        .collect();
    for l in &links {
        let svg = std::fs::read_to_string(l).unwrap_or_else(|e| panic!("{}: {e}", l.display()));
        assert!(svg.starts_with("<svg"), "{}", l.display());
    }
    links
}

#[test]
fn bench_save_round_trips_and_reports_with_a_parallel_result() {
    let dir = tempfile::tempdir().unwrap();
    let bench = dir.path().join("bench.json");
    saved_bench(&bench, "2");
    let saved = SavedResult::read(&bench).unwrap();
    assert_eq!(saved.kind, ResultKind::Bench);
    assert_eq!(saved.schema, 1);
    assert_eq!(saved.command_line[..4], ["rbench", "bench", "-m", MODEL]);
    let model = saved.model.as_ref().unwrap();
    assert!(model.synthetic && model.model_size > 0);
    assert_eq!(model.sha256_first_mib.len(), 64);
    assert!(saved.hardware.memory_bandwidth.is_some());
    // The result is exactly the `-o json` rows.
    let rows = saved.result.as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(
        (rows[0]["n_prompt"].clone(), rows[1]["n_gen"].clone()),
        (json!(16), json!(4))
    );
    // Written by `SavedResult::write`, read back equal.
    let copy = dir.path().join("copy.json");
    saved.write(&copy).unwrap();
    assert_eq!(SavedResult::read(&copy).unwrap(), saved);

    let parallel = fixture(
        dir.path(),
        "parallel.json",
        ResultKind::Parallel,
        Some(identity()),
        parallel_result(1.0),
    );
    let report = dir.path().join("out").join("report.md");
    std::fs::create_dir(dir.path().join("out")).unwrap();
    let out = run_ok(&[
        "report",
        bench.to_str().unwrap(),
        parallel.to_str().unwrap(),
        "-o",
        report.to_str().unwrap(),
    ]);
    assert!(stderr(&out).contains("wrote"), "{}", stderr(&out));
    let md = std::fs::read_to_string(&report).unwrap();
    for needle in [
        "# rbench report",
        "## System",
        "| CPU ",
        "Memory read bandwidth",
        "## Models",
        "t/s",
        "| Workers | Prompt Tokens | Output Tokens | Total KV | Prompt t/s | Generation t/s | Overall t/s | Speedup | Efficiency |",
        "```mermaid\nxychart-beta",
        "TPOT",
        "Scaling is linear (efficiency ≥ 90%) up to 2 workers.",
        "Efficiency falls under 75% at 8 workers (60%, speedup 4.80×)",
        "### Interactive use",
        "### Batch / offline use",
        "**Recommendation:**",
    ] {
        assert!(md.contains(needle), "missing {needle:?} in:\n{md}");
    }
    // 8 workers miss the 100 ms TPOT p99 budget (240 ms), so 4 is interactive.
    assert!(md.contains("**4 workers**: 70.0 t/s of generation"), "{md}");
    assert!(md.contains("**8 workers**: 115.2 t/s overall"), "{md}");
    // 1 worker: 20 t/s × 762 MB = 15.24 GB/s of 20 GB/s: memory-bound.
    assert!(
        md.contains("15.24 GB/s, 76% of the measured 20.00 GB/s"),
        "{md}"
    );
    let svgs = linked_svgs(&md, &dir.path().join("out"));
    let names: Vec<String> = svgs
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        [
            "report-speed.svg",
            "report-throughput.svg",
            "report-efficiency.svg"
        ]
    );
}

#[test]
fn two_bench_results_side_by_side_with_ratios_and_compare() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("before.json");
    let b = dir.path().join("after.json");
    saved_bench(&a, "2");
    saved_bench(&b, "2");
    let report = dir.path().join("two.md");
    run_ok(&[
        "report",
        a.to_str().unwrap(),
        b.to_str().unwrap(),
        "-o",
        report.to_str().unwrap(),
    ]);
    let md = std::fs::read_to_string(&report).unwrap();
    let header = md.lines().find(|l| l.starts_with("| Test")).unwrap();
    assert_eq!(
        cells(header),
        [
            "Test",
            "before.json t/s",
            "after.json t/s",
            "after.json ÷ before.json"
        ],
        "{md}"
    );
    // Every matched test has a ratio like 1.02× (bold when beyond the spread).
    let ratio_rows = md
        .lines()
        .filter(|l| l.starts_with("| pp16") || l.starts_with("| tg4"))
        .collect::<Vec<_>>();
    assert_eq!(ratio_rows.len(), 2, "{md}");
    for row in ratio_rows {
        assert!(
            row.trim_end()
                .trim_end_matches('|')
                .trim()
                .trim_matches('*')
                .ends_with('×'),
            "{row}"
        );
    }
    assert_eq!(linked_svgs(&md, dir.path()).len(), 1);

    let out = run_ok(&["compare", a.to_str().unwrap(), b.to_str().unwrap()]);
    let text = stdout(&out);
    assert!(
        text.contains("| test") && text.contains("new ÷ old") && text.contains("pp16"),
        "{text}"
    );
    assert!(text.contains("changed by more than their spread"), "{text}");
    let out = run_ok(&[
        "compare",
        a.to_str().unwrap(),
        b.to_str().unwrap(),
        "-o",
        "json",
    ]);
    let v: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["kind"], "bench");
    assert_eq!(v["rows"].as_array().unwrap().len(), 2);
    assert!(v["rows"][0]["ratio"].as_f64().unwrap() > 0.0);
    assert!(v["rows"][0]["beyond_spread"].is_boolean());
}

#[test]
fn parallel_analyze_and_perplexity_results_report_side_by_side() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let p1 = fixture(
        d,
        "p1.json",
        ResultKind::Parallel,
        Some(identity()),
        parallel_result(1.0),
    );
    let p2 = fixture(
        d,
        "p2.json",
        ResultKind::Parallel,
        Some(identity()),
        parallel_result(1.5),
    );
    let an = fixture(d, "an.json", ResultKind::Analyze, None, analyze_result());
    let ppl = fixture(
        d,
        "ppl.json",
        ResultKind::Perplexity,
        Some(identity()),
        json!({"model": "fixture.gguf", "file": "GPL-3", "n_ctx": 256, "n_chunks": 29,
               "n_tokens_scored": 3683, "ppl": 16.4292, "ppl_error": 0.78163, "chunk_ppl": [], "seconds": 30.8}),
    );
    let report = d.join("all.md");
    let args: Vec<&str> = [
        "report",
        p1.to_str().unwrap(),
        p2.to_str().unwrap(),
        an.to_str().unwrap(),
        ppl.to_str().unwrap(),
        "-o",
        report.to_str().unwrap(),
    ]
    .to_vec();
    run_ok(&args);
    let md = std::fs::read_to_string(&report).unwrap();
    for needle in [
        "### Side by side",
        "p2.json ÷ p1.json",
        "1.50×",
        "## Dataset analysis",
        "1000 records (2 skipped), shape alpaca",
        "Recommended: **-p 512 -n 512** (88.0% of outputs fit in -n)",
        "| Comprehensive |      2048 |           99.5% |",
        "## Perplexity",
        "16.4292 ± 0.78163",
    ] {
        assert!(md.contains(needle), "missing {needle:?} in:\n{md}");
    }
    let svgs = linked_svgs(&md, d);
    assert!(
        svgs.iter().any(|p| p.ends_with("all-dataset.svg")),
        "{svgs:?}"
    );
    // Two results of different kinds cannot be compared.
    let out = rbench(&["compare", p1.to_str().unwrap(), an.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("same command"), "{}", stderr(&out));
}

#[test]
fn perplexity_save_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("text.txt");
    std::fs::write(
        &text,
        "the quick brown fox jumps over the lazy dog. ".repeat(40),
    )
    .unwrap();
    let save = dir.path().join("ppl.json");
    run_ok(&[
        "perplexity",
        "-m",
        MODEL,
        "-f",
        text.to_str().unwrap(),
        "-c",
        "64",
        "--chunks",
        "1",
        "--save",
        save.to_str().unwrap(),
    ]);
    let v = read_json(&save);
    assert_eq!(
        (v["schema"].clone(), v["kind"].clone()),
        (json!(1), json!("perplexity"))
    );
    assert!(v["result"]["ppl"].as_f64().unwrap() > 1.0);
    assert_eq!(v["result"]["n_chunks"], 1);
    assert!(v["model"]["sha256_first_mib"].is_string());
    assert_eq!(
        SavedResult::read(&save).unwrap().kind,
        ResultKind::Perplexity
    );
}

#[test]
fn bad_inputs_say_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let plain = dir.path().join("rows.json");
    std::fs::write(&plain, "[{\"avg_ts\": 1}]").unwrap();
    let out = rbench(&[
        "report",
        plain.to_str().unwrap(),
        "-o",
        dir.path().join("r.md").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("--save"), "{}", stderr(&out));
    let out = rbench(&["report", "/nonexistent/x.json", "-o", "r.md"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("/nonexistent/x.json"),
        "{}",
        stderr(&out)
    );
    // -o is required: a usage error.
    assert_eq!(
        rbench(&["report", plain.to_str().unwrap()]).status.code(),
        Some(2)
    );
}

#[test]
fn sysinfo_reports_hardware_and_bandwidth() {
    let out = run_ok(&["sysinfo", "--quick", "-o", "json"]);
    let v: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert!(v["hardware"]["logical_cores"].as_u64().unwrap() >= 1);
    assert_eq!(v["hardware"]["backend"], "CPU");
    let bw = &v["hardware"]["memory_bandwidth"];
    assert!(bw["single_thread_gbs"].as_f64().unwrap() > 0.0, "{bw}");
    assert!(bw["all_threads_gbs"].as_f64().unwrap() > 0.0, "{bw}");
    let text = stdout(&run_ok(&["sysinfo", "--no-bandwidth"]));
    assert!(
        text.contains("cpu") && text.contains("kernel") && !text.contains("memory read"),
        "{text}"
    );
}

#[test]
fn first_run_guide_and_examples_in_help() {
    let out = run_ok(&[]);
    let guide = stdout(&out);
    assert!(
        guide.contains("rbench bench") && guide.contains("--help"),
        "{guide}"
    );
    for cmd in [
        "bench",
        "pp",
        "tg",
        "run",
        "info",
        "perplexity",
        "report",
        "compare",
        "sysinfo",
        "synth",
        "tokenize",
    ] {
        let help = stdout(&run_ok(&[cmd, "--help"]));
        assert!(
            help.contains("Example"),
            "{cmd} --help has no example:\n{help}"
        );
    }
    let out = rbench(&["bench", "-p", "0"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("rbench bench --help"),
        "{}",
        stderr(&out)
    );
}
