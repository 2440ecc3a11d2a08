//! `rbench load`: a serving benchmark for any OpenAI-compatible endpoint
//! (rbench serve, llama-server, vLLM, Ollama), measured as `vllm bench
//! serve` measures: load shapes (concurrency cap, request rate with gamma
//! gaps), random prompts, and TTFT / TPOT / ITL / E2EL statistics.

pub mod client;
pub mod metrics;
pub mod scenario;
pub mod stub;

use client::{Prompt, PromptBody, Target};
use metrics::{RequestRecord, Slo, Summary};
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Gamma};
use rand_xoshiro::Xoshiro256PlusPlus;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot start the client's runtime: {0}")]
    Runtime(std::io::Error),
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
    #[error("{0}")]
    Shape(String),
}

/// How requests arrive.
#[derive(Clone, Debug, PartialEq)]
pub struct Arrival {
    /// Requests per second; infinite: all at once (up to the concurrency cap).
    pub rate: f64,
    /// Shape of the gamma-distributed gaps: 1 is Poisson, lower is burstier.
    pub burstiness: f64,
    pub seed: u64,
}

/// Random prompts: lengths around `input_len` / `output_len` (uniform
/// within ±`range_ratio`), each after `prefix_len` shared tokens.
#[derive(Clone, Debug, PartialEq)]
pub struct RandomPrompts {
    pub count: usize,
    pub input_len: usize,
    pub output_len: usize,
    pub range_ratio: f64,
    pub prefix_len: usize,
    /// Token ids are drawn from this range (ordinary tokens in any vocabulary of 32k+).
    pub ids: std::ops::Range<u32>,
    /// Chat backends take text: random words instead of token ids.
    pub as_text: bool,
    pub seed: u64,
}

/// Short common words for text prompts (about one token each in most vocabularies).
const WORDS: &[&str] = &[
    "the", "model", "runs", "on", "a", "local", "machine", "with", "many", "users", "and", "each",
    "request", "asks", "for", "some", "text", "about", "time", "speed", "memory", "cache", "token",
    "answer", "question", "server", "client", "load", "test", "number",
];

/// A length drawn uniformly within ± `ratio` of `len` (rounded, at least 1):
/// vLLM's `--random-range-ratio`, and `parallel --length-jitter`.
pub fn length_around(rng: &mut Xoshiro256PlusPlus, len: usize, ratio: f64) -> usize {
    let lo = ((len as f64) * (1.0 - ratio)).round().max(1.0) as usize;
    let hi = ((len as f64) * (1.0 + ratio)).round().max(lo as f64) as usize;
    rng.gen_range(lo..=hi)
}

impl RandomPrompts {
    pub fn make(&self) -> Result<Vec<Prompt>, LoadError> {
        if !(0.0..1.0).contains(&self.range_ratio) {
            return Err(LoadError::Shape(format!(
                "--range-ratio must be within 0..1, got {}",
                self.range_ratio
            )));
        }
        if self.input_len == 0 || self.output_len == 0 {
            return Err(LoadError::Shape(
                "input and output lengths must be at least 1".into(),
            ));
        }
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(self.seed);
        let around =
            |rng: &mut Xoshiro256PlusPlus, len: usize| length_around(rng, len, self.range_ratio);
        let ids = self.ids.clone();
        let prefix: Vec<u32> = (0..self.prefix_len)
            .map(|_| rng.gen_range(ids.clone()))
            .collect();
        let mut prompts = Vec::with_capacity(self.count);
        for _ in 0..self.count {
            let n = around(&mut rng, self.input_len);
            let mut tokens = prefix.clone();
            tokens.extend((0..n).map(|_| rng.gen_range(ids.clone())));
            let body = if self.as_text {
                let words: Vec<&str> = tokens
                    .iter()
                    .map(|&t| WORDS[t as usize % WORDS.len()])
                    .collect();
                PromptBody::Text(words.join(" "))
            } else {
                PromptBody::Tokens(tokens.clone())
            };
            prompts.push(Prompt {
                body,
                tokens: tokens.len(),
                max_tokens: around(&mut rng, self.output_len),
            });
        }
        Ok(prompts)
    }
}

/// One run's settings.
#[derive(Clone, Debug)]
pub struct LoadConfig {
    pub target: Target,
    pub prompts: Vec<Prompt>,
    pub arrival: Arrival,
    pub max_concurrency: Option<usize>,
    /// Requests sent (and waited for) before timing starts.
    pub warmup: usize,
    /// Stop sending new requests after this long.
    pub duration: Option<Duration>,
    pub percentiles: Vec<f64>,
    pub slo: Slo,
    /// Longest wait for the next bytes of a response.
    pub read_timeout: Duration,
}

/// What a run produced.
#[derive(Clone, Debug)]
pub struct LoadRun {
    pub summary: Summary,
    pub records: Vec<RequestRecord>,
    pub interrupted: bool,
}

