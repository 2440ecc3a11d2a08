//! Streaming detokenization as `rbench serve` does it, against the naive way
//! (decode the whole output again after every token and send the new tail),
//! at the output lengths the Apple-silicon serving report measured, plus the
//! cost of setting up a request's decoder: `cargo bench --bench detokenize`.
//! Uses RBENCH_TEST_MODEL or the default test-model path; the tokens are the
//! README's text, tokenized.

use std::hint::black_box;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use rbench::gguf::GgufFile;
use rbench::serve::text::TextStream;
use rbench::tokenizer::Tokenizer;

const LENGTHS: [usize; 6] = [8, 100, 500, 1000, 2000, 4000];
const ROUNDS: usize = 7;

fn test_model() -> Option<PathBuf> {
    let path = std::env::var_os("RBENCH_TEST_MODEL")
        .map(PathBuf::from)
        .or_else(|| {
            dirs::home_dir().map(|h| h.join(".cache/rbench-models/gemma-3-270m-q4_k_m.gguf"))
        })?;
    path.is_file().then_some(path)
}

/// Median wall time of `f` over [`ROUNDS`] runs.
fn median(mut f: impl FnMut()) -> Duration {
    let mut times: Vec<Duration> = (0..ROUNDS)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect();
    times.sort();
    times[ROUNDS / 2]
}

/// What a server without incremental decoding sends: after each token, the
/// whole output decoded again, minus what was already sent.
fn naive(tok: &Tokenizer, ids: &[u32]) -> usize {
    let mut sent = 0;
    let mut bytes = 0;
    for i in 1..=ids.len() {
        let text = tok.decode(&ids[..i]).expect("decode");
        // A split character decodes as U+FFFD until complete: hold it back.
        if text.ends_with('\u{FFFD}') {
            continue;
        }
        bytes += text.len().saturating_sub(sent);
        sent = text.len();
    }
    bytes
}

fn streaming(tok: &Tokenizer, ids: &[u32]) -> usize {
    let mut stream = TextStream::new(tok, Vec::new());
    let mut bytes = 0;
    for &id in ids {
        bytes += stream.push(id).expect("push").text.len();
    }
    bytes + stream.finish().len()
}

fn main() {
    let Some(model) = test_model() else {
        eprintln!("skipped detokenize bench: test model not found (run scripts/fetch-test-model.sh or set RBENCH_TEST_MODEL)");
        return;
    };
    let file = GgufFile::open(&model).expect("open model");
    let tok = Tokenizer::from_gguf(&file).expect("tokenizer");
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let mut ids = tok.encode(&text, false).expect("encode");
    while ids.len() < *LENGTHS.iter().max().unwrap_or(&0) {
        let again = ids.clone();
        ids.extend(again);
    }
    let setup = median(|| {
        for _ in 0..10_000 {
            black_box(TextStream::new(&tok, vec!["\n\n".to_string()]));
        }
    }) / 10_000;
    println!("request setup (a TextStream with one stop string): {setup:?}");
    println!(
        "{:>7} | {:>12} | {:>12} | {:>8} | {:>14}",
        "tokens", "naive", "streaming", "speedup", "streaming/token"
    );
    for &n in &LENGTHS {
        let ids = &ids[..n];
        let a = naive(&tok, ids);
        let b = streaming(&tok, ids);
        // Both send the same text, byte for byte in total length.
        assert!(a.abs_diff(b) <= 4, "naive {a} bytes, streaming {b}");
        let t_naive = median(|| {
            black_box(naive(&tok, black_box(ids)));
        });
        let t_stream = median(|| {
            black_box(streaming(&tok, black_box(ids)));
        });
        println!(
            "{n:>7} | {:>12?} | {:>12?} | {:>7.1}x | {:>14?}",
            t_naive,
            t_stream,
            t_naive.as_secs_f64() / t_stream.as_secs_f64(),
            t_stream / n as u32
        );
    }
}
