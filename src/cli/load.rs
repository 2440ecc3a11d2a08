//! `rbench load`: flags into load runs (one shape, or the steps of a
//! scenario), a table per step, or `vllm bench serve`'s JSON.

use super::UsageError;
use crate::format::{numbers_from, table};
use crate::load::client::{Backend, Prompt, PromptBody, Target};
use crate::load::metrics::{format_percentile, Slo, Summary};
use crate::load::scenario::{self, ScenarioName, Shape};
use crate::load::{self, Arrival, LoadConfig, RandomPrompts};
use anyhow::Context as _;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:\n  \
rbench load                                        (starts rbench serve on the default model in-process)\n  \
rbench load --base-url http://127.0.0.1:8080 --max-concurrency 8 --num-prompts 64 --random-input-len 512 --random-output-len 128\n  \
rbench load --base-url http://127.0.0.1:8080 --scenario sweep --scale 0.125 -o json\n  \
rbench load --base-url http://127.0.0.1:8080 --request-rate 4 --burstiness 0.5 --goodput ttft:1000 tpot:100")]
pub struct LoadArgs {
    /// Server to measure (e.g. http://127.0.0.1:8080); without it, rbench
    /// serve is started in this process on -m.
    #[arg(long = "base-url")]
    pub base_url: Option<String>,
    /// With --base-url: the `model` sent in requests (vLLM's --model)
    /// [default: the first of the server's /v1/models]. Without: the model
    /// (GGUF file or synth:PRESET) to serve in this process [default:
    /// synth:llama-125m].
    #[arg(short = 'm', long = "model")]
    pub model: Option<String>,
    /// Endpoint: openai (/v1/completions) or openai-chat (/v1/chat/completions).
    #[arg(long, value_enum, default_value_t = Backend::Completions)]
    pub backend: Backend,
    #[arg(long = "api-key")]
    pub api_key: Option<String>,
    /// Ask the server to ignore end-of-sequence tokens (exact output lengths).
    #[arg(long = "ignore-eos")]
    pub ignore_eos: bool,
    /// Most requests in flight at once [default: no cap].
    #[arg(long = "max-concurrency")]
    pub max_concurrency: Option<usize>,
    /// Requests per second ("inf": all at once, up to the concurrency cap).
    #[arg(long = "request-rate", default_value = "inf")]
    pub request_rate: f64,
    /// Gamma shape of the gaps between requests: 1 is Poisson, below 1 burstier.
    #[arg(long, default_value_t = 1.0)]
    pub burstiness: f64,
    /// Requests per run [default: 4 × the concurrency, at least 8].
    #[arg(long = "num-prompts")]
    pub num_prompts: Option<usize>,
    /// Untimed requests first.
    #[arg(long, default_value_t = 1)]
    pub warmup: usize,
    /// Stop sending new requests after this many seconds.
    #[arg(long)]
    pub duration: Option<f64>,
    #[arg(long = "random-input-len", default_value_t = 1024)]
    pub input_len: usize,
    #[arg(long = "random-output-len", default_value_t = 128)]
    pub output_len: usize,
    /// Lengths uniform within ±this fraction.
    #[arg(long = "range-ratio", default_value_t = 0.0)]
    pub range_ratio: f64,
    /// Tokens every prompt starts with.
    #[arg(long = "prefix-len", default_value_t = 0)]
    pub prefix_len: usize,
    /// Real prompts from a dataset (JSONL / JSON array, .gz; the shapes `rbench
    /// analyze` reads), in file order, tokenized with --tokenizer; prompts
    /// longer than --random-input-len are left out and counted.
    #[arg(long)]
    pub dataset: Option<std::path::PathBuf>,
    /// Take --random-input-len / --random-output-len from an `rbench analyze -o json` result.
    #[arg(long = "from-analysis")]
    pub from_analysis: Option<std::path::PathBuf>,
    /// A GGUF file (or a Hugging Face tokenizer.json, for counting only)
    /// whose tokenizer reads --dataset and counts output tokens when a
    /// server sends no usage [default: -m when serving in-process].
    #[arg(long)]
    pub tokenizer: Option<String>,
    /// The serving report's scenarios instead of one shape.
    #[arg(long, value_enum)]
    pub scenario: Option<ScenarioName>,
    /// Multiply the scenarios' token counts (e.g. 0.125 for a small model or machine).
    #[arg(long, default_value_t = 1.0)]
    pub scale: f64,
    /// Percentiles reported for every latency.
    #[arg(long = "metric-percentiles", default_value = "50,90,99")]
    pub percentiles: String,
    /// Service-level bounds for goodput: ttft:MS tpot:MS e2el:MS.
    #[arg(long, num_args = 1..)]
    pub goodput: Vec<String>,
    /// Seconds to wait for the next bytes of a response.
    #[arg(long = "read-timeout", default_value_t = 300.0)]
    pub read_timeout: f64,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Also write the JSON result in rbench's saved-result envelope (for `rbench report`).
    #[arg(long)]
    pub save: Option<std::path::PathBuf>,
    /// Output on stdout: md (a table per run) or json (`vllm bench serve`'s fields).
    #[arg(short = 'o', long = "output", default_value = "md", value_parser = ["md", "json"])]
    pub output: String,
}

