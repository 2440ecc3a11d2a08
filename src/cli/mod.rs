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
pub(crate) mod format;
mod info;
mod parallel;
mod perplexity;
mod run;
mod synth;
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
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Show a model's architecture, size, file type and tensor mix.
    Info(info::InfoArgs),
    /// Write a synthetic model (random weights, real layout) as GGUF.
    Synth(synth::SynthArgs),
    /// Generate text from a prompt.
    Run(run::RunArgs),
    /// Perplexity of a text file (llama.cpp's convention).
    Perplexity(perplexity::PerplexityArgs),
    /// Turn text into token ids with the model's vocabulary.
    Tokenize(tokenize::TokenizeArgs),
    /// Prompt-processing speed (llama-bench's pp tests; default -p 512).
    Pp(bench::BenchArgs),
    /// Generation speed (llama-bench's tg tests; default -n 128).
    Tg(bench::BenchArgs),
    /// llama-bench: pp, tg and pg tests over every combination of the flags.
    Bench(bench::BenchArgs),
    /// Many sequences at once: throughput scaling, latency and the worker count to use.
    Parallel(parallel::ParallelArgs),
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
    let result = match cli.command {
        Command::Info(args) => info::run(args),
        Command::Synth(args) => synth::run(args),
        Command::Tokenize(args) => tokenize::run(args),
        Command::Run(args) => run::run(args),
        Command::Perplexity(args) => perplexity::run(args),
        Command::Pp(args) => bench::run(args, bench::Mode::Pp),
        Command::Tg(args) => bench::run(args, bench::Mode::Tg),
        Command::Bench(args) => bench::run(args, bench::Mode::Bench),
        Command::Parallel(args) => parallel::run(args),
    };
    match result {
        Ok(()) => 0,
        Err(err) if is_broken_pipe(&err) => 0,
        Err(err) => {
            eprintln!("error: {err:#}");
            if err.downcast_ref::<UsageError>().is_some() {
                EXIT_USAGE
            } else {
                EXIT_RUNTIME
            }
        }
    }
}

/// The reader of our output went away (`| head`): not an error of ours.
fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain()
        .filter_map(|e| e.downcast_ref::<std::io::Error>())
        .any(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
}
