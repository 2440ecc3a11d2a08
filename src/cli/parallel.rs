//! `rbench parallel`: N sequences at once through one engine and one KV
//! cache sized from the worker count; throughput scaling, latency, and the
//! worker count to use (see `crate::bench::parallel` for what is timed).

use super::engine_args::EngineArgs;
use super::UsageError;
use crate::bench::list::{self, Bounds};
use crate::bench::parallel::{self as par, ParallelResult};
use crate::bench::parallel_plan::{Plan, PlanRequest};
use crate::bench::parallel_run::{measure_parallel, ParallelError, ParallelEvent, ParallelSpec};
use crate::engine::Engine;
use crate::load::metrics::Slo;
use crate::model::Model;
use anyhow::Context as _;
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use std::path::PathBuf;

const MAX_TOKENS: u64 = 1_000_000;
const MAX_WORKERS: u64 = crate::kv::MAX_SEQS as u64 - 2;

#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:\n  \
rbench parallel -m model.gguf --workers 1,2,4,8 -p 128 -n 256\n  \
rbench parallel -m model.gguf --workers 1-8*2 --requests 32 --shared-prefix 256 -o json --save par.json\n  \
rbench parallel -m synth:qwen2-1.5b --workers 8 -p 128 -n 4096 --dry-run")]
pub struct ParallelArgs {
    /// Model file (GGUF) or synth:PRESET[:FTYPE] [default: synth:llama-125m, synthetic].
    #[arg(short = 'm', long = "model", default_value = "synth:llama-125m")]
    pub model: String,
    /// Worker counts (sequences decoded together): a list or range like 1,2,4,8 or 1-16*2.
    #[arg(short = 'w', long = "workers", default_value = "1,2,4,8")]
    pub workers: String,
    /// Prompt tokens per request (random valid token ids).
    #[arg(short = 'p', long = "n-prompt", default_value_t = 128)]
    pub n_prompt: usize,
    /// Tokens generated per request.
    #[arg(short = 'n', long = "n-predict", default_value_t = 256)]
    pub n_predict: usize,
    /// Requests per worker count, served by continuous batching [default: 4 per
    /// worker of the largest worker count, so percentiles are percentiles].
    #[arg(long)]
    pub requests: Option<usize>,
    /// How requests arrive: burst (all ready; the workers act as W clients, each
    /// sending its next request when its last one finishes) or poisson (at
    /// --rate per second on average, seeded by --seed; queueing counts in latency).
    #[arg(long, default_value = "burst", value_parser = ["burst", "poisson"])]
    pub arrival: String,
    /// Requests per second for --arrival poisson.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Vary each request's prompt and output length uniformly within ± this
    /// share of -p / -n (0.5: ±50%), seeded by --seed.
    #[arg(long = "length-jitter", default_value_t = 0.0)]
    pub length_jitter: f64,
    /// Runs of each worker count; latencies are pooled, t/s averaged (each shown).
    #[arg(short = 'r', long = "repetitions", default_value_t = 1)]
    pub repetitions: usize,
    /// Goodput: requests per second that meet every bound, e.g. ttft=500,tpot=50
    /// (ms; also e2el).
    #[arg(long)]
    pub slo: Option<String>,
    /// Every request starts with the same system prompt of this many tokens,
    /// computed once and shared in the KV cache (also run unshared to compare).
    #[arg(long = "shared-prefix", default_value_t = 0)]
    pub shared_prefix: usize,
    /// Real prompts from a dataset (JSONL / JSON array, .gz; the shapes `rbench
    /// analyze` reads), one per request in file order, instead of random tokens;
    /// -p is then the longest prompt kept (longer ones are left out and counted),
    /// and each request generates its record's answer length (at most -n).
    #[arg(long)]
    pub dataset: Option<PathBuf>,
    /// Take -p / -n from an `rbench analyze -o json` result.
    #[arg(long = "from-analysis")]
    pub from_analysis: Option<PathBuf>,
    /// Most tokens per decode step.
    #[arg(short = 'b', long = "batch-size", default_value_t = 2048)]
    pub n_batch: usize,
    /// Engine flags; `-c` defaults to workers × (n_prompt + n_predict,
    /// rounded up to 256).
    #[command(flatten)]
    pub engine: EngineArgs,
    /// TPOT p99 budget in ms for the interactive recommendation.
    #[arg(long = "tpot-budget", default_value_t = par::DEFAULT_TPOT_BUDGET_MS)]
    pub tpot_budget: f64,
    /// TTFT p99 budget in ms for the interactive recommendation.
    #[arg(long = "ttft-budget", default_value_t = par::DEFAULT_TTFT_BUDGET_MS)]
    pub ttft_budget: f64,
    /// Output format on stdout: md or json.
    #[arg(short = 'o', long = "output", default_value = "md", value_parser = ["md", "json"])]
    pub output: String,
    /// Also write the JSON result to this file (written even if a later worker count fails).
    #[arg(long)]
    pub save: Option<PathBuf>,
    /// Print the plan (n_ctx, KV bytes, model bytes, compute estimate) without loading weights.
    #[arg(long = "dry-run")]
    pub dry_run: bool,
    /// Skip the untimed warm-up run.
    #[arg(long = "no-warmup")]
    pub no_warmup: bool,
    /// Stop a request at an end-of-generation token (default: always generate -n tokens).
    #[arg(long = "stop-at-eog")]
    pub stop_at_eog: bool,
    /// Seed of the random prompt tokens, lengths and arrivals.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// What `validate` made of the flags.
struct Checked {
    workers: Vec<usize>,
    budgets: par::Budgets,
    slo: Option<Slo>,
}

/// `--slo ttft=500,tpot=50` (`:` works too, as in `rbench load --goodput`).
fn parse_slo(text: &str) -> Result<Slo, UsageError> {
    let items: Vec<String> = text
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| s.trim().replacen('=', ":", 1))
        .collect();
    let slo = Slo::parse(&items).map_err(|e| UsageError(e.replace("--goodput", "--slo")))?;
    if !slo.is_set() {
        return Err(UsageError(format!(
            "--slo {text}: give at least one of ttft=MS, tpot=MS, e2el=MS"
        )));
    }
    Ok(slo)
}

