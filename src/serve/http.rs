//! axum handlers: requests checked into jobs for the engine thread, the
//! tokens that come back turned into OpenAI's responses and stream chunks.

use super::api::{ApiError, ChatRequest, Common, CompletionRequest, PromptIn, Sampling, Usage};
use super::metrics::Metrics;
use super::text::{token_text, TextStream};
use super::worker::{Command, Job, JobEvent};
use super::ServeConfig;
use crate::analyze::chat::{join_messages, ChatTemplate};
use crate::engine::{Request, RequestOptions, StopReason, TokenLogprobs};
use crate::kv::prefix::CacheOutcome;
use crate::tokenizer::Tokenizer;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc;

/// What the handlers need once the model is loaded.
pub struct Ready {
    tokenizer: Tokenizer,
    template: Option<ChatTemplate>,
    created: u64,
}

/// State every handler shares.
pub struct Shared {
    model_id: String,
    model_root: String,
    parallel: usize,
    ctx_per_request: usize,
    max_queue: usize,
    timeout: Duration,
    api_key: Option<String>,
    log_requests: bool,
    commands: crossbeam::channel::Sender<Command>,
    ready: OnceLock<Ready>,
    load_error: OnceLock<String>,
    /// Signalled when `ready` or `load_error` is set.
    settled: (Mutex<bool>, Condvar),
    pub metrics: Arc<Metrics>,
    /// Requests accepted and not yet answered (running or waiting).
    in_flight: AtomicUsize,
    next_id: AtomicU64,
}

impl Shared {
    pub fn new(cfg: &ServeConfig, commands: crossbeam::channel::Sender<Command>) -> Shared {
        Shared {
            model_id: cfg.model_id.clone(),
            model_root: cfg.model_path.display().to_string(),
            parallel: cfg.parallel,
            ctx_per_request: cfg.ctx_per_request,
            max_queue: cfg.max_queue,
            timeout: cfg.timeout,
            api_key: cfg.api_key.clone(),
            log_requests: cfg.log_requests,
            commands,
            ready: OnceLock::new(),
            load_error: OnceLock::new(),
            settled: (Mutex::new(false), Condvar::new()),
            metrics: Arc::new(Metrics::default()),
            in_flight: AtomicUsize::new(0),
            next_id: AtomicU64::new(1),
        }
    }

    fn settle(&self) {
        let (lock, cvar) = &self.settled;
        if let Ok(mut done) = lock.lock() {
            *done = true;
            cvar.notify_all();
        }
    }

    /// The engine thread loaded `model`: handlers may start.
    pub fn loaded(&self, model: &crate::model::Model) -> Result<(), String> {
        let tokenizer = Tokenizer::from_gguf(&model.file).map_err(|e| e.to_string())?;
        let piece = |id: Option<u32>| {
            id.and_then(|i| tokenizer.token_piece(i))
                .unwrap_or("")
                .to_string()
        };
        let (source, origin) = match tokenizer.chat_template() {
            Some(src) => (Some(src.to_string()), "the model's"),
            None => match fallback_template(&tokenizer) {
                Some((src, name)) => (Some(src.to_string()), name),
                None => (None, "none: messages joined by blank lines"),
            },
        };
        let template = match source {
            Some(src) => match ChatTemplate::new(
                &src,
                &piece(tokenizer.bos_id()),
                &piece(tokenizer.eos_id()),
            ) {
                Ok(t) => Some(t),
                Err(e) => {
                    eprintln!("rbench serve: the chat template does not compile ({e}); chat messages are joined instead");
                    None
                }
            },
            None => None,
        };
        eprintln!("rbench serve: chat template: {origin}");
        let created = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let _ = self.ready.set(Ready {
            tokenizer,
            template,
            created,
        });
        self.settle();
        Ok(())
    }

    pub fn load_failed(&self, why: String) {
        eprintln!("rbench serve: {why}");
        let _ = self.load_error.set(why);
        self.settle();
    }

