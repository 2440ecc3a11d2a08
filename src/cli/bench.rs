//! `rbench pp`, `rbench tg` and `rbench bench`: llama-bench's flags and
//! semantics (see `crate::bench`). Every value is validated before any model
//! loads; a model that fails to load is reported and the others still run.

use super::engine_args::{CacheType, FlashAttn, KernelsArg};
use super::placement_args::SplitModeArg;
use super::progress::{self, Progress};
use super::UsageError;
use crate::bench::list::{self, Bounds};
use crate::bench::output::{self, Format, RunFacts};
use crate::bench::{BenchPlan, Placing, TestShape};
use crate::engine::default_threads;
use crate::kernels::Kernels;
use crate::model::placement::{PlacementSpec, SplitMode, ALL_LAYERS};
use crate::model::weights::LoadOptions;
use crate::quant::GgmlType;
use crate::report::saved::{self, ModelIdentity, ResultKind};
use crate::system::Hardware;
use std::ffi::OsString;

/// Most tokens per test, depth, batch or ubatch.
const MAX_TOKENS: u64 = 1_000_000;
const MAX_REPETITIONS: usize = 100_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Only prompt-processing tests (`-p`, default 512).
    Pp,
    /// Only generation tests (`-n`, default 128).
    Tg,
    /// llama-bench's defaults: `-p 512 -n 128`, plus any `-pg`.
    Bench,
}