/// Length `base` varied uniformly within ± `jitter` (no draw without jitter).
fn jittered(rng: &mut Xoshiro256PlusPlus, base: usize, jitter: f64) -> usize {
    if jitter <= 0.0 {
        return base;
    }
    crate::load::length_around(rng, base, jitter)
}

/// The longest a jittered length can be.
fn jitter_max(base: usize, jitter: f64) -> usize {
    ((base as f64) * (1.0 + jitter.max(0.0)))
        .round()
        .max(base as f64) as usize
}

/// `-p` / `-n` from an analyze result's recommendation.
pub(super) fn from_analysis(path: &std::path::Path) -> anyhow::Result<(usize, usize)> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let v: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| UsageError(format!("{} is not JSON: {e}", path.display())))?;
    // A saved result wraps the command's JSON in "result".
    let rec = v
        .get("recommendation")
        .or_else(|| v.get("result").and_then(|r| r.get("recommendation")));
    let field = |name: &str| {
        rec.and_then(|r| r.get(name))
            .and_then(serde_json::Value::as_u64)
            .and_then(|n| usize::try_from(n).ok())
    };
    match (field("n_prompt"), field("n_predict")) {
        (Some(p), Some(n)) => Ok((p, n)),
        _ => Err(UsageError(format!(
            "{} has no recommendation.n_prompt / recommendation.n_predict (make it with `rbench analyze DATA -o json`)",
            path.display()
        ))
        .into()),
    }
}

