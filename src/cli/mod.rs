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

mod analyze;
mod bench;
mod compare;
mod engine_args;
mod info;
pub mod interrupt;
mod load;
mod parallel;
mod perplexity;
mod placement_args;
pub mod progress;
mod report;
mod rpc;
mod run;
mod serve;
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
  rbench serve -m MODEL.gguf            an OpenAI-compatible server (http://127.0.0.1:8080/v1)
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
    /// Many sequences at once: throughput scaling, latency and the worker count to use.
    Parallel(parallel::ParallelArgs),
    /// An OpenAI-compatible server (completions, chat, streaming) with a prefix cache.
    Serve(serve::ServeArgs),
    /// Benchmark an OpenAI-compatible server: load shapes, scenarios, vLLM's metrics.
    Load(load::LoadArgs),
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
    /// Token statistics of a dataset and the -p / -n to benchmark with.
    Analyze(analyze::AnalyzeArgs),
    /// Serve this machine's CPU (or a device) to other machines' `--rpc` (ggml's RPC protocol).
    #[command(
        name = "rpc-server",
        after_help = "Example (trusted network only: the protocol has no authentication):\n  host-a$ rbench rpc-server --host 0.0.0.0 --port 50052\n  host-b$ rbench bench -m model.gguf --rpc host-a:50052 -ngl 99"
    )]
    RpcServer(rpc::RpcServerArgs),
}

/// The commands that place layers on devices (they take the placement
/// flags, `--list-devices` and `--rpc`).
const PLACING: [&str; 7] = [
    "bench",
    "pp",
    "tg",
    "run",
    "perplexity",
    "parallel",
    "serve",
];

/// `--list-devices` (before any `--`) on a command that places layers, or `sysinfo`.
fn wants_device_list(argv: &[std::ffi::OsString]) -> bool {
    let Some((command, args)) = command_words(argv) else {
        return false;
    };
    (PLACING.contains(&command) || command == "sysinfo")
        && args
            .iter()
            .take_while(|w| **w != "--")
            .any(|w| *w == "--list-devices")
}

/// The subcommand (the first word not starting with `-`) and the words
/// after it, for the few flags read ahead of clap.
fn command_words(argv: &[std::ffi::OsString]) -> Option<(&str, Vec<&str>)> {
    let words: Vec<&str> = argv.iter().skip(1).filter_map(|a| a.to_str()).collect();
    let sub = words.iter().position(|w| !w.starts_with('-'))?;
    Some((words[sub], words[sub + 1..].to_vec()))
}

/// A failure the user caused with flags (exit code 2) rather than at run time.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

pub fn main() -> i32 {
    let argv = bench::rewrite_argv(std::env::args_os().collect());
    // Remote devices join the registry before anything lists or checks devices.
    if let Err(err) = rpc::connect_from_argv(&argv) {
        eprintln!("error: {}", one_line(&err));
        return if err.downcast_ref::<UsageError>().is_some() {
            EXIT_USAGE
        } else {
            EXIT_RUNTIME
        };
    }
    // `--list-devices` needs no model or other flag, as in llama.cpp.
    if wants_device_list(&argv) {
        return match placement_args::print_devices() {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("error: {e}");
                EXIT_RUNTIME
            }
        };
    }
    let cli = match Cli::try_parse_from(argv) {
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
        Command::Parallel(args) => parallel::run(args),
        Command::Serve(args) => serve::run(args),
        Command::Load(args) => load::run(args),
        Command::Report(args) => report::run(args),
        Command::Compare(args) => compare::run(args),
        Command::Sysinfo(args) => sysinfo::run(args),
        Command::Analyze(args) => analyze::run(args),
        Command::RpcServer(args) => rpc::run_server(args),
    };
    match result {
        Ok(()) => 0,
        Err(err) if is_broken_pipe(&err) => 0,
        Err(err) if err.downcast_ref::<UsageError>().is_some() => {
            // One line, with where to look next.
            eprintln!(
                "error: {} (see `rbench {} --help` for the flags and an example)",
                one_line(&err),
                subcommand_name()
            );
            EXIT_USAGE
        }
        Err(err) => {
            eprintln!("error: {}", one_line(&err));
            if err.downcast_ref::<interrupt::Interrupted>().is_some() {
                interrupt::EXIT_INTERRUPTED
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
