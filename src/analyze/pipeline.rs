//! The analysis run: one thread splits the file into chunks of records, worker threads
//! parse, extract and count tokens, and their tallies are merged at the end (so the result
//! does not depend on which worker got which chunk). Only token counts are kept, never the
//! texts, and a bounded channel keeps the chunks in flight few.

use crossbeam::channel;
use serde_json::Value;

use super::chat::{join_messages, ChatTemplate};
use super::error::AnalyzeError;
use super::input::{Item, Layout, RecordReader};
use super::shape::{Exchange, Shape};
use super::{Problem, ProblemKind, SkipCounts, MAX_REPORTED_PROBLEMS};
use crate::bench::stats::Tally;

/// Records read to detect the shape before the workers start.
const DETECT_SAMPLE: usize = 200;
const CHUNK_RECORDS: usize = 256;
const CHUNK_BYTES: usize = 1 << 20;

/// How text becomes a token count.
#[derive(Clone, Copy)]
pub enum Counter<'a> {
    /// Exact count with a tokenizer, without BOS or other added tokens.
    Tokenizer(&'a tokenizers::Tokenizer),
    /// No tokenizer: [`ESTIMATE_RULE`](super::ESTIMATE_RULE).
    Estimate,
}

impl std::fmt::Debug for Counter<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Counter::Tokenizer(_) => f.write_str("Counter::Tokenizer"),
            Counter::Estimate => f.write_str("Counter::Estimate"),
        }
    }
}

impl Counter<'_> {
    pub fn count(&self, text: &str) -> Result<u64, String> {
        match self {
            Counter::Tokenizer(tok) => tok
                .encode_fast(text, false)
                .map(|e| e.len() as u64)
                .map_err(|e| format!("tokenizer failed: {e}")),
            Counter::Estimate => Ok(estimate_tokens(text)),
        }
    }
}

/// The estimate without a tokenizer: one token per four characters, rounded up.
pub fn estimate_tokens(text: &str) -> u64 {
    (text.chars().count() as u64).div_ceil(4)
}

/// How to run an analysis.
pub struct Options<'a> {
    /// The shape to use; detected from the first records when `None`.
    pub shape: Option<Shape>,
    pub counter: Counter<'a>,
    /// Renders chat prompts; without one, messages are joined.
    pub chat_template: Option<&'a ChatTemplate>,
    pub threads: usize,
    /// Called now and then with the bytes read from the file so far.
    pub progress: Option<&'a (dyn Fn(u64) + Sync)>,
    /// Asked between chunks; `true` stops reading (e.g. on Ctrl-C) and the records read so
    /// far are analysed.
    pub stop: Option<&'a (dyn Fn() -> bool + Sync)>,
}

/// What an analysis found, before statistics.
#[derive(Clone, Debug, PartialEq)]
pub struct Analysis {
    pub layout: Layout,
    pub gzip: bool,
    pub shape: Shape,
    /// Records that gave a prompt and an output.
    pub records: u64,
    /// Of those, records whose output is empty (or only whitespace).
    pub empty_outputs: u64,
    pub skipped: SkipCounts,
    /// The first problems by line number.
    pub problems: Vec<Problem>,
    /// Prompt tokens of every record.
    pub prompt: Tally,
    /// Output tokens of the records with a non-empty output.
    pub output: Tally,
    /// Reading stopped early on request: the analysis covers only the start of the file.
    pub interrupted: bool,
}

/// Per-worker results, merged at the end.
#[derive(Default)]
struct Partial {
    records: u64,
    empty_outputs: u64,
    skipped: SkipCounts,
    problems: Vec<Problem>,
    prompt: Tally,
    output: Tally,
}

impl Partial {
    fn problem(&mut self, problem: Problem) {
        self.skipped.add(problem.kind);
        self.problems.push(problem);
        if self.problems.len() > 2 * MAX_REPORTED_PROBLEMS {
            keep_first_problems(&mut self.problems);
        }
    }

