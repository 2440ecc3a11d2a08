//! `rbench run`: generate text from a prompt, streaming only the completion
//! to stdout (logs and timings go to stderr).

use super::engine_args::EngineArgs;
use super::UsageError;
use crate::engine::{Engine, GenerateConfig, SamplerConfig};
use crate::model::Model;
use anyhow::Context as _;
use std::io::Write;
use std::time::Instant;

#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// Model file (GGUF) or synth:PRESET[:FTYPE].
    #[arg(short = 'm', long = "model", default_value = "synth:llama-125m")]
    pub model: String,
    /// The prompt.
    #[arg(
        short = 'p',
        long = "prompt",
        required_unless_present = "prompts_file",
        conflicts_with = "prompts_file"
    )]
    pub prompt: Option<String>,
    /// Batch mode: one prompt per line, each line a JSON string (so prompts may
    /// hold newlines), run through `--parallel` slots by continuous batching.
    #[arg(long = "prompts-file")]
    pub prompts_file: Option<std::path::PathBuf>,
    /// Slots (sequences decoded together) in batch mode.
    #[arg(long = "parallel", default_value_t = 4, requires = "prompts_file")]
    pub parallel: usize,
    /// Batch mode output: text (a header line and the completion per prompt)
    /// or jsonl (one {"prompt", "completion"} per line), in input order.
    #[arg(short = 'o', long = "output", default_value = "text", value_parser = ["text", "jsonl"])]
    pub output: String,
    /// Tokens to generate at most.
    #[arg(short = 'n', long = "n-predict", default_value_t = 128)]
    pub n_predict: usize,
    /// Sampling temperature; 0 = greedy.
    #[arg(long = "temp", default_value_t = 0.8)]
    pub temp: f32,
    #[arg(long = "top-k", default_value_t = 40)]
    pub top_k: usize,
    #[arg(long = "top-p", default_value_t = 0.95)]
    pub top_p: f32,
    #[arg(long = "min-p", default_value_t = 0.05)]
    pub min_p: f32,
    #[arg(long = "repeat-penalty", default_value_t = 1.0)]
    pub repeat_penalty: f32,
    #[arg(long = "seed", default_value_t = 0)]
    pub seed: u64,
    #[command(flatten)]
    pub engine: EngineArgs,
    /// Run a single prompt on ggml's fastest kernel per batch shape instead of
    /// the batch-invariant engine. By default `run -p`, `run --prompts-file`
    /// (any --parallel), `parallel` and `serve` all use the batch-invariant
    /// engine, so a prompt gets the same greedy tokens through each.
    #[arg(long = "no-batch-invariant", conflicts_with = "prompts_file")]
    pub no_batch_invariant: bool,
}

/// `-c` when not given: room for a long prompt and its completion.
const DEFAULT_CTX: usize = 4096;