/// Send times (seconds from the start) for `n` requests.
pub fn arrival_times(n: usize, a: &Arrival) -> Result<Vec<f64>, LoadError> {
    if a.rate.is_infinite() {
        return Ok(vec![0.0; n]);
    }
    let positive = |x: f64| x > 0.0 && x.is_finite();
    if a.rate.is_nan() || a.rate <= 0.0 || !positive(a.burstiness) {
        return Err(LoadError::Shape(format!(
            "--request-rate and --burstiness must be positive, got {} and {}",
            a.rate, a.burstiness
        )));
    }
    // Mean gap 1/rate: shape k = burstiness, scale θ = 1 / (rate · k).
    let gamma = Gamma::new(a.burstiness, 1.0 / (a.rate * a.burstiness))
        .map_err(|e| LoadError::Shape(e.to_string()))?;
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(a.seed);
    let mut t = 0.0;
    Ok((0..n)
        .map(|_| {
            let at = t;
            t += gamma.sample(&mut rng);
            at
        })
        .collect())
}

pub fn http_client(cfg: &LoadConfig) -> Result<reqwest::Client, LoadError> {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .read_timeout(cfg.read_timeout)
        .pool_max_idle_per_host(cfg.max_concurrency.unwrap_or(512).min(4096))
        .build()
        .map_err(|e| LoadError::Client(e.to_string()))
}

/// Runs the load; `stop` (e.g. Ctrl-C) ends it early with what finished.
pub fn run(cfg: &LoadConfig, stop: Arc<AtomicBool>) -> Result<LoadRun, LoadError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("rbench-load")
        .enable_all()
        .build()
        .map_err(LoadError::Runtime)?;
    runtime.block_on(run_async(cfg, stop))
}

pub async fn run_async(cfg: &LoadConfig, stop: Arc<AtomicBool>) -> Result<LoadRun, LoadError> {
    let client = http_client(cfg)?;
    let target = Arc::new(cfg.target.clone());
    // Warm-up: the first prompts, a few at a time, not timed.
    let warm = cfg.warmup.min(cfg.prompts.len());
    let t_warm = Instant::now();
    let warm_tasks: Vec<_> = cfg.prompts[..warm]
        .iter()
        .map(|p| client::send(&client, &target, p, t_warm))
        .collect();
    futures_util::future::join_all(warm_tasks).await;

    let times = arrival_times(cfg.prompts.len(), &cfg.arrival)?;
    let limit = Arc::new(tokio::sync::Semaphore::new(
        cfg.max_concurrency
            .unwrap_or(tokio::sync::Semaphore::MAX_PERMITS),
    ));
    let t0 = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    let mut interrupted = false;
    for (i, (prompt, at)) in cfg.prompts.iter().zip(times).enumerate() {
        if stop.load(Ordering::Relaxed) {
            interrupted = true;
            break;
        }
        if cfg.duration.is_some_and(|d| t0.elapsed() >= d) {
            break;
        }
        let wait = Duration::from_secs_f64(at).saturating_sub(t0.elapsed());
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        let Ok(permit) = Arc::clone(&limit).acquire_owned().await else {
            break;
        };
        let (client, target, prompt) = (client.clone(), Arc::clone(&target), prompt.clone());
        tasks.spawn(async move {
            let r = client::send(&client, &target, &prompt, t0).await;
            drop(permit);
            (i, r)
        });
    }
    let mut records: Vec<(usize, RequestRecord)> = Vec::with_capacity(tasks.len());
    loop {
        tokio::select! {
            next = tasks.join_next() => match next {
                Some(Ok(r)) => records.push(r),
                Some(Err(_)) => {}
                None => break,
            },
            _ = tokio::time::sleep(Duration::from_millis(100)) => {
                if stop.load(Ordering::Relaxed) {
                    interrupted = true;
                    tasks.abort_all();
                }
            }
        }
    }
    records.sort_by_key(|(i, _)| *i);
    let records: Vec<RequestRecord> = records.into_iter().map(|(_, r)| r).collect();
    let duration = records.iter().map(|r| r.end).fold(0.0, f64::max).max(1e-9);
    let summary = Summary::of(
        &records,
        duration,
        &cfg.percentiles,
        &cfg.slo,
        cfg.max_concurrency,
    );
    Ok(LoadRun {
        summary,
        records,
        interrupted,
    })
}

