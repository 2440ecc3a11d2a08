//! The OpenAI-compatible wire format: request bodies as they arrive
//! (checked into a [`Sampling`] and a prompt), response bodies and stream
//! chunks as they leave, and OpenAI's error object.

use crate::engine::SamplerConfig;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A request the server refuses, with the HTTP status it gets.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    pub status: u16,
    pub message: String,
    /// OpenAI's `type`: invalid_request_error, not_found_error, ...
    pub kind: &'static str,
    /// The request field at fault, when one is.
    pub param: Option<&'static str>,
}

impl ApiError {
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError {
            status: 400,
            message: message.into(),
            kind: "invalid_request_error",
            param: None,
        }
    }

    pub fn bad_param(param: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            param: Some(param),
            ..ApiError::bad_request(message)
        }
    }

    pub fn status(status: u16, kind: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
            kind,
            param: None,
        }
    }

    /// OpenAI's error body.
    pub fn body(&self) -> Value {
        serde_json::json!({
            "error": {
                "message": self.message,
                "type": self.kind,
                "param": self.param,
                "code": self.status,
            }
        })
    }
}

/// `stop`: one string or a list of them.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Stop {
    One(String),
    Many(Vec<String>),
}

/// Fields both endpoints share. Unknown fields are ignored, as OpenAI's
/// own server does; fields rbench cannot honour are refused by name.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Common {
    pub model: Option<String>,
    pub stream: bool,
    pub stream_options: Option<StreamOptions>,
    pub max_tokens: Option<i64>,
    pub max_completion_tokens: Option<i64>,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub top_k: Option<i64>,
    pub min_p: Option<f64>,
    pub repetition_penalty: Option<f64>,
    pub seed: Option<u64>,
    pub stop: Option<Stop>,
    pub ignore_eos: bool,
    pub n: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct StreamOptions {
    pub include_usage: bool,
}

/// `POST /v1/completions`.
#[derive(Debug, Deserialize)]
pub struct CompletionRequest {
    pub prompt: Value,
    /// Legacy form: how many top alternatives per token (0..=20).
    #[serde(default)]
    pub logprobs: Option<i64>,
    #[serde(default)]
    pub echo: bool,
    #[serde(flatten)]
    pub common: Common,
}

#[derive(Debug, Deserialize, Serialize, Clone)]
pub struct ChatMessageIn {
    pub role: String,
    #[serde(default)]
    pub content: Value,
}

/// `POST /v1/chat/completions`.
#[derive(Debug, Deserialize)]
pub struct ChatRequest {
    pub messages: Vec<ChatMessageIn>,
    #[serde(default)]
    pub logprobs: bool,
    #[serde(default)]
    pub top_logprobs: Option<i64>,
    #[serde(default)]
    pub tools: Option<Vec<Value>>,
    #[serde(flatten)]
    pub common: Common,
}

/// What a request asks of the sampler and the stream, checked.
#[derive(Clone, Debug, PartialEq)]
pub struct Sampling {
    pub sampler: SamplerConfig,
    /// Explicit token budget (None: what the context leaves).
    pub max_tokens: Option<usize>,
    pub stops: Vec<String>,
    pub ignore_eos: bool,
    pub stream: bool,
    pub include_usage: bool,
}

/// Most top alternatives a request may ask for (OpenAI's limit).
pub const MAX_TOP_LOGPROBS: i64 = 20;
/// Most stop strings (OpenAI allows 4; more cost nothing here but a bound).
const MAX_STOPS: usize = 16;

fn in_range(param: &'static str, v: f64, lo: f64, hi: f64) -> Result<f64, ApiError> {
    if v.is_finite() && (lo..=hi).contains(&v) {
        Ok(v)
    } else {
        Err(ApiError::bad_param(
            param,
            format!("{param} must be within {lo}..={hi}, got {v}"),
        ))
    }
}

