//! `rbench analyze`: token statistics of a dataset and the `-p` / `-n` to benchmark with.

use super::UsageError;
use crate::analyze::{
    self, chat::ChatTemplate, AnalysisReport, Counter, FieldPath, Options, RecordReader, Shape,
};
use anyhow::Context;
use std::path::PathBuf;

/// Files at least this large get a progress bar (when stderr is a terminal).
const PROGRESS_MIN_BYTES: u64 = 16 << 20;
const MAX_THREADS: usize = 1024;

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputFormat {
    Text,
    Json,
}

#[derive(clap::Args, Debug)]
#[command(after_help = "\
Shapes detected automatically (or set the fields with --prompt-field/--output-field):
  alpaca             instruction + input -> prompt (joined by a blank line), output
  prompt/completion  prompt, completion
  prompt/response    prompt, response
  question/answer    question, answer
  messages           OpenAI chat: messages before the last assistant one -> prompt
                     (rendered with the model's chat template, else joined by blank
                     lines), the last assistant message -> output
  sharegpt           conversations with from/value, as messages (human, gpt)

Tokens are counted without BOS. Without -m or --tokenizer the counts are an ESTIMATE:
ceil(characters / 4), labelled as such in every report.

Percentiles are nearest-rank. n-prompt = smallest power of two >= p95 of prompt
lengths (at least 32); n-predict tiers = power of two nearest (log scale) to p75, p90,
p99 of output lengths; the p90 tier is the recommendation.

Examples:
  rbench analyze data.jsonl -m model.gguf --plot lengths.svg
  rbench analyze chats.json.gz -m model.gguf -o json > analysis.json
  rbench bench -m model.gguf $(rbench analyze data.jsonl -m model.gguf --emit-args)")]
pub struct AnalyzeArgs {
    /// Dataset: JSON Lines or a JSON array file, optionally gzip-compressed.
    #[arg(value_name = "DATASET")]
    dataset: PathBuf,
    /// Count tokens with this model's tokenizer (GGUF or synth:PRESET).
    #[arg(short = 'm', long = "model", conflicts_with = "tokenizer")]
    model: Option<String>,
    /// Count tokens with a Hugging Face tokenizer.json instead of a model.
    #[arg(long, value_name = "tokenizer.json")]
    tokenizer: Option<PathBuf>,
    /// Field holding the prompt (dotted path, e.g. `data.question`); needs --output-field.
    #[arg(long, requires = "output_field", value_name = "F")]
    prompt_field: Option<String>,
    /// Field holding the output (dotted path); needs --prompt-field.
    #[arg(long, requires = "prompt_field", value_name = "G")]
    output_field: Option<String>,
    /// Report format on stdout.
    #[arg(short = 'o', long = "output", value_enum, default_value = "text")]
    output: OutputFormat,
    /// Draw both length distributions with the cut-offs into an SVG file.
    #[arg(long, value_name = "FILE.svg")]
    plot: Option<PathBuf>,
    /// Print only the flags to benchmark with (`-p N -n M`), for `rbench bench` / `rbench parallel`.
    #[arg(long, conflicts_with = "output")]
    emit_args: bool,
    /// Also save the JSON report in rbench's result envelope (for `rbench report`,
    /// `rbench parallel --from-analysis`).
    #[arg(long)]
    save: Option<PathBuf>,
    /// Join chat messages even when the model has a chat template.
    #[arg(long)]
    no_chat_template: bool,
    /// Worker threads [default: available parallelism].
    #[arg(short = 't', long = "threads")]
    threads: Option<usize>,
    /// Records longer than this many bytes are skipped and reported.
    #[arg(long, default_value_t = analyze::DEFAULT_MAX_RECORD_BYTES)]
    max_record_bytes: usize,
}

/// The tokenizer to count with, and what the report calls it.
enum TokenSource {
    Model {
        tok: Box<crate::tokenizer::Tokenizer>,
        label: String,
    },
    Json {
        tok: Box<tokenizers::Tokenizer>,
        label: String,
    },
    Estimate,
}

impl TokenSource {
    fn counter(&self) -> Counter<'_> {
        match self {
            TokenSource::Model { tok, .. } => Counter::Tokenizer(tok.inner()),
            TokenSource::Json { tok, .. } => Counter::Tokenizer(tok),
            TokenSource::Estimate => Counter::Estimate,
        }
    }

    fn label(&self) -> Option<&str> {
        match self {
            TokenSource::Model { label, .. } | TokenSource::Json { label, .. } => Some(label),
            TokenSource::Estimate => None,
        }
    }
}

fn load_token_source(args: &AnalyzeArgs) -> anyhow::Result<TokenSource> {
    if let Some(model) = &args.model {
        let (_file, tok) = super::tokenize::load_tokenizer(model)?;
        return Ok(TokenSource::Model {
            tok: Box::new(tok),
            label: model.clone(),
        });
    }
    if let Some(path) = &args.tokenizer {
        let tok = tokenizers::Tokenizer::from_file(path)
            .map_err(|e| anyhow::anyhow!("{e}"))
            .with_context(|| format!("loading the tokenizer {}", path.display()))?;
        return Ok(TokenSource::Json {
            tok: Box::new(tok),
            label: path.display().to_string(),
        });
    }
    Ok(TokenSource::Estimate)
}