/// Counts output tokens of requests the server sent no usage for by
/// tokenizing their text, and recomputes the summary.
pub fn count_with_tokenizer(
    run: &mut LoadRun,
    cfg: &LoadConfig,
    count: impl Fn(&str) -> Option<usize>,
) {
    let mut changed = false;
    for r in run
        .records
        .iter_mut()
        .filter(|r| r.ok() && r.tokens_from == metrics::TokenSource::Chunks)
    {
        if let Some(n) = count(&r.text) {
            r.output_tokens = n;
            r.tokens_from = metrics::TokenSource::Tokenizer;
            changed = true;
        }
    }
    if changed {
        run.summary = Summary::of(
            &run.records,
            run.summary.duration,
            &cfg.percentiles,
            &cfg.slo,
            cfg.max_concurrency,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrivals_have_the_asked_rate_and_burstiness_spreads_them() {
        let poisson = arrival_times(
            4000,
            &Arrival {
                rate: 20.0,
                burstiness: 1.0,
                seed: 1,
            },
        )
        .unwrap();
        let span = poisson[3999];
        assert!((span / 3999.0 - 0.05).abs() < 0.005, "{span}");
        let gaps = |t: &[f64]| -> f64 {
            let g: Vec<f64> = t.windows(2).map(|w| w[1] - w[0]).collect();
            let m = g.iter().sum::<f64>() / g.len() as f64;
            (g.iter().map(|x| (x - m).powi(2)).sum::<f64>() / g.len() as f64).sqrt() / m
        };
        let bursty = arrival_times(
            4000,
            &Arrival {
                rate: 20.0,
                burstiness: 0.25,
                seed: 1,
            },
        )
        .unwrap();
        // Coefficient of variation 1/sqrt(k): 1 for Poisson, 2 at k = 0.25.
        assert!((gaps(&poisson) - 1.0).abs() < 0.1);
        assert!((gaps(&bursty) - 2.0).abs() < 0.3);
        let all = Arrival {
            rate: f64::INFINITY,
            burstiness: 1.0,
            seed: 0,
        };
        assert_eq!(arrival_times(3, &all).unwrap(), vec![0.0; 3]);
        assert!(arrival_times(3, &Arrival { rate: 0.0, ..all }).is_err());
    }

    #[test]
    fn random_prompts_keep_lengths_in_range_and_share_the_prefix() {
        let spec = RandomPrompts {
            count: 200,
            input_len: 100,
            output_len: 20,
            range_ratio: 0.5,
            prefix_len: 8,
            ids: 1000..2000,
            as_text: false,
            seed: 3,
        };
        let prompts = spec.make().unwrap();
        assert_eq!(prompts, spec.make().unwrap(), "seeded");
        let first = match &prompts[0].body {
            PromptBody::Tokens(t) => t[..8].to_vec(),
            PromptBody::Text(_) => unreachable!(),
        };
        for p in &prompts {
            assert!((58..=158).contains(&p.tokens), "{}", p.tokens);
            assert!((10..=30).contains(&p.max_tokens));
            let PromptBody::Tokens(t) = &p.body else {
                unreachable!()
            };
            assert_eq!(t[..8], first[..]);
            assert!(t.iter().all(|id| (1000..2000).contains(id)));
        }
        let text = RandomPrompts {
            as_text: true,
            ..spec.clone()
        };
        assert!(matches!(text.make().unwrap()[0].body, PromptBody::Text(_)));
        assert!(RandomPrompts {
            range_ratio: 1.0,
            ..spec
        }
        .make()
        .is_err());
    }

    #[test]
    fn outputs_without_usage_are_counted_with_the_tokenizer() {
        let record = |text: &str, from| RequestRecord {
            prompt_tokens: 3,
            sent: 0.0,
            chunks: vec![0.1, 0.2],
            end: 0.3,
            output_tokens: 2,
            tokens_from: from,
            error: None,
            server_timings: None,
            text: text.into(),
        };
        let cfg = LoadConfig {
            target: Target {
                base_url: String::new(),
                backend: client::Backend::Completions,
                model: None,
                api_key: None,
                ignore_eos: false,
            },
            prompts: vec![],
            arrival: Arrival {
                rate: f64::INFINITY,
                burstiness: 1.0,
                seed: 0,
            },
            max_concurrency: None,
            warmup: 0,
            duration: None,
            percentiles: vec![50.0],
            slo: Slo::default(),
            read_timeout: Duration::from_secs(1),
        };
        let records = vec![
            record("one two three", metrics::TokenSource::Chunks),
            record("x", metrics::TokenSource::Usage),
        ];
        let mut run = LoadRun {
            summary: Summary::of(&records, 1.0, &[50.0], &Slo::default(), None),
            records,
            interrupted: false,
        };
        assert_eq!(run.summary.output_tokens_from, metrics::TokenSource::Chunks);
        count_with_tokenizer(&mut run, &cfg, |t| Some(t.split_whitespace().count()));
        assert_eq!(run.records[0].output_tokens, 3);
        assert_eq!(run.records[1].output_tokens, 2, "usage counts stay");
        assert_eq!(run.summary.total_output_tokens, 5);
        assert_eq!(
            run.summary.output_tokens_from,
            metrics::TokenSource::Tokenizer
        );
    }
}
