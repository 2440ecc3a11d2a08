//! Counters the engine thread updates and `/metrics` renders in
//! Prometheus's text format. Names follow vLLM's `vllm:` metrics where one
//! exists, under the `rbench:` prefix.

use crate::engine::StopReason;
use crate::kv::prefix::CacheOutcome;
use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Rates are taken over this much recent time.
const RATE_WINDOW: Duration = Duration::from_secs(10);

#[derive(Default)]
struct Window {
    /// (when, prompt tokens, generated tokens) per step.
    steps: VecDeque<(Instant, u64, u64)>,
}

#[derive(Default)]
pub struct Metrics {
    prompt_tokens: AtomicU64,
    generation_tokens: AtomicU64,
    busy_micros: AtomicU64,
    running: AtomicU64,
    waiting: AtomicU64,
    cells_used: AtomicU64,
    cells_total: AtomicU64,
    cache_entries: AtomicU64,
    cache_queries: AtomicU64,
    cache_hits: AtomicU64,
    cache_prefix_hits: AtomicU64,
    cache_misses: AtomicU64,
    cache_tokens_saved: AtomicU64,
    finished_length: AtomicU64,
    finished_eog: AtomicU64,
    cancelled: AtomicU64,
    /// Requests answered with an error status, by the server.
    rejected: AtomicU64,
    window: Mutex<Window>,
}

fn add(counter: &AtomicU64, n: usize) {
    counter.fetch_add(n as u64, Ordering::Relaxed);
}

fn set(gauge: &AtomicU64, n: usize) {
    gauge.store(n as u64, Ordering::Relaxed);
}

fn get(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

/// The numbers a test or a log line wants without parsing the text format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Snapshot {
    pub running: u64,
    pub waiting: u64,
    pub cells_used: u64,
    pub cache_hits: u64,
    pub cache_prefix_hits: u64,
    pub cache_misses: u64,
    pub cache_tokens_saved: u64,
}

impl Metrics {
    pub fn stepped(&self, prompt_tokens: usize, generated: usize, took: Duration) {
        add(&self.prompt_tokens, prompt_tokens);
        add(&self.generation_tokens, generated);
        add(&self.busy_micros, took.as_micros() as usize);
        let now = Instant::now();
        if let Ok(mut w) = self.window.lock() {
            w.steps
                .push_back((now, prompt_tokens as u64, generated as u64));
            while w
                .steps
                .front()
                .is_some_and(|(t, _, _)| now.duration_since(*t) > RATE_WINDOW)
            {
                w.steps.pop_front();
            }
        }
    }

    pub fn set_queue(&self, running: usize, waiting: usize) {
        set(&self.running, running);
        set(&self.waiting, waiting);
    }

    pub fn set_cells(&self, used: usize, total: usize) {
        set(&self.cells_used, used);
        set(&self.cells_total, total);
    }

    pub fn set_cache_entries(&self, n: usize) {
        set(&self.cache_entries, n);
    }

    pub fn cache_lookup(&self, outcome: CacheOutcome, saved: usize) {
        add(&self.cache_queries, 1);
        add(
            match outcome {
                CacheOutcome::Hit => &self.cache_hits,
                CacheOutcome::PrefixHit => &self.cache_prefix_hits,
                CacheOutcome::Miss => &self.cache_misses,
            },
            1,
        );
        add(&self.cache_tokens_saved, saved);
    }

    pub fn finished(&self, stop: StopReason) {
        add(
            match stop {
                StopReason::Length => &self.finished_length,
                StopReason::EndOfGeneration => &self.finished_eog,
            },
            1,
        );
    }

    pub fn cancelled(&self) {
        add(&self.cancelled, 1);
    }

