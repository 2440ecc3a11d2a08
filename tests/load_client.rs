//! `rbench load`'s client against a local stub server (instant answers,
//! held streams, broken streams) and against `rbench serve`.

mod common;

use rbench::load;
use rbench::load::metrics::TokenSource;
use rbench::load::stub::{self, Stub};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

fn stub_runtime() -> tokio::runtime::Runtime {
    stub::runtime().unwrap()
}

#[test]
fn five_hundred_streams_at_once_all_complete_and_are_timed() {
    let rt = stub_runtime();
    let stub = Arc::new(Stub::new(3, Duration::from_secs(2), 0));
    let base = stub::start(&rt, Arc::clone(&stub)).unwrap();
    let cfg = stub::load_config(&base, 500, 3, None);
    let run = load::run(&cfg, Arc::new(false.into())).unwrap();
    let s = &run.summary;
    assert_eq!((s.completed, s.failed), (500, 0), "{:?}", s.errors);
    assert_eq!(s.total_output_tokens, 1500);
    assert_eq!(s.output_tokens_from, TokenSource::Usage);
    // All 500 were open together: each held its last token for 2 s.
    assert_eq!(stub.most_open(), 500);
    assert!(s.itl.percentiles[1].1 >= 1900.0, "{:?}", s.itl);
    // TPOT = (E2EL - TTFT) / 2 covers the held gap.
    assert!(s.tpot.median >= 950.0, "{:?}", s.tpot);
    eprintln!(
        "500 concurrent streams: {:.0} req/s, TTFT p99 {:.1} ms",
        s.request_throughput, s.ttft.percentiles[1].1
    );
}

#[test]
fn broken_streams_and_a_dead_server_are_failures_with_reasons() {
    let rt = stub_runtime();
    let stub = Arc::new(Stub::new(4, Duration::ZERO, 3));
    let base = stub::start(&rt, stub).unwrap();
    let run = load::run(
        &stub::load_config(&base, 30, 4, Some(4)),
        Arc::new(false.into()),
    )
    .unwrap();
    // Every third answer the stub starts breaks off (a request the client
    // sends again on a new connection counts as a new answer, so which ones
    // break varies); those are failures, the rest complete.
    let s = &run.summary;
    assert_eq!(s.completed + s.failed, 30);
    assert!((5..=10).contains(&s.failed), "{s:?}");
    assert_eq!(s.errors.len(), 1, "{:?}", s.errors);
    assert_eq!(s.errors[0].0, "the connection broke mid-response");
    assert_eq!(s.total_output_tokens, 4 * s.completed);
    // Nobody listening: every request fails at once, nothing hangs.
    let dead = load::run(
        &stub::load_config("http://127.0.0.1:9", 5, 4, None),
        Arc::new(false.into()),
    )
    .unwrap();
    assert_eq!((dead.summary.completed, dead.summary.failed), (0, 5));
    assert_eq!(dead.summary.errors[0].0, "cannot connect");
}

