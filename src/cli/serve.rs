//! `rbench serve`: flags into a [`ServeConfig`], the plan printed, then the
//! server until Ctrl-C.

use super::engine_args::EngineArgs;
use super::UsageError;
use crate::serve::{RunningServer, ServeConfig};
use anyhow::Context as _;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:\n  \
rbench serve -m ~/.cache/rbench-models/gemma-3-270m-q4_k_m.gguf --parallel 8\n  \
curl http://127.0.0.1:8080/v1/chat/completions -d '{\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"}],\"max_tokens\":32}'\n  \
rbench serve -m model.gguf --host 0.0.0.0 --port 9000 --api-key \"$KEY\" -c 8192")]
pub struct ServeArgs {
    /// Model file (GGUF) or synth:PRESET[:FTYPE] [default: synth:llama-125m, synthetic].
    #[arg(short = 'm', long = "model", default_value = "synth:llama-125m")]
    pub model: String,
    /// The model's name in requests and /v1/models [default: the file name without .gguf].
    #[arg(long)]
    pub alias: Option<String>,
    /// Address to listen on (loopback unless told otherwise).
    #[arg(long, default_value = "127.0.0.1")]
    pub host: IpAddr,
    /// Port (0: any free port, printed at start).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Requests decoded together; the KV cache holds this many requests of -c tokens.
    #[arg(long = "parallel", visible_alias = "np", default_value_t = 4)]
    pub parallel: usize,
    /// Requests that may wait for a slot; more get 429 with Retry-After.
    #[arg(long = "max-queue", default_value_t = 256)]
    pub max_queue: usize,
    /// Largest request body in bytes (larger: 413).
    #[arg(long = "max-body", default_value_t = 8 << 20)]
    pub max_body: usize,
    /// Seconds a request may take, end to end (longer: 504, or an error event in a stream).
    #[arg(long, default_value_t = 600)]
    pub timeout: u64,
    /// Require `Authorization: Bearer KEY` on the API endpoints.
    #[arg(long = "api-key")]
    pub api_key: Option<String>,
    /// Do not keep finished requests' KV cells for reuse by later prompts.
    #[arg(long = "no-prefix-cache")]
    pub no_prefix_cache: bool,
    /// KV cells the prefix cache may keep beyond the running requests'
    /// [default: -c, one request's worth]. Every step's mask spans the cells
    /// up to the highest in use, so a larger cache costs some speed on every step.
    #[arg(long = "cache-cells")]
    pub cache_cells: Option<usize>,
    /// Most tokens one decode step carries (prompt chunks of new requests
    /// share steps with the generating ones).
    #[arg(short = 'b', long = "batch-size", default_value_t = 512)]
    pub n_batch: usize,
    /// No line per request on stderr.
    #[arg(long = "no-log-requests")]
    pub no_log_requests: bool,
    /// Engine flags; `-c` is the context of one request (prompt + completion)
    /// [default: 4096, at most the model's training context].
    #[command(flatten)]
    pub engine: EngineArgs,
}

const DEFAULT_CTX: usize = 4096;

