//! `rbench parallel`: N sequences at once through one engine and one KV
//! cache sized from the worker count; throughput scaling, latency, and the
//! worker count to use (see `crate::bench::parallel` for what is timed).

use super::engine_args::EngineArgs;
use super::UsageError;
use crate::bench::list::{self, Bounds};
use crate::bench::parallel::{self as par, ParallelResult, PrefixSharing, WorkerRun};
use crate::engine::{serve, Engine, Request, SamplerConfig, ScheduleConfig};
use crate::gguf::GgufFile;
use crate::kv::sizing;
use crate::model::hparams::Hparams;
use crate::model::memory::{self, MemoryInfo};
use crate::model::{synth, Model};
use anyhow::Context as _;
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use serde::Serialize;
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
    /// Requests in the queue per worker count, served by continuous batching
    /// [default: one per worker, all started together].
    #[arg(long)]
    pub requests: Option<usize>,
    /// Every request starts with the same system prompt of this many tokens,
    /// computed once and shared in the KV cache (also run unshared to compare).
    #[arg(long = "shared-prefix", default_value_t = 0)]
    pub shared_prefix: usize,
    /// Real prompts from a dataset (JSONL / JSON array, .gz; the shapes `rbench
    /// analyze` reads), one per request in file order, instead of random tokens;
    /// -p is then the longest prompt kept (longer ones are left out and counted).
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
    /// Seed of the random prompt tokens.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// What a run will need, known before any weight is loaded.
#[derive(Clone, Debug, Serialize)]
pub struct Plan {
    pub model: String,
    pub workers: Vec<usize>,
    pub n_prompt: usize,
    pub n_predict: usize,
    pub requests: Option<usize>,
    pub shared_prefix: usize,
    pub per_sequence_cells: usize,
    pub n_ctx: usize,
    pub kv_cache_bytes: u64,
    pub model_bytes: u64,
    pub compute_buffer_bytes_estimate: u64,
    pub total_bytes: u64,
    pub mem_available_bytes: Option<u64>,
    pub fits: bool,
    /// The most workers whose caches fit beside the model (None: memory unknown).
    pub max_workers_that_fit: Option<usize>,
    pub type_k: String,
    pub type_v: String,
}

/// Shape facts of a model from its header, or from a preset without writing it.
struct ModelShape {
    hparams: Hparams,
    model_bytes: u64,
}

fn model_shape(spec: &str) -> anyhow::Result<ModelShape> {
    if let Some(parsed) = synth::parse_spec(spec) {
        let (preset, ftype) = parsed?;
        let hparams = preset.hparams();
        let model_bytes = preset
            .tensors()
            .iter()
            .map(|t| {
                let ty = synth::tensor_type(t, ftype, hparams.n_layer, preset.tied_output);
                ty.bytes_for(t.dims.iter().product()).unwrap_or(0)
            })
            .sum();
        return Ok(ModelShape {
            hparams,
            model_bytes,
        });
    }
    let file =
        GgufFile::open(std::path::Path::new(spec)).with_context(|| format!("reading {spec}"))?;
    let hparams = Hparams::from_gguf(&file).with_context(|| format!("reading {spec}"))?;
    Ok(ModelShape {
        hparams,
        model_bytes: file.tensor_data_size(),
    })
}