/// Flags shared by `pp`, `tg` and `bench`. Numeric flags take comma lists and
/// ranges (`1-8`, `1-8+2`, `1-16*2`) and may be repeated; every combination runs.
#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// Model file (GGUF) or synth:PRESET[:FTYPE]; repeatable [default: synth:llama-125m, synthetic].
    #[arg(short = 'm', long = "model")]
    pub models: Vec<String>,
    /// Prompt lengths of pp tests [default: 512; not for `tg`].
    #[arg(short = 'p', long = "n-prompt")]
    pub n_prompt: Vec<String>,
    /// Generated tokens of tg tests [default: 128; not for `pp`].
    #[arg(short = 'n', long = "n-gen")]
    pub n_gen: Vec<String>,
    /// Prompt-then-generate test, a pair `-pg 512,128` (repeatable; `bench` only).
    #[arg(long = "pg")]
    pub pg: Vec<String>,
    /// KV cache pre-filled to this depth (untimed) before each test [default: 0].
    #[arg(short = 'd', long = "n-depth")]
    pub n_depth: Vec<String>,
    /// Tokens per decode call [default: 2048].
    #[arg(short = 'b', long = "batch-size")]
    pub n_batch: Vec<String>,
    /// Tokens per computed graph (`-ub`) [default: 512].
    #[arg(long = "ubatch-size")]
    pub n_ubatch: Vec<String>,
    /// CPU threads [default: available parallelism].
    #[arg(short = 't', long = "threads")]
    pub threads: Vec<String>,
    /// Timed repetitions per test.
    #[arg(
        short = 'r',
        long = "repetitions",
        default_value_t = 5,
        overrides_with = "repetitions"
    )]
    pub repetitions: usize,
    /// Skip the untimed warm-up run of each test.
    #[arg(long = "no-warmup")]
    pub no_warmup: bool,
    /// K cache type (`-ctk`): f16 or q8_0 (f32 too) [default: f16].
    #[arg(long = "cache-type-k")]
    pub cache_type_k: Vec<String>,
    /// V cache type (`-ctv`): f16 or q8_0 (q8_0 needs flash attention) [default: f16].
    #[arg(long = "cache-type-v")]
    pub cache_type_v: Vec<String>,
    /// Flash attention (`-fa`): on, off or auto (= on, the faster path on CPU here) [default: auto].
    #[arg(long = "flash-attn")]
    pub flash_attn: Vec<String>,
    /// Weight matmul kernels: rbench (its own, where it has them; ggml's
    /// elsewhere) or ggml (ggml's everywhere); `ggml,rbench` runs both [default: rbench].
    #[arg(long = "kernels")]
    pub kernels: Vec<String>,
    /// Layers offloaded to GPUs (`-ngl`), a list: the last N repeating
    /// layers, and the output layer when N exceeds them [default: 99 = all].
    #[arg(long = "n-gpu-layers")]
    pub n_gpu_layers: Vec<String>,
    /// Split mode (`-sm`): layer or none, a list [default: layer].
    #[arg(long = "split-mode")]
    pub split_mode: Vec<String>,
    /// Main device index for `-sm none` (`-mg`), a list [default: 0].
    #[arg(long = "main-gpu")]
    pub main_gpu: Vec<String>,
    /// Devices (`-dev`): names joined by `/`, alternatives by `,`; `none`
    /// for the CPU only [default: auto = every GPU].
    #[arg(long = "device")]
    pub device: Vec<String>,
    /// Layer shares per device (`-ts`), `/`-joined, alternatives by `,`
    /// (e.g. `-ts 3/1,1/1`) [default: by free memory].
    #[arg(long = "tensor-split")]
    pub tensor_split: Vec<String>,
    /// KV cache in host memory (`-nkvo`): 0 or 1, a list [default: 0].
    #[arg(long = "no-kv-offload")]
    pub no_kv_offload: Vec<String>,
    /// Use CPU weights in place in the mapped file (`-mmp`): 0 or 1, a list [default: 1].
    #[arg(long = "mmap")]
    pub mmap: Vec<String>,
    /// List the devices ggml offers here and exit.
    #[arg(long = "list-devices")]
    pub list_devices: bool,
    // Read ahead of clap (`rpc::connect_from_argv`); declared for help and checks.
    #[allow(dead_code)]
    #[command(flatten)]
    pub rpc: super::rpc::RpcArgs,
    /// Output format on stdout: md, csv, json or jsonl.
    #[arg(
        short = 'o',
        long = "output",
        default_value = "md",
        overrides_with = "output"
    )]
    pub output: String,
    /// Also write the results to stderr in this format (`-oe`, as llama-bench).
    #[arg(long = "output-err", overrides_with = "output_err")]
    pub output_err: Option<String>,
    /// Progress lines on stderr (instead of the progress bar a terminal gets).
    #[arg(long)]
    pub progress: bool,
    /// Also save the results with the build, model and hardware facts to
    /// this JSON file (for `rbench report` and `rbench compare`).
    #[arg(long, value_name = "FILE.json")]
    pub save: Option<std::path::PathBuf>,
    /// Seed of the random token ids.
    #[arg(long, default_value_t = 0, overrides_with = "seed")]
    pub seed: u64,
}

/// llama-bench's multi-letter single-dash flags and rbench's long names.
const ALIASES: [(&str, &str); 14] = [
    ("-pg", "--pg"),
    ("-ub", "--ubatch-size"),
    ("-ctk", "--cache-type-k"),
    ("-ctv", "--cache-type-v"),
    ("-fa", "--flash-attn"),
    ("-oe", "--output-err"),
    ("-ngl", "--n-gpu-layers"),
    ("-sm", "--split-mode"),
    ("-mg", "--main-gpu"),
    ("-dev", "--device"),
    ("-ts", "--tensor-split"),
    ("-nkvo", "--no-kv-offload"),
    ("-mmp", "--mmap"),
    ("-rpc", "--rpc"),
];

/// The engine flags among [`ALIASES`] (see `engine_args::EngineArgs`), which
/// `run`, `perplexity` and `serve` take too.
const ENGINE_ALIASES: [&str; 12] = [
    "-ub", "-ctk", "-ctv", "-fa", "-ngl", "-sm", "-mg", "-dev", "-ts", "-nkvo", "-mmp", "-rpc",
];

