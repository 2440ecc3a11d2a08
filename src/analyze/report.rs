//! The analysis report: the JSON written by `-o json` (read back by other commands, so its
//! field names are fixed) and its text form with histograms.

use serde::{Deserialize, Serialize};

use super::pipeline::Analysis;
use super::recommend::{self, Tier};
use super::{Problem, SkipCounts, ESTIMATE_RULE};
use crate::bench::stats::Tally;

/// Length statistics of one side (prompts or outputs), in tokens. Percentiles are
/// nearest-rank: the value at rank ceil(q/100 * count) of the sorted lengths.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LengthStats {
    pub count: u64,
    pub mean: f64,
    /// Sample standard deviation (n - 1).
    pub std: f64,
    pub min: u64,
    pub p50: u64,
    pub p75: u64,
    pub p90: u64,
    pub p95: u64,
    pub p99: u64,
    pub max: u64,
}

impl LengthStats {
    pub fn of(t: &Tally) -> LengthStats {
        let p = |q| t.percentile(q).unwrap_or(0);
        LengthStats {
            count: t.len(),
            mean: t.mean().unwrap_or(0.0),
            std: t.stddev().unwrap_or(0.0),
            min: t.min().unwrap_or(0),
            p50: p(50.0),
            p75: p(75.0),
            p90: p(90.0),
            p95: p(95.0),
            p99: p(99.0),
            max: t.max().unwrap_or(0),
        }
    }
}

/// The `-p` / `-n` to benchmark with.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Recommendation {
    pub n_prompt: u64,
    /// The Recommended tier's n-predict.
    pub n_predict: u64,
    /// Share (0..=1) of outputs that fit in `n_predict`.
    pub coverage: f64,
    /// Share (0..=1) of prompts that fit in `n_prompt`.
    pub prompt_coverage: f64,
}

/// Everything `rbench analyze` reports.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AnalysisReport {
    pub input: String,
    /// "jsonl" or "json_array", with "+gzip" for compressed input.
    pub format: String,
    /// Records that gave a prompt and an output (all of them matched `shape`).
    pub records: u64,
    /// Records left out, all reasons together (`skipped_by_reason` splits them).
    pub skipped: u64,
    pub skipped_by_reason: SkipCounts,
    /// Records (among `records`) with an empty output: in the prompt statistics, not in
    /// the output statistics.
    pub empty_outputs: u64,
    pub shape: String,
    pub shape_description: String,
    /// How chat prompts became text: "chat template", "joined" or "n/a".
    pub prompt_format: String,
    /// The tokenizer, or "estimate: <rule>" without one.
    pub tokenizer: String,
    /// True when counts are estimated, not tokenized.
    pub estimate: bool,
    pub prompt_tokens: LengthStats,
    pub output_tokens: LengthStats,
    pub recommendation: Recommendation,
    pub tiers: Vec<Tier>,
    /// The first problems by line number.
    pub problems: Vec<Problem>,
    /// Stopped early (Ctrl-C): the numbers cover only the start of the file.
    pub interrupted: bool,
    pub seconds: f64,
    /// Peak resident memory of the process (Linux), bytes.
    pub peak_rss_bytes: Option<u64>,
}

