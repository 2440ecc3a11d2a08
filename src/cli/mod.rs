//! Command-line interface: clap definitions, turning flags into library calls,
//! and exit codes (0 ok, 1 runtime error, 2 usage error, 130 interrupted).

/// `println!` that returns an error instead of panicking when stdout is gone
/// (e.g. `rbench info ... | head`).
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*)?
    }};
}

mod bench;
mod compare;
pub(crate) mod format;
mod info;
mod perplexity;
pub mod progress;
mod report;
mod run;
mod synth;
mod sysinfo;
mod tokenize;

use clap::{Parser, Subcommand};

pub const EXIT_RUNTIME: i32 = 1;
pub const EXIT_USAGE: i32 = 2;

#[derive(Parser, Debug)]
#[command(
    name = "rbench",
    version,
    long_version = crate::build_info::LONG_VERSION,
    about = "Run and benchmark GGUF language models: Rust owns the model, ggml supplies the kernels",
    propagate_version = true
)]
struct Cli {
    /// Show ggml's own log messages.
    #[arg(long, global = true)]
    verbose: bool,
    /// No progress bars (they are drawn only when stderr is a terminal anyway).
    #[arg(short = 'q', long, global = true)]
    quiet: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

/// What `rbench` with no arguments prints (exit 0): the first commands to try.
const GUIDE: &str = "\
rbench runs and benchmarks GGUF language models on this machine.

Try, in order:
  rbench bench                          pp512/tg128 speed on a built-in synthetic model (no download)
  rbench sysinfo                        this machine's CPU, memory and measured memory bandwidth
  rbench info -m MODEL.gguf             what a model file holds
  rbench run -m MODEL.gguf -p \"Hello\"   generate text
  rbench bench -m MODEL.gguf --save a.json && rbench report a.json -o report.md
                                        keep results and turn them into a report with charts

MODEL is a GGUF file path or synth:PRESET (e.g. synth:llama-15m, synth:llama-1b).
Every command explains itself with --help, including an example: rbench bench --help
";

#[derive(Subcommand, Debug)]
enum Command {
    /// Show a model's architecture, size, file type and tensor mix.
    #[command(
        after_help = "Example:\n  rbench info -m ~/.cache/rbench-models/gemma-3-270m-q4_k_m.gguf --tensors"
    )]
    Info(info::InfoArgs),
    /// Write a synthetic model (random weights, real layout) as GGUF.
    #[command(
        after_help = "Example:\n  rbench synth --arch llama --size 125m --ftype q4_k_m -o llama-125m.gguf"
    )]
    Synth(synth::SynthArgs),
    /// Generate text from a prompt.
    #[command(
        after_help = "Example:\n  rbench run -m model.gguf -p \"The capital of France is\" -n 32 --temp 0"
    )]
    Run(run::RunArgs),
    /// Perplexity of a text file (llama.cpp's convention).
    #[command(
        after_help = "Example:\n  rbench perplexity -m model.gguf -f /usr/share/common-licenses/GPL-3 -c 256 --save ppl.json"
    )]
    Perplexity(perplexity::PerplexityArgs),
    /// Turn text into token ids with the model's vocabulary.
    #[command(after_help = "Example:\n  rbench tokenize -m model.gguf -p \"Hello world\" --ids")]
    Tokenize(tokenize::TokenizeArgs),
    /// Prompt-processing speed (llama-bench's pp tests; default -p 512).
    #[command(after_help = "Example:\n  rbench pp -m model.gguf -p 128,512 -t 2 --save pp.json")]
    Pp(bench::BenchArgs),
    /// Generation speed (llama-bench's tg tests; default -n 128).
    #[command(after_help = "Example:\n  rbench tg -m model.gguf -n 128 -r 3 --save tg.json")]
    Tg(bench::BenchArgs),
    /// llama-bench: pp, tg and pg tests over every combination of the flags.
    #[command(
        after_help = "Examples:\n  rbench bench                                   (built-in synthetic model)\n  rbench bench -m model.gguf -p 512 -n 128 -t 2 -r 3 --save before.json\n  rbench report before.json -o report.md"
    )]
    Bench(bench::BenchArgs),
    /// A Markdown report (tables, analysis, SVG charts) from saved results.
    #[command(
        after_help = "Example:\n  rbench bench --save a.json && rbench report a.json -o report.md\n  rbench report old.json new.json -o compare.md   (side by side, with ratios)"
    )]
    Report(report::ReportArgs),
    /// Old vs new saved result: per test ratio and whether it exceeds the spread.
    #[command(after_help = "Example:\n  rbench compare before.json after.json")]
    Compare(compare::CompareArgs),
    /// Hardware facts and measured memory read bandwidth.
    #[command(after_help = "Example:\n  rbench sysinfo -o json")]
    Sysinfo(sysinfo::SysinfoArgs),
}

/// A failure the user caused with flags (exit code 2) rather than at run time.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

pub fn main() -> i32 {
    let cli = match Cli::try_parse_from(bench::rewrite_argv(std::env::args_os().collect())) {
        Ok(cli) => cli,
        Err(e) => {
            // clap prints help/version to stdout (exit 0) and errors to stderr (exit 2).
            let _ = e.print();
            return if e.use_stderr() { EXIT_USAGE } else { 0 };
        }
    };
    crate::ggml::set_log_verbose(cli.verbose);
    progress::set_quiet(cli.quiet);
    let Some(command) = cli.command else {
        print!("{GUIDE}");
        return 0;
    };
    let result = match command {
        Command::Info(args) => info::run(args),
        Command::Synth(args) => synth::run(args),
        Command::Tokenize(args) => tokenize::run(args),
        Command::Run(args) => run::run(args),
        Command::Perplexity(args) => perplexity::run(args),
        Command::Pp(args) => bench::run(args, bench::Mode::Pp),
        Command::Tg(args) => bench::run(args, bench::Mode::Tg),
        Command::Bench(args) => bench::run(args, bench::Mode::Bench),
        Command::Report(args) => report::run(args),
        Command::Compare(args) => compare::run(args),
        Command::Sysinfo(args) => sysinfo::run(args),
    };
    match result {
        Ok(()) => 0,
        Err(err) if is_broken_pipe(&err) => 0,
        Err(err) if err.downcast_ref::<UsageError>().is_some() => {
            // One line, with where to look next.
            eprintln!(
                "error: {err:#} (see `rbench {} --help` for the flags and an example)",
                subcommand_name()
            );
            EXIT_USAGE
        }
        Err(err) => {
            eprintln!("error: {err:#}");
            EXIT_RUNTIME
        }
    }
}

/// The subcommand the user typed, for hints.
fn subcommand_name() -> String {
    std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .unwrap_or_default()
}

/// The reader of our output went away (`| head`): not an error of ours.
fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain()
        .filter_map(|e| e.downcast_ref::<std::io::Error>())
        .any(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
}