    pub fn rejected(&self) {
        add(&self.rejected, 1);
    }

    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            running: get(&self.running),
            waiting: get(&self.waiting),
            cells_used: get(&self.cells_used),
            cache_hits: get(&self.cache_hits),
            cache_prefix_hits: get(&self.cache_prefix_hits),
            cache_misses: get(&self.cache_misses),
            cache_tokens_saved: get(&self.cache_tokens_saved),
        }
    }

    /// Tokens per second over the last [`RATE_WINDOW`]: (prompt, generated).
    fn rates(&self) -> (f64, f64) {
        let Ok(w) = self.window.lock() else {
            return (0.0, 0.0);
        };
        let now = Instant::now();
        let (p, g) = w
            .steps
            .iter()
            .filter(|(t, _, _)| now.duration_since(*t) <= RATE_WINDOW)
            .fold((0, 0), |(p, g), (_, sp, sg)| (p + sp, g + sg));
        let secs = RATE_WINDOW.as_secs_f64();
        (p as f64 / secs, g as f64 / secs)
    }

    /// Prometheus text exposition format, version 0.0.4.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, samples: &[(&str, f64)]| {
            let _ = writeln!(out, "# HELP rbench:{name} {help}");
            let _ = writeln!(out, "# TYPE rbench:{name} {kind}");
            for (labels, v) in samples {
                let _ = writeln!(out, "rbench:{name}{labels} {v}");
            }
        };
        let c = |a: &AtomicU64| get(a) as f64;
        let (prompt_rate, gen_rate) = self.rates();
        metric(
            "prompt_tokens_total",
            "counter",
            "Prompt tokens computed (cached ones not counted).",
            &[("", c(&self.prompt_tokens))],
        );
        metric(
            "generation_tokens_total",
            "counter",
            "Tokens generated.",
            &[("", c(&self.generation_tokens))],
        );
        metric(
            "prompt_tokens_per_second",
            "gauge",
            "Prompt tokens computed per second over the last 10 s.",
            &[("", prompt_rate)],
        );
        metric(
            "generation_tokens_per_second",
            "gauge",
            "Tokens generated per second over the last 10 s.",
            &[("", gen_rate)],
        );
        metric(
            "engine_busy_seconds_total",
            "counter",
            "Time the engine spent in decode steps.",
            &[("", c(&self.busy_micros) / 1e6)],
        );
        metric(
            "num_requests_running",
            "gauge",
            "Requests in a slot.",
            &[("", c(&self.running))],
        );
        metric(
            "num_requests_waiting",
            "gauge",
            "Requests waiting for a slot.",
            &[("", c(&self.waiting))],
        );
        metric(
            "kv_cells_used",
            "gauge",
            "KV cache cells in use (running requests and prefix-cache entries).",
            &[("", c(&self.cells_used))],
        );
        metric(
            "kv_cells_total",
            "gauge",
            "KV cache cells.",
            &[("", c(&self.cells_total))],
        );
        metric(
            "prefix_cache_entries",
            "gauge",
            "Finished sequences kept for reuse.",
            &[("", c(&self.cache_entries))],
        );
        metric(
            "prefix_cache_queries_total",
            "counter",
            "Requests looked up in the prefix cache.",
            &[("", c(&self.cache_queries))],
        );
        metric(
            "prefix_cache_lookups_total",
            "counter",
            "Prefix-cache lookups by outcome.",
            &[
                ("{outcome=\"HIT\"}", c(&self.cache_hits)),
                ("{outcome=\"PREFIX_HIT\"}", c(&self.cache_prefix_hits)),
                ("{outcome=\"MISS\"}", c(&self.cache_misses)),
            ],
        );
        metric(
            "prefix_cache_hits_total",
            "counter",
            "Lookups that reused cells (HIT and PREFIX_HIT).",
            &[("", c(&self.cache_hits) + c(&self.cache_prefix_hits))],
        );
        metric(
            "prefix_cache_tokens_saved_total",
            "counter",
            "Prompt tokens taken from the prefix cache instead of computed.",
            &[("", c(&self.cache_tokens_saved))],
        );
        metric(
            "request_success_total",
            "counter",
            "Finished requests by finish reason.",
            &[
                ("{finished_reason=\"length\"}", c(&self.finished_length)),
                ("{finished_reason=\"stop\"}", c(&self.finished_eog)),
            ],
        );
        metric(
            "request_cancelled_total",
            "counter",
            "Requests ended early (client gone, stop string, timeout).",
            &[("", c(&self.cancelled))],
        );
        metric(
            "request_rejected_total",
            "counter",
            "Requests answered with an error status.",
            &[("", c(&self.rejected))],
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_with_help_and_type_lines() {
        let m = Metrics::default();
        m.stepped(100, 3, Duration::from_millis(20));
        m.cache_lookup(CacheOutcome::Hit, 99);
        m.cache_lookup(CacheOutcome::Miss, 0);
        m.set_cells(120, 4096);
        let text = m.render();
        for line in [
            "rbench:prompt_tokens_total 100",
            "rbench:generation_tokens_total 3",
            "rbench:prefix_cache_lookups_total{outcome=\"HIT\"} 1",
            "rbench:prefix_cache_tokens_saved_total 99",
            "rbench:kv_cells_used 120",
            "rbench:prompt_tokens_per_second 10",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
        }
        assert!(text.contains("# TYPE rbench:kv_cells_total gauge"));
        assert_eq!(m.snapshot().cache_hits, 1);
    }
}