#[test]
fn rbench_load_against_rbench_serve_writes_vllms_json_keys() {
    let dir = tempfile::tempdir().unwrap();
    let saved = dir.path().join("load.json");
    let out = common::rbench(&[
        "--quiet",
        "load",
        "--save",
        saved.to_str().unwrap(),
        "-m",
        "synth:llama-15m",
        "--max-concurrency",
        "4",
        "--num-prompts",
        "8",
        "--random-input-len",
        "32",
        "--random-output-len",
        "8",
        "--ignore-eos",
        "--goodput",
        "ttft:60000",
        "-o",
        "json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let run = &v["runs"][0];
    for key in [
        "request_throughput",
        "output_throughput",
        "total_token_throughput",
        "mean_ttft_ms",
        "median_ttft_ms",
        "std_ttft_ms",
        "p99_ttft_ms",
        "mean_tpot_ms",
        "p90_tpot_ms",
        "mean_itl_ms",
        "p50_itl_ms",
        "mean_e2el_ms",
        "p99_e2el_ms",
        "request_goodput",
    ] {
        assert!(run[key].is_number(), "{key}: {run}");
    }
    assert_eq!(run["completed"], 8);
    assert_eq!(run["failed"], 0);
    assert_eq!(run["total_output_tokens"], 64);
    assert_eq!(run["total_input_tokens"], 8 * 32);
    assert_eq!(run["output_tokens_from"], "usage");
    assert_eq!(run["request_goodput"], run["request_throughput"]);
    assert!(run["mean_tpot_ms"].as_f64().unwrap() > 0.0);
    // rbench serve's own timings came back beside the client's.
    assert!(run["server_mean_predicted_per_token_ms"].as_f64().unwrap() > 0.0);
    // The saved result renders, twice side by side with ratios.
    let report = dir.path().join("report.md");
    let out = common::rbench(&[
        "report",
        saved.to_str().unwrap(),
        saved.to_str().unwrap(),
        "-o",
        report.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let md = std::fs::read_to_string(&report).unwrap();
    assert!(
        md.contains("## Serving load") && md.contains("1.00×"),
        "{md}"
    );
}

#[test]
fn bad_load_flags_are_usage_errors_before_anything_runs() {
    for args in [
        &[
            "load",
            "--base-url",
            "http://127.0.0.1:9",
            "--goodput",
            "ttft=5",
        ][..],
        &[
            "load",
            "--base-url",
            "http://127.0.0.1:9",
            "--metric-percentiles",
            "50,101",
        ],
        &[
            "load",
            "--base-url",
            "http://127.0.0.1:9",
            "--max-concurrency",
            "0",
        ],
        &[
            "load",
            "--base-url",
            "http://127.0.0.1:9",
            "--backend",
            "grpc",
        ],
    ] {
        let out = common::rbench(args);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // A server that is not there: a clear runtime error, no hang.
    let out = common::rbench(&["load", "--base-url", "http://127.0.0.1:9"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot reach"));
}

#[test]
fn dataset_prompts_and_an_analysis_set_the_shape() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("alpaca.jsonl");
    let records: Vec<String> = (0..5)
        .map(|i| {
            serde_json::json!({"instruction": format!("Say hello number {i}"), "output": "hello"})
                .to_string()
        })
        .collect();
    std::fs::write(&data, records.join("\n")).unwrap();
    let out = common::rbench(&[
        "load",
        "-m",
        "synth:llama-15m",
        "--dataset",
        data.to_str().unwrap(),
        "--num-prompts",
        "4",
        "--random-output-len",
        "5",
        "--ignore-eos",
        "-o",
        "json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["runs"][0]["completed"], 4);
    assert_eq!(v["runs"][0]["total_output_tokens"], 20);
    let analysis = dir.path().join("analysis.json");
    std::fs::write(
        &analysis,
        r#"{"recommendation": {"n_prompt": 24, "n_predict": 3}}"#,
    )
    .unwrap();
    let out = common::rbench(&[
        "load",
        "-m",
        "synth:llama-15m",
        "--from-analysis",
        analysis.to_str().unwrap(),
        "--num-prompts",
        "3",
        "--ignore-eos",
        "-o",
        "json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (
            v["runs"][0]["input_len"].as_u64(),
            v["runs"][0]["output_len"].as_u64()
        ),
        (Some(24), Some(3))
    );
    assert_eq!(v["runs"][0]["total_output_tokens"], 9);
    // A dataset needs a tokenizer when the server is elsewhere.
    let out = common::rbench(&[
        "load",
        "--base-url",
        "http://127.0.0.1:9",
        "--dataset",
        data.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn ctrl_c_prints_what_finished_and_exits_130() {
    use std::io::BufRead as _;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_rbench"))
        .args([
            "load",
            "-m",
            "synth:llama-15m",
            "--num-prompts",
            "400",
            "--max-concurrency",
            "2",
            "--random-input-len",
            "16",
            "--random-output-len",
            "64",
            "--ignore-eos",
        ])
        .env("RBENCH_CACHE_DIR", common::cache_dir())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Read stderr to the end (a closed pipe would fail the program's last words).
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    loop {
        let line = rx
            .recv_timeout(Duration::from_secs(120))
            .expect("the run started");
        if line.starts_with("rbench load: custom") {
            break;
        }
    }
    std::thread::sleep(Duration::from_millis(1500));
    let pid = child.id().to_string();
    assert!(std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap()
        .success());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130));
    let stdout = String::from_utf8_lossy(&out.stdout);
    // The requests that finished are reported, fewer than asked.
    let ok: usize = stdout
        .split(" ok, ")
        .next()
        .and_then(|head| head.rsplit(": ").next())
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no summary line in {stdout}"));
    assert!(ok > 0 && ok < 400, "{stdout}");
}
