//! `rbench perplexity`: llama.cpp's perplexity convention, so numbers compare
//! with `llama-perplexity`: the text is tokenized once (with BOS), cut into
//! chunks of `-c` tokens, each chunk starts with BOS, and only the second half
//! of each chunk is scored.

use super::UsageError;
use crate::engine::perplexity::{scored_range, token_nll, PerplexityAccumulator};
use crate::engine::{default_threads, Batch, Engine, EngineConfig};
use anyhow::Context as _;
use serde::Serialize;
use std::time::Instant;

#[derive(clap::Args, Debug)]
pub struct PerplexityArgs {
    /// Model file (GGUF) or synth:PRESET[:FTYPE].
    #[arg(short = 'm', long = "model")]
    pub model: String,
    /// Text file to score.
    #[arg(short = 'f', long = "file")]
    pub file: std::path::PathBuf,
    /// Tokens per chunk.
    #[arg(short = 'c', long = "ctx-size", default_value_t = 512)]
    pub ctx: usize,
    /// Score at most this many chunks.
    #[arg(long = "chunks")]
    pub chunks: Option<usize>,
    /// CPU threads.
    #[arg(short = 't', long = "threads")]
    pub threads: Option<usize>,
    /// Flash attention: on or off.
    #[arg(long = "flash-attn", visible_alias = "fa", default_value = "on", value_parser = ["on", "off"])]
    pub flash_attn: String,
    /// Weight matmul kernels: rbench (its own where it has them, ggml's
    /// elsewhere) or ggml (ggml's everywhere).
    #[arg(long = "kernels", default_value = "rbench", value_parser = ["rbench", "ggml"])]
    pub kernels: String,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
    /// Also save the result with the build, model and hardware facts to this
    /// JSON file (for `rbench report` and `rbench compare`).
    #[arg(long, value_name = "FILE.json")]
    pub save: Option<std::path::PathBuf>,
}

#[derive(Serialize)]
struct PerplexityReport {
    model: String,
    file: String,
    n_ctx: usize,
    n_chunks: usize,
    n_tokens_scored: u64,
    ppl: f64,
    ppl_error: f64,
    chunk_ppl: Vec<f64>,
    seconds: f64,
}

pub fn run(args: PerplexityArgs) -> anyhow::Result<()> {
    if args.ctx < 8 {
        return Err(UsageError(format!("-c must be at least 8, got {}", args.ctx)).into());
    }
    if args.threads == Some(0) || args.chunks == Some(0) {
        return Err(UsageError("-t and --chunks must be at least 1".into()).into());
    }
    super::check_threads(args.threads)?;
    super::check_ctx(args.ctx)?;
    let text = std::fs::read_to_string(&args.file)
        .with_context(|| format!("reading {}", args.file.display()))?;
    let model = super::progress::load_model(&args.model)?;
    let path = model.path.clone();
    let tok = &model.tokenizer;
    let add_bos = tok.add_bos_default();
    let tokens = tok.encode(&text, add_bos)?;
    let available = tokens.len() / args.ctx;
    if available == 0 {
        anyhow::bail!(
            "{} has {} tokens, fewer than one chunk of {} (use a smaller -c)",
            args.file.display(),
            tokens.len(),
            args.ctx
        );
    }
    let n_chunks = args.chunks.map_or(available, |c| c.min(available));
    let cfg = EngineConfig {
        n_ctx: args.ctx,
        n_ubatch: args.ctx.min(512),
        n_threads: args.threads.unwrap_or_else(default_threads),
        flash_attn: args.flash_attn == "on",
        kernels: super::kernels_arg(&args.kernels),
        ..EngineConfig::default()
    };
    let mut engine = Engine::new(&model, cfg)?;
    let bos = tok.bos_id();
    let scored = scored_range(args.ctx);
    let mut acc = PerplexityAccumulator::default();
    let mut chunk_ppl = Vec::with_capacity(n_chunks);
    let start = Instant::now();
    if !args.json {
        eprintln!(
            "perplexity: {} tokens, {} chunks of {}",
            tokens.len(),
            n_chunks,
            args.ctx
        );
    }
    let mut chunks_done = 0;
    for chunk in 0..n_chunks {
        if super::interrupt::requested() {
            break;
        }
        let mut ids = tokens[chunk * args.ctx..(chunk + 1) * args.ctx].to_vec();
        if let (true, Some(b)) = (add_bos, bos) {
            ids[0] = b;
        }
        engine.clear();
        let mut batch = Batch::with_capacity(ids.len());
        for (i, &t) in ids.iter().enumerate() {
            batch.add(t, i as i32, &[0], scored.contains(&i))?;
        }
        let logits = engine.decode(&batch)?;
        let mut chunk_acc = PerplexityAccumulator::default();
        for i in scored.clone() {
            let row = logits.get(i).context("missing logits row")?;
            let nll = token_nll(row, ids[i + 1]);
            acc.add(nll);
            chunk_acc.add(nll);
        }
        chunk_ppl.push(chunk_acc.ppl());
        if !args.json {
            eprint!("[{}]{:.4},", chunk + 1, acc.ppl());
        }
        chunks_done += 1;
    }
    let seconds = start.elapsed().as_secs_f64();
    if chunks_done == 0 {
        return Err(super::interrupt::Interrupted {
            done: format!("0 of {n_chunks} chunks"),
        }
        .into());
    }
    let report = PerplexityReport {
        model: path.display().to_string(),
        file: args.file.display().to_string(),
        n_ctx: args.ctx,
        n_chunks: chunks_done,
        n_tokens_scored: acc.count(),
        ppl: acc.ppl(),
        ppl_error: acc.ppl_error(),
        chunk_ppl,
        seconds,
    };
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        eprintln!();
        outln!("PPL = {:.4} +/- {:.5}", acc.ppl(), acc.ppl_error());
        outln!(
            "{} chunks of {} tokens, {} tokens scored, {:.1} s ({:.0} tokens/s)",
            chunks_done,
            args.ctx,
            acc.count(),
            seconds,
            (chunks_done * args.ctx) as f64 / seconds
        );
    }
    if let Some(save) = &args.save {
        use crate::report::saved::{self, ModelIdentity, ResultKind};
        let identity = ModelIdentity::of(&model)?;
        let result = serde_json::to_value(&report)?;
        saved::save(
            save,
            ResultKind::Perplexity,
            &saved::command_line(),
            Some(identity),
            result,
        )
        .map_err(|e| anyhow::anyhow!("--save: {e}"))?;
        eprintln!("saved {}", save.display());
    }
    if chunks_done < n_chunks {
        // The figure above (and the saved result) covers the chunks that finished.
        return Err(super::interrupt::Interrupted {
            done: format!("{chunks_done} of {n_chunks} chunks"),
        }
        .into());
    }
    Ok(())
}