    pub fn wait_ready(&self, timeout: Duration) -> Result<(), String> {
        let (lock, cvar) = &self.settled;
        let guard = lock.lock().map_err(|_| "poisoned".to_string())?;
        let _unused = cvar
            .wait_timeout_while(guard, timeout, |done| !*done)
            .map_err(|_| "poisoned".to_string())?;
        if let Some(e) = self.load_error.get() {
            return Err(e.clone());
        }
        match self.ready.get() {
            Some(_) => Ok(()),
            None => Err(format!("the model did not load within {timeout:?}")),
        }
    }

    pub fn load_error(&self) -> Option<&String> {
        self.load_error.get()
    }

    pub fn shutdown_engine(&self) {
        let _ = self.commands.send(Command::Shutdown);
    }

    fn ready(&self) -> Result<&Ready, ApiError> {
        if let Some(r) = self.ready.get() {
            return Ok(r);
        }
        Err(match self.load_error.get() {
            Some(e) => ApiError::status(
                500,
                "server_error",
                format!("the model failed to load: {e}"),
            ),
            None => ApiError::status(503, "unavailable_error", "the model is loading"),
        })
    }

    fn check_model(&self, model: Option<&str>) -> Result<(), ApiError> {
        match model {
            None => Ok(()),
            Some(m) if m == self.model_id || m == self.model_root => Ok(()),
            Some(m) => Err(ApiError {
                status: 404,
                message: format!(
                    "the model `{m}` does not exist: this server serves `{}`",
                    self.model_id
                ),
                kind: "not_found_error",
                param: Some("model"),
            }),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (status, Json(self.body())).into_response();
        if matches!(self.status, 429 | 503) {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

/// Gemma's turn format (system text goes in front of the next user turn).
const GEMMA_TURNS: &str = "{{ bos_token }}{% set ns = namespace(sys='') %}{% for m in messages %}{% if m.role == 'system' %}{% set ns.sys = ns.sys + m.content + '\n\n' %}{% else %}<start_of_turn>{{ 'model' if m.role == 'assistant' else m.role }}\n{% if m.role == 'user' %}{{ ns.sys }}{% set ns.sys = '' %}{% endif %}{{ m.content | trim }}<end_of_turn>\n{% endif %}{% endfor %}{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}";

/// ChatML, which Qwen and many others use.
const CHATML: &str = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";

/// A template for a model file without one, chosen by the turn markers its
/// vocabulary has (llama.cpp likewise falls back to a built-in format).
fn fallback_template(tok: &Tokenizer) -> Option<(&'static str, &'static str)> {
    let has = |marker: &str| tok.encode(marker, false).is_ok_and(|ids| ids.len() == 1);
    if has("<start_of_turn>") && has("<end_of_turn>") {
        Some((GEMMA_TURNS, "built-in Gemma turns (the file has none)"))
    } else if has("<|im_start|>") && has("<|im_end|>") {
        Some((CHATML, "built-in ChatML (the file has none)"))
    } else {
        None
    }
}

pub fn router(shared: Arc<Shared>, max_body: usize) -> Router {
    let api = Router::new()
        .route("/v1/completions", post(completions))
        .route("/v1/chat/completions", post(chat_completions))
        .route("/v1/models", get(models))
        .route("/tokenize", post(tokenize))
        .route("/detokenize", post(detokenize))
        .route_layer(axum::middleware::from_fn_with_state(
            Arc::clone(&shared),
            require_key,
        ));
    Router::new()
        .merge(api)
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(shared)
}

async fn not_found() -> ApiError {
    ApiError::status(404, "not_found_error", "no such endpoint")
}

/// `--api-key`: `Authorization: Bearer KEY`, compared in constant time.
async fn require_key(
    State(shared): State<Arc<Shared>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if let Some(key) = &shared.api_key {
        let given = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        use subtle::ConstantTimeEq as _;
        let same: bool = given.as_bytes().ct_eq(key.as_bytes()).into();
        if !same {
            shared.metrics.rejected();
            return ApiError::status(
                401,
                "authentication_error",
                "a valid API key is required (Authorization: Bearer KEY)",
            )
            .into_response();
        }
    }
    next.run(request).await
}

async fn health(State(shared): State<Arc<Shared>>) -> Response {
    match shared.ready() {
        Ok(_) => Json(json!({"status": "ok"})).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn metrics(State(shared): State<Arc<Shared>>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        shared.metrics.render(),
    )
        .into_response()
}

async fn models(State(shared): State<Arc<Shared>>) -> Json<Value> {
    let created = shared.ready.get().map_or(0, |r| r.created);
    Json(json!({
        "object": "list",
        "data": [{
            "id": shared.model_id,
            "object": "model",
            "created": created,
            "owned_by": "rbench",
            "root": shared.model_root,
            "parent": null,
            "max_model_len": shared.ctx_per_request,
        }]
    }))
}

/// The body as JSON of type `T`: 413 over the limit, 400 when malformed.
fn parse_body<T: serde::de::DeserializeOwned>(
    body: Result<Bytes, BytesRejection>,
) -> Result<T, ApiError> {
    let bytes = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::status(
                413,
                "invalid_request_error",
                "the request body is larger than --max-body",
            )
        } else {
            ApiError::bad_request(format!("cannot read the request body: {e}"))
        }
    })?;
    serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::bad_request(format!("invalid request body: {e}")))
}

#[derive(serde::Deserialize)]
struct TokenizeRequest {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    prompt: Option<String>,
    #[serde(default)]
    messages: Option<Vec<super::api::ChatMessageIn>>,
    #[serde(default = "yes")]
    add_special_tokens: bool,
    #[serde(default)]
    return_token_strs: bool,
}

fn yes() -> bool {
    true
}

/// vLLM's `/tokenize`: `{count, max_model_len, tokens[, token_strs]}`.
async fn tokenize(
    State(shared): State<Arc<Shared>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let result = (|| -> Result<Value, ApiError> {
        let req: TokenizeRequest = parse_body(body)?;
        shared.check_model(req.model.as_deref())?;
        let ready = shared.ready()?;
        let tok = &ready.tokenizer;
        let (text, add_bos) = match (&req.prompt, &req.messages) {
            (Some(p), None) => (p.clone(), req.add_special_tokens && tok.add_bos_default()),
            (None, Some(messages)) => {
                let chat = ChatRequest {
                    messages: messages.clone(),
                    logprobs: false,
                    top_logprobs: None,
                    tools: None,
                    common: Common::default(),
                };
                (render_chat(ready, &chat)?, tok.add_bos_default())
            }
            _ => return Err(ApiError::bad_request("give either `prompt` or `messages`")),
        };
        let ids = tok
            .encode(&text, add_bos)
            .map_err(|e| ApiError::bad_request(format!("cannot tokenize: {e}")))?;
        let mut out = json!({
            "count": ids.len(),
            "max_model_len": shared.ctx_per_request,
            "tokens": ids,
        });
        if req.return_token_strs {
            out["token_strs"] = json!(ids
                .iter()
                .map(|&id| tok.token_piece(id).unwrap_or(""))
                .collect::<Vec<_>>());
        }
        Ok(out)
    })();
    respond(&shared, result.map(Json))
}

#[derive(serde::Deserialize)]
struct DetokenizeRequest {
    #[serde(default)]
    model: Option<String>,
    tokens: Vec<u32>,
}

/// vLLM's `/detokenize`: `{prompt}`.
async fn detokenize(
    State(shared): State<Arc<Shared>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let result = (|| -> Result<Value, ApiError> {
        let req: DetokenizeRequest = parse_body(body)?;
        shared.check_model(req.model.as_deref())?;
        let tok = &shared.ready()?.tokenizer;
        let text = tok
            .decode(&req.tokens)
            .map_err(|e| ApiError::bad_param("tokens", e.to_string()))?;
        Ok(json!({ "prompt": text }))
    })();
    respond(&shared, result.map(Json))
}

fn respond(shared: &Shared, result: Result<impl IntoResponse, ApiError>) -> Response {
    match result {
        Ok(r) => r.into_response(),
        Err(e) => {
            shared.metrics.rejected();
            e.into_response()
        }
    }
}

fn render_chat(ready: &Ready, chat: &ChatRequest) -> Result<String, ApiError> {
    let messages = chat.messages()?;
    match &ready.template {
        Some(t) => t
            .render(&messages)
            .map_err(|e| ApiError::bad_param("messages", e)),
        None => Ok(join_messages(&messages)),
    }
}

/// Which endpoint a generation answers, for the response shapes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Completion,
    Chat,
}

