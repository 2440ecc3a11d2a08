//! From token-length distributions to the `-p` / `-n` to benchmark with.
//!
//! n-prompt is the smallest power of two at or above the 95th percentile of prompt lengths
//! (at least 32). n-predict comes in three tiers aimed at 75%, 90% and 99% of outputs: the
//! power of two nearest (in log scale) to that percentile of output lengths, with the share
//! of outputs it actually covers.

use serde::{Deserialize, Serialize};

use crate::bench::stats::Tally;

/// Percentile of prompt lengths that n-prompt must reach.
pub const PROMPT_PERCENTILE: f64 = 95.0;
pub const MIN_N_PROMPT: u64 = 32;

/// One n-predict choice.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Tier {
    pub name: String,
    pub n_predict: u64,
    /// Share (0..=1) of outputs at most `n_predict` tokens long.
    pub coverage: f64,
    /// The share of outputs it aims at, in percent.
    pub target_percentile: f64,
    /// That percentile of output lengths.
    pub percentile_tokens: u64,
    pub use_case: String,
    pub rationale: String,
}

/// (name, target percentile, use case) of each tier, shortest first.
pub const TIERS: [(&str, f64, &str); 3] = [
    (
        "Conservative",
        75.0,
        "quick runs and short-answer workloads (chat turns, classification, extraction)",
    ),
    (
        "Recommended",
        90.0,
        "the default: matches the bulk of this dataset's answers",
    ),
    (
        "Comprehensive",
        99.0,
        "long-tail answers: worst-case latency and KV-cache sizing",
    ),
];

/// Name of the tier whose n-predict is the recommendation.
pub const RECOMMENDED: &str = "Recommended";

/// The power of two nearest to `v` in log scale (1 for 0 or 1).
pub fn nearest_power_of_two(v: u64) -> u64 {
    if v <= 1 {
        return 1;
    }
    let low = 1u64 << (63 - v.leading_zeros());
    if low == v {
        return v;
    }
    // v lies between low and 2*low; it is nearer to low in log scale when v < low * sqrt(2),
    // i.e. v^2 < 2 low^2 (never equal: 2 low^2 is not a square).
    match low.checked_mul(2) {
        Some(high) if u128::from(v) * u128::from(v) >= 2 * u128::from(low) * u128::from(low) => {
            high
        }
        // Below the geometric middle, or no larger power of two fits in u64.
        _ => low,
    }
}

/// The smallest power of two at or above the prompt-length percentile, at least 32.
pub fn n_prompt(prompt: &Tally) -> u64 {
    let p = prompt.percentile(PROMPT_PERCENTILE).unwrap_or(0);
    p.checked_next_power_of_two()
        .unwrap_or(u64::MAX)
        .max(MIN_N_PROMPT)
}

/// Share (0..=1) of samples at most `limit`; 0 for no samples.
pub fn coverage(tally: &Tally, limit: u64) -> f64 {
    if tally.is_empty() {
        return 0.0;
    }
    tally.count_at_most(limit) as f64 / tally.len() as f64
}

/// The three n-predict tiers for these output lengths.
pub fn tiers(output: &Tally) -> Vec<Tier> {
    TIERS
        .iter()
        .map(|&(name, target, use_case)| {
            let p = output.percentile(target).unwrap_or(0);
            let n_predict = nearest_power_of_two(p);
            let coverage = coverage(output, n_predict);
            Tier {
                name: name.to_string(),
                n_predict,
                coverage,
                target_percentile: target,
                percentile_tokens: p,
                use_case: use_case.to_string(),
                rationale: format!(
                    "{n_predict} covers {:.1}% of outputs (p{target} = {p}); aimed at {target}%, \
                     {n_predict} is the power of two nearest to {p}",
                    100.0 * coverage
                ),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tally(values: impl IntoIterator<Item = u64>) -> Tally {
        let mut t = Tally::new();
        values.into_iter().for_each(|v| t.add(v));
        t
    }

    #[test]
    fn nearest_power_of_two_in_log_scale() {
        assert_eq!(nearest_power_of_two(0), 1);
        assert_eq!(nearest_power_of_two(1), 1);
        assert_eq!(nearest_power_of_two(2), 2);
        assert_eq!(nearest_power_of_two(3), 4); // 3 > 2*sqrt(2) = 2.83
        assert_eq!(nearest_power_of_two(5), 4);
        assert_eq!(nearest_power_of_two(6), 8); // 6 > 5.66
        assert_eq!(nearest_power_of_two(362), 256); // 362 < 362.04
        assert_eq!(nearest_power_of_two(363), 512);
        assert_eq!(nearest_power_of_two(2088), 2048);
        assert_eq!(nearest_power_of_two(u64::MAX), 1 << 63);
    }

    #[test]
    fn n_prompt_is_next_power_at_p95_and_at_least_32() {
        // p95 of 1..=100 is 95.
        assert_eq!(n_prompt(&tally(1..=100)), 128);
        assert_eq!(n_prompt(&tally([5, 6, 7])), 32);
        assert_eq!(n_prompt(&tally([64; 20])), 64);
        assert_eq!(n_prompt(&Tally::new()), 32);
    }

    #[test]
    fn tiers_follow_percentiles_with_exact_coverage() {
        // 1..=1000: p75 = 750 -> 512 (750 < 724? no: 750 > 724.1 -> 1024), p90 = 900 -> 1024,
        // p99 = 990 -> 1024.
        let t = tiers(&tally(1..=1000));
        let got: Vec<(u64, u64)> = t
            .iter()
            .map(|t| (t.percentile_tokens, t.n_predict))
            .collect();
        assert_eq!(got, [(750, 1024), (900, 1024), (990, 1024)]);
        assert_eq!(t[0].coverage, 1.0);
        // 1..=600: p75 = 450 -> 512 covers everything up to 512 = 85.3%.
        let t = tiers(&tally(1..=600));
        assert_eq!((t[0].percentile_tokens, t[0].n_predict), (450, 512));
        assert!((t[0].coverage - 512.0 / 600.0).abs() < 1e-12);
        assert!(
            t[0].rationale
                .starts_with("512 covers 85.3% of outputs (p75 = 450)"),
            "{}",
            t[0].rationale
        );
        assert_eq!(t[1].name, RECOMMENDED);
    }
}