/// Rewrites llama-bench's `-pg`, `-ub`, `-ctk`, `-ctv`, `-fa` into long flags
/// clap understands, only for the measuring subcommands (`run` and
/// `perplexity` take only the engine flags: their `-p` / `-o` / `-f` keep
/// their meaning) and only before a `--`.
pub fn rewrite_argv(args: Vec<OsString>) -> Vec<OsString> {
    let sub = args
        .iter()
        .skip(1)
        .position(|a| !a.to_string_lossy().starts_with('-'))
        .map(|i| i + 1);
    let Some(sub) = sub else { return args };
    let engine_only = match args.get(sub).and_then(|a| a.to_str()) {
        Some("pp" | "tg" | "bench" | "parallel") => false,
        Some("run" | "perplexity" | "serve") => true,
        _ => return args,
    };
    let mut out = Vec::with_capacity(args.len());
    let mut rewriting = true;
    for (i, arg) in args.into_iter().enumerate() {
        if i <= sub || !rewriting {
            out.push(arg);
            continue;
        }
        let Some(s) = arg.to_str() else {
            out.push(arg);
            continue;
        };
        if s == "--" {
            rewriting = false;
            out.push(arg);
            continue;
        }
        let (flag, value) = match s.split_once('=') {
            Some((f, v)) => (f, Some(v)),
            None => (s, None),
        };
        let alias = ALIASES
            .iter()
            .find(|(short, _)| *short == flag && (!engine_only || ENGINE_ALIASES.contains(short)));
        match alias {
            Some((_, long)) => out.push(match value {
                Some(v) => OsString::from(format!("{long}={v}")),
                None => OsString::from(*long),
            }),
            None => out.push(arg),
        }
    }
    out
}

fn usage(e: impl std::fmt::Display) -> anyhow::Error {
    UsageError(e.to_string()).into()
}

fn numbers(flag: &str, items: &[String], default: &[u64], min: u64) -> anyhow::Result<Vec<usize>> {
    let bounds = Bounds {
        min,
        max: MAX_TOKENS,
    };
    let values = if items.is_empty() {
        default.to_vec()
    } else {
        list::parse_lists(flag, items, bounds).map_err(usage)?
    };
    values
        .into_iter()
        .map(|v| usize::try_from(v).map_err(usage))
        .collect()
}

/// Comma lists of words (`-ctk f16,q8_0`, `-fa on,off`), repeatable.
fn words(items: &[String], default: &str) -> Vec<String> {
    spelled_words(items, default)
        .into_iter()
        .map(|w| w.to_ascii_lowercase())
        .collect()
}

/// The same, as spelled (device names: an error quotes the user's spelling).
fn spelled_words(items: &[String], default: &str) -> Vec<String> {
    if items.is_empty() {
        return vec![default.to_string()];
    }
    items
        .iter()
        .flat_map(|s| s.split(','))
        .map(|w| w.trim().to_string())
        .collect()
}

/// One comma-list item as the single-engine commands' value enum parses it
/// (`engine_args`), so every command accepts the same names.
fn list_value<T: clap::ValueEnum>(flag: &str, word: &str) -> anyhow::Result<T> {
    T::from_str(word, true).map_err(|_| {
        let names: Vec<String> = T::value_variants()
            .iter()
            .filter_map(|v| v.to_possible_value().map(|p| p.get_name().to_string()))
            .collect();
        usage(format!(
            "{flag}: '{word}' is not one of {}",
            names.join(", ")
        ))
    })
}

fn cache_types(flag: &str, items: &[String]) -> anyhow::Result<Vec<GgmlType>> {
    words(items, "f16")
        .iter()
        .map(|w| list_value::<CacheType>(flag, w).map(CacheType::ggml))
        .collect()
}

