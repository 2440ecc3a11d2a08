//! Conclusions computed from the numbers: where parallel scaling stays
//! linear and where it breaks, what bounds generation (memory bandwidth or
//! compute), and which worker counts to use.

use super::views::{BenchEntry, ParallelRun};
use crate::bench::parallel::{self as par, ScalingPoint};

/// The thresholds of `rbench parallel`'s recommendation, which the report repeats.
pub use crate::bench::parallel::{
    DEFAULT_TPOT_BUDGET_MS as TPOT_BUDGET_MS, LINEAR_EFFICIENCY, LOW_EFFICIENCY,
};
/// Weight traffic at or above this share of the measured bandwidth means memory-bound.
pub const MEMORY_BOUND_SHARE: f64 = 0.6;

/// What bounds a generation rate.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Bound {
    Memory,
    Compute,
}

/// Generation reads (about) every weight byte once per decode step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Bottleneck {
    /// Weight bytes read per second, GB/s.
    pub weight_traffic_gbs: f64,
    /// Measured memory read bandwidth, GB/s.
    pub bandwidth_gbs: f64,
    pub share: f64,
    pub bound: Bound,
}

/// `steps_per_s` decode steps each reading `model_bytes`, against `bandwidth_gbs`.
pub fn bottleneck(steps_per_s: f64, model_bytes: u64, bandwidth_gbs: f64) -> Option<Bottleneck> {
    if bandwidth_gbs.is_nan()
        || bandwidth_gbs <= 0.0
        || model_bytes == 0
        || steps_per_s.is_nan()
        || steps_per_s <= 0.0
    {
        return None;
    }
    let traffic = steps_per_s * model_bytes as f64 / 1e9;
    let share = traffic / bandwidth_gbs;
    Some(Bottleneck {
        weight_traffic_gbs: traffic,
        bandwidth_gbs,
        share,
        bound: if share >= MEMORY_BOUND_SHARE {
            Bound::Memory
        } else {
            Bound::Compute
        },
    })
}

/// The generation ceiling memory allows: bandwidth ÷ bytes per token, t/s.
pub fn tg_ceiling(model_bytes: u64, bandwidth_gbs: f64) -> Option<f64> {
    (model_bytes > 0 && bandwidth_gbs > 0.0).then(|| bandwidth_gbs * 1e9 / model_bytes as f64)
}

/// One sentence about a tg row against the bandwidth (and the last-level
/// cache, which a small model fits in).
pub fn tg_sentence(
    row: &BenchEntry,
    bandwidth_gbs: f64,
    cache_bytes: Option<u64>,
) -> Option<String> {
    let b = bottleneck(row.avg_ts, row.model_size, bandwidth_gbs)?;
    let ceiling = tg_ceiling(row.model_size, bandwidth_gbs)?;
    let in_cache = b.share > 1.0 || cache_bytes.is_some_and(|c| row.model_size <= c);
    let verdict = match b.bound {
        _ if in_cache => "the weights fit in the CPU's last-level cache (or reads beat the measured memory bandwidth), so memory bandwidth is not what limits this model; compute and per-token overhead do",
        Bound::Memory => "memory-bandwidth bound: faster generation needs a smaller model file (a lower-bit quant) or faster memory",
        Bound::Compute => "not memory-bound: compute or per-token overhead limits it, so more threads or a faster kernel path would help before memory does",
    };
    Some(format!(
        "{} on {}: {:.2} t/s × {} per token = {:.2} GB/s of weight reads, {:.0}% of the measured {:.2} GB/s (ceiling {:.1} t/s); {verdict}.",
        row.test_name(),
        row.model_label(),
        row.avg_ts,
        crate::format::bytes(row.model_size),
        b.weight_traffic_gbs,
        b.share * 100.0,
        b.bandwidth_gbs,
        ceiling
    ))
}

/// Prompt processing reuses each weight for a whole batch: report achieved GFLOP/s.
pub fn pp_sentence(row: &BenchEntry) -> Option<String> {
    (row.model_n_params > 0 && row.avg_ts > 0.0).then(|| {
        format!(
            "{} on {}: {:.1} t/s ≈ {:.1} GFLOP/s (2 × {} parameters per token); prompt processing reads each weight once per batch, so it is compute-bound.",
            row.test_name(),
            row.model_label(),
            row.avg_ts,
            2.0 * row.model_n_params as f64 * row.avg_ts / 1e9,
            crate::format::params(row.model_n_params)
        )
    })
}