/// Up to `want` prompts of a dataset as token ids (with BOS as the model
/// asks), in file order, and how many records were left out.
fn dataset_prompts(
    path: &std::path::Path,
    tok: &crate::tokenizer::Tokenizer,
    want: usize,
) -> anyhow::Result<(Vec<Vec<u32>>, String, u64)> {
    use crate::analyze::chat::{join_messages, ChatTemplate};
    use crate::analyze::input::Item;
    use crate::analyze::shape::Exchange;
    use crate::analyze::{RecordReader, Shape, DEFAULT_MAX_RECORD_BYTES};
    let mut reader = RecordReader::open(path, DEFAULT_MAX_RECORD_BYTES)
        .with_context(|| format!("reading {}", path.display()))?;
    let piece = |id: Option<u32>| id.and_then(|i| tok.token_piece(i)).unwrap_or("");
    let template = tok
        .chat_template()
        .and_then(|t| ChatTemplate::new(t, piece(tok.bos_id()), piece(tok.eos_id())).ok());
    // The shape is decided on the first records, as `rbench analyze` does.
    let mut records = Vec::new();
    let mut skipped = 0u64;
    let mut shape = None;
    let mut prompts = Vec::new();
    let take = |shape: &Shape, v: &serde_json::Value, prompts: &mut Vec<Vec<u32>>| -> bool {
        let text = match shape.extract(v) {
            Ok(Exchange::Text { prompt, .. }) => prompt,
            Ok(Exchange::Chat { history, .. }) => match &template {
                Some(t) => match t.render(&history) {
                    Ok(text) => text,
                    Err(_) => return false,
                },
                None => join_messages(&history),
            },
            Err(_) => return false,
        };
        match tok.encode(&text, tok.add_bos_default()) {
            Ok(ids) if !text.is_empty() && !ids.is_empty() => {
                prompts.push(ids);
                true
            }
            _ => false,
        }
    };
    while prompts.len() < want {
        let Some(item) = reader
            .next_item()
            .with_context(|| format!("reading {}", path.display()))?
        else {
            break;
        };
        let Item::Record(raw) = item else {
            skipped += 1;
            continue;
        };
        let Ok(value) = serde_json::from_slice::<serde_json::Value>(&raw.bytes) else {
            skipped += 1;
            continue;
        };
        match &shape {
            Some(sh) => {
                if !take(sh, &value, &mut prompts) {
                    skipped += 1;
                }
            }
            None => {
                records.push(value);
                if records.len() >= 64 {
                    shape = Shape::detect(&records).map(|(sh, _)| sh);
                    let Some(sh) = &shape else { break };
                    for v in records.drain(..) {
                        if !take(sh, &v, &mut prompts) {
                            skipped += 1;
                        }
                    }
                }
            }
        }
    }
    if shape.is_none() && !records.is_empty() {
        shape = Shape::detect(&records).map(|(sh, _)| sh);
        if let Some(sh) = &shape {
            for v in records.drain(..) {
                if !take(sh, &v, &mut prompts) {
                    skipped += 1;
                }
            }
        }
    }
    let Some(shape) = shape else {
        return Err(UsageError(format!(
            "{}: no record has a known shape (see `rbench analyze --help` for the shapes)",
            path.display()
        ))
        .into());
    };
    prompts.truncate(want);
    if prompts.is_empty() {
        return Err(UsageError(format!(
            "{}: no usable prompt ({skipped} records left out)",
            path.display()
        ))
        .into());
    }
    Ok((prompts, shape.name(), skipped))
}

