//! `rbench analyze` on large and hostile generated files: 200,000 records in bounded memory
//! (peak RSS printed), a 100 MB single line, deeply nested JSON, wrong types, and a
//! compressed JSON array streamed element by element.

mod common;

use common::rbench;
use serde_json::Value;
use std::io::Write;

const MIB: u64 = 1 << 20;

fn run_json(args: &[&str]) -> Value {
    let out = rbench(args);
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("report is JSON")
}

fn nearest_rank(sorted: &[u64], q: f64) -> u64 {
    let rank = ((q / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank - 1]
}

/// Lengths in characters of record `i`: a spread with a long tail.
fn lengths(i: u64) -> (u64, u64) {
    let prompt = 20 + (i * 7919) % 600;
    let output = 4 + ((i * 104_729) % 997) * ((i % 13) + 1) / 8;
    (prompt, output)
}

#[test]
fn two_hundred_thousand_records_in_bounded_memory() {
    const N: u64 = 200_000;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.jsonl");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    let (mut prompts, mut outputs) = (Vec::new(), Vec::new());
    for i in 0..N {
        let (p, o) = lengths(i);
        writeln!(
            f,
            "{{\"prompt\":\"{}\",\"completion\":\"{}\"}}",
            "p".repeat(p as usize),
            "o".repeat(o as usize)
        )
        .unwrap();
        prompts.push(p.div_ceil(4));
        outputs.push(o.div_ceil(4));
    }
    f.flush().unwrap();
    drop(f);
    let size = std::fs::metadata(&path).unwrap().len();

    let report = run_json(&["analyze", path.to_str().unwrap(), "-o", "json"]);
    let rss = report["peak_rss_bytes"].as_u64().unwrap();
    eprintln!(
        "analyze of {N} records ({:.1} MiB): peak RSS {:.1} MiB in {:.2} s",
        size as f64 / MIB as f64,
        rss as f64 / MIB as f64,
        report["seconds"].as_f64().unwrap()
    );
    assert_eq!(report["records"], N);
    prompts.sort_unstable();
    outputs.sort_unstable();
    for (key, sorted) in [("prompt_tokens", &prompts), ("output_tokens", &outputs)] {
        for q in [50, 90, 99] {
            assert_eq!(
                report[key][format!("p{q}")],
                nearest_rank(sorted, q as f64),
                "{key} p{q}"
            );
        }
        assert_eq!(report[key]["max"], *sorted.last().unwrap());
    }
    // Bounded: a fixed working set, far below the file size (which is well above it).
    assert!(size > 128 * MIB, "file only {size} bytes");
    assert!(
        rss < 64 * MIB,
        "peak RSS {rss} bytes for a {size}-byte file"
    );
}

#[test]
fn hostile_lines_are_counted_and_the_run_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hostile.jsonl");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    let good = |f: &mut std::io::BufWriter<std::fs::File>| {
        writeln!(
            f,
            "{{\"question\":\"What is two plus two?\",\"answer\":\"Four.\"}}"
        )
        .unwrap()
    };
    good(&mut f);
    // Line 2: a single 100 MB line.
    write!(f, "{{\"question\":\"").unwrap();
    let block = vec![b'x'; 1 << 20];
    for _ in 0..100 {
        f.write_all(&block).unwrap();
    }
    writeln!(f, "\",\"answer\":\"y\"}}").unwrap();
    good(&mut f);
    // Line 4: nested 100,000 levels deep.
    writeln!(f, "{}{}", "[".repeat(100_000), "]".repeat(100_000)).unwrap();
    // Line 5: deep nesting inside a record.
    writeln!(
        f,
        "{{\"question\":{}1{},\"answer\":\"z\"}}",
        "{\"a\":".repeat(5000),
        "}".repeat(5000)
    )
    .unwrap();
    // Lines 6-8: wrong types.
    writeln!(f, "{{\"question\":[\"a\"],\"answer\":\"b\"}}").unwrap();
    writeln!(f, "{{\"question\":\"a\",\"answer\":null}}").unwrap();
    writeln!(f, "{{\"question\":true,\"answer\":{{\"x\":1}}}}").unwrap();
    // Line 9: not UTF-8.
    f.write_all(b"{\"question\":\"\xc3\x28\",\"answer\":\"b\"}\n")
        .unwrap();
    good(&mut f);
    f.flush().unwrap();
    drop(f);

    let report = run_json(&["analyze", path.to_str().unwrap(), "-o", "json"]);
    assert_eq!(report["records"], 3);
    let by = &report["skipped_by_reason"];
    assert_eq!(by["too_long"], 1);
    assert_eq!(by["bad_json"], 3);
    assert_eq!(by["no_match"], 3);
    let lines: Vec<u64> = report["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["line"].as_u64().unwrap())
        .collect();
    assert_eq!(lines, [2, 4, 5, 6, 7, 8, 9]);
    let rss = report["peak_rss_bytes"].as_u64().unwrap();
    eprintln!(
        "hostile file with a 100 MiB line: peak RSS {:.1} MiB",
        rss as f64 / MIB as f64
    );
    assert!(rss < 96 * MIB, "peak RSS {rss}");
}

