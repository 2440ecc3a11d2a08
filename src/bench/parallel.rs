//! `rbench parallel`: throughput and latency of N sequences served at once
//! by continuous batching, per worker count, and what to run with.
//!
//! What is timed. Prompt t/s is prompt tokens over the decode time they
//! took, generation t/s generated tokens fed back through the model over
//! theirs (llama-batched-bench's S_PP and S_TG when all requests start
//! together). A step that carries prompt and generated tokens together has
//! its decode time split between the two in proportion to their token
//! counts. Overall t/s is all tokens over the run's wall time, sampling
//! included.
//!
//! Latency, as vLLM's serving benchmark defines it, per request: TTFT (to
//! the first token), E2E (to the last), TPOT = (E2E − TTFT) / (output
//! tokens − 1), ITL (every gap between tokens); mean and linearly
//! interpolated percentiles over every request of every repetition. The
//! clock starts when the request is sent: with `burst` arrivals the
//! workers are W clients, each sending its next request when the last
//! finishes (the moment it takes a slot); with `poisson` arrivals requests
//! come on their own schedule and the clock starts at arrival, so queueing
//! for a slot counts.

use super::stats;
use crate::engine::{Completion, ServeReport};
use crate::format::{table, Align};
use crate::load::metrics::Slo;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Default TPOT p99 budget for interactive use (`parallel` and `report`).
pub const DEFAULT_TPOT_BUDGET_MS: f64 = 100.0;
/// Default TTFT p99 budget for interactive use (as `rbench load`'s sweet spot).
pub const DEFAULT_TTFT_BUDGET_MS: f64 = 2000.0;
/// Requests per worker of the largest worker count when `--requests` is not
/// given: enough that percentiles are more than the slowest few requests.
pub const DEFAULT_REQUESTS_PER_WORKER: usize = 4;
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
    /// `None` where no TTFT was measured (it then meets any budget).
    fn ttft_p99_ms(&self) -> Option<f64>;
}

/// Latency budgets of the interactive pick.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Budgets {
    pub ttft_ms: f64,
    pub tpot_ms: f64,
}

impl Default for Budgets {
    fn default() -> Budgets {
        Budgets {
            ttft_ms: DEFAULT_TTFT_BUDGET_MS,
            tpot_ms: DEFAULT_TPOT_BUDGET_MS,
        }
    }
}

/// The interactive pick: the highest generation t/s whose TTFT p99 and
/// TPOT p99 both stay within their budgets.
pub fn interactive_pick<T: ScalingPoint>(runs: &[T], budgets: Budgets) -> Option<&T> {
    runs.iter()
        .filter(|r| r.tpot_p99_ms().is_none_or(|t| t <= budgets.tpot_ms))
        .filter(|r| r.ttft_p99_ms().is_none_or(|t| t <= budgets.ttft_ms))
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
    fn ttft_p99_ms(&self) -> Option<f64> {
        Some(self.ttft_ms.p99)
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    #[serde(default)]
    pub p95: f64,
    pub p99: f64,
    #[serde(default)]
    pub max: f64,
    /// Samples the figures were taken over.
    #[serde(default)]
    pub n: usize,
}

impl Latency {
    /// Mean and linearly interpolated percentiles (as vLLM's benchmark and
    /// numpy take them); all zero without samples.
    pub fn of(ms: &[f64]) -> Latency {
        let mut sorted = ms.to_vec();
        sorted.sort_by(f64::total_cmp);
        let p = |q| crate::load::metrics::percentile(&sorted, q);
        Latency {
            mean: stats::mean(ms).unwrap_or(0.0),
            p50: p(50.0),
            p90: p(90.0),
            p95: p(95.0),
            p99: p(99.0),
            max: sorted.last().copied().unwrap_or(0.0),
            n: ms.len(),
        }
    }
}

/// When a request's latency clock starts (see the module comment).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LatencyClock {
    /// When the request took a slot (burst arrivals: W clients).
    Admission,
    /// When the request arrived (Poisson arrivals: queueing counts).
    Arrival,
}