/// The in-process server's model when -m is not given.
const DEFAULT_MODEL: &str = "synth:llama-125m";

/// What counts output tokens (and, from a GGUF, reads datasets).
enum Counting {
    Gguf(crate::tokenizer::Tokenizer),
    Json(tokenizers::Tokenizer),
}

impl Counting {
    fn count(&self, text: &str) -> Option<usize> {
        match self {
            Counting::Gguf(t) => t.encode(text, false).ok().map(|ids| ids.len()),
            Counting::Json(t) => t.encode(text, false).ok().map(|e| e.len()),
        }
    }
}

fn percentiles(spec: &str) -> Result<Vec<f64>, UsageError> {
    spec.split(',')
        .map(|p| {
            p.trim()
                .parse::<f64>()
                .ok()
                .filter(|v| (0.0..=100.0).contains(v))
                .ok_or_else(|| {
                    UsageError(format!("--metric-percentiles: {p} is not within 0..100"))
                })
        })
        .collect()
}

/// The first model the server lists, and its context when it says.
fn server_model(base: &str, key: Option<&str>) -> anyhow::Result<(Option<String>, Option<usize>)> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()?;
        let base = base.trim_end_matches('/');
        let base = base.strip_suffix("/v1").unwrap_or(base);
        let mut req = client.get(format!("{base}/v1/models"));
        if let Some(k) = key {
            req = req.bearer_auth(k);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("cannot reach {base}/v1/models: {e}"))?;
        if !resp.status().is_success() {
            anyhow::bail!("{base}/v1/models answered HTTP {}", resp.status().as_u16());
        }
        let v: serde_json::Value = resp.json().await?;
        let first = &v["data"][0];
        Ok((
            first["id"].as_str().map(str::to_string),
            first["max_model_len"].as_u64().map(|n| n as usize),
        ))
    })
}

