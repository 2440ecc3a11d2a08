//! One streamed request to an OpenAI-compatible server, timed chunk by
//! chunk (reqwest on tokio; server-sent events read as they arrive).

use super::metrics::{RequestRecord, ServerTimings, TokenSource};
use futures_util::StreamExt as _;
use serde_json::{json, Value};
use std::time::Instant;

/// Which endpoint requests go to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
pub enum Backend {
    /// `/v1/completions`.
    #[value(name = "openai")]
    Completions,
    /// `/v1/chat/completions`, the prompt as one user message.
    #[value(name = "openai-chat")]
    Chat,
}

/// Where and how to send.
#[derive(Clone, Debug)]
pub struct Target {
    /// e.g. `http://127.0.0.1:8080` (without `/v1`).
    pub base_url: String,
    pub backend: Backend,
    pub model: Option<String>,
    pub api_key: Option<String>,
    pub ignore_eos: bool,
}

/// A prompt as sent: token ids (completions) or text (chat, datasets).
#[derive(Clone, Debug, PartialEq)]
pub enum PromptBody {
    Tokens(Vec<u32>),
    Text(String),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Prompt {
    pub body: PromptBody,
    /// Prompt tokens as planned (the server's usage replaces it when sent).
    pub tokens: usize,
    pub max_tokens: usize,
}

impl Target {
    fn url(&self) -> String {
        let base = self.base_url.trim_end_matches('/');
        let base = base.strip_suffix("/v1").unwrap_or(base);
        match self.backend {
            Backend::Completions => format!("{base}/v1/completions"),
            Backend::Chat => format!("{base}/v1/chat/completions"),
        }
    }