/// `-p` / `-n` from an analyze result's recommendation.
fn from_analysis(path: &std::path::Path) -> anyhow::Result<(usize, usize)> {
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

fn validate(args: &mut ParallelArgs) -> anyhow::Result<Vec<usize>> {
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
    if !(args.tpot_budget.is_finite() && args.tpot_budget > 0.0) {
        return Err(UsageError(format!(
            "--tpot-budget must be a positive number of ms, got {}",
            args.tpot_budget
        ))
        .into());
    }
    let max_workers = workers.iter().copied().max().unwrap_or(1);
    if args.n_batch < max_workers {
        return Err(UsageError(format!(
            "-b/--batch-size {} is below the {max_workers} workers that generate at once",
            args.n_batch
        ))
        .into());
    }
    Ok(workers)
}

fn make_plan(args: &ParallelArgs, workers: &[usize]) -> anyhow::Result<(Plan, Hparams)> {
    let (type_k, type_v) = (
        args.engine.cache_type_k.ggml(),
        args.engine.cache_type_v.ggml(),
    );
    let shape = model_shape(&args.model)?;
    let hp = shape.hparams;
    let max_workers = workers.iter().copied().max().unwrap_or(1);
    // Sized so the unshared comparison run fits too: prefix in every sequence.
    let per_seq = sizing::cells_per_sequence(args.shared_prefix + args.n_prompt, args.n_predict);
    let n_ctx = match args.engine.ctx {
        Some(c) => c,
        None => sizing::n_ctx_for_workers(max_workers, per_seq)
            .map_err(|e| UsageError(e.to_string()))?,
    };
    if args.engine.ctx.is_some()
        && n_ctx < max_workers * (args.shared_prefix + args.n_prompt + args.n_predict)
    {
        return Err(UsageError(format!(
            "-c/--ctx {n_ctx} cannot hold {max_workers} sequences of {} tokens each",
            args.shared_prefix + args.n_prompt + args.n_predict
        ))
        .into());
    }
    let kv_shape =
        sizing::kv_shape(&hp, n_ctx, type_k, type_v).map_err(|e| UsageError(e.to_string()))?;
    let kv_bytes = kv_shape.bytes();
    let compute = memory::compute_estimate(
        &hp,
        args.engine.n_ubatch.min(n_ctx) as u64,
        n_ctx as u64,
        args.engine.flash_attn.enabled(),
    );
    let total = shape.model_bytes + kv_bytes + compute;
    let available = MemoryInfo::detect().available;
    let max_fit = available.map(|a| {
        let budget = a.saturating_sub(shape.model_bytes + compute);
        sizing::max_workers_within(budget, &kv_shape, per_seq)
    });
    Ok((
        Plan {
            model: args.model.clone(),
            workers: workers.to_vec(),
            n_prompt: args.n_prompt,
            n_predict: args.n_predict,
            requests: args.requests,
            shared_prefix: args.shared_prefix,
            per_sequence_cells: per_seq,
            n_ctx,
            kv_cache_bytes: kv_bytes,
            model_bytes: shape.model_bytes,
            compute_buffer_bytes_estimate: compute,
            total_bytes: total,
            mem_available_bytes: available,
            fits: available.is_none_or(|a| total <= a),
            max_workers_that_fit: max_fit,
            type_k: type_k.name().to_string(),
            type_v: type_v.name().to_string(),
        },
        hp,
    ))
}

fn plan_lines(plan: &Plan) -> Vec<String> {
    use crate::format::bytes;
    let mut lines = vec![
        format!(
            "plan: {} workers max × {} cells per sequence ({} prompt{} + {} generated, rounded up to {}) = n_ctx {}",
            plan.workers.iter().copied().max().unwrap_or(1),
            plan.per_sequence_cells,
            plan.n_prompt,
            if plan.shared_prefix > 0 {
                format!(" + {} shared prefix", plan.shared_prefix)
            } else {
                String::new()
            },
            plan.n_predict,
            sizing::CELLS_ALIGN,
            plan.n_ctx
        ),
        format!(
            "memory: KV cache {} (K {} + V {}, all layers) + model {} + compute ≈ {} = {}",
            bytes(plan.kv_cache_bytes),
            plan.type_k,
            plan.type_v,
            bytes(plan.model_bytes),
            bytes(plan.compute_buffer_bytes_estimate),
            bytes(plan.total_bytes)
        ),
    ];
    if let Some(a) = plan.mem_available_bytes {
        lines.push(format!(
            "available: {}{}",
            bytes(a),
            match plan.max_workers_that_fit {
                Some(w) => format!("; at most {w} workers fit at this size"),
                None => String::new(),
            }
        ));
    }
    lines
}

pub fn run(mut args: ParallelArgs) -> anyhow::Result<()> {
    let workers = validate(&mut args)?;
    let (plan, _hp) = make_plan(&args, &workers)?;
    if args.dry_run {
        if args.output == "json" {
            outln!("{}", serde_json::to_string_pretty(&plan)?);
        } else {
            for l in plan_lines(&plan) {
                outln!("{l}");
            }
            outln!("fits: {}", if plan.fits { "yes" } else { "no" });
        }
        return Ok(());
    }
    for l in plan_lines(&plan) {
        eprintln!("{l}");
    }
    if !plan.fits {
        let available = plan.mem_available_bytes.unwrap_or(0);
        anyhow::bail!(
            "not enough memory: the run needs {} (KV cache {} for n_ctx {}) but {} is available; \
             at most {} workers fit at {} cells each (try fewer workers, a smaller -n, or -ctk q8_0 -ctv q8_0)",
            crate::format::bytes(plan.total_bytes),
            crate::format::bytes(plan.kv_cache_bytes),
            plan.n_ctx,
            crate::format::bytes(available),
            plan.max_workers_that_fit.unwrap_or(0),
            plan.per_sequence_cells
        );
    }
    let path = crate::model::resolve_model_path(&args.model)?;
    // A sequence's numbers must not depend on the batch it shares.
    let model = Model::load(&path, &args.engine.load_options(true))
        .with_context(|| format!("loading {}", path.display()))?;
    if model.info.synthetic {
        eprintln!(
            "note: {} is a synthetic model (random weights)",
            path.display()
        );
    }
    let cfg = args.engine.config(plan.n_ctx, true);
    let n_threads = cfg.n_threads;
    let mut engine = Engine::new(&model, cfg.clone())?;
    eprintln!(
        "engine: n_ctx {}, {} threads, flash-attn {}, {} kernels, compute buffer {}",
        plan.n_ctx,
        n_threads,
        if cfg.flash_attn { "on" } else { "off" },
        cfg.kernels.name(),
        crate::format::bytes(engine.compute_buffer_bytes() as u64)
    );

    let mut rng = Xoshiro256PlusPlus::seed_from_u64(args.seed);
    let n_vocab = model.hparams.n_vocab;
    let mut random = |n: usize| -> Vec<u32> { (0..n).map(|_| rng.gen_range(0..n_vocab)).collect() };
    let prefix = random(args.shared_prefix);
    let n_requests_max = workers
        .iter()
        .map(|&w| args.requests.unwrap_or(w))
        .max()
        .unwrap_or(1);
    let prompts: Vec<Vec<u32>> = match &args.dataset {
        None => (0..n_requests_max).map(|_| random(args.n_prompt)).collect(),
        Some(path) => {
            let (mut prompts, shape, skipped) =
                dataset_prompts(path, &model.tokenizer, n_requests_max)?;
            // -p is the longest prompt the cache was planned for.
            let too_long = prompts.iter().filter(|p| p.len() > args.n_prompt).count();
            prompts.retain(|p| p.len() <= args.n_prompt);
            eprintln!(
                "dataset {}: {} prompts ({shape}), {skipped} records left out, {too_long} longer than -p {} left out",
                path.display(),
                prompts.len(),
                args.n_prompt
            );
            if prompts.is_empty() {
                anyhow::bail!("no dataset prompt fits -p {} (raise -p)", args.n_prompt);
            }
            // Fewer prompts than requests: they are used again in order.
            let mut all = Vec::with_capacity(n_requests_max);
            for i in 0..n_requests_max {
                all.push(prompts[i % prompts.len()].clone());
            }
            all
        }
    };

    let schedule = |w: usize, shared: &[u32]| ScheduleConfig {
        n_slots: w,
        max_batch_tokens: args.n_batch,
        stop_at_eog: args.stop_at_eog,
        sampler: SamplerConfig::greedy(),
        shared_prefix: shared.to_vec(),
    };
    let requests_for = |n: usize, with_prefix: bool| -> Vec<Request> {
        prompts[..n]
            .iter()
            .map(|p| Request {
                prompt: if with_prefix {
                    prefix.iter().chain(p).copied().collect()
                } else {
                    p.clone()
                },
                n_predict: args.n_predict,
            })
            .collect()
    };
    let never = || false;
    let ctrl_c = super::interrupt::requested;
    if !args.no_warmup {
        let w = workers.iter().copied().max().unwrap_or(1);
        let warm: Vec<Request> = (0..w)
            .map(|i| Request {
                prompt: prompts[i % prompts.len()][..args.n_prompt.min(16)].to_vec(),
                n_predict: 2,
            })
            .collect();
        serve(&mut engine, &warm, &schedule(w, &[]), &never, &mut |_| {})?;
    }

    let mut result = ParallelResult {
        model: model.info.model_type(),
        n_ctx: plan.n_ctx,
        kv_cache_bytes: plan.kv_cache_bytes,
        n_threads,
        flash_attn: cfg.flash_attn,
        kernels: cfg.kernels.name().to_string(),
        type_k: cfg.type_k.name().to_string(),
        type_v: cfg.type_v.name().to_string(),
        tpot_budget_ms: args.tpot_budget,
        runs: Vec::new(),
        recommendation: par::recommend(&[], args.tpot_budget),
        error: None,
        interrupted: false,
    };
    let outcome = (|| -> anyhow::Result<()> {
        for &w in &workers {
            let n_req = args.requests.unwrap_or(w);
            eprintln!(
                "workers {w}: {n_req} requests × ({} prompt + {} generated)",
                args.n_prompt, args.n_predict
            );
            let bar = super::progress::Progress::bar(n_req as u64, format!("{w} workers"));
            let report = serve(
                &mut engine,
                &requests_for(n_req, false),
                &schedule(w, &prefix),
                &ctrl_c,
                &mut |_| bar.inc(1),
            )
            .with_context(|| format!("{w} workers"))?;
            drop(bar);
            if report.interrupted {
                // A worker count cut short would report wrong figures: left out.
                result.interrupted = true;
                return Err(super::interrupt::Interrupted {
                    done: format!("{} of {} worker counts", result.runs.len(), workers.len()),
                }
                .into());
            }
            let mut run = WorkerRun::from_report(w, args.n_predict, prefix.len(), &report);
            if !prefix.is_empty() {
                let unshared = serve(
                    &mut engine,
                    &requests_for(n_req, true),
                    &schedule(w, &[]),
                    &ctrl_c,
                    &mut |_| {},
                )
                .with_context(|| format!("{w} workers, prefix not shared"))?;
                if unshared.interrupted {
                    result.interrupted = true;
                    return Err(super::interrupt::Interrupted {
                        done: format!("{} of {} worker counts", result.runs.len(), workers.len()),
                    }
                    .into());
                }
                let wall_unshared = (unshared.finished - unshared.started).as_secs_f64();
                run.shared_prefix = Some(PrefixSharing {
                    tokens: prefix.len(),
                    tokens_saved: prefix.len() * n_req.saturating_sub(1),
                    wall_s_shared: run.wall_s,
                    wall_s_unshared: wall_unshared,
                    speedup: if run.wall_s > 0.0 {
                        wall_unshared / run.wall_s
                    } else {
                        0.0
                    },
                });
            }
            eprintln!(
                "  prompt {:.1} t/s, generation {:.1} t/s, overall {:.1} t/s",
                run.prompt_tps, run.gen_tps, run.overall_tps
            );
            result.runs.push(run);
        }
        Ok(())
    })();
    par::fill_scaling(&mut result.runs);
    result.recommendation = par::recommend(&result.runs, args.tpot_budget);
    if let Err(e) = &outcome {
        if !result.interrupted {
            result.error = Some(format!("{e:#}"));
        }
    }
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
        if let Some(t) = par::prefix_table(&result.runs) {
            outln!();
            outln!("{t}");
        }
        outln!();
        for l in par::analysis_lines(&result.runs, &result.recommendation, args.tpot_budget) {
            outln!("{l}");
        }
    }
    outcome
}