pub fn run(mut args: LoadArgs) -> anyhow::Result<()> {
    if let Some(path) = &args.from_analysis {
        let (p, n) = super::parallel::from_analysis(path)?;
        args.input_len = p;
        args.output_len = n;
    }
    if args.dataset.is_some() && args.scenario.is_some() {
        return Err(UsageError(
            "--dataset and --scenario cannot be combined: scenarios make their own prompts".into(),
        )
        .into());
    }
    let local_model = args
        .model
        .clone()
        .unwrap_or_else(|| DEFAULT_MODEL.to_string());
    let tokenizer = match args
        .tokenizer
        .clone()
        .or_else(|| args.base_url.is_none().then(|| local_model.clone()))
    {
        Some(spec) if spec.ends_with(".json") => Some(Counting::Json(
            tokenizers::Tokenizer::from_file(&spec)
                .map_err(|e| anyhow::anyhow!("reading {spec}: {e}"))?,
        )),
        Some(spec) => {
            let path = crate::model::resolve_model_path(&spec)?;
            let file = crate::gguf::GgufFile::open(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            Some(Counting::Gguf(crate::tokenizer::Tokenizer::from_gguf(
                &file,
            )?))
        }
        None => None,
    };
    if args.dataset.is_some() && !matches!(tokenizer, Some(Counting::Gguf(_))) {
        return Err(UsageError(
            "--dataset needs --tokenizer MODEL.gguf to read its prompts".into(),
        )
        .into());
    }
    let pcts = percentiles(&args.percentiles)?;
    let slo = Slo::parse(&args.goodput).map_err(UsageError)?;
    if args.max_concurrency == Some(0) || args.num_prompts == Some(0) {
        return Err(
            UsageError("--max-concurrency and --num-prompts must be at least 1".into()).into(),
        );
    }
    if args.read_timeout.is_nan()
        || args.read_timeout <= 0.0
        || args.duration.is_some_and(|d| d.is_nan() || d <= 0.0)
    {
        return Err(UsageError("--read-timeout and --duration must be positive".into()).into());
    }
    // No server given: serve the model here.
    let mut local = None;
    let base_url = match &args.base_url {
        Some(u) => u.clone(),
        None => {
            let server =
                super::serve::start_local(&local_model, args.max_concurrency.unwrap_or(8))?;
            let url = format!("http://{}", server.addr);
            eprintln!("rbench load: serving {local_model} at {url} in this process");
            local = Some(server);
            url
        }
    };
    let (listed, context) = server_model(&base_url, args.api_key.as_deref())?;
    // Serving in-process, -m named the file; the server names the model.
    let model = match &args.base_url {
        Some(_) => args.model.clone().or(listed),
        None => listed,
    };
    let target = Target {
        base_url: base_url.clone(),
        backend: args.backend,
        model: model.clone(),
        api_key: args.api_key.clone(),
        ignore_eos: args.ignore_eos,
    };
    let steps: Vec<Shape> = match args.scenario {
        Some(name) => scenario::shapes(name, args.scale, context).map_err(UsageError)?,
        None => vec![Shape {
            scenario: "custom",
            input_len: args.input_len,
            output_len: args.output_len,
            range_ratio: args.range_ratio,
            concurrency: args.max_concurrency.unwrap_or(0),
            note: None,
        }],
    };
    let stop = Arc::new(AtomicBool::new(false));
    super::interrupt::install().map_err(anyhow::Error::msg)?;
    let watcher = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            while !super::interrupt::requested() {
                std::thread::sleep(Duration::from_millis(100));
                if Arc::strong_count(&stop) == 1 {
                    return;
                }
            }
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
        })
    };
    let mut results = Vec::new();
    let mut interrupted = false;
    for (i, step) in steps.iter().enumerate() {
        let concurrency = (step.concurrency > 0)
            .then_some(step.concurrency)
            .or(args.max_concurrency);
        let count = args
            .num_prompts
            .unwrap_or_else(|| (4 * concurrency.unwrap_or(2)).max(8));
        let prompts = match (&args.dataset, &tokenizer) {
            (Some(path), Some(Counting::Gguf(tok))) => {
                let ids = super::parallel::dataset_prompts(
                    path,
                    tok,
                    count + args.warmup,
                    step.input_len,
                )?;
                ids.into_iter()
                    .map(|(ids, _)| {
                        let body = match args.backend {
                            Backend::Completions => PromptBody::Tokens(ids.clone()),
                            Backend::Chat => PromptBody::Text(tok.decode(&ids).unwrap_or_default()),
                        };
                        Prompt {
                            body,
                            tokens: ids.len(),
                            max_tokens: step.output_len,
                        }
                    })
                    .collect()
            }
            _ => RandomPrompts {
                count: count + args.warmup,
                input_len: step.input_len,
                output_len: step.output_len,
                range_ratio: step.range_ratio,
                prefix_len: args.prefix_len,
                ids: 1000..10_000,
                as_text: args.backend == Backend::Chat,
                seed: args.seed.wrapping_add(i as u64),
            }
            .make()
            .map_err(|e| UsageError(e.to_string()))?,
        };
        if prompts.len() <= args.warmup {
            return Err(UsageError(format!(
                "{} prompts: not enough for --warmup {} and a run",
                prompts.len(),
                args.warmup
            ))
            .into());
        }
        let cfg = LoadConfig {
            target: target.clone(),
            prompts: prompts[args.warmup..].to_vec(),
            arrival: Arrival {
                rate: args.request_rate,
                burstiness: args.burstiness,
                seed: args.seed,
            },
            max_concurrency: concurrency,
            warmup: 0,
            duration: args.duration.map(Duration::from_secs_f64),
            percentiles: pcts.clone(),
            slo: slo.clone(),
            read_timeout: Duration::from_secs_f64(args.read_timeout),
        };
        if args.warmup > 0 {
            let warm = LoadConfig {
                prompts: prompts[..args.warmup].to_vec(),
                percentiles: vec![],
                ..cfg.clone()
            };
            load::run(&warm, Arc::clone(&stop))?;
        }
        eprintln!(
            "rbench load: {} {} → {} at concurrency {}, {} requests{}",
            step.scenario,
            step.input_len,
            step.output_len,
            concurrency.map_or("unlimited".to_string(), |c| c.to_string()),
            cfg.prompts.len(),
            step.note
                .as_deref()
                .map(|n| format!(" ({n})"))
                .unwrap_or_default()
        );
        let mut run = load::run(&cfg, Arc::clone(&stop))?;
        if let Some(tok) = &tokenizer {
            load::count_with_tokenizer(&mut run, &cfg, |text| tok.count(text));
        }
        interrupted |= run.interrupted;
        results.push((step.clone(), run.summary));
        if interrupted {
            break;
        }
    }
    drop(stop);
    let _ = watcher.join();
    drop(local);
    let runs: Vec<serde_json::Value> = results
        .iter()
        .map(|(step, s)| {
            let mut v = s.to_vllm_json();
            v["scenario"] = step.scenario.into();
            v["input_len"] = step.input_len.into();
            v["output_len"] = step.output_len.into();
            v["range_ratio"] = step.range_ratio.into();
            v["note"] = step.note.clone().into();
            v["request_rate"] = if args.request_rate.is_finite() {
                args.request_rate.into()
            } else {
                "inf".into()
            };
            v["burstiness"] = args.burstiness.into();
            v
        })
        .collect();
    let out = serde_json::json!({
        "base_url": base_url,
        "backend": args.backend,
        "model_id": model,
        "runs": runs,
    });
    if let Some(path) = &args.save {
        crate::report::saved::save(
            path,
            crate::report::saved::ResultKind::Load,
            &crate::report::saved::command_line(),
            None,
            out.clone(),
        )?;
        eprintln!("rbench load: saved {}", path.display());
    }
    match args.output.as_str() {
        "json" => {
            outln!("{}", serde_json::to_string_pretty(&out)?);
        }
        _ => {
            for (step, s) in &results {
                outln!("{}", render(step, s));
            }
        }
    }
    if interrupted {
        return Err(super::interrupt::Interrupted {
            done: format!("{} of {} runs", results.len(), steps.len()),
        }
        .into());
    }
    Ok(())
}

