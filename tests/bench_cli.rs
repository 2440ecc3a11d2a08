//! `rbench pp/tg/bench` end to end with the release binary: every output
//! format parses and agrees, the list syntax expands, bad flags exit 2, a
//! failing model is reported while the others still run.

mod common;

use common::{rbench, test_model};
use serde_json::Value;

const MODEL: &str = "synth:llama-15m";

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs `rbench bench -m MODEL` with tiny sizes plus `extra`, expecting success.
fn bench(extra: &[&str]) -> String {
    let mut args = vec![
        "bench", "-m", MODEL, "-p", "16", "-n", "4", "-r", "2", "-t", "2",
    ];
    args.extend_from_slice(extra);
    let out = rbench(&args);
    assert!(out.status.success(), "{args:?} failed: {}", stderr(&out));
    stdout(&out)
}

/// A minimal CSV reader for rbench's all-fields-quoted lines.
fn csv_fields(line: &str) -> Vec<String> {
    let mut fields = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => fields.push(std::mem::take(&mut cur)),
            (c, _) => cur.push(c),
        }
    }
    fields.push(cur);
    fields
}

/// The t/s column of a markdown table: the mean before " ± ".
fn md_rates(md: &str) -> Vec<(String, f64)> {
    md.lines()
        .skip(2)
        .map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            let ts = cells[cells.len() - 2];
            let mean = ts.split(" ± ").next().unwrap().parse().unwrap();
            (cells[cells.len() - 3].to_string(), mean)
        })
        .collect()
}

const FIELDS: [&str; 29] = [
    "model_filename",
    "model_type",
    "model_size",
    "model_n_params",
    "n_batch",
    "n_ubatch",
    "n_threads",
    "type_k",
    "type_v",
    "flash_attn",
    "n_prompt",
    "n_gen",
    "n_depth",
    "test_time",
    "avg_ns",
    "stddev_ns",
    "avg_ts",
    "stddev_ts",
    "samples_ns",
    "samples_ts",
    "n_gpu_layers",
    "split_mode",
    "main_gpu",
    "devices",
    "tensor_split",
    "no_kv_offload",
    "use_mmap",
    "backends",
    "gpu_info",
];

#[test]
fn json_rows_have_every_field() {
    let rows: Vec<Value> = serde_json::from_str(&bench(&["-pg", "16,4", "-o", "json"])).unwrap();
    assert_eq!(rows.len(), 3);
    for row in &rows {
        for f in FIELDS {
            assert!(row.get(f).is_some(), "missing {f} in {row}");
        }
        assert_eq!(row["synthetic"], true);
        assert_eq!(row["samples_ns"].as_array().unwrap().len(), 2);
        assert!(row["avg_ts"].as_f64().unwrap() > 0.0);
        assert!(row["hardware"]["logical_cores"].as_u64().unwrap() >= 1);
        assert!(row["hardware"]["cpu_features"].is_array());
        assert!(row["build"]["git_commit"].is_string());
        let t = row["test_time"].as_str().unwrap();
        assert!(
            t.len() == 20 && t.ends_with('Z') && t.as_bytes()[10] == b'T',
            "{t}"
        );
    }
    let shapes: Vec<(u64, u64)> = rows
        .iter()
        .map(|r| {
            (
                r["n_prompt"].as_u64().unwrap(),
                r["n_gen"].as_u64().unwrap(),
            )
        })
        .collect();
    // A pp row has n_gen 0, a tg row n_prompt 0.
    assert_eq!(shapes, vec![(16, 0), (0, 4), (16, 4)]);
    assert_eq!(rows[0]["n_threads"], 2);
    assert_eq!(rows[0]["type_k"], "f16");
    assert_eq!(rows[0]["flash_attn"], true);
    assert_eq!(rows[0]["kernels"], "rbench");
    // llama-bench's defaults: everything offloaded where there is a device.
    assert_eq!(rows[0]["n_gpu_layers"], 99);
    assert_eq!(rows[0]["split_mode"], "layer");
    assert_eq!(rows[0]["use_mmap"], true);
    assert_eq!(rows[0]["no_kv_offload"], false);
}

#[test]
fn cpu_placement_rows_say_cpu() {
    let rows: Vec<Value> = serde_json::from_str(&bench(&[
        "-ngl", "0", "-dev", "none", "-mmp", "0,1", "-o", "json",
    ]))
    .unwrap();
    assert_eq!(rows.len(), 4, "pp and tg at -mmp 0 and 1");
    for row in &rows {
        assert_eq!(row["backends"], "CPU", "{row}");
        assert_eq!(row["n_gpu_layers"], 0);
        assert_eq!(row["devices"], "none");
        assert_eq!(row["gpu_info"], "");
    }
    let mmap: Vec<bool> = rows
        .iter()
        .map(|r| r["use_mmap"].as_bool().unwrap())
        .collect();
    assert_eq!(mmap, [false, false, true, true]);
}

