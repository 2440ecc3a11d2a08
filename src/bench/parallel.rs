//! `rbench parallel`: throughput and latency of N sequences served at once
//! by continuous batching, per worker count, and what to run with.
//!
//! What is timed: every request counts as submitted when its worker count's
//! run starts. Prompt t/s counts the decode time of steps that carried prompt
//! tokens; generation t/s the decode time of steps that carried only
//! generated tokens (llama-batched-bench's S_PP and S_TG when all requests
//! start together). Overall t/s is all tokens over the run's wall time,
//! sampling included; latencies are wall-clock as a client would see them.

use super::stats;
use crate::engine::{Completion, ServeReport};
use crate::format::{table, Align};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Default TPOT p99 budget for interactive use (`parallel` and `report`).
pub const DEFAULT_TPOT_BUDGET_MS: f64 = 100.0;
/// Efficiency at or above this is linear scaling; under it, sublinear.
pub const LINEAR_EFFICIENCY: f64 = 0.9;
/// Below this efficiency, adding workers is called wasteful.
pub const LOW_EFFICIENCY: f64 = 0.75;

/// What the recommendation reads of one worker count's run: the live
/// [`WorkerRun`] and a saved run read back by `rbench report` alike, so the
/// terminal, the JSON and the report recommend the same thing.
pub trait ScalingPoint {
    fn workers(&self) -> u64;
    fn gen_tps(&self) -> f64;
    fn overall_tps(&self) -> f64;
    /// Unknown counts as 0 (not linear).
    fn efficiency(&self) -> f64;
    /// `None` where no TPOT was measured (it then meets any budget).
    fn tpot_p99_ms(&self) -> Option<f64>;
}

/// The interactive pick: the highest generation t/s whose TPOT p99 stays
/// within `tpot_budget_ms`.
pub fn interactive_pick<T: ScalingPoint>(runs: &[T], tpot_budget_ms: f64) -> Option<&T> {
    runs.iter()
        .filter(|r| r.tpot_p99_ms().is_none_or(|t| t <= tpot_budget_ms))
        .max_by(|a, b| a.gen_tps().total_cmp(&b.gen_tps()))
}

/// The batch (offline) pick: the highest overall t/s.
pub fn batch_pick<T: ScalingPoint>(runs: &[T]) -> Option<&T> {
    runs.iter()
        .max_by(|a, b| a.overall_tps().total_cmp(&b.overall_tps()))
}

/// The smallest worker count whose efficiency is under `limit`.
pub fn first_below<T: ScalingPoint>(runs: &[T], limit: f64) -> Option<u64> {
    runs.iter()
        .filter(|r| r.efficiency() < limit)
        .map(ScalingPoint::workers)
        .min()
}

impl ScalingPoint for WorkerRun {
    fn workers(&self) -> u64 {
        self.workers as u64
    }
    fn gen_tps(&self) -> f64 {
        self.gen_tps
    }
    fn overall_tps(&self) -> f64 {
        self.overall_tps
    }
    fn efficiency(&self) -> f64 {
        self.efficiency
    }
    fn tpot_p99_ms(&self) -> Option<f64> {
        Some(self.tpot_ms.p99)
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
}

impl Latency {
    /// Mean and nearest-rank percentiles; all zero without samples.
    pub fn of(ms: &[f64]) -> Latency {
        let p = |q| stats::percentile(ms, q).unwrap_or(0.0);
        Latency {
            mean: stats::mean(ms).unwrap_or(0.0),
            p50: p(50.0),
            p90: p(90.0),
            p99: p(99.0),
        }
    }
}

/// The shared-prefix comparison of one worker count.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PrefixSharing {
    pub tokens: usize,
    /// Prompt tokens not computed thanks to sharing.
    pub tokens_saved: usize,
    pub wall_s_shared: f64,
    pub wall_s_unshared: f64,
    /// Unshared wall time ÷ shared wall time.
    pub speedup: f64,
}