/// Turns flags into a validated plan; nothing has run yet.
pub fn plan(args: &BenchArgs, mode: Mode) -> anyhow::Result<BenchPlan> {
    match mode {
        Mode::Pp if !args.n_gen.is_empty() || !args.pg.is_empty() => {
            return Err(usage(
                "rbench pp takes -p only; use rbench bench for -n/-pg",
            ));
        }
        Mode::Tg if !args.n_prompt.is_empty() || !args.pg.is_empty() => {
            return Err(usage(
                "rbench tg takes -n only; use rbench bench for -p/-pg",
            ));
        }
        _ => {}
    }
    let mut shapes = Vec::new();
    if mode != Mode::Tg {
        for p in numbers("-p", &args.n_prompt, &[512], 1)? {
            shapes.push(TestShape {
                n_prompt: p,
                n_gen: 0,
            });
        }
    }
    if mode != Mode::Pp {
        for n in numbers("-n", &args.n_gen, &[128], 1)? {
            shapes.push(TestShape {
                n_prompt: 0,
                n_gen: n,
            });
        }
    }
    for pg in &args.pg {
        let bounds = Bounds {
            min: 1,
            max: MAX_TOKENS,
        };
        let (p, n) = list::parse_pair("-pg", pg, bounds).map_err(usage)?;
        shapes.push(TestShape {
            n_prompt: usize::try_from(p).map_err(usage)?,
            n_gen: usize::try_from(n).map_err(usage)?,
        });
    }
    let threads_default = [default_threads() as u64];
    let threads = numbers("-t", &args.threads, &threads_default, 1)?;
    if let Some(&t) = threads.iter().find(|&&t| t > crate::ggml::MAX_THREADS) {
        return Err(usage(format!(
            "-t: {t} threads is above the maximum of {}",
            crate::ggml::MAX_THREADS
        )));
    }
    if args.repetitions == 0 || args.repetitions > MAX_REPETITIONS {
        return Err(usage(format!(
            "-r: repetitions must be within 1..={MAX_REPETITIONS}, got {}",
            args.repetitions
        )));
    }
    let flash_attn = words(&args.flash_attn, "auto")
        .iter()
        .map(|w| list_value::<FlashAttn>("-fa", w).map(FlashAttn::enabled))
        .collect::<anyhow::Result<Vec<bool>>>()?;
    let kernels = words(&args.kernels, Kernels::default().name())
        .iter()
        .map(|w| list_value::<KernelsArg>("--kernels", w).map(Kernels::from))
        .collect::<anyhow::Result<Vec<Kernels>>>()?;
    let type_k = cache_types("-ctk", &args.cache_type_k)?;
    let type_v = cache_types("-ctv", &args.cache_type_v)?;
    let quantized_v = type_v
        .iter()
        .find(|t| !matches!(t, GgmlType::F16 | GgmlType::F32));
    if let (Some(t), true) = (quantized_v, flash_attn.contains(&false)) {
        return Err(usage(format!(
            "-ctv {}: a quantized V cache needs flash attention (-fa on)",
            t.name()
        )));
    }
    for (flag, f) in [
        ("-o", Some(&args.output)),
        ("-oe", args.output_err.as_ref()),
    ] {
        if let Some(f) = f.filter(|f| Format::parse(f).is_none()) {
            return Err(usage(format!(
                "{flag}: unknown format '{f}' (use md, csv, json or jsonl)"
            )));
        }
    }
    let models = if args.models.is_empty() {
        vec![format!("synth:{}", crate::model::synth::DEFAULT_PRESET)]
    } else {
        args.models.clone()
    };
    if let Some(m) = models.iter().find(|m| m.trim().is_empty()) {
        return Err(usage(format!("-m: empty model name '{m}'")));
    }
    let placements = placements(args)?;
    let no_kv_offload = words(&args.no_kv_offload, "0")
        .iter()
        .map(|w| super::placement_args::parse_flag(w).map_err(|e| usage(format!("-nkvo: {e}"))))
        .collect::<anyhow::Result<Vec<bool>>>()?;
    Ok(BenchPlan {
        models,
        placements,
        no_kv_offload,
        shapes,
        n_depth: numbers("-d", &args.n_depth, &[0], 0)?,
        n_batch: numbers("-b", &args.n_batch, &[2048], 1)?,
        n_ubatch: numbers("-ub", &args.n_ubatch, &[512], 1)?,
        threads,
        type_k,
        type_v,
        flash_attn,
        kernels,
        repetitions: args.repetitions,
        warmup: !args.no_warmup,
        seed: args.seed,
    })
}