fn validate(args: &mut ParallelArgs) -> anyhow::Result<Checked> {
    if let Some(path) = &args.from_analysis {
        let (p, n) = from_analysis(path)?;
        args.n_prompt = p;
        args.n_predict = n;
    }
    let workers: Vec<usize> = list::parse_list(
        "--workers",
        &args.workers,
        Bounds {
            min: 1,
            max: MAX_WORKERS,
        },
    )
    .map_err(|e| UsageError(e.to_string()))?
    .into_iter()
    .map(|w| w as usize)
    .collect();
    let in_range = |flag: &str, v: usize, min: usize, max: u64| -> anyhow::Result<()> {
        if v < min || v as u64 > max {
            return Err(
                UsageError(format!("{flag} must be between {min} and {max}, got {v}")).into(),
            );
        }
        Ok(())
    };
    in_range("-p/--n-prompt", args.n_prompt, 1, MAX_TOKENS)?;
    in_range("-n/--n-predict", args.n_predict, 1, MAX_TOKENS)?;
    in_range("--shared-prefix", args.shared_prefix, 0, MAX_TOKENS)?;
    in_range("-b/--batch-size", args.n_batch, 1, MAX_TOKENS)?;
    if let Some(r) = args.requests {
        in_range("--requests", r, 1, MAX_TOKENS)?;
    }
    args.engine.validate()?;
    for (flag, ms) in [
        ("--tpot-budget", args.tpot_budget),
        ("--ttft-budget", args.ttft_budget),
    ] {
        if !(ms.is_finite() && ms > 0.0) {
            return Err(
                UsageError(format!("{flag} must be a positive number of ms, got {ms}")).into(),
            );
        }
    }
    if !(0.0..1.0).contains(&args.length_jitter) {
        return Err(UsageError(format!(
            "--length-jitter must be at least 0 and under 1 (0.5 = ±50%), got {}",
            args.length_jitter
        ))
        .into());
    }
    in_range("-r/--repetitions", args.repetitions, 1, 1000)?;
    match (args.arrival.as_str(), args.rate) {
        ("poisson", None) => {
            return Err(
                UsageError("--arrival poisson needs --rate R (requests per second)".into()).into(),
            )
        }
        ("poisson", Some(r)) if !(r.is_finite() && r > 0.0) => {
            return Err(UsageError(format!(
                "--rate must be a positive number of requests per second, got {r}"
            ))
            .into())
        }
        ("burst", Some(_)) => {
            return Err(UsageError(
                "--rate applies to --arrival poisson (burst sends every request at once)".into(),
            )
            .into())
        }
        _ => {}
    }
    let slo = args.slo.as_deref().map(parse_slo).transpose()?;
    let max_workers = workers.iter().copied().max().unwrap_or(1);
    if args.n_batch < max_workers {
        return Err(UsageError(format!(
            "-b/--batch-size {} is below the {max_workers} workers that generate at once",
            args.n_batch
        ))
        .into());
    }
    Ok(Checked {
        workers,
        budgets: par::Budgets {
            ttft_ms: args.ttft_budget,
            tpot_ms: args.tpot_budget,
        },
        slo,
    })
}

/// The plan for these flags (the model read from its header only).
fn make_plan(args: &ParallelArgs, workers: &[usize]) -> anyhow::Result<Plan> {
    let placement = args.engine.placement.spec()?;
    let req = PlanRequest {
        model: &args.model,
        workers,
        n_prompt: jitter_max(args.n_prompt, args.length_jitter),
        n_predict: jitter_max(args.n_predict, args.length_jitter),
        requests: args.requests,
        shared_prefix: args.shared_prefix,
        n_ctx: args.engine.ctx,
        n_ubatch: args.engine.n_ubatch,
        flash_attn: args.engine.flash_attn.enabled(),
        type_k: args.engine.cache_type_k.ggml(),
        type_v: args.engine.cache_type_v.ggml(),
        placement: &placement,
        offload_kv: args.engine.placement.offload_kv(),
    };
    Plan::new(&req).map_err(|e| match e.is_usage() {
        true => UsageError(e.to_string()).into(),
        false => anyhow::Error::new(e),
    })
}

/// Up to `want` prompts of `--dataset`, of at most `n_prompt` tokens (the
/// longest the cache was planned for), repeated in order to `want`, each
/// with the token count of its recorded answer (0 where there is none).
pub(super) fn dataset_prompts(
    path: &std::path::Path,
    tok: &crate::tokenizer::Tokenizer,
    want: usize,
    n_prompt: usize,
) -> anyhow::Result<Vec<(Vec<u32>, usize)>> {
    use crate::analyze::AnalyzeError;
    let found = crate::analyze::prompts::dataset_prompts(path, tok, want).map_err(|e| {
        let usage = match &e {
            AnalyzeError::NotJson { .. } | AnalyzeError::NoShape { .. } => format!(
                "{}: no record has a known shape (see `rbench analyze --help` for the shapes)",
                path.display()
            ),
            AnalyzeError::NoRecords { skipped } => format!(
                "{}: no usable prompt ({skipped} records left out)",
                path.display()
            ),
            _ => return anyhow::Error::new(e).context(format!("reading {}", path.display())),
        };
        UsageError(usage).into()
    })?;
    let mut prompts: Vec<(Vec<u32>, usize)> =
        found.prompts.into_iter().zip(found.output_tokens).collect();
    let too_long = prompts.iter().filter(|p| p.0.len() > n_prompt).count();
    prompts.retain(|p| p.0.len() <= n_prompt);
    eprintln!(
        "dataset {}: {} prompts ({}), {} records left out, {too_long} longer than -p {n_prompt} left out",
        path.display(),
        prompts.len(),
        found.shape.name(),
        found.skipped,
    );
    if prompts.is_empty() {
        anyhow::bail!("no dataset prompt fits -p {n_prompt} (raise -p)");
    }
    // Fewer prompts than requests: they are used again in order.
    Ok((0..want)
        .map(|i| prompts[i % prompts.len()].clone())
        .collect())
}