/// One worker count's results.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WorkerRun {
    pub workers: usize,
    pub requests: usize,
    /// Prompt tokens per request (the longest one with a dataset).
    pub n_prompt: usize,
    pub n_predict: usize,
    /// Prompt tokens decoded in all (a shared prefix once).
    pub prompt_tokens: usize,
    /// Tokens generated in all.
    pub output_tokens: usize,
    pub prompt_tps: f64,
    pub gen_tps: f64,
    pub overall_tps: f64,
    /// Generation t/s ÷ generation t/s of the baseline worker count.
    pub speedup: f64,
    /// Speedup ÷ (workers ÷ baseline workers).
    pub efficiency: f64,
    /// Most KV cells in use at once.
    pub kv_cells: usize,
    pub wall_s: f64,
    pub prompt_s: f64,
    pub gen_s: f64,
    pub ttft_ms: Latency,
    pub tpot_ms: Latency,
    pub itl_ms: Latency,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shared_prefix: Option<PrefixSharing>,
}

impl WorkerRun {
    /// Turns a finished run into its figures; speedup and efficiency are
    /// filled in by [`fill_scaling`] once the baseline is known.
    pub fn from_report(
        workers: usize,
        n_predict: usize,
        prefix_tokens: usize,
        report: &ServeReport,
    ) -> WorkerRun {
        let secs = Duration::as_secs_f64;
        let (mut prompt_tokens, mut prompt_s) = (prefix_tokens, secs(&report.prefix_decode));
        let (mut gen_tokens, mut gen_s) = (0, 0.0);
        for step in &report.steps {
            if step.prompt_tokens > 0 {
                prompt_tokens += step.prompt_tokens;
                prompt_s += secs(&step.decode);
            } else {
                gen_tokens += step.gen_tokens;
                gen_s += secs(&step.decode);
            }
        }
        let output_tokens: usize = report.completions.iter().map(|c| c.tokens.len()).sum();
        let wall_s = secs(&(report.finished - report.started));
        let rate = |n: usize, s: f64| if s > 0.0 { n as f64 / s } else { 0.0 };
        let (ttft, tpot, itl) = latencies(report);
        WorkerRun {
            workers,
            requests: report.completions.len(),
            n_prompt: report
                .completions
                .iter()
                .map(|c| c.prompt_tokens)
                .max()
                .unwrap_or(0),
            n_predict,
            prompt_tokens,
            output_tokens,
            prompt_tps: rate(prompt_tokens, prompt_s),
            gen_tps: rate(gen_tokens, gen_s),
            overall_tps: rate(prompt_tokens + output_tokens, wall_s),
            speedup: 1.0,
            efficiency: 1.0,
            kv_cells: report.peak_cells,
            wall_s,
            prompt_s,
            gen_s,
            ttft_ms: Latency::of(&ttft),
            tpot_ms: Latency::of(&tpot),
            itl_ms: Latency::of(&itl),
            shared_prefix: None,
        }
    }
}

/// Per request: time to first token (from submission), time per output token
/// after the first; and every inter-token gap of every request. All in ms.
fn latencies(report: &ServeReport) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let mut ttft = Vec::new();
    let mut tpot = Vec::new();
    let mut itl = Vec::new();
    for c in &report.completions {
        let Completion { token_times, .. } = c;
        if let Some(&first) = token_times.first() {
            ttft.push(ms(first - report.started));
        }
        if let (Some(&first), Some(&last)) = (token_times.first(), token_times.last()) {
            if token_times.len() >= 2 {
                tpot.push(ms(last - first) / (token_times.len() - 1) as f64);
            }
        }
        itl.extend(token_times.windows(2).map(|w| ms(w[1] - w[0])));
    }
    (ttft, tpot, itl)
}