/// The chat template to render chat prompts with, and how the report describes the choice.
fn chat_template(source: &TokenSource, disabled: bool) -> (Option<ChatTemplate>, &'static str) {
    let TokenSource::Model { tok, .. } = source else {
        return (None, "joined (no chat template without a model)");
    };
    let Some(text) = tok.chat_template() else {
        return (None, "joined (the model has no chat template)");
    };
    if disabled {
        return (None, "joined (--no-chat-template)");
    }
    let piece = |id: Option<u32>| id.and_then(|i| tok.token_piece(i)).unwrap_or("");
    match ChatTemplate::new(text, piece(tok.bos_id()), piece(tok.eos_id())) {
        Ok(t) => (Some(t), "the model's chat template"),
        Err(e) => {
            eprintln!("warning: {e}; chat messages are joined instead");
            (None, "joined (the model's chat template does not compile)")
        }
    }
}

fn progress_bar(dataset: &std::path::Path) -> Option<indicatif::ProgressBar> {
    let size = std::fs::metadata(dataset).ok()?.len();
    if size < PROGRESS_MIN_BYTES || !super::progress::enabled() {
        return None;
    }
    let bar = indicatif::ProgressBar::new(size);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
    ) {
        bar.set_style(style);
    }
    Some(bar)
}

pub fn run(args: AnalyzeArgs) -> anyhow::Result<()> {
    let threads = match args.threads {
        None => crate::engine::default_threads(),
        Some(t) if (1..=MAX_THREADS).contains(&t) => t,
        Some(t) => {
            return Err(UsageError(format!("--threads must be 1..={MAX_THREADS}, got {t}")).into())
        }
    };
    if args.max_record_bytes == 0 {
        return Err(UsageError("--max-record-bytes must be at least 1".into()).into());
    }
    let shape = match (&args.prompt_field, &args.output_field) {
        (Some(p), Some(o)) => Some(Shape::Fields {
            prompt: FieldPath::parse(p).map_err(|e| UsageError(e.to_string()))?,
            output: FieldPath::parse(o).map_err(|e| UsageError(e.to_string()))?,
        }),
        _ => None,
    };
    let source = load_token_source(&args)?;
    let (template, template_note) = chat_template(&source, args.no_chat_template);

    let start = std::time::Instant::now();
    let reader = RecordReader::open(&args.dataset, args.max_record_bytes)?;
    let bar = progress_bar(&args.dataset);
    let report_progress = |bytes: u64| {
        if let Some(bar) = &bar {
            bar.set_position(bytes);
        }
    };
    let analysis = analyze::analyze(
        reader,
        &Options {
            shape,
            counter: source.counter(),
            chat_template: template.as_ref(),
            threads,
            progress: Some(&report_progress),
            stop: Some(&super::interrupt::requested),
        },
    );
    let analysis = match analysis {
        Err(_) if super::interrupt::requested() => {
            return Err(super::interrupt::Interrupted {
                done: "0 records".into(),
            }
            .into())
        }
        other => other.with_context(|| format!("analysing {}", args.dataset.display()))?,
    };
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    let prompt_format = match analysis.shape {
        Shape::Messages | Shape::ShareGpt => template_note,
        _ => "n/a",
    };
    let input = args.dataset.display().to_string();
    let report = AnalysisReport::new(
        &analysis,
        &input,
        source.label(),
        prompt_format,
        start.elapsed().as_secs_f64(),
    )?;

    if let Some(path) = &args.plot {
        let svg = analyze::plot::svg(&report, &analysis.prompt, &analysis.output);
        std::fs::write(path, svg).map_err(|source| analyze::AnalyzeError::Plot {
            path: path.clone(),
            source,
        })?;
    }
    if args.emit_args {
        outln!("{}", report.bench_args());
    } else {
        match args.output {
            OutputFormat::Json => outln!("{}", serde_json::to_string_pretty(&report)?),
            OutputFormat::Text => {
                let text = report.to_text(&analysis.prompt, &analysis.output);
                outln!("{}", text.trim_end());
            }
        }
    }
    if let Some(path) = &args.save {
        save(path, &args, &report)?;
    }
    if analysis.interrupted {
        // What was read is reported above; the exit code says it is not the whole file.
        return Err(super::interrupt::Interrupted {
            done: format!("{} records", analysis.records),
        }
        .into());
    }
    Ok(())
}

/// `--save`: the report in the result envelope, with the model's identity when
/// a model's tokenizer counted the tokens.
fn save(path: &std::path::Path, args: &AnalyzeArgs, report: &AnalysisReport) -> anyhow::Result<()> {
    use crate::report::saved::{self, ModelIdentity, ResultKind};
    let identity = match &args.model {
        Some(spec) => {
            let file_path = crate::model::resolve_model_path(spec)?;
            let file = crate::gguf::GgufFile::open(&file_path)
                .with_context(|| format!("reading {}", file_path.display()))?;
            let info = crate::model::info::ModelInfo::from_gguf(&file)
                .with_context(|| format!("reading {}", file_path.display()))?;
            Some(
                ModelIdentity::from_info(&file_path, &info)
                    .map_err(|e| anyhow::anyhow!("--save: {e}"))?,
            )
        }
        None => None,
    };
    saved::save(
        path,
        ResultKind::Analyze,
        &saved::command_line(),
        identity,
        serde_json::to_value(report)?,
    )
    .map_err(|e| anyhow::anyhow!("--save: {e}"))?;
    eprintln!("saved {}", path.display());
    Ok(())
}