pub fn run(args: RunArgs) -> anyhow::Result<()> {
    if args.temp < 0.0 || !args.temp.is_finite() {
        return Err(UsageError(format!("--temp must be >= 0, got {}", args.temp)).into());
    }
    if !(0.0..=1.0).contains(&args.top_p) || !(0.0..=1.0).contains(&args.min_p) {
        return Err(UsageError("--top-p and --min-p must be within 0..1".into()).into());
    }
    if args.prompt.as_deref().is_some_and(str::is_empty) {
        return Err(UsageError("the prompt is empty: give some text with -p".into()).into());
    }
    args.engine.validate()?;
    let ctx = args.engine.ctx.unwrap_or(DEFAULT_CTX);
    if !args.repeat_penalty.is_finite() || args.repeat_penalty <= 0.0 {
        return Err(UsageError(format!(
            "--repeat-penalty must be a positive number, got {}",
            args.repeat_penalty
        ))
        .into());
    }
    if args.n_predict == 0 {
        return Err(UsageError("-n must be at least 1".into()).into());
    }
    // Batch mode sizes its context from the prompts.
    if args.prompts_file.is_none() && args.n_predict >= ctx {
        return Err(UsageError(format!(
            "-n {} leaves no room for the prompt in a context of {ctx} tokens (raise -c)",
            args.n_predict
        ))
        .into());
    }
    // A bad prompts file is reported before the model loads.
    let batch_prompts = match &args.prompts_file {
        Some(p) => read_prompts(p)?,
        None => Vec::new(),
    };
    if args.prompts_file.is_some() && (args.parallel == 0 || args.parallel >= crate::kv::MAX_SEQS) {
        return Err(UsageError(format!(
            "--parallel must be between 1 and {}, got {}",
            crate::kv::MAX_SEQS - 1,
            args.parallel
        ))
        .into());
    }
    let path = crate::model::resolve_model_path(&args.model)?;
    let t_load = Instant::now();
    // Batch-invariant unless asked otherwise: see `LoadOptions::for_kernels`.
    let batch_invariant = !args.no_batch_invariant;
    let load = args.engine.load_options(batch_invariant)?;
    let model = Model::load(&path, &load).with_context(|| format!("loading {}", path.display()))?;
    let load_s = t_load.elapsed().as_secs_f64();
    if let Some(note) = model.weights.placement_note() {
        eprintln!("{note}");
    }
    super::progress::report_weight_copies(&model);
    let tok = &model.tokenizer;
    if model.info.synthetic {
        eprintln!(
            "note: {} is a synthetic model (random weights): its text is noise",
            model.path.display()
        );
    }
    let Some(prompt_text) = args.prompt.as_deref() else {
        return run_batch(&args, batch_prompts, &model, load_s);
    };
    let prompt = tok.encode(prompt_text, tok.add_bos_default())?;
    if prompt.len().saturating_add(args.n_predict) > ctx {
        anyhow::bail!(
            "the prompt ({} tokens) plus {} tokens to generate exceeds the context of {ctx} (raise -c)",
            prompt.len(),
            args.n_predict,
        );
    }
    let mut engine = Engine::new(&model, args.engine.config(ctx, batch_invariant))?;
    let cfg = GenerateConfig {
        n_predict: args.n_predict,
        stop_at_eog: true,
        sampler: sampler_config(&args),
    };
    let t_prompt = Instant::now();
    let mut generation = engine.generate(&prompt, cfg)?;
    let prompt_s = t_prompt.elapsed().as_secs_f64();
    let mut stream = tok.stream_decoder();
    let mut out = std::io::stdout().lock();
    let t_gen = Instant::now();
    for next in generation.by_ref() {
        if let Some(text) = stream.push(next?)? {
            out.write_all(text.as_bytes())?;
            out.flush()?;
        }
    }
    let n_gen = generation.generated().len();
    drop(generation);
    if let Some(text) = stream.flush() {
        out.write_all(text.as_bytes())?;
    }
    writeln!(out)?;
    let gen_s = t_gen.elapsed().as_secs_f64();
    eprintln!(
        "load {:.2} s | prompt {} tokens in {:.3} s ({:.1} t/s) | generated {} tokens in {:.3} s ({:.1} t/s) | {} threads, flash-attn {}",
        load_s,
        prompt.len(),
        prompt_s,
        prompt.len() as f64 / prompt_s,
        n_gen,
        gen_s,
        if gen_s > 0.0 { n_gen as f64 / gen_s } else { 0.0 },
        engine.config().n_threads,
        if engine.config().flash_attn { "on" } else { "off" },
    );
    Ok(())
}

fn sampler_config(args: &RunArgs) -> SamplerConfig {
    SamplerConfig {
        temperature: args.temp,
        top_k: args.top_k,
        top_p: args.top_p,
        min_p: args.min_p,
        repeat_penalty: args.repeat_penalty,
        seed: args.seed,
        ..SamplerConfig::default()
    }
}