/// Memory of one worker count's run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Memory {
    /// The process's peak resident set during the run (weights mapped in
    /// included); `None` where the OS does not say.
    pub peak_rss_bytes: Option<u64>,
    /// KV bytes of the most cells in use at once.
    pub kv_bytes: u64,
    /// The engine's compute buffer.
    pub compute_buffer_bytes: u64,
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
    #[serde(default)]
    pub e2e_ms: Latency,
    /// Generation t/s of each repetition (their mean is `gen_tps`).
    #[serde(default)]
    pub gen_tps_runs: Vec<f64>,
    /// Requests that met every `--slo` bound, and those per second of wall
    /// time (`None` without `--slo`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub good_requests: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub goodput_rps: Option<f64>,
    #[serde(default)]
    pub memory: Memory,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shared_prefix: Option<PrefixSharing>,
}

/// Per-request latency samples of one run, in ms.
#[derive(Default)]
struct Samples {
    ttft: Vec<f64>,
    tpot: Vec<f64>,
    itl: Vec<f64>,
    e2e: Vec<f64>,
    good: usize,
}

impl Samples {
    fn add(&mut self, report: &ServeReport, clock: LatencyClock, slo: Option<&Slo>) {
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        for c in &report.completions {
            let Completion { token_times, .. } = c;
            let (Some(&first), Some(&last)) = (token_times.first(), token_times.last()) else {
                continue;
            };
            let sent = match clock {
                LatencyClock::Admission => c.admitted,
                LatencyClock::Arrival => report.arrival(c.index),
            };
            let ttft = ms(first.saturating_duration_since(sent));
            let e2e = ms(last.saturating_duration_since(sent));
            let tpot =
                (token_times.len() >= 2).then(|| (e2e - ttft) / (token_times.len() - 1) as f64);
            self.ttft.push(ttft);
            self.e2e.push(e2e);
            self.tpot.extend(tpot);
            self.itl
                .extend(token_times.windows(2).map(|w| ms(w[1] - w[0])));
            if slo.is_some_and(|s| s.meets_ms(Some(ttft), tpot, e2e, token_times.len())) {
                self.good += 1;
            }
        }
    }
}

/// How one worker count's runs are read.
#[derive(Clone, Debug)]
pub struct RunContext {
    pub workers: usize,
    pub n_predict: usize,
    pub prefix_tokens: usize,
    pub clock: LatencyClock,
    /// `--slo`, if given.
    pub slo: Option<Slo>,
}

impl WorkerRun {
    /// The figures of one or more repetitions of the same run (speedup and
    /// efficiency are filled in by [`fill_scaling`] once the baseline is
    /// known): token counts and times summed, t/s the mean of the repetitions' (their spread in
    /// `gen_tps_runs`), latencies over every request of every repetition.
    pub fn from_reports(ctx: &RunContext, reports: &[ServeReport]) -> WorkerRun {
        let secs = Duration::as_secs_f64;
        let rate = |n: usize, s: f64| if s > 0.0 { n as f64 / s } else { 0.0 };
        let (mut prompt_tokens, mut prompt_s) = (0, 0.0);
        let (mut gen_s, mut wall_s) = (0.0, 0.0);
        let (mut output_tokens, mut requests) = (0, 0);
        let mut gen_tps_runs = Vec::new();
        let mut samples = Samples::default();
        for report in reports {
            let (p_tokens, p_s, g_tokens, g_s) = split_steps(report);
            prompt_tokens += ctx.prefix_tokens + p_tokens;
            prompt_s += secs(&report.prefix_decode) + p_s;
            gen_s += g_s;
            gen_tps_runs.push(rate(g_tokens, g_s));
            wall_s += secs(&(report.finished - report.started));
            output_tokens += report
                .completions
                .iter()
                .map(|c| c.tokens.len())
                .sum::<usize>();
            requests += report.completions.len();
            samples.add(report, ctx.clock, ctx.slo.as_ref());
        }
        let reps = reports.len().max(1);
        let mean_rate = stats::mean(&gen_tps_runs).unwrap_or(0.0);
        WorkerRun {
            workers: ctx.workers,
            requests: requests / reps,
            n_prompt: reports
                .iter()
                .flat_map(|r| r.completions.iter().map(|c| c.prompt_tokens))
                .max()
                .unwrap_or(0),
            n_predict: ctx.n_predict,
            prompt_tokens: prompt_tokens / reps,
            output_tokens: output_tokens / reps,
            prompt_tps: rate(prompt_tokens, prompt_s),
            gen_tps: mean_rate,
            overall_tps: rate(prompt_tokens + output_tokens, wall_s),
            speedup: 1.0,
            efficiency: 1.0,
            kv_cells: reports.iter().map(|r| r.peak_cells).max().unwrap_or(0),
            wall_s: wall_s / reps as f64,
            prompt_s: prompt_s / reps as f64,
            gen_s: gen_s / reps as f64,
            ttft_ms: Latency::of(&samples.ttft),
            tpot_ms: Latency::of(&samples.tpot),
            itl_ms: Latency::of(&samples.itl),
            e2e_ms: Latency::of(&samples.e2e),
            gen_tps_runs,
            good_requests: ctx.slo.as_ref().map(|_| samples.good / reps),
            goodput_rps: ctx.slo.as_ref().map(|_| rate(samples.good, wall_s)),
            memory: Memory::default(),
            shared_prefix: None,
        }
    }
}