pub fn run(mut args: ParallelArgs) -> anyhow::Result<()> {
    let Checked {
        workers,
        budgets,
        slo,
    } = validate(&mut args)?;
    let plan = make_plan(&args, &workers)?;
    if args.dry_run {
        if args.output == "json" {
            outln!("{}", serde_json::to_string_pretty(&plan)?);
        } else {
            for l in plan.lines() {
                outln!("{l}");
            }
            outln!("fits: {}", if plan.fits { "yes" } else { "no" });
        }
        return Ok(());
    }
    for l in plan.lines() {
        eprintln!("{l}");
    }
    if let Some(shortfall) = plan.shortfall() {
        anyhow::bail!(shortfall);
    }
    let path = crate::model::resolve_model_path(&args.model)?;
    // A sequence's numbers must not depend on the batch it shares.
    let model = Model::load(&path, &args.engine.load_options(true)?)
        .with_context(|| format!("loading {}", path.display()))?;
    super::progress::report_placement(&model);
    super::progress::report_weight_copies(&model);
    if model.info.synthetic {
        eprintln!(
            "note: {} is a synthetic model (random weights)",
            path.display()
        );
    }
    if let Some(problem) = model.tokenizer.text_problem() {
        anyhow::ensure!(
            args.dataset.is_none(),
            "--dataset needs the model's tokenizer: {problem}"
        );
        eprintln!(
            "warning: {}: {problem}; random token prompts need no tokenizer, so the run goes on",
            path.display()
        );
    }
    let cfg = args.engine.config(plan.n_ctx, true);
    let mut engine = Engine::new(&model, cfg.clone())?;
    eprintln!(
        "engine: n_ctx {}, {} threads, flash-attn {}, {} kernels, compute buffer {}",
        plan.n_ctx,
        cfg.n_threads,
        if cfg.flash_attn { "on" } else { "off" },
        cfg.kernels.name(),
        crate::format::bytes(engine.compute_buffer_bytes() as u64)
    );

    let mut rng = Xoshiro256PlusPlus::seed_from_u64(args.seed);
    let n_vocab = model.hparams.n_vocab;
    let random = |rng: &mut Xoshiro256PlusPlus, n: usize| -> Vec<u32> {
        (0..n).map(|_| rng.gen_range(0..n_vocab)).collect()
    };
    let prefix = random(&mut rng, args.shared_prefix);
    let kv_bytes_per_cell = plan.kv_cache_bytes / plan.n_ctx.max(1) as u64;
    let mut spec = ParallelSpec {
        workers: &workers,
        requests: args.requests,
        n_predict: args.n_predict,
        n_predicts: &[],
        n_batch: args.n_batch,
        stop_at_eog: args.stop_at_eog,
        warmup: !args.no_warmup,
        budgets,
        prompts: &[],
        prefix: &prefix,
        arrivals: &[],
        repetitions: args.repetitions,
        slo: slo.clone(),
        kv_bytes_per_cell,
    };
    let n_requests = spec.n_requests();
    let n_predict_max = jitter_max(args.n_predict, args.length_jitter);
    let (prompts, mut n_predicts): (Vec<Vec<u32>>, Vec<usize>) = match &args.dataset {
        None => (0..n_requests)
            .map(|_| {
                let n = jittered(&mut rng, args.n_prompt, args.length_jitter);
                (random(&mut rng, n), 0)
            })
            .unzip(),
        Some(path) => dataset_prompts(
            path,
            &model.tokenizer,
            n_requests,
            jitter_max(args.n_prompt, args.length_jitter),
        )?
        .into_iter()
        .unzip(),
    };
    // A recorded answer's length (at most what the cache was planned for);
    // -n (jittered) where there is none.
    for n in &mut n_predicts {
        *n = match *n {
            0 => jittered(&mut rng, args.n_predict, args.length_jitter),
            recorded => recorded.min(n_predict_max),
        };
    }
    let arrivals: Vec<std::time::Duration> = match args.rate {
        Some(rate) if args.arrival == "poisson" => {
            let pattern = crate::load::Arrival {
                rate,
                burstiness: 1.0,
                seed: args.seed,
            };
            crate::load::arrival_times(n_requests, &pattern)?
                .into_iter()
                .map(std::time::Duration::from_secs_f64)
                .collect()
        }
        _ => Vec::new(),
    };
    spec.prompts = &prompts;
    spec.n_predicts = &n_predicts;
    spec.arrivals = &arrivals;

    let mut result = ParallelResult {
        model: model.info.model_type(),
        n_ctx: plan.n_ctx,
        kv_cache_bytes: plan.kv_cache_bytes,
        n_threads: cfg.n_threads,
        flash_attn: cfg.flash_attn,
        kernels: cfg.kernels.name().to_string(),
        type_k: cfg.type_k.name().to_string(),
        type_v: cfg.type_v.name().to_string(),
        tpot_budget_ms: args.tpot_budget,
        ttft_budget_ms: args.ttft_budget,
        workload: Some(par::Workload {
            arrival: args.arrival.clone(),
            rate: args.rate,
            requests: spec.n_requests(),
            repetitions: args.repetitions,
            length_jitter: args.length_jitter,
            prompts: args
                .dataset
                .as_ref()
                .map_or("random".into(), |p| p.display().to_string()),
            latency_clock: spec.clock(),
            slo,
        }),
        runs: Vec::new(),
        recommendation: par::recommend(&[], budgets),
        error: None,
        interrupted: false,
    };
    let mut bar: Option<super::progress::Progress> = None;
    let outcome = measure_parallel(
        &mut engine,
        &spec,
        &mut result,
        &super::interrupt::requested,
        &mut |event| match event {
            ParallelEvent::Start { workers, requests } => {
                let jitter = if args.length_jitter > 0.0 {
                    format!(", lengths ±{:.0}%", args.length_jitter * 100.0)
                } else {
                    String::new()
                };
                let arrival = match args.rate {
                    Some(rate) => format!(", Poisson arrivals at {rate} req/s"),
                    None => String::new(),
                };
                eprintln!(
                    "workers {workers}: {requests} requests × ({} prompt + {} generated{jitter}){arrival}",
                    args.n_prompt, args.n_predict
                );
                bar = Some(super::progress::Progress::bar(
                    requests as u64,
                    format!("{workers} workers"),
                ));
            }
            ParallelEvent::RequestDone => {
                if let Some(b) = &bar {
                    b.inc(1);
                }
            }
            ParallelEvent::Done(run) => {
                bar = None;
                eprintln!(
                    "  prompt {:.1} t/s, generation {:.1} t/s, overall {:.1} t/s",
                    run.prompt_tps, run.gen_tps, run.overall_tps
                );
            }
        },
    );
    drop(bar);
    let outcome: anyhow::Result<()> = match outcome {
        Ok(()) => Ok(()),
        Err(ParallelError::Interrupted { done, total }) => Err(super::interrupt::Interrupted {
            done: format!("{done} of {total} worker counts"),
        }
        .into()),
        Err(e) => {
            result.error = Some(e.to_string());
            Err(e.into())
        }
    };
    if let Some(path) = &args.save {
        // Saved even when a later worker count failed or Ctrl-C stopped the run.
        use crate::report::saved::{self, ModelIdentity, ResultKind};
        let identity = ModelIdentity::of(&model).map_err(|e| anyhow::anyhow!("--save: {e}"))?;
        saved::save(
            path,
            ResultKind::Parallel,
            &saved::command_line(),
            Some(identity),
            serde_json::to_value(&result)?,
        )
        .map_err(|e| anyhow::anyhow!("--save: {e}"))?;
        eprintln!(
            "saved {} (make a report with: rbench report {} -o report.md)",
            path.display(),
            path.display()
        );
    }
    if args.output == "json" {
        outln!("{}", serde_json::to_string_pretty(&result)?);
    } else if !result.runs.is_empty() {
        outln!("{}", par::scaling_table(&result.runs));
        outln!();
        outln!("{}", par::latency_table(&result.runs));
        outln!();
        outln!("{}", par::memory_table(&result.runs));
        if let Some(t) = par::prefix_table(&result.runs) {
            outln!();
            outln!("{t}");
        }
        outln!();
        for l in par::repetition_lines(&result.runs) {
            outln!("{l}");
        }
        for l in par::analysis_lines(&result.runs, &result.recommendation, budgets) {
            outln!("{l}");
        }
    }
    outcome
}
