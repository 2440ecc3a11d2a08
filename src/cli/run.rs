//! `rbench run`: generate text from a prompt, streaming only the completion
//! to stdout (logs and timings go to stderr).

use super::UsageError;
use crate::engine::{default_threads, Batch, Engine, EngineConfig, Sampler, SamplerConfig};
use crate::model::weights::LoadOptions;
use crate::model::Model;
use crate::quant::GgmlType;
use anyhow::Context as _;
use std::io::Write;
use std::time::Instant;

#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// Model file (GGUF) or synth:PRESET[:FTYPE].
    #[arg(short = 'm', long = "model", default_value = "synth:llama-125m")]
    pub model: String,
    /// The prompt.
    #[arg(short = 'p', long = "prompt")]
    pub prompt: String,
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
    /// CPU threads.
    #[arg(short = 't', long = "threads")]
    pub threads: Option<usize>,
    /// Context size in tokens.
    #[arg(short = 'c', long = "ctx-size", default_value_t = 4096)]
    pub ctx: usize,
    /// Flash attention: on or off.
    #[arg(long = "flash-attn", visible_alias = "fa", default_value = "on", value_parser = ["on", "off"])]
    pub flash_attn: String,
    /// KV cache type for K: f16, q8_0 or f32.
    #[arg(long = "cache-type-k", visible_alias = "ctk", default_value = "f16")]
    pub cache_type_k: String,
    /// KV cache type for V: f16, q8_0 or f32 (q8_0 needs flash attention).
    #[arg(long = "cache-type-v", visible_alias = "ctv", default_value = "f16")]
    pub cache_type_v: String,
    /// Do not use the CPU backend's repacked weight layouts.
    #[arg(long)]
    pub no_repack: bool,
}

pub fn run(args: RunArgs) -> anyhow::Result<()> {
    if args.temp < 0.0 || !args.temp.is_finite() {
        return Err(UsageError(format!("--temp must be >= 0, got {}", args.temp)).into());
    }
    if !(0.0..=1.0).contains(&args.top_p) || !(0.0..=1.0).contains(&args.min_p) {
        return Err(UsageError("--top-p and --min-p must be within 0..1".into()).into());
    }
    if args.prompt.is_empty() {
        return Err(UsageError("the prompt is empty: give some text with -p".into()).into());
    }
    if args.ctx == 0 || args.threads == Some(0) {
        return Err(UsageError("-c and -t must be at least 1".into()).into());
    }
    super::check_threads(args.threads)?;
    super::check_ctx(args.ctx)?;
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
    if args.n_predict >= args.ctx {
        return Err(UsageError(format!(
            "-n {} leaves no room for the prompt in a context of {} tokens (raise -c)",
            args.n_predict, args.ctx
        ))
        .into());
    }
    let cache_type = |s: &str, flag: &str| {
        crate::kv::parse_cache_type(s)
            .ok_or_else(|| UsageError(format!("{flag} must be f16, q8_0 or f32, got '{s}'")))
    };
    let type_k = cache_type(&args.cache_type_k, "--cache-type-k")?;
    let type_v = cache_type(&args.cache_type_v, "--cache-type-v")?;
    if args.flash_attn == "off" && !matches!(type_v, GgmlType::F16 | GgmlType::F32) {
        return Err(UsageError(format!(
            "--cache-type-v {}: a quantized V cache needs flash attention (--flash-attn on)",
            args.cache_type_v
        ))
        .into());
    }
    let path = crate::model::resolve_model_path(&args.model)?;
    let t_load = Instant::now();
    let model = Model::load(
        &path,
        &LoadOptions {
            repack: !args.no_repack,
        },
    )
    .with_context(|| format!("loading {}", path.display()))?;
    let load_s = t_load.elapsed().as_secs_f64();
    let tok = &model.tokenizer;
    let prompt = tok.encode(&args.prompt, tok.add_bos_default())?;
    if prompt.len().saturating_add(args.n_predict) > args.ctx {
        anyhow::bail!(
            "the prompt ({} tokens) plus {} tokens to generate exceeds the context of {} (raise -c)",
            prompt.len(),
            args.n_predict,
            args.ctx
        );
    }
    let cfg = EngineConfig {
        n_ctx: args.ctx,
        n_threads: args.threads.unwrap_or_else(default_threads),
        flash_attn: args.flash_attn == "on",
        type_k,
        type_v,
        ..EngineConfig::default()
    };
    let mut engine = Engine::new(&model, cfg)?;
    let mut sampler = Sampler::new(SamplerConfig {
        temperature: args.temp,
        top_k: args.top_k,
        top_p: args.top_p,
        min_p: args.min_p,
        repeat_penalty: args.repeat_penalty,
        seed: args.seed,
        ..SamplerConfig::default()
    });
    if model.info.synthetic {
        eprintln!(
            "note: {} is a synthetic model (random weights): its text is noise",
            model.path.display()
        );
    }

    let t_prompt = Instant::now();
    let logits = engine.decode(&Batch::from_prompt(&prompt, 0, 0)?)?;
    let prompt_s = t_prompt.elapsed().as_secs_f64();
    let mut history = prompt.clone();
    let mut last = logits.last().map(<[f32]>::to_vec).unwrap_or_default();
    let mut stream = tok.stream_decoder();
    let mut out = std::io::stdout().lock();
    let t_gen = Instant::now();
    let mut n_gen = 0;
    while n_gen < args.n_predict {
        let next = sampler.sample(&last, &history);
        if tok.is_eog(next) {
            break;
        }
        if let Some(text) = stream.push(next)? {
            out.write_all(text.as_bytes())?;
            out.flush()?;
        }
        history.push(next);
        n_gen += 1;
        if n_gen == args.n_predict {
            break;
        }
        let mut b = Batch::with_capacity(1);
        b.add(next, history.len() as i32 - 1, &[0], true)?;
        last = engine
            .decode(&b)?
            .last()
            .map(<[f32]>::to_vec)
            .unwrap_or_default();
    }
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
