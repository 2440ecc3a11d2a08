//! `rbench perplexity`: llama.cpp's perplexity convention, so numbers compare
//! with `llama-perplexity`: the text is tokenized once (with BOS), cut into
//! chunks of `-c` tokens, each chunk starts with BOS, and only the second half
//! of each chunk is scored.

use super::engine_args::EngineArgs;
use super::UsageError;
use crate::engine::kld;
use crate::engine::perplexity::{perplexity, scored_range};
use crate::engine::Engine;
use anyhow::Context as _;
use serde::Serialize;
use std::cell::RefCell;
use std::time::Instant;

#[derive(clap::Args, Debug)]
pub struct PerplexityArgs {
    /// Model file (GGUF) or synth:PRESET[:FTYPE].
    #[arg(short = 'm', long = "model")]
    pub model: String,
    /// Text file to score (not with --kl-divergence: the base file holds the tokens).
    #[arg(short = 'f', long = "file", required_unless_present = "kl_divergence")]
    pub file: Option<std::path::PathBuf>,
    /// Log-probability file of llama-perplexity's format: written while scoring
    /// -f, or read with --kl-divergence.
    #[arg(long = "kl-divergence-base", value_name = "FILE")]
    pub kl_divergence_base: Option<std::path::PathBuf>,
    /// Compare with --kl-divergence-base FILE (from rbench or llama-perplexity):
    /// KL-divergence, ΔPPL, Δp and top-token agreement over its tokens.
    #[arg(
        long = "kl-divergence",
        requires = "kl_divergence_base",
        conflicts_with = "file"
    )]
    pub kl_divergence: bool,
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
    if args.kl_divergence {
        return run_kl_divergence(&args);
    }
    let ctx = args.engine.ctx.unwrap_or(DEFAULT_CHUNK);
    if ctx < 8 {
        return Err(UsageError(format!("-c must be at least 8, got {ctx}")).into());
    }
    if args.chunks == Some(0) {
        return Err(UsageError("--chunks must be at least 1".into()).into());
    }
    args.engine.validate()?;
    let file = args.file.as_deref().context("-f FILE is required")?;
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let model = super::progress::load_model(&args.model, &args.engine.load_options(false)?)?;
    super::progress::report_placement(&model);
    let path = model.path.clone();
    let tok = &model.tokenizer;
    let add_bos = tok.add_bos_default();
    let tokens = tok.encode(&text, add_bos)?;
    let available = tokens.len() / ctx;
    if available == 0 {
        anyhow::bail!(
            "{} has {} tokens, fewer than one chunk of {} (use a smaller -c)",
            file.display(),
            tokens.len(),
            ctx
        );
    }
    let n_chunks = args.chunks.map_or(available, |c| c.min(available));
    let mut engine = Engine::new(&model, args.engine.config(ctx, false))?;
    let bos = tok.bos_id();
    let mut base = match &args.kl_divergence_base {
        Some(path) => Some(kld::BaseWriter::create(
            path,
            ctx,
            model.hparams.n_vocab as usize,
            n_chunks,
            &tokens,
        )?),
        None => None,
    };
    let write_error: RefCell<Option<kld::KldError>> = RefCell::new(None);
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
        &|| super::interrupt::requested() || write_error.borrow().is_some(),
        &mut |chunk, run| {
            if let Some(w) = base.as_mut() {
                let rows = scored_range(ctx).filter_map(|i| chunk.logits.get(i));
                for row in rows {
                    if let Err(e) = w.write_row(row) {
                        write_error.borrow_mut().get_or_insert(e);
                        break;
                    }
                }
            }
            if !args.json {
                eprint!("[{}]{:.4},", chunk.index + 1, run.total.ppl());
            }
        },
    )?;
    if let Some(e) = write_error.into_inner() {
        return Err(anyhow::Error::new(e).context("--kl-divergence-base"));
    }
    if let Some(w) = base {
        w.finish()?;
    }
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
        file: file.display().to_string(),
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

/// `--kl-divergence`: the base file's chunks through this model, compared
/// token by token with the base's log-probabilities.
fn run_kl_divergence(args: &PerplexityArgs) -> anyhow::Result<()> {
    let path = args
        .kl_divergence_base
        .as_deref()
        .context("--kl-divergence needs --kl-divergence-base FILE")?;
    if args.chunks == Some(0) {
        return Err(UsageError("--chunks must be at least 1".into()).into());
    }
    args.engine.validate()?;
    let mut base = kld::BaseReader::open(path)?;
    if let Some(c) = args.engine.ctx.filter(|&c| c != base.n_ctx) {
        return Err(UsageError(format!(
            "-c {c}: {} was written with chunks of {} tokens (leave -c out)",
            path.display(),
            base.n_ctx
        ))
        .into());
    }
    let model = super::progress::load_model(&args.model, &args.engine.load_options(false)?)?;
    super::progress::report_placement(&model);
    let n_vocab = model.hparams.n_vocab as usize;
    if n_vocab != base.n_vocab {
        anyhow::bail!(
            "{} has a vocabulary of {} tokens, the model {} (the base must come from the same vocabulary)",
            path.display(),
            base.n_vocab,
            n_vocab
        );
    }
    let n_ctx = base.n_ctx;
    let n_chunks = args.chunks.map_or(base.n_chunk, |c| c.min(base.n_chunk));
    let tokens = std::mem::take(&mut base.tokens);
    let mut engine = Engine::new(&model, args.engine.config(n_ctx, false))?;
    let add_bos = model.tokenizer.add_bos_default();
    let bos = model.tokenizer.bos_id().filter(|_| add_bos);
    if !args.json {
        eprintln!(
            "kl-divergence: {} chunks of {n_ctx} from {}",
            n_chunks,
            path.display()
        );
    }
    let mut stats = kld::KldStats::default();
    let read_error: RefCell<Option<kld::KldError>> = RefCell::new(None);
    let row_len = kld::row_len(n_vocab);
    let run = perplexity(
        &mut engine,
        &tokens,
        n_chunks,
        bos,
        &|| super::interrupt::requested() || read_error.borrow().is_some(),
        &mut |chunk, _| {
            let rows = match base.next_chunk(chunk.index) {
                Ok(rows) => rows,
                Err(e) => {
                    *read_error.borrow_mut() = Some(e);
                    return;
                }
            };
            let scored = scored_range(n_ctx);
            for (i, row) in scored.zip(rows.chunks_exact(row_len)) {
                if let Some(logits) = chunk.logits.get(i) {
                    stats.add(&kld::compare_row(logits, row, chunk.ids[i + 1]));
                }
            }
            if !args.json {
                eprintln!(
                    "[{}] PPL {:.4}, mean KLD {:.6}, same top {:.2}%",
                    chunk.index + 1,
                    stats.ppl(),
                    stats.mean_kld(),
                    100.0 * stats.same_top_share()
                );
            }
        },
    )?;
    if let Some(e) = read_error.into_inner() {
        return Err(e.into());
    }
    let summary = stats.summary();
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        for line in summary.lines() {
            outln!("{line}");
        }
    }
    if run.chunk_ppl.len() < n_chunks {
        return Err(super::interrupt::Interrupted {
            done: format!("{} of {n_chunks} chunks", run.chunk_ppl.len()),
        }
        .into());
    }
    Ok(())
}