/// Prompt tokens and seconds, generated tokens and seconds of a run's
/// steps; a mixed step's time is split by token counts.
fn split_steps(report: &ServeReport) -> (usize, f64, usize, f64) {
    let (mut pt, mut ps, mut gt, mut gs) = (0, 0.0, 0, 0.0);
    for step in &report.steps {
        let d = step.decode.as_secs_f64();
        let total = (step.prompt_tokens + step.gen_tokens).max(1) as f64;
        pt += step.prompt_tokens;
        gt += step.gen_tokens;
        ps += d * step.prompt_tokens as f64 / total;
        gs += d * step.gen_tokens as f64 / total;
    }
    (pt, ps, gt, gs)
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
    /// The TPOT budget.
    pub budget_ms: f64,
    #[serde(default)]
    pub ttft_p99_ms: f64,
    #[serde(default)]
    pub ttft_budget_ms: f64,
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
    /// Highest generation t/s whose TTFT p99 and TPOT p99 stay within
    /// their budgets.
    pub interactive: Option<InteractivePick>,
    /// Highest overall t/s.
    pub offline: Option<OfflinePick>,
    /// The first worker count whose efficiency fell under 90%.
    pub sublinear_from: Option<usize>,
    /// The first worker count whose efficiency fell under 75%.
    pub efficiency_under_75_from: Option<usize>,
}