/// Every combination of the placement lists (`-ngl`, `-sm`, `-mg`, `-dev`,
/// `-ts`, `-mmp`), device names checked.
fn placements(args: &BenchArgs) -> anyhow::Result<Vec<Placing>> {
    use super::placement_args::{parse_devices, parse_flag, parse_tensor_split};
    let ngl = numbers("-ngl", &args.n_gpu_layers, &[u64::from(ALL_LAYERS)], 0)?;
    let split_modes = words(&args.split_mode, "layer")
        .iter()
        .map(|w| list_value::<SplitModeArg>("-sm", w).map(SplitMode::from))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let main_gpus = numbers("-mg", &args.main_gpu, &[0], 0)?;
    // Within one value devices and shares are joined by '/', as llama-bench's.
    let devices = spelled_words(&args.device, "auto")
        .iter()
        .map(|w| parse_devices(w, &['/']).map_err(|e| usage(e.0)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let splits: Vec<Vec<f32>> = if args.tensor_split.is_empty() {
        vec![Vec::new()]
    } else {
        words(&args.tensor_split, "")
            .iter()
            .map(|w| parse_tensor_split(w, &['/']).map_err(|e| usage(e.0)))
            .collect::<anyhow::Result<_>>()?
    };
    let mmaps = words(&args.mmap, "1")
        .iter()
        .map(|w| parse_flag(w).map_err(|e| usage(format!("-mmp: {e}"))))
        .collect::<anyhow::Result<Vec<bool>>>()?;
    let mut out = Vec::new();
    for &n in &ngl {
        let n_gpu_layers = u32::try_from(n).map_err(usage)?;
        for &split_mode in &split_modes {
            for &main_gpu in &main_gpus {
                for d in &devices {
                    for ts in &splits {
                        for &use_mmap in &mmaps {
                            out.push(Placing {
                                spec: PlacementSpec {
                                    n_gpu_layers,
                                    split_mode,
                                    main_gpu,
                                    devices: d.clone(),
                                    tensor_split: ts.clone(),
                                },
                                use_mmap,
                            });
                        }
                    }
                }
            }
        }
    }
    Ok(out)
}

pub fn run(args: BenchArgs, mode: Mode) -> anyhow::Result<()> {
    let plan = plan(&args, mode)?;
    let format = Format::parse(&args.output).unwrap_or(Format::Md);
    let tests = plan.instances();
    let facts = RunFacts {
        build: crate::build_info::build_info(),
        hardware: Hardware::detect(),
    };
    let mut err_exporter = args
        .output_err
        .as_deref()
        .and_then(Format::parse)
        .map(|f| output::exporter(f, facts.clone()));
    let mut exporter = output::exporter(format, facts.clone());
    let mut stdout = std::io::stdout().lock();
    let progress_lines = args.progress;
    // Kept for --save: every finished row and every loaded model.
    let mut saved_rows = Vec::new();
    let mut identities = Vec::new();
    let mut failed = 0;
    let mut interrupted = None;
    let loads: Vec<(&String, &Placing)> = plan
        .models
        .iter()
        .flat_map(|m| plan.placements.iter().map(move |p| (m, p)))
        .collect();
    for (done, &(spec, placing)) in loads.iter().enumerate() {
        if super::interrupt::requested() {
            interrupted = Some(format!("{done} of {} model loads", loads.len()));
            break;
        }
        if progress_lines {
            eprintln!("rbench: loading {spec}");
        }
        let opts = LoadOptions::default().placed(placing.spec.clone(), placing.use_mmap);
        let model = match progress::load_model(spec, &opts) {
            Ok(m) => m,
            Err(e) => {
                eprintln!("error: model '{spec}': {e:#}");
                failed += 1;
                continue;
            }
        };
        if model.weights.placement.uses_devices() || loads.len() > plan.models.len() {
            eprintln!(
                "placement: {} (-ngl {})",
                model.weights.placement_summary(),
                placing.spec.n_gpu_layers
            );
        }
        if model.info.synthetic {
            eprintln!(
                "note: {spec} is a synthetic model (random weights): its timings are real, its text would be noise"
            );
        }
        if let Some(problem) = model.tokenizer.text_problem() {
            eprintln!("warning: model '{spec}': {problem}; benchmarks feed token ids, so they run");
        }
        if args.save.is_some() {
            match ModelIdentity::of(&model) {
                Ok(id) => identities.push(id),
                Err(e) => eprintln!("warning: model '{spec}': no identity for --save: {e}"),
            }
        }
        // The runner reports each test's start, its warm-up and each repetition.
        let steps = tests.len() * (1 + usize::from(plan.warmup) + plan.repetitions);
        let bar = if progress_lines {
            Progress::bar(0, "")
        } else {
            Progress::bar(steps as u64, spec.to_string())
        };
        let mut progress = |msg: &str| {
            if progress_lines {
                eprintln!("rbench: {msg}");
            } else {
                bar.set_message(format!("{spec}: {}", msg.trim()));
                bar.inc(1);
            }
        };
        let result = crate::bench::run_model(
            &model,
            &plan,
            &tests,
            &super::interrupt::requested,
            &mut progress,
            &mut |row| {
                if let Some(e) = err_exporter.as_mut() {
                    e.row(&mut std::io::stderr(), &row)?;
                }
                exporter.row(&mut stdout, &row)?;
                if args.save.is_some() {
                    saved_rows.push(row);
                }
                Ok(())
            },
        );
        drop(bar);
        match result {
            Ok(()) => {}
            Err(crate::bench::BenchError::Output(e)) => return Err(e.into()),
            Err(crate::bench::BenchError::Interrupted { done, total }) => {
                interrupted = Some(format!("{done} of {total} tests of model '{spec}'"));
                break;
            }
            Err(e) => {
                eprintln!("error: model '{spec}': {e}");
                failed += 1;
            }
        }
    }
    exporter.end(&mut stdout)?;
    if let Some(e) = err_exporter.as_mut() {
        e.end(&mut std::io::stderr())?;
    }
    if let Some(path) = &args.save {
        // What finished is saved even when a model failed.
        let rows: Vec<output::JsonRow> = saved_rows
            .iter()
            .map(|r| output::JsonRow::new(r, &facts))
            .collect();
        let result = serde_json::to_value(&rows)?;
        let mut models = identities.into_iter();
        let mut envelope = saved::SavedResult::new(
            ResultKind::Bench,
            &saved::command_line(),
            models.next(),
            result,
        );
        envelope.more_models = models.collect();
        // The device measured, where layers were offloaded.
        if let Some(r) = saved_rows.iter().find(|r| r.placement.backends != "CPU") {
            envelope.hardware.backend = r.placement.backends.clone();
            envelope.hardware.gpu = Some(r.placement.gpu_info.clone());
        }
        envelope
            .write(path)
            .map_err(|e| anyhow::anyhow!("--save: {e}"))?;
        eprintln!(
            "saved {} (make a report with: rbench report {} -o report.md)",
            path.display(),
            path.display()
        );
    }
    if let Some(done) = interrupted {
        return Err(super::interrupt::Interrupted { done }.into());
    }
    if failed > 0 {
        anyhow::bail!("{failed} of {} model loads failed", loads.len());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Wrap {
        #[command(flatten)]
        args: BenchArgs,
    }

    fn os(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    fn args(v: &[&str]) -> BenchArgs {
        let mut argv = vec!["rbench", "bench"];
        argv.extend_from_slice(v);
        let rewritten = rewrite_argv(os(&argv));
        // Drop "bench" so the flattened args parse on their own.
        let mut flat = vec![rewritten[0].clone()];
        flat.extend(rewritten.into_iter().skip(2));
        Wrap::try_parse_from(flat).unwrap().args
    }

    #[test]
    fn multi_letter_flags_are_rewritten() {
        let v = rewrite_argv(os(&[
            "rbench",
            "--verbose",
            "bench",
            "-pg",
            "512,128",
            "-ub",
            "256",
            "-ctk",
            "q8_0",
            "-ctv=f16",
            "-fa",
            "on",
            "-p",
            "64",
            "--",
            "-fa",
        ]));
        assert_eq!(
            v,
            os(&[
                "rbench",
                "--verbose",
                "bench",
                "--pg",
                "512,128",
                "--ubatch-size",
                "256",
                "--cache-type-k",
                "q8_0",
                "--cache-type-v=f16",
                "--flash-attn",
                "on",
                "-p",
                "64",
                "--",
                "-fa"
            ])
        );
        // run and perplexity get the engine flags only; other commands
        // keep their flags untouched.
        let run = os(&["rbench", "run", "-pg", "-fa", "off", "-ctk", "q8_0"]);
        assert_eq!(
            rewrite_argv(run),
            os(&[
                "rbench",
                "run",
                "-pg",
                "--flash-attn",
                "off",
                "--cache-type-k",
                "q8_0"
            ])
        );
        let info = os(&["rbench", "info", "-fa"]);
        assert_eq!(rewrite_argv(info.clone()), info);
        assert_eq!(rewrite_argv(os(&["rbench"])), os(&["rbench"]));
    }

    #[test]
    fn plans_follow_the_mode() {
        let a = args(&["-pg", "32,8", "-ub", "128", "-fa", "on,off"]);
        assert_eq!(a.n_ubatch, vec!["128"]);
        let p = plan(&a, Mode::Bench).unwrap();
        let shapes: Vec<(usize, usize)> = p.shapes.iter().map(|s| (s.n_prompt, s.n_gen)).collect();
        assert_eq!(shapes, vec![(512, 0), (0, 128), (32, 8)]);
        assert_eq!(p.flash_attn, vec![true, false]);
        assert_eq!(p.instances().len(), 6);

        let p = plan(&args(&["-p", "16-64*2"]), Mode::Pp).unwrap();
        assert_eq!(p.shapes.len(), 3);
        assert!(p.shapes.iter().all(|s| s.n_gen == 0));
        let p = plan(&args(&[]), Mode::Tg).unwrap();
        assert_eq!(
            p.shapes,
            vec![TestShape {
                n_prompt: 0,
                n_gen: 128
            }]
        );
        assert!(plan(&args(&["-n", "4"]), Mode::Pp).is_err());
        assert!(plan(&args(&["-p", "4"]), Mode::Tg).is_err());
    }

    #[test]
    fn invalid_values_are_usage_errors() {
        for bad in [
            &["-p", "0"][..],
            &["-t", "0"],
            &["-t", "100000"],
            &["-r", "0"],
            &["-ctk", "q3"],
            &["-ctv", "q8_0", "-fa", "off"],
            &["-fa", "maybe"],
            &["-o", "xml"],
            &["-oe", "xml"],
            &["-pg", "512"],
            &["-b", "8-1"],
            &["-d", "x"],
        ] {
            let err = plan(&args(bad), Mode::Bench).unwrap_err();
            assert!(err.downcast_ref::<UsageError>().is_some(), "{bad:?}: {err}");
        }
        assert!(plan(&args(&["-ctv", "q8_0", "-fa", "auto"]), Mode::Bench).is_ok());
        assert!(plan(&args(&["-d", "0,512"]), Mode::Bench).is_ok());
    }
}