impl AnalysisReport {
    /// Statistics and recommendation of an analysis. Fails when no output has text.
    pub fn new(
        a: &Analysis,
        input: &str,
        tokenizer: Option<&str>,
        prompt_format: &str,
        seconds: f64,
    ) -> Result<AnalysisReport, super::AnalyzeError> {
        if a.output.is_empty() {
            return Err(super::AnalyzeError::NoOutputs { records: a.records });
        }
        let tiers = recommend::tiers(&a.output);
        let recommended = tiers
            .iter()
            .find(|t| t.name == recommend::RECOMMENDED)
            .or(tiers.first());
        let n_prompt = recommend::n_prompt(&a.prompt);
        let format = match (a.layout, a.gzip) {
            (super::Layout::Jsonl, false) => "jsonl",
            (super::Layout::Jsonl, true) => "jsonl+gzip",
            (super::Layout::JsonArray, false) => "json_array",
            (super::Layout::JsonArray, true) => "json_array+gzip",
        };
        Ok(AnalysisReport {
            input: input.to_string(),
            format: format.to_string(),
            records: a.records,
            skipped: a.skipped.total(),
            skipped_by_reason: a.skipped.clone(),
            empty_outputs: a.empty_outputs,
            shape: a.shape.name(),
            shape_description: a.shape.description(),
            prompt_format: prompt_format.to_string(),
            tokenizer: match tokenizer {
                Some(t) => t.to_string(),
                None => format!("estimate: {ESTIMATE_RULE}"),
            },
            estimate: tokenizer.is_none(),
            prompt_tokens: LengthStats::of(&a.prompt),
            output_tokens: LengthStats::of(&a.output),
            recommendation: Recommendation {
                n_prompt,
                n_predict: recommended.map_or(1, |t| t.n_predict),
                coverage: recommended.map_or(0.0, |t| t.coverage),
                prompt_coverage: recommend::coverage(&a.prompt, n_prompt),
            },
            tiers,
            problems: a.problems.clone(),
            interrupted: a.interrupted,
            seconds,
            peak_rss_bytes: peak_rss_bytes(),
        })
    }

    /// The flags that run a benchmark of this shape: `-p N -n M`.
    pub fn bench_args(&self) -> String {
        format!(
            "-p {} -n {}",
            self.recommendation.n_prompt, self.recommendation.n_predict
        )
    }

    /// The human-readable report (histograms need the tallies, so they are passed in).
    pub fn to_text(&self, prompt: &Tally, output: &Tally) -> String {
        let mut s = String::new();
        let unit = if self.estimate {
            "tokens, ESTIMATED"
        } else {
            "tokens"
        };
        s += &format!("dataset     {} ({})\n", self.input, self.format);
        if self.interrupted {
            s += "INTERRUPTED: only the records read before Ctrl-C are counted\n";
        }
        s += &format!(
            "shape       {}: {}; {} records matched\n",
            self.shape, self.shape_description, self.records
        );
        if self.prompt_format != "n/a" {
            s += &format!("chat prompt {}\n", self.prompt_format);
        }
        s += &format!("tokenizer   {}\n", self.tokenizer);
        s += &format!(
            "skipped     {} ({})\n",
            self.skipped,
            self.skipped_by_reason.describe()
        );
        s += &format!(
            "empty       {} records with an empty output (left out of the output statistics)\n",
            self.empty_outputs
        );
        for p in &self.problems {
            s += &format!("  line {}: {}\n", p.line, p.reason);
        }
        if self.skipped > self.problems.len() as u64 {
            s += &format!(
                "  ... and {} more\n",
                self.skipped - self.problems.len() as u64
            );
        }
        s += &format!("\nlengths ({unit})\n");
        s += &format!(
            "{:<8} {:>8} {:>9} {:>9} {:>7} {:>7} {:>7} {:>7} {:>7} {:>7} {:>8}\n",
            "", "count", "mean", "std", "min", "p50", "p75", "p90", "p95", "p99", "max"
        );
        for (name, st) in [
            ("prompt", &self.prompt_tokens),
            ("output", &self.output_tokens),
        ] {
            s += &format!(
                "{:<8} {:>8} {:>9.1} {:>9.1} {:>7} {:>7} {:>7} {:>7} {:>7} {:>7} {:>8}\n",
                name,
                st.count,
                st.mean,
                st.std,
                st.min,
                st.p50,
                st.p75,
                st.p90,
                st.p95,
                st.p99,
                st.max
            );
        }
        s += &format!("\nprompt lengths ({unit})\n");
        s += &histogram_text(prompt, 40);
        s += &format!("\noutput lengths ({unit})\n");
        s += &histogram_text(output, 40);
        let r = &self.recommendation;
        s += "\nrecommendation\n";
        s += &format!(
            "  n-prompt  {:>6}  covers {:.1}% of prompts (p95 = {}); the smallest power of two >= p95, at least {}\n",
            r.n_prompt,
            100.0 * r.prompt_coverage,
            self.prompt_tokens.p95,
            recommend::MIN_N_PROMPT
        );
        for t in &self.tiers {
            let mark = if t.name == recommend::RECOMMENDED {
                " <-"
            } else {
                ""
            };
            s += &format!(
                "  {:<13} n-predict {:>6}{mark}\n      use: {}\n      why: {}\n",
                t.name, t.n_predict, t.use_case, t.rationale
            );
        }
        s += &format!(
            "\nbenchmark with: rbench bench -m MODEL {}\n",
            self.bench_args()
        );
        if self.estimate {
            s += &format!(
                "note: token counts are an ESTIMATE ({ESTIMATE_RULE}); pass -m MODEL.gguf or --tokenizer tokenizer.json for exact counts\n"
            );
        }
        s += &format!("time        {:.2} s", self.seconds);
        if let Some(rss) = self.peak_rss_bytes {
            s += &format!(", peak memory {:.1} MiB", rss as f64 / (1 << 20) as f64);
        }
        s += "\n";
        s
    }
}