/// A run as Markdown: totals, then one row per latency.
fn render(step: &Shape, s: &Summary) -> String {
    let mut out = format!(
        "{} {} → {}{} at concurrency {}: {} ok, {} failed in {:.2} s | {:.2} req/s | output {:.1} tok/s | total {:.1} tok/s{} | output tokens from {}\n\n",
        step.scenario,
        step.input_len,
        step.output_len,
        if step.range_ratio > 0.0 {
            format!(" ±{:.0}%", step.range_ratio * 100.0)
        } else {
            String::new()
        },
        s.max_concurrency.map_or("unlimited".to_string(), |c| c.to_string()),
        s.completed,
        s.failed,
        s.duration,
        s.request_throughput,
        s.output_throughput,
        s.total_token_throughput,
        s.request_goodput
            .map(|g| format!(" | goodput {g:.2} req/s"))
            .unwrap_or_default(),
        match s.output_tokens_from {
            crate::load::metrics::TokenSource::Usage => "the server's usage",
            crate::load::metrics::TokenSource::Chunks => "counted chunks",
            crate::load::metrics::TokenSource::Tokenizer => "the tokenizer (no usage sent)",
        }
    );
    let mut header = vec![
        "metric (ms)".to_string(),
        "mean".into(),
        "median".into(),
        "std".into(),
    ];
    header.extend(
        s.ttft
            .percentiles
            .iter()
            .map(|(p, _)| format!("p{}", format_percentile(*p))),
    );
    let rows = [
        ("TTFT", &s.ttft),
        ("TPOT", &s.tpot),
        ("ITL", &s.itl),
        ("E2EL", &s.e2el),
    ]
    .into_iter()
    .map(|(name, l)| {
        let mut row = vec![
            name.to_string(),
            format!("{:.1}", l.mean),
            format!("{:.1}", l.median),
            format!("{:.1}", l.std),
        ];
        row.extend(l.percentiles.iter().map(|(_, v)| format!("{v:.1}")));
        row
    });
    out.push_str(&table(&header, rows, numbers_from(1)));
    if let Some((prompt_ms, per_token_ms)) = s.server_timings {
        out.push_str(&format!(
            "\nthe server's own timings (means): prompt {prompt_ms:.1} ms against TTFT {:.1} ms; {per_token_ms:.2} ms per token against TPOT {:.2} ms",
            s.ttft.mean, s.tpot.mean
        ));
    }
    for (reason, n) in &s.errors {
        out.push_str(&format!("\nfailed ×{n}: {reason}"));
    }
    out
}