/// A request ready for the engine.
struct Prepared {
    prompt: Vec<u32>,
    sampling: Sampling,
    n_predict: usize,
    top_logprobs: Option<usize>,
}

/// Decrements the in-flight count when the request is over, however it ends.
struct InFlight(Arc<Shared>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Shared {
    fn prepare(
        &self,
        kind: Kind,
        body: Result<Bytes, BytesRejection>,
    ) -> Result<Prepared, ApiError> {
        let seed = self.next_id.load(Ordering::Relaxed);
        let (common, prompt, top_logprobs) = match kind {
            Kind::Completion => {
                let req: CompletionRequest = parse_body(body)?;
                if req.echo {
                    return Err(ApiError::bad_param("echo", "echo is not supported"));
                }
                self.check_model(req.common.model.as_deref())?;
                let ready = self.ready()?;
                let top = req.top_logprobs()?;
                let prompt = match req.prompt()? {
                    PromptIn::Text(t) => ready
                        .tokenizer
                        .encode(&t, ready.tokenizer.add_bos_default())
                        .map_err(|e| ApiError::bad_param("prompt", e.to_string()))?,
                    PromptIn::Tokens(ids) => {
                        let n_vocab = ready.tokenizer.n_vocab();
                        if let Some(bad) = ids.iter().find(|&&id| id as usize >= n_vocab) {
                            return Err(ApiError::bad_param(
                                "prompt",
                                format!("token id {bad} is outside the vocabulary of {n_vocab}"),
                            ));
                        }
                        ids
                    }
                };
                (req.common, prompt, top)
            }
            Kind::Chat => {
                let req: ChatRequest = parse_body(body)?;
                self.check_model(req.common.model.as_deref())?;
                let ready = self.ready()?;
                let top = req.top_logprobs()?;
                let text = render_chat(ready, &req)?;
                let prompt = ready
                    .tokenizer
                    .encode(&text, ready.tokenizer.add_bos_default())
                    .map_err(|e| ApiError::bad_param("messages", e.to_string()))?;
                (req.common, prompt, top)
            }
        };
        let sampling = common.sampling(seed)?;
        if prompt.is_empty() {
            return Err(ApiError::bad_param("prompt", "the prompt is empty"));
        }
        let ctx = self.ctx_per_request;
        if prompt.len() >= ctx {
            return Err(ApiError::bad_param(
                "prompt",
                format!(
                    "the prompt is {} tokens but this server's context is {ctx} tokens per request (prompt + completion; raise -c)",
                    prompt.len()
                ),
            ));
        }
        let room = ctx - prompt.len();
        let n_predict = match sampling.max_tokens {
            Some(m) if m > room => {
                return Err(ApiError::bad_param(
                    "max_tokens",
                    format!(
                        "this server's context is {ctx} tokens per request, but {} were asked for ({} in the prompt, {m} for the completion)",
                        prompt.len() + m,
                        prompt.len()
                    ),
                ))
            }
            Some(m) => m,
            // OpenAI's legacy default for completions; chat runs to the context.
            None if kind == Kind::Completion => 16.min(room),
            None => room,
        };
        Ok(Prepared {
            prompt,
            sampling,
            n_predict,
            top_logprobs,
        })
    }

    /// Hands a prepared request to the engine; 429 when the queue is full.
    fn submit(
        self: &Arc<Self>,
        p: &Prepared,
    ) -> Result<(mpsc::UnboundedReceiver<JobEvent>, InFlight), ApiError> {
        let limit = self.parallel + self.max_queue;
        let taken = self.in_flight.fetch_add(1, Ordering::Relaxed);
        let guard = InFlight(Arc::clone(self));
        if taken >= limit {
            return Err(ApiError::status(
                429,
                "rate_limit_error",
                format!(
                    "the server is busy: {} requests run and {} wait (--parallel {}, --max-queue {})",
                    self.parallel.min(taken),
                    taken.saturating_sub(self.parallel),
                    self.parallel,
                    self.max_queue
                ),
            ));
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let job = Job {
            request: Request {
                prompt: p.prompt.clone(),
                n_predict: p.n_predict,
            },
            options: RequestOptions {
                sampler: Some(p.sampling.sampler.clone()),
                stop_at_eog: Some(!p.sampling.ignore_eos),
                top_logprobs: p.top_logprobs,
            },
            events: tx,
        };
        self.commands
            .send(Command::Submit(job))
            .map_err(|_| ApiError::status(503, "unavailable_error", "the engine has stopped"))?;
        Ok((rx, guard))
    }
}

async fn completions(
    State(shared): State<Arc<Shared>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    generate(shared, Kind::Completion, body).await
}

async fn chat_completions(
    State(shared): State<Arc<Shared>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    generate(shared, Kind::Chat, body).await
}

async fn generate(
    shared: Arc<Shared>,
    kind: Kind,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let started = Instant::now();
    let prepared = match shared.prepare(kind, body) {
        Ok(p) => p,
        Err(e) => return respond(&shared, Err::<Response, _>(e)),
    };
    let (events, in_flight) = match shared.submit(&prepared) {
        Ok(x) => x,
        Err(e) => return respond(&shared, Err::<Response, _>(e)),
    };
    let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
    let meta = Meta {
        id: match kind {
            Kind::Completion => format!("cmpl-{id}"),
            Kind::Chat => format!("chatcmpl-{id}"),
        },
        created: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        model: shared.model_id.clone(),
        kind,
        prompt_tokens: prepared.prompt.len(),
        top_logprobs: prepared.top_logprobs,
        started,
    };
    if prepared.sampling.stream {
        stream_response(shared, prepared, meta, events, in_flight)
    } else {
        whole_response(shared, prepared, meta, events, in_flight).await
    }
}

/// What every response of one request repeats.
struct Meta {
    id: String,
    created: u64,
    model: String,
    kind: Kind,
    prompt_tokens: usize,
    top_logprobs: Option<usize>,
    started: Instant,
}

/// A generation in progress: tokens in, text pieces and a finish reason out.
struct Progress<'t> {
    text: TextStream<'t>,
    completion_tokens: usize,
    cached_tokens: usize,
    cache: CacheOutcome,
    finish: Option<&'static str>,
    first_token: Option<Duration>,
    /// When the request entered a slot, its first and its latest token.
    admitted_at: Option<Instant>,
    first_token_at: Option<Instant>,
    last_token_at: Option<Instant>,
}

/// One token's log-probabilities as they go out.
struct LogprobEntry {
    token: u32,
    lp: TokenLogprobs,
}

/// What to send after one engine event.
#[derive(Default)]
struct Piece {
    text: String,
    logprobs: Vec<LogprobEntry>,
}

impl<'t> Progress<'t> {
    fn new(tokenizer: &'t Tokenizer, stops: Vec<String>) -> Progress<'t> {
        Progress {
            text: TextStream::new(tokenizer, stops),
            completion_tokens: 0,
            cached_tokens: 0,
            cache: CacheOutcome::Miss,
            finish: None,
            first_token: None,
            admitted_at: None,
            first_token_at: None,
            last_token_at: None,
        }
    }

    /// llama-server's `timings` object: prompt time from entering a slot to
    /// the first token, generation time from the first token to the last.
    fn timings(&self, meta: &Meta) -> Value {
        let ms = |a: Option<Instant>, b: Option<Instant>| match (a, b) {
            (Some(a), Some(b)) => b.saturating_duration_since(a).as_secs_f64() * 1000.0,
            _ => 0.0,
        };
        let prompt_ms = ms(self.admitted_at, self.first_token_at);
        let predicted_ms = ms(self.first_token_at, self.last_token_at);
        let steps = self.completion_tokens.saturating_sub(1);
        json!({
            "cache_n": self.cached_tokens,
            "prompt_n": meta.prompt_tokens.saturating_sub(self.cached_tokens),
            "prompt_ms": prompt_ms,
            "predicted_n": self.completion_tokens,
            "predicted_ms": predicted_ms,
            "predicted_per_token_ms": if steps > 0 { predicted_ms / steps as f64 } else { 0.0 },
            "predicted_per_second": if predicted_ms > 0.0 { steps as f64 * 1000.0 / predicted_ms } else { 0.0 },
        })
    }

    /// Takes one engine event; Err when the engine failed.
    fn on_event(&mut self, event: JobEvent, started: Instant) -> Result<Piece, ApiError> {
        let mut piece = Piece::default();
        match event {
            JobEvent::Admitted {
                cached_tokens,
                cache,
                at,
            } => {
                self.cached_tokens = cached_tokens;
                self.cache = cache;
                self.admitted_at = Some(at);
            }
            JobEvent::Token { token, logprobs } => {
                if self.finish.is_some() {
                    return Ok(piece);
                }
                self.first_token.get_or_insert_with(|| started.elapsed());
                let now = Instant::now();
                self.first_token_at.get_or_insert(now);
                self.last_token_at = Some(now);
                self.completion_tokens += 1;
                let delta = self
                    .text
                    .push(token)
                    .map_err(|e| ApiError::status(500, "server_error", e.to_string()))?;
                piece.text = delta.text;
                if let Some(lp) = logprobs {
                    piece.logprobs.push(LogprobEntry { token, lp });
                }
                if delta.stopped {
                    self.finish = Some("stop");
                }
            }
            JobEvent::Done { stop } => {
                if self.finish.is_none() {
                    piece.text = self.text.finish();
                    self.finish = Some(match stop {
                        StopReason::Length => "length",
                        StopReason::EndOfGeneration => "stop",
                    });
                }
            }
            JobEvent::Failed(why) => return Err(ApiError::status(500, "server_error", why)),
        }
        Ok(piece)
    }

    fn usage(&self, meta: &Meta) -> Usage {
        Usage::new(
            meta.prompt_tokens,
            self.completion_tokens,
            self.cached_tokens,
        )
    }

    fn log(&self, shared: &Shared, meta: &Meta, outcome: &str) {
        if !shared.log_requests {
            return;
        }
        eprintln!(
            "{} {}: prompt {} tokens ({}, {} cached) | {} generated | ttft {} | {:.2} s | {outcome}",
            meta.id,
            match meta.kind {
                Kind::Completion => "completion",
                Kind::Chat => "chat",
            },
            meta.prompt_tokens,
            self.cache.as_str(),
            self.cached_tokens,
            self.completion_tokens,
            self.first_token
                .map_or("-".to_string(), |d| format!("{:.3} s", d.as_secs_f64())),
            meta.started.elapsed().as_secs_f64(),
        );
    }
}

fn bytes_json(b: &[u8]) -> Value {
    json!(b)
}

/// Chat's logprobs entries: `{token, logprob, bytes, top_logprobs: [...]}`.
fn chat_logprobs(tok: &Tokenizer, entries: &[LogprobEntry]) -> Value {
    let one = |id: u32, lp: f32| {
        let (text, bytes) = token_text(tok, id);
        json!({"token": text, "logprob": lp, "bytes": bytes_json(&bytes)})
    };
    let content: Vec<Value> = entries
        .iter()
        .map(|e| {
            let mut v = one(e.token, e.lp.logprob);
            v["top_logprobs"] =
                Value::Array(e.lp.top.iter().map(|&(id, lp)| one(id, lp)).collect());
            v
        })
        .collect();
    json!({ "content": content })
}

/// The legacy completions form: parallel lists.
fn completion_logprobs(tok: &Tokenizer, entries: &[LogprobEntry], offset: usize) -> Value {
    let mut tokens = Vec::new();
    let mut token_logprobs = Vec::new();
    let mut top = Vec::new();
    let mut text_offset = Vec::new();
    let mut at = offset;
    for e in entries {
        let (text, _) = token_text(tok, e.token);
        text_offset.push(at);
        at += text.len();
        tokens.push(text);
        token_logprobs.push(e.lp.logprob);
        let alternatives: serde_json::Map<String, Value> =
            e.lp.top
                .iter()
                .map(|&(id, lp)| (token_text(tok, id).0, json!(lp)))
                .collect();
        top.push(Value::Object(alternatives));
    }
    json!({
        "tokens": tokens,
        "token_logprobs": token_logprobs,
        "top_logprobs": top,
        "text_offset": text_offset,
    })
}

/// The next engine event of a request, or why there is none: the engine
/// dropped it (500) or `--timeout` passed (504, counted as a cancel: the
/// caller's dropped receiver cancels the job).
fn received(
    shared: &Shared,
    next: Result<Option<JobEvent>, tokio::time::error::Elapsed>,
) -> Result<JobEvent, ApiError> {
    match next {
        Ok(Some(e)) => Ok(e),
        Ok(None) => Err(ApiError::status(
            500,
            "server_error",
            "the engine ended the request",
        )),
        Err(_) => {
            shared.metrics.cancelled();
            Err(ApiError::status(
                504,
                "timeout_error",
                format!(
                    "the request took longer than --timeout {} s",
                    shared.timeout.as_secs()
                ),
            ))
        }
    }
}

/// `stream: false`: wait for the end, answer once.
async fn whole_response(
    shared: Arc<Shared>,
    prepared: Prepared,
    meta: Meta,
    mut events: mpsc::UnboundedReceiver<JobEvent>,
    in_flight: InFlight,
) -> Response {
    let Ok(ready) = shared.ready() else {
        return ApiError::status(503, "unavailable_error", "the model is loading").into_response();
    };
    let tok = &ready.tokenizer;
    let mut progress = Progress::new(tok, prepared.sampling.stops.clone());
    let mut text = String::new();
    let mut entries = Vec::new();
    let deadline = tokio::time::Instant::now() + shared.timeout;
    let outcome: Result<(), ApiError> = loop {
        let event = match received(
            &shared,
            tokio::time::timeout_at(deadline, events.recv()).await,
        ) {
            Ok(e) => e,
            Err(e) => break Err(e),
        };
        match progress.on_event(event, meta.started) {
            Ok(piece) => {
                text.push_str(&piece.text);
                entries.extend(piece.logprobs);
            }
            Err(e) => break Err(e),
        }
        if progress.finish.is_some() {
            break Ok(());
        }
    };
    // Dropping the receiver cancels what the engine still runs (a stop
    // string, a timeout).
    drop(events);
    drop(in_flight);
    if let Err(e) = outcome {
        progress.log(&shared, &meta, &format!("error {}", e.status));
        return e.into_response();
    }
    let finish = progress.finish.unwrap_or("stop");
    progress.log(&shared, &meta, finish);
    let usage = progress.usage(&meta);
    let logprobs = meta.top_logprobs.map(|_| match meta.kind {
        Kind::Chat => chat_logprobs(tok, &entries),
        Kind::Completion => completion_logprobs(tok, &entries, 0),
    });
    let body = match meta.kind {
        Kind::Completion => json!({
            "id": meta.id, "object": "text_completion", "created": meta.created, "model": meta.model,
            "choices": [{"index": 0, "text": text, "logprobs": logprobs, "finish_reason": finish}],
            "usage": usage,
            "timings": progress.timings(&meta),
        }),
        Kind::Chat => json!({
            "id": meta.id, "object": "chat.completion", "created": meta.created, "model": meta.model,
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "logprobs": logprobs,
                "finish_reason": finish,
            }],
            "usage": usage,
            "timings": progress.timings(&meta),
        }),
    };
    Json(body).into_response()
}