/// Power-of-two bins: [0,1], [2,3]... Returns (low, high, count) for every bin from the
/// one holding the minimum to the one holding the maximum.
pub fn log2_bins(t: &Tally) -> Vec<(u64, u64, u64)> {
    let bin_of = |v: u64| if v <= 1 { 0 } else { 63 - v.leading_zeros() };
    let (Some(min), Some(max)) = (t.min(), t.max()) else {
        return Vec::new();
    };
    let (first, last) = (bin_of(min), bin_of(max));
    let mut counts = vec![0u64; (last - first + 1) as usize];
    for (v, c) in t.iter() {
        if let Some(slot) = counts.get_mut((bin_of(v) - first) as usize) {
            *slot += c;
        }
    }
    counts
        .into_iter()
        .enumerate()
        .map(|(i, c)| {
            let b = first + i as u32;
            let low = if b == 0 { 0 } else { 1u64 << b };
            let high = if b >= 63 {
                u64::MAX
            } else {
                (1u64 << (b + 1)) - 1
            };
            (low, high, c)
        })
        .collect()
}

/// A terminal histogram over power-of-two bins with counts and cumulative shares.
pub fn histogram_text(t: &Tally, width: usize) -> String {
    let bins = log2_bins(t);
    let peak = bins.iter().map(|b| b.2).max().unwrap_or(0).max(1);
    let total = t.len().max(1);
    let mut cumulative = 0u64;
    let mut s = String::new();
    for (low, high, count) in bins {
        cumulative += count;
        let bar = ((count as f64 / peak as f64) * width as f64).round() as usize;
        let bar = if count > 0 { bar.max(1) } else { 0 };
        s += &format!(
            "  {:>7}-{:<7} {:<width$} {:>8}  {:>5.1}%\n",
            low,
            high,
            "#".repeat(bar),
            count,
            100.0 * cumulative as f64 / total as f64,
        );
    }
    s
}

/// Peak resident set size from /proc/self/status (VmHWM); `None` where there is none.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
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
    fn stats_use_nearest_rank() {
        let s = LengthStats::of(&tally([50, 15, 40, 20, 35]));
        assert_eq!(
            (s.count, s.min, s.p50, s.p75, s.p90, s.p99, s.max),
            (5, 15, 35, 40, 50, 50, 50)
        );
        assert!((s.mean - 32.0).abs() < 1e-12);
    }

    #[test]
    fn bins_cover_min_to_max() {
        let bins = log2_bins(&tally([0, 1, 3, 3, 17]));
        assert_eq!(
            bins,
            vec![(0, 1, 2), (2, 3, 2), (4, 7, 0), (8, 15, 0), (16, 31, 1)]
        );
        assert!(log2_bins(&Tally::new()).is_empty());
        let text = histogram_text(&tally([0, 1, 3, 3, 17]), 10);
        assert_eq!(text.lines().count(), 5);
        let last = text.lines().last().unwrap();
        assert!(last.contains("100.0%") && last.contains("16-31"), "{last}");
        assert!(!text.lines().nth(2).unwrap().contains('#'));
    }

    #[test]
    fn peak_rss_is_read_on_linux() {
        if cfg!(target_os = "linux") {
            assert!(peak_rss_bytes().is_some_and(|b| b > 1 << 20));
        }
    }
}