#[test]
fn list_devices_prints_the_cpu_and_exits_0() {
    for cmd in ["bench", "run", "perplexity", "parallel"] {
        let out = rbench(&[cmd, "--list-devices"]);
        assert_eq!(out.status.code(), Some(0), "{cmd}: {}", stderr(&out));
        let listed = stdout(&out);
        assert!(listed.contains("CPU"), "{cmd}: {listed}");
    }
}

#[test]
fn an_unknown_device_exits_2_and_lists_the_devices() {
    let out = rbench(&[
        "bench",
        "-m",
        MODEL,
        "-dev",
        "NoSuchGpu0",
        "-p",
        "16",
        "-n",
        "4",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("NoSuchGpu0") && err.contains("CPU"), "{err}");
    assert!(stdout(&out).is_empty());
    let out = rbench(&[
        "run",
        "-m",
        MODEL,
        "-dev",
        "NoSuchGpu0",
        "-p",
        "hi",
        "-n",
        "1",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("NoSuchGpu0"), "{}", stderr(&out));
}

#[test]
fn kernels_list_runs_each_choice_and_labels_rows() {
    let out = bench(&["--kernels", "ggml,rbench", "-o", "json"]);
    let rows: Vec<Value> = serde_json::from_str(&out).unwrap();
    let kernels: Vec<&str> = rows
        .iter()
        .map(|r| r["kernels"].as_str().unwrap())
        .collect();
    assert_eq!(kernels, ["ggml", "ggml", "rbench", "rbench"]);
    // The table shows the column once a choice is not the default.
    let md = bench(&["--kernels", "ggml"]);
    assert!(md.contains("kernels") && md.contains("ggml"), "{md}");
}

/// Runs a tiny bench writing `-o main` to stdout and `-oe side` to stderr:
/// both come from the same timings.
fn bench_two(main: &str, side: &str) -> (String, String) {
    let args = [
        "bench", "-m", MODEL, "-p", "16", "-n", "4", "-r", "2", "-t", "2", "-o", main, "-oe", side,
    ];
    let out = rbench(&args);
    assert!(out.status.success(), "{args:?} failed: {}", stderr(&out));
    (stdout(&out), stderr(&out))
}

fn avg_ts(rows: &[Value]) -> Vec<f64> {
    rows.iter().map(|r| r["avg_ts"].as_f64().unwrap()).collect()
}

#[test]
fn all_formats_parse_and_agree() {
    let (json, md) = bench_two("json", "md");
    let json: Vec<Value> = serde_json::from_str(&json).unwrap();
    let md: String = md
        .lines()
        .filter(|l| l.starts_with('|'))
        .map(|l| format!("{l}\n"))
        .collect();
    let md_rows = md_rates(&md);
    assert_eq!(json.len(), 2);
    assert_eq!(md_rows.len(), 2, "{md}");
    assert!(md.contains("(synthetic)"), "{md}");
    for ((name, ts), (row, want)) in md_rows.iter().zip(json.iter().zip(["pp16", "tg4"])) {
        assert_eq!(name, want);
        let avg = row["avg_ts"].as_f64().unwrap();
        assert!((ts - avg).abs() <= 0.005 + 1e-9, "md {ts} vs json {avg}");
    }

    let (jsonl, csv) = bench_two("jsonl", "csv");
    let jsonl: Vec<Value> = jsonl
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let csv_lines: Vec<Vec<String>> = csv
        .lines()
        .filter(|l| l.starts_with('"'))
        .map(csv_fields)
        .collect();
    assert_eq!(jsonl.len(), 2);
    assert_eq!(csv_lines.len(), 3, "{csv}");
    let header = &csv_lines[0];
    for f in FIELDS {
        assert!(header.iter().any(|h| h == f), "csv lacks {f}");
    }
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    let csv_ts: Vec<f64> = csv_lines[1..]
        .iter()
        .map(|l| l[col("avg_ts")].parse().unwrap())
        .collect();
    for (c, j) in csv_ts.iter().zip(avg_ts(&jsonl)) {
        assert!((c - j).abs() <= 1e-6 * j.max(1.0), "csv {c} vs jsonl {j}");
    }
    for (i, row) in jsonl.iter().enumerate() {
        for k in [
            "n_prompt",
            "n_gen",
            "n_depth",
            "n_threads",
            "model_size",
            "avg_ns",
        ] {
            assert_eq!(csv_lines[i + 1][col(k)], row[k].to_string(), "{k}");
            // The two runs ran the same tests.
            if k != "avg_ns" {
                assert_eq!(json[i][k], row[k], "{k}");
            }
        }
        // avg_ts is the mean of samples_ts.
        let samples: Vec<f64> = row["samples_ts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        let mean = samples.iter().sum::<f64>() / samples.len() as f64;
        assert!((mean - row["avg_ts"].as_f64().unwrap()).abs() < 1e-6 * mean);
    }
}

#[test]
fn list_syntax_expands_to_every_combination() {
    let out = rbench(&[
        "bench",
        "-m",
        MODEL,
        "-p",
        "8-16*2",
        "-n",
        "2,3",
        "-d",
        "0,8",
        "-t",
        "1-2",
        "-r",
        "1",
        "--no-warmup",
        "-fa",
        "on,off",
        "-ub",
        "8",
        "-o",
        "jsonl",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let rows: Vec<Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // (2 pp + 2 tg) × 2 depths × 2 thread counts × 2 fa settings.
    assert_eq!(rows.len(), 4 * 2 * 2 * 2);
    let mut combos: Vec<String> = rows
        .iter()
        .map(|r| {
            format!(
                "{} {} {} {} {}",
                r["n_prompt"], r["n_gen"], r["n_depth"], r["n_threads"], r["flash_attn"]
            )
        })
        .collect();
    combos.sort();
    combos.dedup();
    assert_eq!(combos.len(), rows.len());
    assert!(rows.iter().all(|r| r["n_ubatch"] == 8));
    assert!(rows.iter().any(|r| r["n_prompt"] == 8 && r["n_depth"] == 8));
}

#[test]
fn pp_and_tg_run_only_their_tests() {
    let out = rbench(&["pp", "-m", MODEL, "-p", "16", "-r", "1", "-o", "jsonl"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let rows: Vec<Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 1);
    assert_eq!(
        (rows[0]["n_prompt"].as_u64(), rows[0]["n_gen"].as_u64()),
        (Some(16), Some(0))
    );

    let out = rbench(&["tg", "-m", MODEL, "-n", "4", "-r", "1", "-o", "jsonl"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let rows: Vec<Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 1);
    assert_eq!(
        (rows[0]["n_prompt"].as_u64(), rows[0]["n_gen"].as_u64()),
        (Some(0), Some(4))
    );
}

#[test]
fn invalid_flags_exit_2_before_running() {
    for bad in [
        &["-p", "0"][..],
        &["-t", "0"],
        &["-r", "0"],
        &["-ctk", "q3"],
        &["-ctv", "q8_0", "-fa", "off"],
        &["-p", "8-1"],
        &["-pg", "16"],
        &["-o", "xml"],
        &["-oe", "html"],
        &["-ngl", "x"],
        &["-sm", "row"],
        &["-mmp", "2"],
        &["-ts", "1/-1"],
        &["-mg", "x"],
    ] {
        // A model that does not exist proves nothing was loaded first.
        let mut args = vec!["bench", "-m", "/nonexistent.gguf"];
        args.extend_from_slice(bad);
        let out = rbench(&args);
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {}", stderr(&out));
        let err = stderr(&out);
        assert_eq!(err.trim().lines().count(), 1, "{bad:?}: {err}");
        assert!(err.starts_with("error: "), "{err}");
        assert!(stdout(&out).is_empty());
    }
}

#[test]
fn a_failing_model_does_not_stop_the_others() {
    let out = rbench(&[
        "bench",
        "-m",
        MODEL,
        "-m",
        "/nonexistent.gguf",
        "-p",
        "16",
        "-n",
        "4",
        "-r",
        "1",
        "-o",
        "jsonl",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let rows: Vec<Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 2);
    assert!(rows.iter().all(|r| r["synthetic"] == true));
    let err = stderr(&out);
    assert!(
        err.lines()
            .any(|l| l.starts_with("error: ") && l.contains("/nonexistent.gguf")),
        "{err}"
    );
}

#[test]
fn real_model_reports_llama_bench_fields() {
    let Some(model) = test_model("real_model_reports_llama_bench_fields") else {
        return;
    };
    let out = rbench(&[
        "bench",
        "-m",
        model.to_str().unwrap(),
        "-p",
        "64",
        "-n",
        "16",
        "-r",
        "2",
        "-t",
        "2",
        "-o",
        "json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let rows: Vec<Value> = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(rows.len(), 2);
    for row in &rows {
        let ty = row["model_type"].as_str().unwrap();
        assert!(ty == "gemma3 270M Q4_K - Medium", "{ty}");
        assert_eq!(row["model_size"], 246_587_904u64);
        assert_eq!(row["model_n_params"], 268_098_176u64);
        assert_eq!(row["synthetic"], false);
        assert!(row["avg_ts"].as_f64().unwrap() > 0.0);
    }
    assert_eq!(
        (rows[0]["n_prompt"].as_u64(), rows[0]["n_gen"].as_u64()),
        (Some(64), Some(0))
    );
    assert_eq!(
        (rows[1]["n_prompt"].as_u64(), rows[1]["n_gen"].as_u64()),
        (Some(0), Some(16))
    );
}