    fn merge(&mut self, other: Partial) {
        self.records += other.records;
        self.empty_outputs += other.empty_outputs;
        self.skipped.merge(&other.skipped);
        self.problems.extend(other.problems);
        keep_first_problems(&mut self.problems);
        self.prompt.merge(&other.prompt);
        self.output.merge(&other.output);
    }
}

fn keep_first_problems(problems: &mut Vec<Problem>) {
    problems.sort_by_key(|p| p.line);
    problems.truncate(MAX_REPORTED_PROBLEMS);
}

pub(crate) fn parse(bytes: &[u8]) -> Result<Value, String> {
    if let Err(e) = std::str::from_utf8(bytes) {
        return Err(format!(
            "not valid UTF-8 (bad byte at offset {})",
            e.valid_up_to()
        ));
    }
    serde_json::from_slice(bytes).map_err(|e| format!("not valid JSON: {e}"))
}

/// Parses, extracts and counts one record.
fn process(line: u64, bytes: &[u8], shape: &Shape, opts: &Options<'_>, out: &mut Partial) {
    let problem = |kind, reason| Problem { line, kind, reason };
    let value = match parse(bytes) {
        Ok(v) => v,
        Err(reason) => return out.problem(problem(ProblemKind::BadJson, reason)),
    };
    let exchange = match shape.extract(&value) {
        Ok(e) => e,
        Err(reason) => return out.problem(problem(ProblemKind::NoMatch, reason)),
    };
    drop(value);
    let prompt = match &exchange {
        Exchange::Text { prompt, .. } => Ok(prompt.clone()),
        Exchange::Chat { history, .. } => match opts.chat_template {
            Some(template) => template.render(history),
            None => Ok(join_messages(history)),
        },
    };
    let prompt = match prompt {
        Ok(p) => p,
        Err(reason) => return out.problem(problem(ProblemKind::Template, reason)),
    };
    let output = exchange.output();
    let counts = opts
        .counter
        .count(&prompt)
        .and_then(|p| Ok((p, opts.counter.count(output)?)));
    let (prompt_tokens, output_tokens) = match counts {
        Ok(c) => c,
        Err(reason) => return out.problem(problem(ProblemKind::Tokenizer, reason)),
    };
    out.records += 1;
    out.prompt.add(prompt_tokens);
    if output.trim().is_empty() {
        out.empty_outputs += 1;
    } else {
        out.output.add(output_tokens);
    }
}

fn process_items(items: Vec<Item>, shape: &Shape, opts: &Options<'_>, out: &mut Partial) {
    for item in items {
        match item {
            Item::Record(r) => process(r.line, &r.bytes, shape, opts, out),
            Item::Problem(p) => out.problem(p),
        }
    }
}

/// Reads the first records and finds their shape; returns them to be analysed too.
pub(crate) fn detect_shape(reader: &mut RecordReader) -> Result<(Shape, Vec<Item>), AnalyzeError> {
    let mut items = Vec::new();
    let mut samples = Vec::new();
    let mut records = 0;
    let mut first_error = None;
    while records < DETECT_SAMPLE {
        let Some(item) = reader.next_item()? else {
            break;
        };
        if let Item::Record(r) = &item {
            records += 1;
            match parse(&r.bytes) {
                Ok(v) => samples.push(v),
                Err(reason) => {
                    first_error.get_or_insert((r.line, reason));
                }
            }
        }
        items.push(item);
    }
    match Shape::detect(&samples) {
        Some((shape, _)) => Ok((shape, items)),
        None if records == 0 => Err(AnalyzeError::NoRecords {
            skipped: items.len() as u64,
        }),
        None if samples.is_empty() => {
            let (line, reason) = first_error.unwrap_or_default();
            Err(AnalyzeError::NotJson {
                sampled: records,
                line,
                reason,
            })
        }
        None => Err(AnalyzeError::NoShape {
            sampled: records,
            keys: sample_keys(&samples),
        }),
    }
}