#[test]
fn gzip_json_array_is_streamed() {
    const N: u64 = 20_000;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("chat.json.gz");
    let file = std::fs::File::create(&path).unwrap();
    let mut gz =
        flate2::write::GzEncoder::new(std::io::BufWriter::new(file), flate2::Compression::fast());
    gz.write_all(b"[\n").unwrap();
    let mut outputs = Vec::new();
    for i in 0..N {
        let (p, o) = lengths(i);
        let record = serde_json::json!({"messages": [
            {"role": "user", "content": "u".repeat(p as usize)},
            {"role": "assistant", "content": "a".repeat(o as usize)},
        ]});
        let sep = if i + 1 < N { ",\n" } else { "\n" };
        write!(gz, "  {record}{sep}").unwrap();
        outputs.push(o.div_ceil(4));
    }
    gz.write_all(b"]\n").unwrap();
    gz.finish().unwrap().flush().unwrap();

    let report = run_json(&["analyze", path.to_str().unwrap(), "-o", "json"]);
    assert_eq!(report["format"], "json_array+gzip");
    assert_eq!(report["shape"], "messages");
    assert_eq!(report["records"], N);
    outputs.sort_unstable();
    assert_eq!(report["output_tokens"]["p90"], nearest_rank(&outputs, 90.0));
    assert_eq!(report["skipped"], 0);
}

/// Ctrl-C stops reading after the current chunk: what was read is reported (JSON with
/// `"interrupted": true`) and the exit code is 130. The dataset is a FIFO the test keeps
/// feeding, so the signal surely arrives mid-file.
#[cfg(unix)]
#[test]
fn ctrl_c_reports_what_was_read_and_exits_130() {
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("stream.jsonl");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let child = Command::new(env!("CARGO_BIN_EXE_rbench"))
        .args(["analyze", fifo.to_str().unwrap(), "-o", "json", "-t", "2"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Opening blocks until rbench opens the FIFO, after its Ctrl-C handler is installed.
    let mut writer = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
    let batch = "{\"question\":\"abcdefgh\",\"answer\":\"abcd\"}\n".repeat(100);
    for _ in 0..6 {
        writer.write_all(batch.as_bytes()).unwrap();
    }
    std::thread::sleep(Duration::from_millis(300));
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap()
        .success());
    // Keep the file going until rbench stops reading (the write then fails).
    let start = Instant::now();
    while writer.write_all(batch.as_bytes()).is_ok() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "rbench kept reading"
        );
    }
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["interrupted"], true);
    let records = report["records"].as_u64().unwrap();
    assert!(records >= 256, "{records}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("interrupted"));
}