    fn body(&self, p: &Prompt) -> Value {
        let mut body = json!({
            "max_tokens": p.max_tokens,
            "temperature": 0,
            "stream": true,
            "stream_options": {"include_usage": true},
        });
        if self.ignore_eos {
            body["ignore_eos"] = json!(true);
        }
        if let Some(m) = &self.model {
            body["model"] = json!(m);
        }
        match (self.backend, &p.body) {
            (Backend::Completions, PromptBody::Tokens(ids)) => body["prompt"] = json!(ids),
            (Backend::Completions, PromptBody::Text(t)) => body["prompt"] = json!(t),
            (Backend::Chat, PromptBody::Text(t)) => {
                body["messages"] = json!([{"role": "user", "content": t}])
            }
            // Chat takes text only: the caller makes text prompts for it.
            (Backend::Chat, PromptBody::Tokens(ids)) => {
                body["messages"] = json!([{"role": "user", "content": format!("{ids:?}")}])
            }
        }
        body
    }
}

/// A chunk's text (`text`, or chat's `delta.content`).
fn chunk_text(v: &Value) -> Option<&str> {
    let choice = v.get("choices")?.get(0)?;
    choice
        .get("text")
        .or_else(|| choice.get("delta")?.get("content"))
        .and_then(Value::as_str)
}

/// Whether a stream chunk stands for a generated token, as `vllm bench
/// serve` counts them: a chunk with a choice that carries text or a content
/// delta, even an empty one (a token may hold part of a character). A chat
/// stream's opening role chunk and a closing chunk without text do not count.
fn is_token_chunk(v: &Value) -> bool {
    let Some(choice) = v.get("choices").and_then(|c| c.get(0)) else {
        return false;
    };
    let text = choice
        .get("text")
        .or_else(|| choice.get("delta")?.get("content"))
        .and_then(Value::as_str);
    let role_only = choice
        .get("delta")
        .is_some_and(|d| d.get("role").is_some() && text.is_none_or(str::is_empty));
    let finished = choice.get("finish_reason").is_some_and(|f| !f.is_null());
    match text {
        None => false,
        Some(t) => !role_only && (!finished || !t.is_empty()),
    }
}

/// Sends `prompt` and records its timeline; failures are recorded, not returned.
pub async fn send(
    client: &reqwest::Client,
    target: &Target,
    prompt: &Prompt,
    t0: Instant,
) -> RequestRecord {
    let mut record = RequestRecord {
        prompt_tokens: prompt.tokens,
        sent: t0.elapsed().as_secs_f64(),
        chunks: Vec::with_capacity(prompt.max_tokens),
        end: 0.0,
        output_tokens: 0,
        tokens_from: TokenSource::Chunks,
        error: None,
        server_timings: None,
        text: String::new(),
    };
    let outcome = stream(client, target, prompt, t0, &mut record).await;
    record.end = t0.elapsed().as_secs_f64();
    if let Err(e) = outcome {
        record.error = Some(e);
    }
    record
}

async fn stream(
    client: &reqwest::Client,
    target: &Target,
    prompt: &Prompt,
    t0: Instant,
    record: &mut RequestRecord,
) -> Result<(), String> {
    let body = target.body(prompt);
    let mut attempt = 0;
    let response = loop {
        let mut request = client.post(target.url()).json(&body);
        if let Some(key) = &target.api_key {
            request = request.bearer_auth(key);
        }
        match request.send().await {
            Ok(r) => break r,
            // A kept-alive connection the server had just closed (cpp-httplib
            // closes after a number of requests): nothing was answered, so
            // sending again on a new connection is safe. Once.
            Err(e) if attempt == 0 && e.is_request() && !e.is_timeout() => attempt += 1,
            Err(e) => return Err(describe(&e)),
        }
    };
    let status = response.status();
    if !status.is_success() {
        let body = response.text().await.unwrap_or_default();
        let message = serde_json::from_str::<Value>(&body)
            .ok()
            .and_then(|v| v["error"]["message"].as_str().map(str::to_string))
            .unwrap_or_else(|| body.chars().take(120).collect());
        return Err(format!("HTTP {}: {message}", status.as_u16()));
    }
    let mut bytes = response.bytes_stream();
    let mut pending: Vec<u8> = Vec::new();
    let mut chunks = 0usize;
    let mut done = false;
    while let Some(piece) = bytes.next().await {
        let piece = piece.map_err(|e| describe(&e))?;
        let now = t0.elapsed().as_secs_f64();
        pending.extend_from_slice(&piece);
        while let Some(end) = pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            let line = String::from_utf8_lossy(&line);
            let Some(data) = line.trim().strip_prefix("data:") else {
                continue;
            };
            let data = data.trim();
            if data == "[DONE]" {
                done = true;
                break;
            }
            let Ok(v) = serde_json::from_str::<Value>(data) else {
                return Err(format!(
                    "not JSON in the stream: {}",
                    data.chars().take(80).collect::<String>()
                ));
            };
            if let Some(e) = v.get("error") {
                return Err(format!(
                    "error in the stream: {}",
                    e["message"].as_str().unwrap_or("(no message)")
                ));
            }
            if is_token_chunk(&v) {
                record.chunks.push(now);
                chunks += 1;
                if let Some(t) = chunk_text(&v) {
                    record.text.push_str(t);
                }
            }
            if let Some(t) = v.get("timings").filter(|t| t.is_object()) {
                record.server_timings = Some(ServerTimings {
                    prompt_ms: t["prompt_ms"].as_f64().unwrap_or(0.0),
                    predicted_per_token_ms: t["predicted_per_token_ms"].as_f64().unwrap_or(0.0),
                });
            }
            if let Some(usage) = v.get("usage").filter(|u| !u.is_null()) {
                if let Some(n) = usage["completion_tokens"].as_u64() {
                    record.output_tokens = n as usize;
                    record.tokens_from = TokenSource::Usage;
                }
                if let Some(n) = usage["prompt_tokens"].as_u64() {
                    record.prompt_tokens = n as usize;
                }
            }
        }
        if done {
            break;
        }
    }
    if !done {
        return Err("the stream ended without [DONE]".into());
    }
    if record.tokens_from == TokenSource::Chunks {
        record.output_tokens = chunks;
    }
    Ok(())
}

/// A transport error in a few words (reqwest's Display nests its causes).
fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        "cannot connect".into()
    } else if e.is_body() || e.is_decode() {
        "the connection broke mid-response".into()
    } else {
        let mut text = e.to_string();
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            text = format!("{text}: {s}");
            source = s.source();
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_chunks_are_counted_as_vllm_counts_them() {
        let count = |s: &str| is_token_chunk(&serde_json::from_str(s).unwrap());
        assert!(count(
            r#"{"choices":[{"text":" the","finish_reason":null}]}"#
        ));
        assert!(count(r#"{"choices":[{"text":"","finish_reason":null}]}"#));
        assert!(count(
            r#"{"choices":[{"delta":{"content":"a"},"finish_reason":null}]}"#
        ));
        assert!(!count(
            r#"{"choices":[{"delta":{"role":"assistant","content":""},"finish_reason":null}]}"#
        ));
        assert!(!count(
            r#"{"choices":[{"text":"","finish_reason":"length"}]}"#
        ));
        assert!(count(
            r#"{"choices":[{"text":"end","finish_reason":"stop"}]}"#
        ));
        assert!(!count(r#"{"choices":[],"usage":{"completion_tokens":3}}"#));
        assert!(!count(
            r#"{"choices":[{"delta":{},"finish_reason":"stop"}]}"#
        ));
    }
}
