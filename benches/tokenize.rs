//! Tokenization throughput with the test model's tokenizer, the way `rbench analyze` counts
//! (issue 6 asks for at least 2 MB of text per second per core):
//! `cargo bench --bench tokenize`. Uses RBENCH_TEST_MODEL or the default test-model path.
//!
//! The text is this crate's own sources and docs (prose, code and JSON), cut into records of
//! about 1 KiB, as dataset fields would be.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::Instant;

use rbench::analyze::{self, Counter, Options, RecordReader};
use rbench::gguf::GgufFile;
use rbench::tokenizer::Tokenizer;

const RECORD_BYTES: usize = 1024;
/// The sources are repeated to about this much text, for stable timings.
const TEXT_BYTES: usize = 4 << 20;

/// CPU seconds this process has used, all threads (from /proc; `None` elsewhere). The
/// machine may be shared, so MB per CPU-second is the per-core figure, not MB per wall second.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name in parentheses; utime and stime are the 12th and 13th.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    // USER_HZ is 100 on every Linux configuration rbench runs on.
    Some(ticks / 100.0)
}

fn test_model() -> Option<PathBuf> {
    let path = std::env::var_os("RBENCH_TEST_MODEL")
        .map(PathBuf::from)
        .or_else(|| {
            dirs::home_dir().map(|h| h.join(".cache/rbench-models/gemma-3-270m-q4_k_m.gguf"))
        })?;
    path.is_file().then_some(path)
}

fn collect_text(dir: &Path, out: &mut String) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for p in paths {
        if p.is_dir() {
            collect_text(&p, out);
        } else if matches!(
            p.extension().and_then(|e| e.to_str()),
            Some("rs" | "md" | "jsonl" | "json")
        ) {
            if let Ok(text) = std::fs::read_to_string(&p) {
                out.push_str(&text);
            }
        }
    }
}

/// Cuts text into records of about `RECORD_BYTES`, at character boundaries.
fn records(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let mut cut = RECORD_BYTES.min(rest.len());
        while !rest.is_char_boundary(cut) {
            cut += 1;
        }
        let (head, tail) = rest.split_at(cut);
        out.push(head);
        rest = tail;
    }
    out
}

fn main() {
    let Some(model) = test_model() else {
        eprintln!("skipped tokenize bench: test model not found (run scripts/fetch-test-model.sh or set RBENCH_TEST_MODEL)");
        return;
    };
    let file = GgufFile::open(&model).expect("open model");
    let tok = Tokenizer::from_gguf(&file).expect("tokenizer");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut text = String::new();
    for dir in ["src", "benches", "tests", "datasets"] {
        collect_text(&root.join(dir), &mut text);
    }
    let unit = text.clone();
    while text.len() < TEXT_BYTES {
        text.push_str(&unit);
    }
    let recs = records(&text);
    let mb = text.len() as f64 / 1e6;
    println!(
        "text: {:.2} MB in {} records of ~{RECORD_BYTES} bytes",
        mb,
        recs.len()
    );

    // One core: the counting call analyze makes per field.
    let counter = Counter::Tokenizer(tok.inner());
    let mut best = f64::INFINITY;
    let mut tokens = 0;
    for _ in 0..3 {
        let t = Instant::now();
        tokens = recs
            .iter()
            .map(|r| counter.count(black_box(r)).expect("count"))
            .sum::<u64>();
        best = best.min(t.elapsed().as_secs_f64());
    }
    println!(
        "1 thread : {:6.2} MB/s ({:.0} tokens/s, {:.2} bytes/token)",
        mb / best,
        tokens as f64 / best,
        text.len() as f64 / tokens as f64
    );

    // All cores, through the whole analyze pipeline (JSON parsing included).
    let mut jsonl = Vec::new();
    for r in &recs {
        let line = serde_json::json!({"prompt": r, "completion": ""});
        jsonl.extend_from_slice(line.to_string().as_bytes());
        jsonl.push(b'\n');
    }
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut best = f64::INFINITY;
    let mut best_cpu = f64::INFINITY;
    for _ in 0..3 {
        let reader = RecordReader::new(
            std::io::Cursor::new(jsonl.clone()),
            Path::new("bench"),
            analyze::DEFAULT_MAX_RECORD_BYTES,
        )
        .expect("reader");
        let t = Instant::now();
        let cpu = cpu_seconds();
        let a = analyze::analyze(
            reader,
            &Options {
                shape: None,
                counter,
                chat_template: None,
                threads,
                progress: None,
                stop: None,
            },
        )
        .expect("analyze");
        best = best.min(t.elapsed().as_secs_f64());
        if let (Some(before), Some(after)) = (cpu, cpu_seconds()) {
            best_cpu = best_cpu.min(after - before);
        }
        assert_eq!(a.prompt.sum(), u128::from(tokens));
    }
    println!(
        "{threads} threads: {:6.2} MB/s wall = {:.2} MB/s per thread (analyze pipeline, JSON parsing included)",
        mb / best,
        mb / best / threads as f64
    );
    if best_cpu.is_finite() {
        println!(
            "           {:6.2} MB per CPU-second (per-core throughput, whatever else shares the cores)",
            mb / best_cpu
        );
    }
}