/// The top-level keys of the sampled records, for the "no shape" message.
fn sample_keys(samples: &[Value]) -> String {
    let mut keys: Vec<&str> = samples
        .iter()
        .filter_map(Value::as_object)
        .flat_map(|m| m.keys().map(String::as_str))
        .collect();
    keys.sort_unstable();
    keys.dedup();
    keys.truncate(20);
    if keys.is_empty() {
        "none".into()
    } else {
        keys.join(", ")
    }
}

/// Analyses every record the reader gives.
pub fn analyze(mut reader: RecordReader, opts: &Options<'_>) -> Result<Analysis, AnalyzeError> {
    let (shape, first_items) = match &opts.shape {
        Some(shape) => (shape.clone(), Vec::new()),
        None => detect_shape(&mut reader)?,
    };
    let (layout, gzip) = (reader.layout(), reader.is_gzip());
    let workers = opts.threads.max(1);
    let (tx, rx) = channel::bounded::<Vec<Item>>(2 * workers);

    let (total, read_result) = std::thread::scope(|scope| {
        let shape = &shape;
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                let rx = rx.clone();
                scope.spawn(move || {
                    let mut part = Partial::default();
                    for chunk in rx {
                        process_items(chunk, shape, opts, &mut part);
                    }
                    part
                })
            })
            .collect();
        drop(rx);
        let read_result = feed(&mut reader, first_items, &tx, opts);
        drop(tx);
        let mut total = Partial::default();
        for handle in handles {
            // A worker only panics on a bug; pass the panic on rather than hide it.
            match handle.join() {
                Ok(part) => total.merge(part),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        (total, read_result)
    });
    let interrupted = read_result?;

    if total.records == 0 {
        return Err(AnalyzeError::NoRecords {
            skipped: total.skipped.total(),
        });
    }
    Ok(Analysis {
        layout,
        gzip,
        shape,
        records: total.records,
        empty_outputs: total.empty_outputs,
        skipped: total.skipped,
        problems: total.problems,
        prompt: total.prompt,
        output: total.output,
        interrupted,
    })
}

