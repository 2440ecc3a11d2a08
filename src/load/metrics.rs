//! What a load run measured, under `vllm bench serve`'s names and
//! definitions (AIPerf and guidellm name some of these differently):
//!
//! - TTFT: send → first chunk that carries text;
//! - ITL: the gaps between successive text chunks, over all requests;
//! - TPOT: per request, (E2E − TTFT) / (output tokens − 1), for requests of
//!   more than one output token;
//! - E2EL: send → end of the response.
//!
//! Means, medians, population standard deviations and percentiles with
//! linear interpolation (numpy's defaults, which vLLM uses).

use serde::{Deserialize, Serialize};

/// Where a request's output token count came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenSource {
    /// The server's `usage.completion_tokens`.
    Usage,
    /// One token per text chunk (the server sent no usage).
    Chunks,
    /// The output text tokenized with the model's tokenizer (no usage sent).
    Tokenizer,
}

/// One request as the client saw it; times in seconds from the run's start.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RequestRecord {
    pub prompt_tokens: usize,
    pub sent: f64,
    /// Arrival of each chunk that carried text.
    pub chunks: Vec<f64>,
    pub end: f64,
    pub output_tokens: usize,
    pub tokens_from: TokenSource,
    /// Why it failed, if it did.
    pub error: Option<String>,
    /// What the server said it measured (llama-server's and rbench serve's
    /// `timings`), when it did.
    #[serde(default)]
    pub server_timings: Option<ServerTimings>,
    /// The output text (for counting its tokens when the server sent no usage).
    #[serde(default, skip_serializing)]
    pub text: String,
}

/// A server's own account of one request.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ServerTimings {
    /// Prompt processing, up to the first token.
    pub prompt_ms: f64,
    /// Generation time per token after the first.
    pub predicted_per_token_ms: f64,
}

impl RequestRecord {
    pub fn ok(&self) -> bool {
        self.error.is_none()
    }

    pub fn ttft(&self) -> Option<f64> {
        self.chunks.first().map(|c| c - self.sent)
    }

    pub fn e2el(&self) -> f64 {
        self.end - self.sent
    }

    pub fn tpot(&self) -> Option<f64> {
        let ttft = self.ttft()?;
        (self.output_tokens > 1).then(|| (self.e2el() - ttft) / (self.output_tokens - 1) as f64)
    }

    pub fn itls(&self) -> impl Iterator<Item = f64> + '_ {
        self.chunks.windows(2).map(|w| w[1] - w[0])
    }
}

/// Statistics of one latency, in milliseconds.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    pub mean: f64,
    pub median: f64,
    pub std: f64,
    /// (percentile, value) for each asked percentile.
    pub percentiles: Vec<(f64, f64)>,
}

/// The value at percentile `p` (0..=100) of sorted `v`, linearly interpolated.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    match sorted.len() {
        0 => 0.0,
        1 => sorted[0],
        n => {
            let rank = p.clamp(0.0, 100.0) / 100.0 * (n - 1) as f64;
            let lo = rank.floor() as usize;
            let hi = rank.ceil() as usize;
            sorted[lo] + (sorted[hi] - sorted[lo]) * (rank - lo as f64)
        }
    }
}

impl Latency {
    /// From values in seconds.
    pub fn of(seconds: impl Iterator<Item = f64>, percentiles: &[f64]) -> Latency {
        let mut v: Vec<f64> = seconds.map(|s| s * 1000.0).collect();
        if v.is_empty() {
            return Latency {
                percentiles: percentiles.iter().map(|&p| (p, 0.0)).collect(),
                ..Latency::default()
            };
        }
        v.sort_by(f64::total_cmp);
        let n = v.len() as f64;
        let mean = v.iter().sum::<f64>() / n;
        let std = (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n).sqrt();
        Latency {
            mean,
            median: percentile(&v, 50.0),
            std,
            percentiles: percentiles
                .iter()
                .map(|&p| (p, percentile(&v, p)))
                .collect(),
        }
    }
}

/// `--goodput ttft:MS tpot:MS e2el:MS`: a request is good when it meets every given bound.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Slo {
    pub ttft_ms: Option<f64>,
    pub tpot_ms: Option<f64>,
    pub e2el_ms: Option<f64>,
}

impl Slo {
    /// Parses `ttft:500 tpot:50 e2el:10000` (any subset).
    pub fn parse(items: &[String]) -> Result<Slo, String> {
        let mut slo = Slo::default();
        for item in items {
            let (name, value) = item.split_once(':').ok_or_else(|| {
                format!("--goodput {item}: expected NAME:MS (ttft, tpot or e2el)")
            })?;
            let ms: f64 = value
                .parse()
                .ok()
                .filter(|v: &f64| v.is_finite() && *v > 0.0)
                .ok_or_else(|| {
                    format!("--goodput {item}: {value} is not a positive number of ms")
                })?;
            match name {
                "ttft" => slo.ttft_ms = Some(ms),
                "tpot" => slo.tpot_ms = Some(ms),
                "e2el" => slo.e2el_ms = Some(ms),
                _ => {
                    return Err(format!(
                        "--goodput {item}: {name} is not ttft, tpot or e2el"
                    ))
                }
            }
        }
        Ok(slo)
    }

