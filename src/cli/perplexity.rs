//! `rbench perplexity`: llama.cpp's perplexity convention, so numbers compare
//! with `llama-perplexity`: the text is tokenized once (with BOS), cut into
//! chunks of `-c` tokens, each chunk starts with BOS, and only the second half
//! of each chunk is scored.

use super::engine_args::EngineArgs;
use super::UsageError;
use crate::engine::perplexity::perplexity;
use crate::engine::Engine;
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
    /// Score at most this many chunks.
    #[arg(long = "chunks")]
    pub chunks: Option<usize>,
    /// Engine flags; `-c` is the chunk length in tokens [default: 512].
    #[command(flatten)]
    pub engine: EngineArgs,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
    /// Also save the result with the build, model and hardware facts to this
    /// JSON file (for `rbench report` and `rbench compare`).
    #[arg(long, value_name = "FILE.json")]
    pub save: Option<std::path::PathBuf>,
}

/// `-c` when not given: llama-perplexity's chunk length.
const DEFAULT_CHUNK: usize = 512;

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
    let ctx = args.engine.ctx.unwrap_or(DEFAULT_CHUNK);
    if ctx < 8 {
        return Err(UsageError(format!("-c must be at least 8, got {ctx}")).into());
    }
    if args.chunks == Some(0) {
        return Err(UsageError("--chunks must be at least 1".into()).into());
    }
    args.engine.validate()?;
    let text = std::fs::read_to_string(&args.file)
        .with_context(|| format!("reading {}", args.file.display()))?;
    let model = super::progress::load_model(&args.model)?;
    let path = model.path.clone();
    let tok = &model.tokenizer;
    let add_bos = tok.add_bos_default();
    let tokens = tok.encode(&text, add_bos)?;
    let available = tokens.len() / ctx;
    if available == 0 {
        anyhow::bail!(
            "{} has {} tokens, fewer than one chunk of {} (use a smaller -c)",
            args.file.display(),
            tokens.len(),
            ctx
        );
    }
    let n_chunks = args.chunks.map_or(available, |c| c.min(available));
    let mut engine = Engine::new(&model, args.engine.config(ctx, false))?;
    let bos = tok.bos_id();
    let start = Instant::now();
    if !args.json {
        eprintln!(
            "perplexity: {} tokens, {} chunks of {}",
            tokens.len(),
            n_chunks,
            ctx
        );
    }
    let run = perplexity(
        &mut engine,
        &tokens,
        n_chunks,
        bos.filter(|_| add_bos),
        &super::interrupt::requested,
        &mut |chunk, run| {
            if !args.json {
                eprint!("[{}]{:.4},", chunk + 1, run.total.ppl());
            }
        },
    )?;
    let (acc, chunk_ppl) = (run.total, run.chunk_ppl);
    let chunks_done = chunk_ppl.len();
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
        n_ctx: ctx,
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
            ctx,
            acc.count(),
            seconds,
            (chunks_done * ctx) as f64 / seconds
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