/// Prompts of a `--prompts-file`: one JSON string per non-empty line.
fn read_prompts(path: &std::path::Path) -> anyhow::Result<Vec<String>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut prompts = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let p: String = serde_json::from_str(line).map_err(|e| {
            UsageError(format!(
                "{} line {}: each line must be a JSON string like \"Hello\\nworld\" ({e})",
                path.display(),
                i + 1
            ))
        })?;
        if p.is_empty() {
            return Err(UsageError(format!(
                "{} line {}: the prompt is empty",
                path.display(),
                i + 1
            ))
            .into());
        }
        prompts.push(p);
    }
    if prompts.is_empty() {
        return Err(UsageError(format!("{} holds no prompts", path.display())).into());
    }
    Ok(prompts)
}

#[derive(serde::Serialize)]
struct BatchLine<'a> {
    prompt: &'a str,
    completion: &'a str,
}

/// Batch mode: every prompt through `--parallel` slots; completions are
/// detokenized and printed in input order by a printer thread as they finish.
fn run_batch(args: &RunArgs, texts: Vec<String>, model: &Model, load_s: f64) -> anyhow::Result<()> {
    use crate::engine::{serve, Request, ScheduleConfig};
    let tok = &model.tokenizer;
    let requests = texts
        .iter()
        .map(|t| {
            Ok(Request {
                prompt: tok.encode(t, tok.add_bos_default())?,
                n_predict: args.n_predict,
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let longest = requests.iter().map(|r| r.prompt.len()).max().unwrap_or(0);
    let slots = args.parallel.min(requests.len());
    let per_seq = crate::kv::sizing::cells_per_sequence(longest, args.n_predict);
    let n_ctx = crate::kv::sizing::n_ctx_for_workers(slots, per_seq)
        .map_err(|e| UsageError(e.to_string()))?
        .max(args.engine.ctx.unwrap_or(DEFAULT_CTX));
    let mut engine = Engine::new(model, args.engine.config(n_ctx, true))?;
    let schedule = ScheduleConfig {
        n_slots: slots,
        max_batch_tokens: 2048.max(slots),
        stop_at_eog: true,
        sampler: sampler_config(args),
        shared_prefix: Vec::new(),
        prefix_cache_cells: 0,
    };
    let jsonl = args.output == "jsonl";
    let (tx, rx) = crossbeam::channel::unbounded::<(usize, Vec<u32>)>();
    let t0 = Instant::now();
    let (report, printed) = std::thread::scope(|scope| {
        let printer = scope.spawn(|| -> anyhow::Result<usize> {
            // Completions finish out of order; print each once all before it are out.
            let mut waiting = std::collections::BTreeMap::new();
            let mut next = 0;
            let mut out = std::io::stdout().lock();
            for (index, tokens) in rx {
                waiting.insert(index, tokens);
                while let Some(tokens) = waiting.remove(&next) {
                    let completion = tok.decode(&tokens)?;
                    let prompt = texts.get(next).map_or("", String::as_str);
                    if jsonl {
                        let line = serde_json::to_string(&BatchLine {
                            prompt,
                            completion: &completion,
                        })?;
                        writeln!(out, "{line}")?;
                    } else {
                        writeln!(out, "--- prompt {} ---\n{completion}", next + 1)?;
                    }
                    out.flush()?;
                    next += 1;
                }
            }
            Ok(next)
        });
        let report = serve(&mut engine, &requests, &schedule, &|| false, &mut |c| {
            let _ = tx.send((c.index, c.tokens.clone()));
        });
        drop(tx);
        let printed = printer
            .join()
            .unwrap_or_else(|_| Err(anyhow::anyhow!("the output thread failed")));
        (report, printed)
    });
    let report = report?;
    let printed = printed?;
    let elapsed = t0.elapsed().as_secs_f64();
    let generated: usize = report.completions.iter().map(|c| c.tokens.len()).sum();
    eprintln!(
        "load {load_s:.2} s | {printed} prompts through {slots} slots in {elapsed:.2} s | {generated} tokens generated ({:.1} t/s overall) | n_ctx {n_ctx}",
        generated as f64 / elapsed.max(1e-9)
    );
    Ok(())
}