    pub fn is_set(&self) -> bool {
        self.ttft_ms.is_some() || self.tpot_ms.is_some() || self.e2el_ms.is_some()
    }

    fn met(&self, r: &RequestRecord) -> bool {
        let ms = |s: f64| s * 1000.0;
        self.meets_ms(
            r.ttft().map(ms),
            r.tpot().map(ms),
            ms(r.e2el()),
            r.output_tokens,
        )
    }

    /// Whether a request with these latencies (ms) and output length meets
    /// every bound given.
    pub fn meets_ms(
        &self,
        ttft: Option<f64>,
        tpot: Option<f64>,
        e2el: f64,
        output_tokens: usize,
    ) -> bool {
        let within = |bound: Option<f64>, v: Option<f64>| match (bound, v) {
            (None, _) => true,
            (Some(b), Some(v)) => v <= b,
            // A bound on TPOT holds for a one-token answer; on TTFT it needs a token.
            (Some(_), None) => false,
        };
        within(self.ttft_ms, ttft)
            && (self.tpot_ms.is_none() || output_tokens <= 1 || within(self.tpot_ms, tpot))
            && within(self.e2el_ms, Some(e2el))
    }
}

/// A run's summary with `vllm bench serve`'s JSON field names (the
/// percentile fields are added as `p{P}_{metric}_ms` when serialized).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub duration: f64,
    pub completed: usize,
    pub failed: usize,
    pub total_input_tokens: usize,
    pub total_output_tokens: usize,
    pub request_throughput: f64,
    pub request_goodput: Option<f64>,
    pub output_throughput: f64,
    pub total_token_throughput: f64,
    pub max_concurrency: Option<usize>,
    pub ttft: Latency,
    pub tpot: Latency,
    pub itl: Latency,
    pub e2el: Latency,
    /// Where output token counts came from (usage unless a server sent none).
    pub output_tokens_from: TokenSource,
    /// Failure reasons and how often each happened.
    pub errors: Vec<(String, usize)>,
    /// Means of the server's own `timings` over the requests that carried
    /// them: (prompt_ms, predicted_per_token_ms), beside the client's TTFT and TPOT.
    pub server_timings: Option<(f64, f64)>,
}

impl Summary {
    pub fn of(
        records: &[RequestRecord],
        duration: f64,
        percentiles: &[f64],
        slo: &Slo,
        max_concurrency: Option<usize>,
    ) -> Summary {
        let ok: Vec<&RequestRecord> = records.iter().filter(|r| r.ok()).collect();
        let input: usize = ok.iter().map(|r| r.prompt_tokens).sum();
        let output: usize = ok.iter().map(|r| r.output_tokens).sum();
        let rate = |n: f64| if duration > 0.0 { n / duration } else { 0.0 };
        let mut errors: Vec<(String, usize)> = Vec::new();
        for e in records.iter().filter_map(|r| r.error.as_ref()) {
            match errors.iter_mut().find(|(m, _)| m == e) {
                Some((_, n)) => *n += 1,
                None => errors.push((e.clone(), 1)),
            }
        }
        Summary {
            duration,
            completed: ok.len(),
            failed: records.len() - ok.len(),
            total_input_tokens: input,
            total_output_tokens: output,
            request_throughput: rate(ok.len() as f64),
            request_goodput: slo
                .is_set()
                .then(|| rate(ok.iter().filter(|r| slo.met(r)).count() as f64)),
            output_throughput: rate(output as f64),
            total_token_throughput: rate((input + output) as f64),
            max_concurrency,
            ttft: Latency::of(ok.iter().filter_map(|r| r.ttft()), percentiles),
            tpot: Latency::of(ok.iter().filter_map(|r| r.tpot()), percentiles),
            itl: Latency::of(ok.iter().flat_map(|r| r.itls()), percentiles),
            e2el: Latency::of(ok.iter().map(|r| r.e2el()), percentiles),
            output_tokens_from: if ok.iter().all(|r| r.tokens_from == TokenSource::Usage) {
                TokenSource::Usage
            } else if ok.iter().any(|r| r.tokens_from == TokenSource::Chunks) {
                TokenSource::Chunks
            } else {
                TokenSource::Tokenizer
            },
            errors,
            server_timings: {
                let t: Vec<ServerTimings> = ok.iter().filter_map(|r| r.server_timings).collect();
                (!t.is_empty()).then(|| {
                    let n = t.len() as f64;
                    (
                        t.iter().map(|t| t.prompt_ms).sum::<f64>() / n,
                        t.iter().map(|t| t.predicted_per_token_ms).sum::<f64>() / n,
                    )
                })
            },
        }
    }