impl Common {
    /// Checks ranges and turns the fields into sampler settings.
    /// `default_seed` stands in for a missing `seed`.
    pub fn sampling(&self, default_seed: u64) -> Result<Sampling, ApiError> {
        if let Some(n) = self.n {
            if n != 1 {
                return Err(ApiError::bad_param(
                    "n",
                    format!("n = {n}: rbench returns one choice per request (n must be 1)"),
                ));
            }
        }
        let max_tokens = match self.max_completion_tokens.or(self.max_tokens) {
            None => None,
            Some(m) if m >= 1 => Some(m as usize),
            Some(m) => {
                return Err(ApiError::bad_param(
                    "max_tokens",
                    format!("max_tokens must be at least 1, got {m}"),
                ))
            }
        };
        let temperature = in_range("temperature", self.temperature.unwrap_or(1.0), 0.0, 2.0)?;
        let top_p = in_range("top_p", self.top_p.unwrap_or(1.0), 0.0, 1.0)?;
        let min_p = in_range("min_p", self.min_p.unwrap_or(0.0), 0.0, 1.0)?;
        let repeat_penalty = in_range(
            "repetition_penalty",
            self.repetition_penalty.unwrap_or(1.0),
            0.01,
            100.0,
        )?;
        let top_k = match self.top_k.unwrap_or(0) {
            // vLLM's -1 and OpenAI's absence both mean "off".
            k if k <= 0 => 0,
            k => k as usize,
        };
        let stops = match &self.stop {
            None => Vec::new(),
            Some(Stop::One(s)) => vec![s.clone()],
            Some(Stop::Many(v)) => v.clone(),
        };
        if stops.len() > MAX_STOPS {
            return Err(ApiError::bad_param(
                "stop",
                format!("at most {MAX_STOPS} stop strings, got {}", stops.len()),
            ));
        }
        Ok(Sampling {
            sampler: SamplerConfig {
                temperature: temperature as f32,
                top_k,
                top_p: top_p as f32,
                min_p: min_p as f32,
                repeat_penalty: repeat_penalty as f32,
                seed: self.seed.unwrap_or(default_seed),
                ..SamplerConfig::default()
            },
            max_tokens,
            stops,
            ignore_eos: self.ignore_eos,
            stream: self.stream,
            include_usage: self
                .stream_options
                .as_ref()
                .is_some_and(|o| o.include_usage),
        })
    }
}

/// A completion prompt: text, or token ids as vLLM accepts them.
#[derive(Debug, PartialEq)]
pub enum PromptIn {
    Text(String),
    Tokens(Vec<u32>),
}

impl CompletionRequest {
    pub fn prompt(&self) -> Result<PromptIn, ApiError> {
        let bad = || {
            ApiError::bad_param(
                "prompt",
                "prompt must be a string, a list of one string, or a list of token ids",
            )
        };
        match &self.prompt {
            Value::String(s) => Ok(PromptIn::Text(s.clone())),
            Value::Array(items) if items.len() == 1 && items[0].is_string() => Ok(PromptIn::Text(
                items[0].as_str().unwrap_or_default().to_string(),
            )),
            Value::Array(items) if items.len() > 1 && items.iter().all(Value::is_string) => {
                Err(ApiError::bad_param(
                    "prompt",
                    "several prompts in one request are not supported: send one request each",
                ))
            }
            Value::Array(items) if !items.is_empty() => items
                .iter()
                .map(|v| {
                    v.as_u64()
                        .and_then(|id| u32::try_from(id).ok())
                        .ok_or_else(bad)
                })
                .collect::<Result<Vec<_>, _>>()
                .map(PromptIn::Tokens),
            _ => Err(bad()),
        }
    }

    pub fn top_logprobs(&self) -> Result<Option<usize>, ApiError> {
        match self.logprobs {
            None => Ok(None),
            Some(n) if (0..=MAX_TOP_LOGPROBS).contains(&n) => Ok(Some(n as usize)),
            Some(n) => Err(ApiError::bad_param(
                "logprobs",
                format!("logprobs must be within 0..={MAX_TOP_LOGPROBS}, got {n}"),
            )),
        }
    }
}

impl ChatRequest {
    /// Messages with their text content (a list of parts is joined; parts
    /// other than text are refused).
    pub fn messages(&self) -> Result<Vec<crate::analyze::shape::ChatMessage>, ApiError> {
        if self.messages.is_empty() {
            return Err(ApiError::bad_param("messages", "messages is empty"));
        }
        if self.tools.as_ref().is_some_and(|t| !t.is_empty()) {
            return Err(ApiError::bad_param(
                "tools",
                "tool calling is not supported by rbench serve",
            ));
        }
        self.messages
            .iter()
            .map(|m| {
                let content = match &m.content {
                    Value::String(s) => s.clone(),
                    Value::Null => String::new(),
                    Value::Array(parts) => {
                        let mut text = String::new();
                        for p in parts {
                            match (p.get("type").and_then(Value::as_str), p.get("text")) {
                                (Some("text"), Some(Value::String(t))) => text.push_str(t),
                                _ => {
                                    return Err(ApiError::bad_param(
                                        "messages",
                                        "only text content parts are supported",
                                    ))
                                }
                            }
                        }
                        text
                    }
                    _ => {
                        return Err(ApiError::bad_param(
                            "messages",
                            "a message's content must be a string or a list of text parts",
                        ))
                    }
                };
                Ok(crate::analyze::shape::ChatMessage {
                    role: m.role.clone(),
                    content,
                })
            })
            .collect()
    }