/// Sends the records to the workers in chunks; `Ok(true)` when asked to stop early.
fn feed(
    reader: &mut RecordReader,
    first_items: Vec<Item>,
    tx: &channel::Sender<Vec<Item>>,
    opts: &Options<'_>,
) -> Result<bool, AnalyzeError> {
    let mut chunk = first_items;
    let mut chunk_bytes = 0usize;
    loop {
        let item = reader.next_item()?;
        let at_end = item.is_none();
        if let Some(item) = item {
            if let Item::Record(r) = &item {
                chunk_bytes += r.bytes.len();
            }
            chunk.push(item);
        }
        if at_end || chunk.len() >= CHUNK_RECORDS || chunk_bytes >= CHUNK_BYTES {
            if !chunk.is_empty() && tx.send(std::mem::take(&mut chunk)).is_err() {
                // Workers only stop early when they are gone; nothing more to do.
                return Ok(false);
            }
            chunk_bytes = 0;
            if let Some(report) = opts.progress {
                report(reader.bytes_read());
            }
            if !at_end && opts.stop.is_some_and(|stop| stop()) {
                return Ok(true);
            }
        }
        if at_end {
            return Ok(false);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn run(data: &str, shape: Option<Shape>, threads: usize) -> Result<Analysis, AnalyzeError> {
        let reader = RecordReader::new(
            std::io::Cursor::new(data.as_bytes().to_vec()),
            Path::new("t"),
            1 << 20,
        )?;
        analyze(
            reader,
            &Options {
                shape,
                counter: Counter::Estimate,
                chat_template: None,
                threads,
                progress: None,
                stop: None,
            },
        )
    }

    #[test]
    fn estimate_rounds_characters_up() {
        assert_eq!(estimate_tokens(""), 0);
        assert_eq!(estimate_tokens("abcd"), 1);
        assert_eq!(estimate_tokens("abcde"), 2);
        // Characters, not bytes: four 3-byte characters are one token.
        assert_eq!(estimate_tokens("日本語日"), 1);
    }

    #[test]
    fn counts_problems_and_empty_outputs() {
        let data = "{\"prompt\":\"abcdefgh\",\"completion\":\"abcd\"}\n\
                    not json\n\
                    {\"prompt\":\"x\",\"completion\":\"\"}\n\
                    {\"prompt\":\"x\",\"completion\":7}\n\
                    {\"prompt\":\"abcdefghi\",\"completion\":\"abcdefghijklmnopq\"}\n";
        let a = run(data, None, 3).unwrap();
        assert_eq!(a.shape, Shape::PromptCompletion);
        assert_eq!((a.records, a.empty_outputs), (3, 1));
        assert_eq!((a.skipped.bad_json, a.skipped.no_match), (1, 1));
        let lines: Vec<u64> = a.problems.iter().map(|p| p.line).collect();
        assert_eq!(lines, [2, 4]);
        assert_eq!(
            a.prompt.iter().collect::<Vec<_>>(),
            [(1, 1), (2, 1), (3, 1)]
        );
        assert_eq!(a.output.iter().collect::<Vec<_>>(), [(1, 1), (5, 1)]);
    }

    #[test]
    fn result_does_not_depend_on_threads_and_keeps_first_ten_problems() {
        let mut data = String::new();
        for i in 0..3000 {
            if i % 7 == 3 {
                data.push_str("{broken\n");
            } else {
                data.push_str(&format!(
                    "{{\"question\":\"{}\",\"answer\":\"{}\"}}\n",
                    "q".repeat(i % 50),
                    "a".repeat(i % 300 + 1)
                ));
            }
        }
        let one = run(&data, None, 1).unwrap();
        let four = run(&data, None, 4).unwrap();
        assert_eq!(one, four);
        assert_eq!(one.skipped.bad_json, 3000 / 7 + 1);
        let lines: Vec<u64> = one.problems.iter().map(|p| p.line).collect();
        assert_eq!(lines, (0..10).map(|k| 4 + 7 * k).collect::<Vec<u64>>());
    }

    #[test]
    fn stop_request_ends_reading_early() {
        let line = "{\"prompt\":\"abcd\",\"completion\":\"abcd\"}\n";
        let data = line.repeat(10 * CHUNK_RECORDS);
        let reader = RecordReader::new(
            std::io::Cursor::new(data.into_bytes()),
            Path::new("t"),
            1 << 20,
        )
        .unwrap();
        let asked = std::sync::atomic::AtomicUsize::new(0);
        // Stop at the second check: two chunks sent.
        let stop = || asked.fetch_add(1, std::sync::atomic::Ordering::Relaxed) >= 1;
        let a = analyze(
            reader,
            &Options {
                shape: None,
                counter: Counter::Estimate,
                chat_template: None,
                threads: 2,
                progress: None,
                stop: Some(&stop),
            },
        )
        .unwrap();
        assert!(a.interrupted);
        assert_eq!(a.records, 2 * CHUNK_RECORDS as u64);
        assert!(!run(line, None, 1).unwrap().interrupted);
    }

    #[test]
    fn unknown_shape_and_empty_file_are_errors() {
        let err = run("{\"text\":\"a\",\"label\":1}\n", None, 1).unwrap_err();
        assert!(err.to_string().contains("label, text"), "{err}");
        assert!(matches!(
            run("", None, 1),
            Err(AnalyzeError::NoRecords { .. })
        ));
        assert!(matches!(
            run("{\"a\":1}\n", Some(Shape::QuestionAnswer), 1),
            Err(AnalyzeError::NoRecords { skipped: 1 })
        ));
    }
}