impl ScalingPoint for ParallelRun {
    fn workers(&self) -> u64 {
        self.workers
    }
    fn gen_tps(&self) -> f64 {
        self.gen_tps
    }
    fn overall_tps(&self) -> f64 {
        self.overall_tps
    }
    fn efficiency(&self) -> f64 {
        self.efficiency.unwrap_or(0.0)
    }
    fn tpot_p99_ms(&self) -> Option<f64> {
        self.tpot_ms.map(|t| t.p99)
    }
    fn ttft_p99_ms(&self) -> Option<f64> {
        self.ttft_ms.map(|t| t.p99)
    }
}

/// What the scaling table says.
#[derive(Clone, Debug, PartialEq)]
pub struct Scaling {
    /// Largest worker count up to which every run is at least 90% efficient.
    pub linear_up_to: Option<u64>,
    /// First worker count under 75% efficiency.
    pub drops_at: Option<u64>,
    /// Run with the highest generation t/s whose TTFT p99 and TPOT p99 meet
    /// their budgets.
    pub interactive: Option<ParallelRun>,
    /// Run with the highest overall t/s.
    pub batch: Option<ParallelRun>,
}

pub fn scaling(runs: &[ParallelRun], tpot_budget_ms: f64) -> Scaling {
    let eff = |r: &ParallelRun| r.efficiency.unwrap_or(0.0);
    let linear_up_to = runs
        .iter()
        .take_while(|r| eff(r) >= LINEAR_EFFICIENCY)
        .map(|r| r.workers)
        .last();
    let drops_at = par::first_below(runs, LOW_EFFICIENCY);
    let budgets = par::Budgets {
        tpot_ms: tpot_budget_ms,
        ..par::Budgets::default()
    };
    let interactive = par::interactive_pick(runs, budgets).cloned();
    let batch = par::batch_pick(runs).cloned();
    Scaling {
        linear_up_to,
        drops_at,
        interactive,
        batch,
    }
}