    pub fn top_logprobs(&self) -> Result<Option<usize>, ApiError> {
        match (self.logprobs, self.top_logprobs) {
            (false, None) => Ok(None),
            (false, Some(_)) => Err(ApiError::bad_param(
                "top_logprobs",
                "top_logprobs needs logprobs: true",
            )),
            (true, None) => Ok(Some(0)),
            (true, Some(n)) if (0..=MAX_TOP_LOGPROBS).contains(&n) => Ok(Some(n as usize)),
            (true, Some(n)) => Err(ApiError::bad_param(
                "top_logprobs",
                format!("top_logprobs must be within 0..={MAX_TOP_LOGPROBS}, got {n}"),
            )),
        }
    }
}

/// `usage`, with vLLM's and OpenAI's cached-token detail.
#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq)]
pub struct Usage {
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    pub total_tokens: usize,
    pub prompt_tokens_details: PromptTokensDetails,
}

#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq)]
pub struct PromptTokensDetails {
    pub cached_tokens: usize,
}

impl Usage {
    pub fn new(prompt_tokens: usize, completion_tokens: usize, cached_tokens: usize) -> Usage {
        Usage {
            prompt_tokens,
            completion_tokens,
            total_tokens: prompt_tokens + completion_tokens,
            prompt_tokens_details: PromptTokensDetails { cached_tokens },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn common(json: &str) -> Common {
        serde_json::from_str::<CompletionRequest>(json)
            .unwrap()
            .common
    }

    #[test]
    fn defaults_are_openais() {
        let s = common(r#"{"prompt": "x"}"#).sampling(7).unwrap();
        assert_eq!(s.sampler.temperature, 1.0);
        assert_eq!(
            (s.sampler.top_k, s.sampler.top_p, s.sampler.min_p),
            (0, 1.0, 0.0)
        );
        assert_eq!(s.sampler.seed, 7);
        assert_eq!(s.max_tokens, None);
        assert!(!s.stream && !s.include_usage && !s.ignore_eos);
    }

    #[test]
    fn fields_parse_and_ranges_are_checked() {
        let s = common(
            r#"{"prompt":"x","max_completion_tokens":5,"max_tokens":9,"temperature":0,
                "stop":"\n","stream":true,"stream_options":{"include_usage":true},"top_k":-1,
                "seed":3,"unknown_field":1}"#,
        )
        .sampling(0)
        .unwrap();
        assert_eq!(s.max_tokens, Some(5));
        assert_eq!(s.stops, vec!["\n".to_string()]);
        assert!(s.stream && s.include_usage);
        assert_eq!(
            (s.sampler.temperature, s.sampler.top_k, s.sampler.seed),
            (0.0, 0, 3)
        );
        for bad in [
            r#"{"prompt":"x","temperature":3}"#,
            r#"{"prompt":"x","top_p":-0.1}"#,
            r#"{"prompt":"x","max_tokens":0}"#,
            r#"{"prompt":"x","n":2}"#,
        ] {
            let e = common(bad).sampling(0).unwrap_err();
            assert_eq!(e.status, 400, "{bad}");
            assert!(e.param.is_some(), "{bad}");
        }
        // Wrong types are refused by the parser.
        assert!(
            serde_json::from_str::<CompletionRequest>(r#"{"prompt":"x","max_tokens":"a"}"#)
                .is_err()
        );
    }

    #[test]
    fn prompts_and_messages_take_their_documented_forms() {
        let req = |p: &str| -> CompletionRequest {
            serde_json::from_str(&format!(r#"{{"prompt": {p}}}"#)).unwrap()
        };
        assert_eq!(
            req(r#""hi""#).prompt().unwrap(),
            PromptIn::Text("hi".into())
        );
        assert_eq!(
            req(r#"["hi"]"#).prompt().unwrap(),
            PromptIn::Text("hi".into())
        );
        assert_eq!(
            req("[1, 2]").prompt().unwrap(),
            PromptIn::Tokens(vec![1, 2])
        );
        assert!(req(r#"["a", "b"]"#).prompt().is_err());
        assert!(req("[-1]").prompt().is_err());
        assert!(req("5").prompt().is_err());
        let chat: ChatRequest = serde_json::from_str(
            r#"{"messages":[{"role":"user","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]}],
                "logprobs":true,"top_logprobs":2}"#,
        )
        .unwrap();
        assert_eq!(chat.messages().unwrap()[0].content, "ab");
        assert_eq!(chat.top_logprobs().unwrap(), Some(2));
        let image: ChatRequest = serde_json::from_str(
            r#"{"messages":[{"role":"user","content":[{"type":"image_url","image_url":{}}]}]}"#,
        )
        .unwrap();
        assert!(image.messages().is_err());
    }
}