/// One stream chunk's JSON.
fn chunk(
    meta: &Meta,
    text: Option<&str>,
    logprobs: Option<Value>,
    finish: Option<&str>,
    include_usage: bool,
    first: bool,
) -> Value {
    let mut v = match meta.kind {
        Kind::Completion => json!({
            "id": meta.id, "object": "text_completion", "created": meta.created, "model": meta.model,
            "choices": [{"index": 0, "text": text.unwrap_or(""), "logprobs": logprobs, "finish_reason": finish}],
        }),
        Kind::Chat => {
            let mut delta = serde_json::Map::new();
            if first {
                delta.insert("role".into(), json!("assistant"));
            }
            if let Some(t) = text {
                delta.insert("content".into(), json!(t));
            }
            json!({
                "id": meta.id, "object": "chat.completion.chunk", "created": meta.created, "model": meta.model,
                "choices": [{"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": finish}],
            })
        }
    };
    if include_usage {
        v["usage"] = Value::Null;
    }
    v
}

/// `stream: true`: server-sent events as tokens arrive, `data: [DONE]` last.
fn stream_response(
    shared: Arc<Shared>,
    prepared: Prepared,
    meta: Meta,
    mut events: mpsc::UnboundedReceiver<JobEvent>,
    in_flight: InFlight,
) -> Response {
    let (out, body) = mpsc::channel::<SseEvent>(64);
    let include_usage = prepared.sampling.include_usage;
    let stops = prepared.sampling.stops;
    tokio::spawn(async move {
        let _in_flight = in_flight;
        let Ok(ready) = shared.ready() else { return };
        let tok = &ready.tokenizer;
        let mut progress = Progress::new(tok, stops);
        let data = |v: &Value| SseEvent::default().data(v.to_string());
        let deadline = tokio::time::Instant::now() + shared.timeout;
        let mut first = true;
        let mut offset = 0;
        if meta.kind == Kind::Chat {
            // The role comes first, as OpenAI sends it.
            let c = chunk(&meta, Some(""), None, None, include_usage, true);
            if out.send(data(&c)).await.is_err() {
                return;
            }
            first = false;
        }
        let ended: Result<(), ApiError> = loop {
            let event = tokio::select! {
                e = tokio::time::timeout_at(deadline, events.recv()) => e,
                // The client is gone: stop waiting, which cancels the job.
                _ = out.closed() => {
                    progress.log(&shared, &meta, "client disconnected");
                    return;
                }
            };
            let event = match received(&shared, event) {
                Ok(e) => e,
                Err(e) => break Err(e),
            };
            let token_event = matches!(event, JobEvent::Token { .. }) && progress.finish.is_none();
            let piece = match progress.on_event(event, meta.started) {
                Ok(p) => p,
                Err(e) => break Err(e),
            };
            // One chunk per token, even when its text is held back or
            // empty (a byte of a split character): clients time tokens by chunks.
            if token_event || !piece.text.is_empty() {
                let logprobs = meta.top_logprobs.map(|_| match meta.kind {
                    Kind::Chat => chat_logprobs(tok, &piece.logprobs),
                    Kind::Completion => completion_logprobs(tok, &piece.logprobs, offset),
                });
                offset += piece.text.len();
                let c = chunk(
                    &meta,
                    Some(&piece.text),
                    logprobs,
                    None,
                    include_usage,
                    first,
                );
                first = false;
                if out.send(data(&c)).await.is_err() {
                    progress.log(&shared, &meta, "client disconnected");
                    return;
                }
            }
            if progress.finish.is_some() {
                break Ok(());
            }
        };
        // No more tokens wanted: the engine cancels what still runs.
        drop(events);
        match ended {
            Ok(()) => {
                let finish = progress.finish.unwrap_or("stop");
                progress.log(&shared, &meta, finish);
                let text = (meta.kind == Kind::Completion).then_some("");
                let mut c = chunk(&meta, text, None, Some(finish), include_usage, first);
                c["timings"] = progress.timings(&meta);
                let _ = out.send(data(&c)).await;
                if include_usage {
                    let mut c = chunk(&meta, None, None, None, false, false);
                    c["choices"] = json!([]);
                    c["usage"] = json!(progress.usage(&meta));
                    let _ = out.send(data(&c)).await;
                }
            }
            Err(e) => {
                progress.log(&shared, &meta, &format!("error {}", e.status));
                let _ = out.send(data(&e.body())).await;
            }
        }
        let _ = out.send(SseEvent::default().data("[DONE]")).await;
    });
    let stream = tokio_stream::wrappers::ReceiverStream::new(body);
    let stream = futures_util::StreamExt::map(stream, Ok::<_, Infallible>);
    let mut response = Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}
