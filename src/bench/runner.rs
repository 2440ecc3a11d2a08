//! Runs the tests of one loaded model: engine per settings group, warm-up,
//! timed repetitions.

use super::{BenchPlan, BenchRow, EngineKey, ModelFacts, RowPlacement, TestParams};
use crate::engine::{Batch, Engine, EngineConfig, EngineError, Logits};
use crate::kv::KvError;
use crate::model::Model;
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use std::time::{Duration, Instant, SystemTime};

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("test {test}: {source}")]
    Engine {
        test: String,
        #[source]
        source: Box<EngineError>,
    },
    #[error("writing results: {0}")]
    Output(#[from] std::io::Error),
    /// Ctrl-C: rows that finished were handed out, a partial test's
    /// repetitions included.
    #[error("interrupted after {done} of {total} tests")]
    Interrupted { done: usize, total: usize },
}

/// Runs every test of `tests` on `model` in order, handing each finished row
/// to `on_row`; `progress` gets human-readable status lines. Once
/// `stop_requested` says so (the CLI's Ctrl-C) it stops at the end of the
/// current repetition, hands out the row of the repetitions done and returns
/// `Interrupted`.
pub fn run_model(
    model: &Model,
    plan: &BenchPlan,
    tests: &[TestParams],
    stop_requested: &dyn Fn() -> bool,
    progress: &mut dyn FnMut(&str),
    on_row: &mut dyn FnMut(BenchRow) -> std::io::Result<()>,
) -> Result<(), BenchError> {
    let facts = ModelFacts::of(model);
    let placement = RowPlacement::of(model);
    let mut current: Option<(EngineKey, Engine<'_>)> = None;
    let interrupted = |done| BenchError::Interrupted {
        done,
        total: tests.len(),
    };
    for (i, test) in tests.iter().enumerate() {
        if stop_requested() {
            return Err(interrupted(i));
        }
        let name = test.name();
        let fail = |source| BenchError::Engine {
            test: name.clone(),
            source: Box::new(source),
        };
        let key = test.engine_key();
        let mut engine = match current.take() {
            Some((k, engine)) if k == key => engine,
            old => {
                // Free the old engine's KV cache and buffers before making the next.
                drop(old);
                let n_ctx = tests
                    .iter()
                    .filter(|t| t.engine_key() == key)
                    .map(TestParams::n_ctx)
                    .max()
                    .unwrap_or_else(|| test.n_ctx());
                let cfg = EngineConfig {
                    n_ctx,
                    n_ubatch: key.n_ubatch,
                    n_threads: key.n_threads,
                    flash_attn: key.flash_attn,
                    type_k: key.type_k,
                    type_v: key.type_v,
                    batch_invariant: false,
                    kernels: key.kernels,
                    offload_kv: !key.no_kv_offload,
                    reuse_graphs: true,
                };
                Engine::new(model, cfg).map_err(fail)?
            }
        };
        progress(&format!(
            "benchmark {}/{}: {} ({} threads, batch {}, ubatch {}, K {}, V {}, fa {})",
            i + 1,
            tests.len(),
            name,
            test.n_threads,
            test.n_batch,
            test.n_ubatch,
            test.type_k.name(),
            test.type_v.name(),
            if test.flash_attn { "on" } else { "off" }
        ));
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(plan.seed);
        if plan.warmup {
            progress("  warm-up");
            run_once(&mut engine, test, &mut rng).map_err(fail)?;
            if stop_requested() {
                return Err(interrupted(i));
            }
        }
        let test_time = rfc3339_utc(SystemTime::now());
        let mut samples_ns = Vec::with_capacity(plan.repetitions);
        for r in 0..plan.repetitions {
            let elapsed = run_once(&mut engine, test, &mut rng).map_err(fail)?;
            let ns = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
            progress(&format!(
                "  repetition {}/{}: {:.2} t/s",
                r + 1,
                plan.repetitions,
                test.n_timed_tokens() as f64 * 1e9 / ns.max(1) as f64
            ));
            samples_ns.push(ns);
            if stop_requested() {
                break;
            }
        }
        on_row(BenchRow {
            model: facts.clone(),
            params: test.clone(),
            placement: placement.clone(),
            test_time,
            samples_ns,
        })?;
        current = Some((key, engine));
    }
    // A Ctrl-C during the last test cut its repetitions short: still say so.
    if stop_requested() {
        return Err(interrupted(tests.len()));
    }
    Ok(())
}

/// One repetition: empty cache, untimed depth prefill, then the timed prompt
/// and/or generation. Token ids are drawn (and batches built) before the clock starts.
fn run_once(
    engine: &mut Engine<'_>,
    test: &TestParams,
    rng: &mut Xoshiro256PlusPlus,
) -> Result<Duration, EngineError> {
    engine.clear();
    let n_vocab = engine.model().hparams.n_vocab;
    let mut random = |n: usize| -> Vec<u32> { (0..n).map(|_| rng.gen_range(0..n_vocab)).collect() };
    let depth = random(test.n_depth);
    for batch in prompt_batches(&depth, 0, test.n_batch)? {
        engine.decode(&batch)?;
    }
    let prompt = prompt_batches(&random(test.n_prompt), test.n_depth as i32, test.n_batch)?;
    let gen_pos0 = (test.n_depth + test.n_prompt) as i32;
    let gen = random(test.n_gen)
        .iter()
        .enumerate()
        .map(|(i, &t)| Batch::from_prompt(&[t], gen_pos0 + i as i32, 0))
        .collect::<Result<Vec<_>, _>>()?;

    // One logits buffer for every step, as llama.cpp keeps one.
    let mut logits = Logits::default();
    let start = Instant::now();
    for batch in prompt.iter().chain(&gen) {
        engine.decode_into(batch, &mut logits)?;
    }
    Ok(start.elapsed())
}

/// Decode calls of at most `n_batch` tokens, logits for the last of each.
fn prompt_batches(tokens: &[u32], pos0: i32, n_batch: usize) -> Result<Vec<Batch>, KvError> {
    tokens
        .chunks(n_batch.max(1))
        .enumerate()
        .map(|(i, chunk)| Batch::from_prompt(chunk, pos0 + (i * n_batch) as i32, 0))
        .collect()
}

/// `2025-01-31T12:34:56Z`, computed without a calendar crate.
pub fn rfc3339_utc(t: SystemTime) -> String {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian
/// calendar (Howard Hinnant's era-based algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_dates() {
        let at = |s| rfc3339_utc(SystemTime::UNIX_EPOCH + Duration::from_secs(s));
        assert_eq!(at(0), "1970-01-01T00:00:00Z");
        assert_eq!(at(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(at(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(at(4_107_542_399), "2100-02-28T23:59:59Z");
    }

    #[test]
    fn prompt_batches_cover_every_token_once() {
        let tokens: Vec<u32> = (0..10).collect();
        let batches = prompt_batches(&tokens, 5, 4).unwrap();
        assert_eq!(batches.len(), 3);
        let positions: Vec<i32> = batches
            .iter()
            .flat_map(|b| b.places.iter().map(|p| p.pos))
            .collect();
        assert_eq!(positions, (5..15).collect::<Vec<_>>());
        for b in &batches {
            assert_eq!(b.n_outputs(), 1);
            assert_eq!(b.want_logits.last(), Some(&true));
        }
        assert!(prompt_batches(&[], 0, 4).unwrap().is_empty());
    }
}
