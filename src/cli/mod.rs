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
pub mod interrupt;
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
    if let Err(e) = interrupt::install() {
        // Ctrl-C then simply ends the process, as it would without us.
        eprintln!("warning: {e}");
    }
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
            eprintln!("error: {}", one_line(&err));
            if err.downcast_ref::<interrupt::Interrupted>().is_some() {
                interrupt::EXIT_INTERRUPTED
            } else if err.downcast_ref::<UsageError>().is_some() {
                EXIT_USAGE
            } else {
                EXIT_RUNTIME
            }
        }
    }
}

/// `-t`: ggml's thread pool has a fixed maximum.
fn check_threads(threads: Option<usize>) -> Result<(), UsageError> {
    match threads {
        Some(t) if t > crate::ggml::MAX_THREADS => Err(UsageError(format!(
            "-t: {t} threads is above the maximum of {}",
            crate::ggml::MAX_THREADS
        ))),
        _ => Ok(()),
    }
}

/// `-c`: token positions are i32.
fn check_ctx(ctx: usize) -> Result<(), UsageError> {
    if ctx > crate::engine::context::MAX_CTX {
        return Err(UsageError(format!(
            "-c: a context of {ctx} tokens is above the maximum of {}",
            crate::engine::context::MAX_CTX
        )));
    }
    Ok(())
}

/// The error and its causes on one line, leaving out a cause whose text
/// the message before it already contains (many errors quote their source).
fn one_line(err: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if !line.contains(&text) {
            if !line.is_empty() {
                line.push_str(": ");
            }
            line.push_str(&text);
        }
    }
    line
}

/// The reader of our output went away (`| head`): not an error of ours.
fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain()
        .filter_map(|e| e.downcast_ref::<std::io::Error>())
        .any(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_lines_do_not_repeat_a_quoted_cause() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let quoting = anyhow::Error::msg(format!("cannot open x: {io}"));
        let err = anyhow::Error::new(io).context("cannot open x: no such file");
        assert_eq!(one_line(&err), "cannot open x: no such file");
        assert_eq!(one_line(&quoting), "cannot open x: no such file");
        let chained = anyhow::anyhow!("truncated header").context("reading m.gguf");
        assert_eq!(one_line(&chained), "reading m.gguf: truncated header");
    }

    #[test]
    fn thread_and_context_limits_are_usage_errors() {
        assert!(check_threads(None).is_ok());
        assert!(check_threads(Some(crate::ggml::MAX_THREADS)).is_ok());
        assert!(check_threads(Some(crate::ggml::MAX_THREADS + 1)).is_err());
        assert!(check_ctx(4096).is_ok());
        assert!(check_ctx(usize::MAX).is_err());
    }
}
