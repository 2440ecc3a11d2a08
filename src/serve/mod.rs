//! `rbench serve`: an OpenAI-compatible HTTP server over the continuous
//! batching scheduler, with an automatic prefix cache.
//!
//! Threads: the engine thread owns the model, the engine and the scheduler
//! ([`worker`]); a small tokio runtime runs axum's handlers ([`http`]),
//! which tokenize, send a job to the engine thread and turn the tokens that
//! come back into text, stop strings and OpenAI's response shapes
//! ([`text`], [`api`]). The HTTP side answers `/health` with 503 while the
//! model loads.

pub mod api;
mod http;
pub mod metrics;
pub mod text;
mod worker;

use crate::engine::{EngineConfig, SamplerConfig, ScheduleConfig};
use crate::model::weights::LoadOptions;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use metrics::{Metrics, Snapshot};

/// Everything `rbench serve` was told.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    pub model_path: PathBuf,
    /// The name clients use (`model` in requests, `/v1/models`).
    pub model_id: String,
    pub addr: SocketAddr,
    /// Requests decoded together (slots).
    pub parallel: usize,
    /// Most tokens one request may hold (prompt + completion).
    pub ctx_per_request: usize,
    /// Engine settings; `n_ctx` is set from `parallel` × `ctx_per_request`.
    pub engine: EngineConfig,
    pub load: LoadOptions,
    /// Largest request body in bytes.
    pub max_body: usize,
    /// Requests that may wait for a slot before new ones get 429.
    pub max_queue: usize,
    /// Longest a request may take, end to end.
    pub timeout: Duration,
    pub api_key: Option<String>,
    /// Cells the prefix cache may hold on its own (0: no prefix cache).
    pub prefix_cache_cells: usize,
    /// Most tokens one decode step carries.
    pub max_batch_tokens: usize,
    /// One line per finished request on stderr.
    pub log_requests: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot start the server's runtime: {0}")]
    Runtime(std::io::Error),
    #[error("the KV cache of {parallel} × {ctx} tokens does not fit: {why}")]
    Sizing {
        parallel: usize,
        ctx: usize,
        why: String,
    },
}

/// A server that is listening (the model may still be loading).
pub struct RunningServer {
    pub addr: SocketAddr,
    shared: Arc<http::Shared>,
    runtime: Option<tokio::runtime::Runtime>,
    served: Option<tokio::task::JoinHandle<()>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    engine: Option<std::thread::JoinHandle<()>>,
}

/// The engine's configuration for a server: cells for every slot.
pub fn engine_config(cfg: &ServeConfig) -> Result<EngineConfig, ServeError> {
    let n_ctx =
        crate::kv::sizing::n_ctx_for_workers(cfg.parallel, cfg.ctx_per_request).map_err(|e| {
            ServeError::Sizing {
                parallel: cfg.parallel,
                ctx: cfg.ctx_per_request,
                why: e.to_string(),
            }
        })?;
    Ok(EngineConfig {
        n_ctx,
        n_ubatch: cfg.engine.n_ubatch.min(n_ctx),
        // Outputs must not depend on what else is served.
        batch_invariant: true,
        ..cfg.engine.clone()
    })
}

impl RunningServer {
    /// Binds, starts the HTTP side and loads the model on the engine thread.
    pub fn start(cfg: ServeConfig) -> Result<RunningServer, ServeError> {
        let engine = engine_config(&cfg)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("rbench-http")
            .enable_all()
            .build()
            .map_err(ServeError::Runtime)?;
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind(cfg.addr))
            .map_err(|source| ServeError::Bind {
                addr: cfg.addr,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| ServeError::Bind {
            addr: cfg.addr,
            source,
        })?;
        let (commands, receiver) = crossbeam::channel::unbounded();
        let shared = Arc::new(http::Shared::new(&cfg, commands));
        let schedule = ScheduleConfig {
            n_slots: cfg.parallel,
            max_batch_tokens: cfg.max_batch_tokens.max(cfg.parallel),
            stop_at_eog: true,
            sampler: SamplerConfig::greedy(),
            shared_prefix: Vec::new(),
            prefix_cache_cells: cfg.prefix_cache_cells,
        };
        let engine_thread = {
            let shared = Arc::clone(&shared);
            let path = cfg.model_path.clone();
            let load = cfg.load.clone();
            std::thread::Builder::new()
                .name("rbench-engine".into())
                .spawn(move || {
                    let model = match crate::model::Model::load(&path, &load) {
                        Ok(m) => m,
                        Err(e) => {
                            shared.load_failed(format!("loading {}: {e}", path.display()));
                            return;
                        }
                    };
                    if let Some(note) = model.weights.placement_note() {
                        eprintln!("{note}");
                    }
                    if let Err(e) = shared.loaded(&model) {
                        shared.load_failed(e);
                        return;
                    }
                    let metrics = Arc::clone(&shared.metrics);
                    let cfg = worker::WorkerConfig { engine, schedule };
                    if let Err(e) = worker::run(&model, cfg, receiver, metrics) {
                        shared.load_failed(format!("the engine could not start: {e}"));
                    }
                })
                .map_err(ServeError::Runtime)?
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let router = http::router(Arc::clone(&shared), cfg.max_body);
        let served = runtime.spawn(async move {
            let _ = axum::serve(listener, router)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await;
        });
        Ok(RunningServer {
            addr,
            shared,
            runtime: Some(runtime),
            served: Some(served),
            stop: Some(stop),
            engine: Some(engine_thread),
        })
    }

    /// Waits until the model is loaded (Ok) or failed to load (Err).
    pub fn wait_ready(&self, timeout: Duration) -> Result<(), String> {
        self.shared.wait_ready(timeout)
    }

    /// Whether loading the model failed (the server then answers 500).
    pub fn load_failed(&self) -> bool {
        self.shared.load_error().is_some()
    }

    pub fn metrics(&self) -> Snapshot {
        self.shared.metrics.snapshot()
    }

    /// Stops accepting, ends running requests, joins the threads.
    pub fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.shared.shutdown_engine();
        if let (Some(rt), Some(served)) = (self.runtime.as_ref(), self.served.take()) {
            // Streams end when the engine drops them; don't wait forever on
            // a client that stops reading.
            let _ =
                rt.block_on(async { tokio::time::timeout(Duration::from_secs(10), served).await });
        }
        if let Some(engine) = self.engine.take() {
            let _ = engine.join();
        }
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_timeout(Duration::from_secs(1));
        }
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}