pub fn recommend(runs: &[WorkerRun], budgets: Budgets) -> Recommendation {
    let first_under = |limit: f64| first_below(runs, limit).map(|w| w as usize);
    let interactive = interactive_pick(runs, budgets).map(|r| InteractivePick {
        workers: r.workers,
        gen_tps: r.gen_tps,
        tpot_p99_ms: r.tpot_ms.p99,
        budget_ms: budgets.tpot_ms,
        ttft_p99_ms: r.ttft_ms.p99,
        ttft_budget_ms: budgets.ttft_ms,
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
pub fn analysis_lines(runs: &[WorkerRun], rec: &Recommendation, budgets: Budgets) -> Vec<String> {
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
            "Interactive use: {} workers, {:.1} generated t/s in all with TTFT p99 {:.0} ms and TPOT p99 {:.1} ms (budgets {:.0} / {:.0} ms).",
            p.workers, p.gen_tps, p.ttft_p99_ms, p.tpot_p99_ms, p.ttft_budget_ms, p.budget_ms
        )),
        None => lines.push(format!(
            "Interactive use: no worker count kept TTFT p99 within {:.0} ms and TPOT p99 within {:.0} ms.",
            budgets.ttft_ms, budgets.tpot_ms
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
    #[serde(default = "default_ttft_budget")]
    pub ttft_budget_ms: f64,
    /// How requests were made and sent (absent in results saved before it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload: Option<Workload>,
    pub runs: Vec<WorkerRun>,
    pub recommendation: Recommendation,
    /// What went wrong after the runs listed, if anything did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub interrupted: bool,
}

fn default_ttft_budget() -> f64 {
    DEFAULT_TTFT_BUDGET_MS
}

/// How a parallel run's requests were made and sent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Workload {
    /// `burst` or `poisson`.
    pub arrival: String,
    /// Requests per second (Poisson arrivals).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<f64>,
    pub requests: usize,
    pub repetitions: usize,
    /// Prompt and output lengths vary uniformly by ± this share of -p / -n.
    pub length_jitter: f64,
    /// Where prompts came from: `random` or the dataset's path.
    pub prompts: String,
    pub latency_clock: LatencyClock,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slo: Option<Slo>,
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
    let cell = |l: &Latency| {
        format!(
            "{:.1} / {:.1} / {:.1} / {:.1} / {:.1} / {:.1}",
            l.mean, l.p50, l.p90, l.p95, l.p99, l.max
        )
    };
    let goodput = runs.iter().any(|r| r.goodput_rps.is_some());
    let mut header = vec![
        "Workers",
        "Requests",
        "TTFT ms (mean / p50 / p90 / p95 / p99 / max)",
        "TPOT ms (mean / p50 / p90 / p95 / p99 / max)",
        "ITL ms (mean / p50 / p90 / p95 / p99 / max)",
        "E2E ms (mean / p50 / p90 / p95 / p99 / max)",
    ];
    if goodput {
        header.push("Goodput req/s (good / all)");
    }
    let rows = runs.iter().map(|r| {
        let mut row = vec![
            r.workers.to_string(),
            r.ttft_ms.n.to_string(),
            cell(&r.ttft_ms),
            cell(&r.tpot_ms),
            cell(&r.itl_ms),
            cell(&r.e2e_ms),
        ];
        if goodput {
            row.push(match (r.goodput_rps, r.good_requests) {
                (Some(g), Some(n)) => format!("{g:.2} ({n} / {})", r.requests),
                _ => "-".into(),
            });
        }
        row
    });
    table(&header, rows, |_| Align::Left)
}

/// Memory per worker count: what the process held at its peak, the KV
/// cache in use and the compute buffer.
pub fn memory_table(runs: &[WorkerRun]) -> String {
    let header = ["Workers", "Peak RSS", "KV in use", "Compute buffer"];
    let rows = runs.iter().map(|r| {
        vec![
            r.workers.to_string(),
            r.memory
                .peak_rss_bytes
                .map_or("-".into(), crate::format::bytes),
            crate::format::bytes(r.memory.kv_bytes),
            crate::format::bytes(r.memory.compute_buffer_bytes),
        ]
    });
    table(&header, rows, |_| Align::Left)
}

/// Generation t/s of every repetition, where there was more than one.
pub fn repetition_lines(runs: &[WorkerRun]) -> Vec<String> {
    runs.iter()
        .filter(|r| r.gen_tps_runs.len() > 1)
        .map(|r| {
            let each: Vec<String> = r.gen_tps_runs.iter().map(|t| format!("{t:.1}")).collect();
            format!(
                "{} workers: generation t/s per repetition {} (mean {:.1} ± {:.1}).",
                r.workers,
                each.join(", "),
                r.gen_tps,
                stats::stddev(&r.gen_tps_runs).unwrap_or(0.0)
            )
        })
        .collect()
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
            e2e_ms: Latency::default(),
            gen_tps_runs: vec![gen_tps],
            good_requests: None,
            goodput_rps: None,
            memory: Memory::default(),
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
        let rec = recommend(&runs, Budgets::default());
        // 2 workers: 0.917 efficiency; 4: 0.667 → sublinear from 4, under 75% from 4.
        assert_eq!(rec.sublinear_from, Some(4));
        assert_eq!(rec.efficiency_under_75_from, Some(4));
        // 8 workers break the TPOT budget: interactive picks 4.
        assert_eq!(rec.interactive.as_ref().map(|p| p.workers), Some(4));
        assert_eq!(rec.offline.as_ref().map(|p| p.workers), Some(8));
        let text = analysis_lines(&runs, &rec, Budgets::default()).join("\n");
        assert!(text.contains("sublinear at 4 workers"), "{text}");
        assert!(text.contains("Interactive use: 4 workers"), "{text}");
    }

    #[test]
    fn without_a_run_inside_the_budget_nothing_is_recommended_for_interactive() {
        let mut runs = vec![run(1, 60.0, 100.0, 500.0)];
        fill_scaling(&mut runs);
        let rec = recommend(&runs, Budgets::default());
        assert!(rec.interactive.is_none());
        assert!(analysis_lines(&runs, &rec, Budgets::default())
            .join(" ")
            .contains("no worker count kept TTFT p99 within 2000 ms and TPOT p99 within 100 ms"));
    }

    /// One run's figures, latency from admission, no SLO.
    fn from_report(workers: usize, n_predict: usize, report: &ServeReport) -> WorkerRun {
        let ctx = RunContext {
            workers,
            n_predict,
            prefix_tokens: 0,
            clock: LatencyClock::Admission,
            slo: None,
        };
        WorkerRun::from_reports(&ctx, std::slice::from_ref(report))
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
            arrivals: Vec::new(),
        };
        let r = from_report(2, 3, &report);
        assert_eq!((r.prompt_tokens, r.output_tokens), (8, 6));
        assert!((r.prompt_tps - 500.0).abs() < 1e-6);
        assert!((r.gen_tps - 200.0).abs() < 1e-6);
        assert!((r.overall_tps - 140.0).abs() < 1e-6);
        assert!((r.ttft_ms.mean - 30.0).abs() < 1e-6);
        // Linear interpolation between 20 and 40.
        assert!((r.ttft_ms.p99 - 39.8).abs() < 1e-6);
        assert!((r.tpot_ms.mean - 15.0).abs() < 1e-6);
        assert!((r.e2e_ms.mean - 60.0).abs() < 1e-6);
        // gaps 10, 20, 10, 20 sorted 10, 10, 20, 20: p50 halfway, p90 at rank 2.7
        assert!((r.itl_ms.p50 - 15.0).abs() < 1e-6);
        assert!((r.itl_ms.p90 - 20.0).abs() < 1e-6);
        assert_eq!(r.itl_ms.n, 4);
        assert_eq!(r.kv_cells, 12);
    }

    /// One request of `tokens` tokens, admitted at `admitted` ms, its first
    /// token at `first` ms and the rest `gap` ms apart.
    fn timed(
        t0: Instant,
        index: usize,
        admitted: u64,
        first: u64,
        gap: u64,
        tokens: usize,
    ) -> Completion {
        let ms = Duration::from_millis;
        Completion {
            index,
            prompt_tokens: 4,
            tokens: vec![7; tokens],
            stop: StopReason::Length,
            admitted: t0 + ms(admitted),
            token_times: (0..tokens as u64)
                .map(|i| t0 + ms(first + i * gap))
                .collect(),
            cached_tokens: 0,
            cache: crate::kv::prefix::CacheOutcome::Miss,
        }
    }

    fn report(
        t0: Instant,
        completions: Vec<Completion>,
        steps: Vec<Step>,
        arrivals: Vec<Instant>,
    ) -> ServeReport {
        ServeReport {
            started: t0,
            finished: t0 + Duration::from_millis(1000),
            completions,
            steps,
            prefix_decode: Duration::ZERO,
            peak_cells: 8,
            interrupted: false,
            arrivals,
        }
    }

    #[test]
    fn a_mixed_step_is_split_by_token_counts() {
        let t0 = Instant::now();
        let step = |p, g, d| Step {
            prompt_tokens: p,
            gen_tokens: g,
            decode: Duration::from_millis(d),
        };
        // 30 prompt + 10 generated tokens in 40 ms: 30 ms prompt, 10 ms generation.
        let r = report(t0, vec![], vec![step(30, 10, 40), step(0, 10, 10)], vec![]);
        let run = from_report(2, 8, &r);
        assert_eq!(run.prompt_tokens, 30);
        assert!((run.prompt_tps - 1000.0).abs() < 1e-6);
        assert!((run.gen_tps - 1000.0).abs() < 1e-6, "{}", run.gen_tps);
    }

    #[test]
    fn latency_counts_from_admission_or_from_arrival() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        // Arrived at 0 and 100 ms; the second waited for a slot until 300 ms.
        let c = vec![timed(t0, 0, 0, 50, 10, 3), timed(t0, 1, 300, 350, 10, 3)];
        let r = report(t0, c, vec![], vec![t0, t0 + ms(100)]);
        let ctx = |clock| RunContext {
            workers: 1,
            n_predict: 3,
            prefix_tokens: 0,
            clock,
            slo: Some(Slo {
                ttft_ms: Some(100.0),
                ..Slo::default()
            }),
        };
        let admission =
            WorkerRun::from_reports(&ctx(LatencyClock::Admission), std::slice::from_ref(&r));
        assert_eq!(
            (admission.ttft_ms.mean, admission.e2e_ms.mean),
            (50.0, 70.0)
        );
        assert!((admission.tpot_ms.mean - 10.0).abs() < 1e-9);
        assert_eq!(admission.good_requests, Some(2));
        let arrival =
            WorkerRun::from_reports(&ctx(LatencyClock::Arrival), std::slice::from_ref(&r));
        // 50 and 250 ms: the wait for a slot counts, and breaks the TTFT bound.
        assert_eq!(arrival.ttft_ms.mean, 150.0);
        assert_eq!(arrival.good_requests, Some(1));
        assert!((arrival.goodput_rps.unwrap() - 1.0).abs() < 1e-9);
    }

    #[test]
    fn repetitions_pool_latencies_and_average_rates() {
        let t0 = Instant::now();
        let gen = |d| Step {
            prompt_tokens: 0,
            gen_tokens: 10,
            decode: Duration::from_millis(d),
        };
        let a = report(t0, vec![timed(t0, 0, 0, 10, 5, 4)], vec![gen(100)], vec![]);
        let b = report(t0, vec![timed(t0, 0, 0, 30, 5, 4)], vec![gen(50)], vec![]);
        let ctx = RunContext {
            workers: 1,
            n_predict: 4,
            prefix_tokens: 0,
            clock: LatencyClock::Admission,
            slo: None,
        };
        let run = WorkerRun::from_reports(&ctx, &[a, b]);
        assert_eq!(run.gen_tps_runs, vec![100.0, 200.0]);
        assert_eq!(run.gen_tps, 150.0);
        assert_eq!((run.ttft_ms.n, run.ttft_ms.mean), (2, 20.0));
        assert_eq!((run.requests, run.output_tokens), (1, 4));
        assert!(run.good_requests.is_none());
        assert!(repetition_lines(&[run])[0].contains("100.0, 200.0 (mean 150.0"));
    }

    #[test]
    fn the_interactive_pick_needs_both_budgets() {
        let mut fast_start = run(2, 100.0, 120.0, 50.0);
        fast_start.ttft_ms.p99 = 300.0;
        let mut slow_start = run(8, 300.0, 320.0, 60.0);
        slow_start.ttft_ms.p99 = 5000.0;
        let runs = [fast_start, slow_start];
        let pick = interactive_pick(&runs, Budgets::default()).unwrap();
        assert_eq!(pick.workers, 2);
        let loose = Budgets {
            ttft_ms: 10_000.0,
            ..Budgets::default()
        };
        assert_eq!(interactive_pick(&runs, loose).unwrap().workers, 8);
    }
}
