//! An OpenAI-compatible stub that answers at once: `/v1/completions`
//! streams `tokens` one-character chunks, a usage chunk and `[DONE]`, and can
//! hold streams open or break some off. It measures the load client itself
//! (tests, `cargo bench --bench load_client`): what the client sustains
//! against a server that costs nothing.

use axum::body::Body;
use axum::extract::State;
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A run against the stub at `base`: `n` identical four-token prompts
/// asking for `tokens` tokens each, all at once up to `concurrency`.
pub fn load_config(
    base: &str,
    n: usize,
    tokens: usize,
    concurrency: Option<usize>,
) -> super::LoadConfig {
    use super::client::{Backend, Prompt, PromptBody, Target};
    super::LoadConfig {
        target: Target {
            base_url: base.to_string(),
            backend: Backend::Completions,
            model: None,
            api_key: None,
            ignore_eos: true,
        },
        prompts: vec![
            Prompt {
                body: PromptBody::Tokens(vec![1, 2, 3, 4]),
                tokens: 4,
                max_tokens: tokens,
            };
            n
        ],
        arrival: super::Arrival {
            rate: f64::INFINITY,
            burstiness: 1.0,
            seed: 0,
        },
        max_concurrency: concurrency,
        warmup: 0,
        duration: None,
        percentiles: vec![50.0, 99.0],
        slo: super::metrics::Slo::default(),
        read_timeout: Duration::from_secs(30),
    }
}

/// A runtime for the stub: one thread, so the client's own threads are measured.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
}

impl Stub {
    /// A stub answering `tokens` tokens, holding each stream `hold` before
    /// its last token, breaking off every `break_every`-th (0: none).
    pub fn new(tokens: usize, hold: Duration, break_every: usize) -> Stub {
        Stub {
            tokens,
            hold,
            break_every,
            ..Stub::default()
        }
    }

    /// Most streams open at the same time so far.
    pub fn most_open(&self) -> usize {
        self.most_open.load(Ordering::Relaxed)
    }

    /// Requests answered so far.
    pub fn seen(&self) -> usize {
        self.seen.load(Ordering::Relaxed)
    }
}

/// How the stub answers.
#[derive(Default)]
pub struct Stub {
    /// Tokens per answer.
    pub tokens: usize,
    /// Wait before the last chunk (holds streams open).
    pub hold: Duration,
    /// Every n-th request breaks off after its first chunk (0: none).
    pub break_every: usize,
    seen: AtomicUsize,
    open: AtomicUsize,
    most_open: AtomicUsize,
}

async fn completions(State(stub): State<Arc<Stub>>) -> Response {
    let n = stub.seen.fetch_add(1, Ordering::Relaxed) + 1;
    let open = stub.open.fetch_add(1, Ordering::Relaxed) + 1;
    stub.most_open.fetch_max(open, Ordering::Relaxed);
    let broken = stub.break_every > 0 && n % stub.break_every == 0;
    let stub2 = Arc::clone(&stub);
    let chunks = async_chunks(stub2, broken);
    Response::builder()
        .header("content-type", "text/event-stream")
        .body(Body::from_stream(chunks))
        .unwrap_or_default()
}

fn async_chunks(
    stub: Arc<Stub>,
    broken: bool,
) -> impl futures_util::Stream<Item = Result<String, std::io::Error>> {
    let tokens = stub.tokens;
    futures_util::stream::unfold(0usize, move |i| {
        let stub = Arc::clone(&stub);
        async move {
            let chunk = |v: Value| format!("data: {v}\n\n");
            let item = if i < tokens {
                if broken && i == 1 {
                    // Let the head and the first chunk reach the client first.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    stub.open.fetch_sub(1, Ordering::Relaxed);
                    Err(std::io::Error::other("stub breaks off"))
                } else {
                    if i + 1 == tokens && !stub.hold.is_zero() {
                        tokio::time::sleep(stub.hold).await;
                    }
                    Ok(chunk(
                        json!({"choices": [{"index": 0, "text": "x", "finish_reason": null}]}),
                    ))
                }
            } else if i == tokens {
                Ok(chunk(
                    json!({"choices": [], "usage": {"prompt_tokens": 4, "completion_tokens": tokens}}),
                ))
            } else if i == tokens + 1 {
                stub.open.fetch_sub(1, Ordering::Relaxed);
                Ok("data: [DONE]\n\n".to_string())
            } else {
                return None;
            };
            let stop = item.is_err();
            Some((item, if stop { usize::MAX - 1 } else { i + 1 }))
        }
    })
}

/// Starts the stub on a free loopback port in `rt`; returns its base URL.
pub fn start(rt: &tokio::runtime::Runtime, stub: Arc<Stub>) -> std::io::Result<String> {
    let app = Router::new()
        .route("/v1/completions", post(completions))
        .route(
            "/v1/models",
            get(|| async { axum::Json(json!({"data": [{"id": "stub"}]})) }),
        )
        .with_state(stub);
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
    let addr = listener.local_addr()?;
    rt.spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(format!("http://{addr}"))
}