/// Checks the flags, prints the plan and returns the server's configuration.
fn prepare(args: &ServeArgs) -> anyhow::Result<ServeConfig> {
    args.engine.validate()?;
    if args.parallel == 0 || args.parallel >= crate::kv::MAX_SEQS - 1 {
        return Err(UsageError(format!(
            "--parallel must be between 1 and {}, got {}",
            crate::kv::MAX_SEQS - 2,
            args.parallel
        ))
        .into());
    }
    if args.timeout == 0 {
        return Err(UsageError("--timeout must be at least 1 second".into()).into());
    }
    if args.n_batch < args.parallel {
        return Err(UsageError(format!(
            "-b/--batch-size {} is below --parallel {}: every generating request needs a token per step",
            args.n_batch, args.parallel
        ))
        .into());
    }
    if args.api_key.as_deref().is_some_and(str::is_empty) {
        return Err(UsageError("--api-key is empty".into()).into());
    }
    let path = crate::model::resolve_model_path(&args.model)?;
    let file = crate::gguf::GgufFile::open(&path)
        .with_context(|| format!("reading {}", path.display()))?;
    let hp = crate::model::hparams::Hparams::from_gguf(&file)
        .with_context(|| format!("reading {}", path.display()))?;
    let trained = crate::model::info::ModelInfo::from_gguf(&file)
        .map(|i| i.context_length as usize)
        .unwrap_or(0);
    let ctx = match args.engine.ctx {
        Some(c) => c,
        None if trained > 0 => DEFAULT_CTX.min(trained),
        None => DEFAULT_CTX,
    };
    if ctx < 2 {
        return Err(UsageError("-c must leave room for a prompt and a token".into()).into());
    }
    let model_id = args.alias.clone().unwrap_or_else(|| {
        path.file_name()
            .map(|n| n.to_string_lossy().trim_end_matches(".gguf").to_string())
            .unwrap_or_else(|| args.model.clone())
    });
    let cfg = ServeConfig {
        model_path: path.clone(),
        model_id: model_id.clone(),
        addr: SocketAddr::new(args.host, args.port),
        parallel: args.parallel,
        ctx_per_request: ctx,
        engine: args.engine.config(ctx, true),
        load: args.engine.load_options(true)?,
        max_body: args.max_body,
        max_queue: args.max_queue,
        timeout: Duration::from_secs(args.timeout),
        api_key: args.api_key.clone(),
        prefix_cache_cells: if args.no_prefix_cache {
            0
        } else {
            args.cache_cells.unwrap_or(ctx)
        },
        max_batch_tokens: args.n_batch,
        log_requests: !args.no_log_requests,
    };
    let engine = crate::serve::engine_config(&cfg).map_err(|e| UsageError(e.to_string()))?;
    let kv = crate::kv::sizing::kv_shape(&hp, engine.n_ctx, engine.type_k, engine.type_v)
        .map_err(|e| UsageError(e.to_string()))?;
    eprintln!(
        "rbench serve: {} as `{model_id}` | {} slots × {ctx} tokens = {} KV cells ({:.0} MiB, {}/{}) | prefix cache {} | {} threads",
        path.display(),
        args.parallel,
        engine.n_ctx,
        kv.bytes() as f64 / (1u64 << 20) as f64,
        engine.type_k.name(),
        engine.type_v.name(),
        match cfg.prefix_cache_cells {
            0 => "off".to_string(),
            n => format!("up to {n} cells"),
        },
        engine.n_threads,
    );
    Ok(cfg)
}

/// `rbench serve` on `model` at a free loopback port, loaded and ready (for
/// `rbench load` without a server of its own).
pub fn start_local(model: &str, parallel: usize) -> anyhow::Result<RunningServer> {
    #[derive(clap::Parser)]
    struct Flags {
        #[command(flatten)]
        serve: ServeArgs,
    }
    let parallel = parallel.to_string();
    let flags = <Flags as clap::Parser>::try_parse_from([
        "serve",
        "-m",
        model,
        "--port",
        "0",
        "--parallel",
        &parallel,
        "--no-log-requests",
    ])?;
    let server = RunningServer::start(prepare(&flags.serve)?)?;
    server
        .wait_ready(Duration::from_secs(3600))
        .map_err(anyhow::Error::msg)?;
    Ok(server)
}

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    let cfg = prepare(&args)?;
    super::interrupt::install().map_err(anyhow::Error::msg)?;
    let mut server = RunningServer::start(cfg)?;
    eprintln!(
        "rbench serve: listening on http://{} (loading the model; /health answers 503 until it is ready)",
        server.addr
    );
    // Loading is waited for in short steps so Ctrl-C works meanwhile.
    loop {
        match server.wait_ready(Duration::from_millis(200)) {
            Ok(()) => {
                eprintln!("rbench serve: ready");
                break;
            }
            Err(e) if server.load_failed() => anyhow::bail!("{e}"),
            Err(_) if super::interrupt::requested() => break,
            Err(_) => {}
        }
    }
    while !super::interrupt::requested() {
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!("rbench serve: Ctrl-C: no new requests; ending the running ones (Ctrl-C again to exit at once)");
    server.shutdown();
    Err(super::interrupt::Interrupted {
        done: "serving".into(),
    }
    .into())
}