/// The scaling analysis in words, with the bottleneck each region points to.
pub fn scaling_sentences(
    runs: &[ParallelRun],
    model_bytes: u64,
    bandwidth_gbs: Option<f64>,
    tpot_budget_ms: f64,
) -> Vec<String> {
    let s = scaling(runs, tpot_budget_ms);
    let mut out = Vec::new();
    let pct = |r: &ParallelRun| r.efficiency.unwrap_or(0.0) * 100.0;
    match s.linear_up_to {
        Some(w) if w > 1 => out.push(format!(
            "Scaling is linear (efficiency ≥ {:.0}%) up to {w} workers.",
            LINEAR_EFFICIENCY * 100.0
        )),
        _ => out.push(format!(
            "Scaling is sublinear from the first added worker (no run above 1 worker reaches {:.0}% efficiency).",
            LINEAR_EFFICIENCY * 100.0
        )),
    }
    match s.drops_at.and_then(|w| runs.iter().find(|r| r.workers == w)) {
        Some(r) => out.push(format!(
            "Efficiency falls under {:.0}% at {} workers ({:.0}%, speedup {:.2}×): workers beyond that add little.",
            LOW_EFFICIENCY * 100.0,
            r.workers,
            pct(r),
            r.speedup.unwrap_or(0.0)
        )),
        None => out.push(format!(
            "Efficiency stays at or above {:.0}% at every measured worker count: more workers may still pay off.",
            LOW_EFFICIENCY * 100.0
        )),
    }
    let Some(bw) = bandwidth_gbs else {
        out.push("No measured memory bandwidth in the saved file, so no bottleneck verdict (save with a newer rbench, or run `rbench sysinfo`).".into());
        return out;
    };
    // One decode step serves every worker and reads the weights once.
    let step = |r: &ParallelRun| bottleneck(r.gen_tps / r.workers.max(1) as f64, model_bytes, bw);
    if let Some((r, b)) = runs.first().and_then(|r| Some((r, step(r)?))) {
        out.push(format!(
            "At {} worker(s) each decode step reads the weights ({}) once: {:.2} GB/s, {:.0}% of the measured {:.2} GB/s, so a single stream is {}.",
            r.workers,
            crate::format::bytes(model_bytes),
            b.weight_traffic_gbs,
            b.share * 100.0,
            bw,
            match b.bound {
                Bound::Memory => "memory-bandwidth bound; batching shares each weight read among the workers, which is where the speedup comes from",
                Bound::Compute => "not memory-bound; compute and per-step overhead already limit it",
            }
        ));
    }
    let limit = s
        .drops_at
        .and_then(|w| runs.iter().find(|r| r.workers == w))
        .or_else(|| runs.last());
    if let Some((r, b)) = limit.and_then(|r| Some((r, step(r)?))) {
        if r.workers > 1 {
            out.push(format!(
                "At {} workers the weight reads are {:.2} GB/s ({:.0}% of bandwidth) for {:.1} t/s of generation: {}.",
                r.workers,
                b.weight_traffic_gbs,
                b.share * 100.0,
                r.gen_tps,
                match b.bound {
                    Bound::Memory => "memory bandwidth is still the limit",
                    Bound::Compute => "memory has room left, so the limit there is compute (matrix multiplications over all workers' tokens)",
                }
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::views::Latency;
    use super::*;

    fn run(workers: u64, gen_tps: f64, overall_tps: f64, tpot_p99: f64) -> ParallelRun {
        ParallelRun {
            workers,
            gen_tps,
            overall_tps,
            speedup: Some(gen_tps / 50.0),
            efficiency: Some(gen_tps / 50.0 / workers as f64),
            tpot_ms: Some(Latency {
                p99: tpot_p99,
                ..Latency::default()
            }),
            ..ParallelRun::default()
        }
    }

    fn runs() -> Vec<ParallelRun> {
        vec![
            run(1, 50.0, 60.0, 25.0),
            run(2, 98.0, 110.0, 30.0),
            run(4, 180.0, 200.0, 60.0),
            run(8, 240.0, 260.0, 140.0),
        ]
    }

    #[test]
    fn bottleneck_compares_weight_traffic_with_bandwidth() {
        // 50 steps/s × 100 MB = 5 GB/s of a 6 GB/s memory: memory-bound.
        let b = bottleneck(50.0, 100_000_000, 6.0).unwrap();
        assert!((b.weight_traffic_gbs - 5.0).abs() < 1e-9);
        assert_eq!(b.bound, Bound::Memory);
        assert_eq!(
            bottleneck(10.0, 100_000_000, 6.0).unwrap().bound,
            Bound::Compute
        );
        assert_eq!(bottleneck(10.0, 0, 6.0), None);
        assert_eq!(bottleneck(10.0, 1, 0.0), None);
        assert!((tg_ceiling(100_000_000, 6.0).unwrap() - 60.0).abs() < 1e-9);
    }

    #[test]
    fn tg_verdicts() {
        let row = BenchEntry {
            model_type: "m".into(),
            model_size: 100_000_000,
            n_gen: 128,
            avg_ts: 50.0,
            ..BenchEntry::default()
        };
        let memory = tg_sentence(&row, 6.0, Some(32 << 20)).unwrap();
        assert!(
            memory.contains(
                "83% of the measured 6.00 GB/s (ceiling 60.0 t/s); memory-bandwidth bound"
            ),
            "{memory}"
        );
        let cached = tg_sentence(&row, 6.0, Some(128 << 20)).unwrap();
        assert!(
            cached.contains("fit in the CPU's last-level cache"),
            "{cached}"
        );
        let slow = BenchEntry { avg_ts: 5.0, ..row };
        assert!(tg_sentence(&slow, 6.0, None)
            .unwrap()
            .contains("not memory-bound"));
    }

    #[test]
    fn scaling_regions_and_recommendations() {
        let s = scaling(&runs(), TPOT_BUDGET_MS);
        // Efficiencies: 1.0, 0.98, 0.9, 0.6.
        assert_eq!(s.linear_up_to, Some(4));
        assert_eq!(s.drops_at, Some(8));
        // 8 workers generate most but miss the 100 ms TPOT budget.
        assert_eq!(s.interactive.unwrap().workers, 4);
        assert_eq!(s.batch.unwrap().workers, 8);
        let loose = scaling(&runs(), 200.0);
        assert_eq!(loose.interactive.unwrap().workers, 8);
    }

    #[test]
    fn sentences_name_the_numbers() {
        let text = scaling_sentences(&runs(), 100_000_000, Some(6.0), TPOT_BUDGET_MS).join(" ");
        assert!(
            text.contains("linear (efficiency ≥ 90%) up to 4 workers"),
            "{text}"
        );
        assert!(
            text.contains("under 75% at 8 workers (60%, speedup 4.80×)"),
            "{text}"
        );
        // 1 worker: 50 × 100 MB = 5 GB/s = 83% of 6 GB/s.
        assert!(
            text.contains("5.00 GB/s, 83% of the measured 6.00 GB/s"),
            "{text}"
        );
        assert!(text.contains("memory-bandwidth bound"), "{text}");
        // 8 workers: 30 steps/s × 100 MB = 3 GB/s = 50%: compute.
        assert!(text.contains("3.00 GB/s (50% of bandwidth)"), "{text}");
        assert!(text.contains("limit there is compute"), "{text}");
        let none = scaling_sentences(&runs(), 100_000_000, None, TPOT_BUDGET_MS).join(" ");
        assert!(none.contains("No measured memory bandwidth"), "{none}");
    }
}