/// Speedup and efficiency against the smallest worker count that ran.
pub fn fill_scaling(runs: &mut [WorkerRun]) {
    let Some(base) = runs.iter().min_by_key(|r| r.workers).cloned() else {
        return;
    };
    for r in runs.iter_mut() {
        r.speedup = if base.gen_tps > 0.0 {
            r.gen_tps / base.gen_tps
        } else {
            0.0
        };
        let scale = r.workers as f64 / base.workers as f64;
        r.efficiency = r.speedup / scale;
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InteractivePick {
    pub workers: usize,
    pub gen_tps: f64,
    pub tpot_p99_ms: f64,
    pub budget_ms: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OfflinePick {
    pub workers: usize,
    pub overall_tps: f64,
    pub gen_tps: f64,
    pub efficiency: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Recommendation {
    /// Highest generation t/s whose TPOT p99 stays within the budget.
    pub interactive: Option<InteractivePick>,
    /// Highest overall t/s.
    pub offline: Option<OfflinePick>,
    /// The first worker count whose efficiency fell under 90%.
    pub sublinear_from: Option<usize>,
    /// The first worker count whose efficiency fell under 75%.
    pub efficiency_under_75_from: Option<usize>,
}

pub fn recommend(runs: &[WorkerRun], tpot_budget_ms: f64) -> Recommendation {
    let first_under = |limit: f64| first_below(runs, limit).map(|w| w as usize);
    let interactive = interactive_pick(runs, tpot_budget_ms).map(|r| InteractivePick {
        workers: r.workers,
        gen_tps: r.gen_tps,
        tpot_p99_ms: r.tpot_ms.p99,
        budget_ms: tpot_budget_ms,
    });
    let offline = batch_pick(runs).map(|r| OfflinePick {
        workers: r.workers,
        overall_tps: r.overall_tps,
        gen_tps: r.gen_tps,
        efficiency: r.efficiency,
    });
    Recommendation {
        interactive,
        offline,
        sublinear_from: first_under(LINEAR_EFFICIENCY),
        efficiency_under_75_from: first_under(LOW_EFFICIENCY),
    }
}

/// Sentences a person would write about the runs.
pub fn analysis_lines(
    runs: &[WorkerRun],
    rec: &Recommendation,
    tpot_budget_ms: f64,
) -> Vec<String> {
    let mut lines = Vec::new();
    let mut sorted: Vec<&WorkerRun> = runs.iter().collect();
    sorted.sort_by_key(|r| r.workers);
    let Some(base) = sorted.first() else {
        return lines;
    };
    let base_name = if base.workers == 1 {
        "1 worker".to_string()
    } else {
        format!("{} workers (the smallest count run)", base.workers)
    };
    lines.push(format!(
        "Speedup and efficiency compare generation t/s with {base_name}: {:.1} t/s.",
        base.gen_tps
    ));
    match rec.sublinear_from.and_then(|w| sorted.iter().find(|r| r.workers == w)) {
        Some(r) => lines.push(format!(
            "Scaling turns sublinear at {} workers: {:.2}× the throughput for {}× the workers ({:.0}% efficiency).",
            r.workers,
            r.speedup,
            r.workers / base.workers.max(1),
            r.efficiency * 100.0
        )),
        None if sorted.len() > 1 => lines.push(format!(
            "Scaling stays near-linear up to {} workers (efficiency at least {:.0}%).",
            sorted.last().map_or(0, |r| r.workers),
            LINEAR_EFFICIENCY * 100.0
        )),
        None => {}
    }
    if let Some(r) = rec
        .efficiency_under_75_from
        .and_then(|w| sorted.iter().find(|r| r.workers == w))
    {
        lines.push(format!(
            "Efficiency drops under 75% at {} workers ({:.0}%): beyond this, more workers mostly add latency.",
            r.workers,
            r.efficiency * 100.0
        ));
    }
    match &rec.interactive {
        Some(p) => lines.push(format!(
            "Interactive use: {} workers, {:.1} generated t/s in all with TPOT p99 {:.1} ms (budget {:.0} ms).",
            p.workers, p.gen_tps, p.tpot_p99_ms, p.budget_ms
        )),
        None => lines.push(format!(
            "Interactive use: no worker count kept TPOT p99 within {tpot_budget_ms:.0} ms."
        )),
    }
    if let Some(p) = &rec.offline {
        lines.push(format!(
            "Offline throughput: {} workers, {:.1} t/s overall ({:.1} generated t/s, {:.0}% efficiency).",
            p.workers,
            p.overall_tps,
            p.gen_tps,
            p.efficiency * 100.0
        ));
    }
    lines
}

/// The JSON document of a parallel run (`-o json`, `--save`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ParallelResult {
    pub model: String,
    pub n_ctx: usize,
    pub kv_cache_bytes: u64,
    pub n_threads: usize,
    pub flash_attn: bool,
    /// Who computed weight matmuls: `rbench` or `ggml`.
    #[serde(default)]
    pub kernels: String,
    pub type_k: String,
    pub type_v: String,
    pub tpot_budget_ms: f64,
    pub runs: Vec<WorkerRun>,
    pub recommendation: Recommendation,
    /// What went wrong after the runs listed, if anything did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub interrupted: bool,
}

/// The columns of the scaling table (terminal and `rbench report` alike).
pub const SCALING_HEADER: [&str; 9] = [
    "Workers",
    "Prompt Tokens",
    "Output Tokens",
    "Total KV",
    "Prompt t/s",
    "Generation t/s",
    "Overall t/s",
    "Speedup",
    "Efficiency",
];

pub fn scaling_table(runs: &[WorkerRun]) -> String {
    let rows = runs.iter().map(|r| {
        vec![
            r.workers.to_string(),
            r.prompt_tokens.to_string(),
            r.output_tokens.to_string(),
            r.kv_cells.to_string(),
            format!("{:.1}", r.prompt_tps),
            format!("{:.1}", r.gen_tps),
            format!("{:.1}", r.overall_tps),
            format!("{:.2}×", r.speedup),
            format!("{:.0}%", r.efficiency * 100.0),
        ]
    });
    table(&SCALING_HEADER, rows, |_| Align::Left)
}

pub fn latency_table(runs: &[WorkerRun]) -> String {
    let cell = |l: &Latency| format!("{:.1} / {:.1} / {:.1} / {:.1}", l.mean, l.p50, l.p90, l.p99);
    let header = [
        "Workers",
        "TTFT ms (mean / p50 / p90 / p99)",
        "TPOT ms (mean / p50 / p90 / p99)",
        "ITL ms (mean / p50 / p90 / p99)",
    ];
    let rows = runs.iter().map(|r| {
        vec![
            r.workers.to_string(),
            cell(&r.ttft_ms),
            cell(&r.tpot_ms),
            cell(&r.itl_ms),
        ]
    });
    table(&header, rows, |_| Align::Left)
}

pub fn prefix_table(runs: &[WorkerRun]) -> Option<String> {
    if runs.iter().all(|r| r.shared_prefix.is_none()) {
        return None;
    }
    let header = [
        "Workers",
        "Shared prefix",
        "Tokens saved",
        "Wall s shared",
        "Wall s unshared",
        "Speedup",
    ];
    let rows = runs.iter().filter_map(|r| {
        r.shared_prefix.as_ref().map(|p| {
            vec![
                r.workers.to_string(),
                p.tokens.to_string(),
                p.tokens_saved.to_string(),
                format!("{:.2}", p.wall_s_shared),
                format!("{:.2}", p.wall_s_unshared),
                format!("{:.2}×", p.speedup),
            ]
        })
    });
    Some(table(&header, rows, |_| Align::Left))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::scheduler::{Step, StopReason};
    use std::time::Instant;

    fn run(workers: usize, gen_tps: f64, overall: f64, tpot_p99: f64) -> WorkerRun {
        WorkerRun {
            workers,
            requests: workers,
            n_prompt: 128,
            n_predict: 128,
            prompt_tokens: 128 * workers,
            output_tokens: 128 * workers,
            prompt_tps: 600.0,
            gen_tps,
            overall_tps: overall,
            speedup: 1.0,
            efficiency: 1.0,
            kv_cells: 256 * workers,
            wall_s: 1.0,
            prompt_s: 0.1,
            gen_s: 0.9,
            ttft_ms: Latency::default(),
            tpot_ms: Latency {
                p99: tpot_p99,
                ..Latency::default()
            },
            itl_ms: Latency::default(),
            shared_prefix: None,
        }
    }

    #[test]
    fn scaling_is_against_the_smallest_worker_count() {
        let mut runs = vec![
            run(1, 60.0, 100.0, 17.0),
            run(2, 110.0, 190.0, 19.0),
            run(4, 160.0, 260.0, 26.0),
            run(8, 170.0, 280.0, 120.0),
        ];
        fill_scaling(&mut runs);
        assert!((runs[1].speedup - 110.0 / 60.0).abs() < 1e-9);
        assert!((runs[2].efficiency - 160.0 / 60.0 / 4.0).abs() < 1e-9);
        let rec = recommend(&runs, DEFAULT_TPOT_BUDGET_MS);
        // 2 workers: 0.917 efficiency; 4: 0.667 → sublinear from 4, under 75% from 4.
        assert_eq!(rec.sublinear_from, Some(4));
        assert_eq!(rec.efficiency_under_75_from, Some(4));
        // 8 workers break the TPOT budget: interactive picks 4.
        assert_eq!(rec.interactive.as_ref().map(|p| p.workers), Some(4));
        assert_eq!(rec.offline.as_ref().map(|p| p.workers), Some(8));
        let text = analysis_lines(&runs, &rec, DEFAULT_TPOT_BUDGET_MS).join("\n");
        assert!(text.contains("sublinear at 4 workers"), "{text}");
        assert!(text.contains("Interactive use: 4 workers"), "{text}");
    }

    #[test]
    fn without_a_run_inside_the_budget_nothing_is_recommended_for_interactive() {
        let mut runs = vec![run(1, 60.0, 100.0, 500.0)];
        fill_scaling(&mut runs);
        let rec = recommend(&runs, 100.0);
        assert!(rec.interactive.is_none());
        assert!(analysis_lines(&runs, &rec, 100.0)
            .join(" ")
            .contains("no worker count kept TPOT p99 within 100 ms"));
    }

    #[test]
    fn figures_follow_from_steps_and_token_times() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let completion = |index, first: u64| Completion {
            index,
            prompt_tokens: 4,
            tokens: vec![1, 2, 3],
            stop: StopReason::Length,
            admitted: t0,
            token_times: vec![t0 + ms(first), t0 + ms(first + 10), t0 + ms(first + 30)],
            cached_tokens: 0,
            cache: crate::kv::prefix::CacheOutcome::Miss,
        };
        let report = ServeReport {
            started: t0,
            finished: t0 + ms(100),
            completions: vec![completion(0, 20), completion(1, 40)],
            steps: vec![
                Step {
                    prompt_tokens: 8,
                    gen_tokens: 0,
                    decode: ms(16),
                },
                Step {
                    prompt_tokens: 0,
                    gen_tokens: 2,
                    decode: ms(10),
                },
                Step {
                    prompt_tokens: 0,
                    gen_tokens: 2,
                    decode: ms(10),
                },
            ],
            prefix_decode: Duration::ZERO,
            peak_cells: 12,
            interrupted: false,
        };
        let r = WorkerRun::from_report(2, 3, 0, &report);
        assert_eq!((r.prompt_tokens, r.output_tokens), (8, 6));
        assert!((r.prompt_tps - 500.0).abs() < 1e-6);
        assert!((r.gen_tps - 200.0).abs() < 1e-6);
        assert!((r.overall_tps - 140.0).abs() < 1e-6);
        assert!((r.ttft_ms.mean - 30.0).abs() < 1e-6);
        assert!((r.ttft_ms.p99 - 40.0).abs() < 1e-6);
        assert!((r.tpot_ms.mean - 15.0).abs() < 1e-6);
        // gaps 10, 20, 10, 20: nearest-rank p50 is the 2nd of 4 sorted = 10
        assert!((r.itl_ms.p50 - 10.0).abs() < 1e-6);
        assert!((r.itl_ms.p90 - 20.0).abs() < 1e-6);
        assert_eq!(r.kv_cells, 12);
    }
}