    /// The flat JSON `vllm bench serve` writes: `mean_ttft_ms`,
    /// `median_ttft_ms`, `std_ttft_ms`, `p99_ttft_ms`, ... for ttft, tpot,
    /// itl and e2el, beside the totals and throughputs.
    pub fn to_vllm_json(&self) -> serde_json::Value {
        let mut out = serde_json::json!({
            "duration": self.duration,
            "completed": self.completed,
            "failed": self.failed,
            "total_input_tokens": self.total_input_tokens,
            "total_output_tokens": self.total_output_tokens,
            "request_throughput": self.request_throughput,
            "request_goodput": self.request_goodput,
            "output_throughput": self.output_throughput,
            "total_token_throughput": self.total_token_throughput,
            "max_concurrency": self.max_concurrency,
            "output_tokens_from": self.output_tokens_from,
            "errors": self.errors.iter().map(|(m, n)| serde_json::json!({"reason": m, "count": n})).collect::<Vec<_>>(),
            "server_mean_prompt_ms": self.server_timings.map(|t| t.0),
            "server_mean_predicted_per_token_ms": self.server_timings.map(|t| t.1),
        });
        for (name, l) in [
            ("ttft", &self.ttft),
            ("tpot", &self.tpot),
            ("itl", &self.itl),
            ("e2el", &self.e2el),
        ] {
            out[format!("mean_{name}_ms")] = l.mean.into();
            out[format!("median_{name}_ms")] = l.median.into();
            out[format!("std_{name}_ms")] = l.std.into();
            for (p, v) in &l.percentiles {
                out[format!("p{}_{name}_ms", format_percentile(*p))] = (*v).into();
            }
        }
        out
    }
}

/// 99 → "99", 99.9 → "99.9" (vLLM's key spelling).
pub fn format_percentile(p: f64) -> String {
    if p.fract() == 0.0 {
        format!("{}", p as u64)
    } else {
        format!("{p}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(sent: f64, chunks: &[f64], end: f64, tokens: usize) -> RequestRecord {
        RequestRecord {
            prompt_tokens: 10,
            sent,
            chunks: chunks.to_vec(),
            end,
            output_tokens: tokens,
            tokens_from: TokenSource::Usage,
            error: None,
            server_timings: None,
            text: String::new(),
        }
    }

    #[test]
    fn definitions_are_vllms() {
        let r = record(1.0, &[1.5, 1.6, 1.8], 2.0, 3);
        assert!((r.ttft().unwrap() - 0.5).abs() < 1e-12);
        assert!((r.e2el() - 1.0).abs() < 1e-12);
        // (1.0 - 0.5) / (3 - 1)
        assert!((r.tpot().unwrap() - 0.25).abs() < 1e-12);
        let itl: Vec<f64> = r.itls().collect();
        assert!((itl[0] - 0.1).abs() < 1e-9 && (itl[1] - 0.2).abs() < 1e-9);
        assert_eq!(record(0.0, &[0.1], 0.2, 1).tpot(), None);
    }

    #[test]
    fn percentiles_interpolate_like_numpy() {
        let v = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(percentile(&v, 50.0), 2.5);
        assert!((percentile(&v, 99.0) - 3.97).abs() < 1e-12);
        assert_eq!(percentile(&v, 0.0), 1.0);
        assert_eq!(percentile(&[7.0], 90.0), 7.0);
        let l = Latency::of([0.001, 0.003].into_iter(), &[50.0]);
        assert!((l.mean - 2.0).abs() < 1e-9 && (l.std - 1.0).abs() < 1e-9);
    }

    #[test]
    fn summary_counts_failures_goodput_and_writes_vllm_keys() {
        let mut failed = record(0.0, &[], 0.1, 0);
        failed.error = Some("HTTP 503".into());
        let records = [
            record(0.0, &[0.1, 0.2], 0.3, 2),
            record(0.0, &[0.9, 1.0], 1.1, 2),
            failed.clone(),
            failed,
        ];
        let slo = Slo::parse(&["ttft:500".into()]).unwrap();
        let s = Summary::of(&records, 2.0, &[50.0, 99.0], &slo, Some(4));
        assert_eq!((s.completed, s.failed), (2, 2));
        assert_eq!(s.errors, vec![("HTTP 503".to_string(), 2)]);
        assert_eq!(s.total_output_tokens, 4);
        assert_eq!(s.request_throughput, 1.0);
        assert_eq!(s.request_goodput, Some(0.5));
        let j = s.to_vllm_json();
        for key in [
            "request_throughput",
            "output_throughput",
            "total_token_throughput",
            "mean_ttft_ms",
            "median_ttft_ms",
            "std_ttft_ms",
            "p99_ttft_ms",
            "p50_tpot_ms",
            "mean_itl_ms",
            "p99_e2el_ms",
        ] {
            assert!(j.get(key).is_some_and(|v| !v.is_null()), "{key}");
        }
        assert!(Slo::parse(&["ttft=5".into()]).is_err());
        assert!(Slo::parse(&["queue:5".into()]).is_err());
        assert!(Slo::parse(&["tpot:-1".into()]).is_err());
    }
}
