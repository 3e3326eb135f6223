//! [`Anthropic`]: the streaming client for Anthropic's Messages API and its
//! [`AnthropicConfig`].
//!
//! One request per answer: `POST {base_url}/v1/messages` with `x-api-key`,
//! `anthropic-version`, `stream: true`, the system prompt in `system` and
//! the messages from [`build_messages`] (leading assistant turns dropped and
//! consecutive same-role turns merged, as the API wants alternation starting
//! with the user). Stream events: `message_start` (input tokens),
//! `content_block_delta` with `text_delta` (the text), `message_delta`
//! (output tokens), `message_stop` (the end), `ping` and block start/stop
//! (ignored), `error` (`overloaded_error`/`api_error` → unavailable,
//! `rate_limit_error` → rate limited, others → bad response). Unknown event
//! types are ignored, as Anthropic asks. Token budgets use the
//! [`EstimateCounter`] (Claude's tokenizer is not public).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::prompt::{Prompt, TokenBudget, build_messages};
use crate::sse::SseEvent;
use crate::tokens::{EstimateCounter, TokenCounter};
use crate::types::{AnswerRequest, EventStream, LanguageModel, LlmError, Role};
use crate::wire::{self, DriveCtx, Parsed, Timeouts, WireProtocol, json_u32};

/// Settings of an [`Anthropic`] provider. Every field but `api_key` has a
/// default; unknown keys are refused.
///
/// | key | default |
/// | --- | --- |
/// | `name` | `"anthropic:{model}"` |
/// | `base_url` | `"https://api.anthropic.com"` |
/// | `api_key` | required |
/// | `model` | `"claude-haiku-4-5"` |
/// | `context_window` | `200000` |
/// | `anthropic_version` | `"2023-06-01"` |
/// | `connect_timeout_ms` | `5000` |
/// | `first_token_timeout_ms` | `20000` |
/// | `idle_timeout_ms` | `15000` |
/// | `total_timeout_secs` | `120` |
/// | `temperature` | none (the API's default) |
#[derive(Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AnthropicConfig {
    /// Provider name in logs, metrics and `Done.provider`.
    pub name: Option<String>,
    /// API root, without `/v1/messages`.
    pub base_url: String,
    /// The API key (`x-api-key`); never serialized or printed.
    #[serde(skip_serializing)]
    pub api_key: String,
    /// Model name.
    pub model: String,
    /// Context window in tokens.
    pub context_window: u32,
    /// The `anthropic-version` header.
    pub anthropic_version: String,
    /// TCP + TLS connect timeout.
    #[serde(rename = "connect_timeout_ms", with = "wire::duration_ms")]
    pub connect_timeout: Duration,
    /// From sending the request to the first text delta.
    #[serde(rename = "first_token_timeout_ms", with = "wire::duration_ms")]
    pub first_token_timeout: Duration,
    /// Longest silence between two chunks once text flows.
    #[serde(rename = "idle_timeout_ms", with = "wire::duration_ms")]
    pub idle_timeout: Duration,
    /// Longest time for the whole answer.
    #[serde(rename = "total_timeout_secs", with = "wire::duration_secs")]
    pub total_timeout: Duration,
    /// Sampling temperature; omitted when `None`.
    pub temperature: Option<f32>,
}

impl Default for AnthropicConfig {
    fn default() -> Self {
        Self {
            name: None,
            base_url: "https://api.anthropic.com".to_owned(),
            api_key: String::new(),
            model: "claude-haiku-4-5".to_owned(),
            context_window: 200_000,
            anthropic_version: "2023-06-01".to_owned(),
            connect_timeout: Duration::from_millis(5_000),
            first_token_timeout: Duration::from_millis(20_000),
            idle_timeout: Duration::from_millis(15_000),
            total_timeout: Duration::from_secs(120),
            temperature: None,
        }
    }
}

impl std::fmt::Debug for AnthropicConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AnthropicConfig")
            .field("name", &self.name)
            .field("base_url", &self.base_url)
            .field("api_key", &"<redacted>")
            .field("model", &self.model)
            .field("context_window", &self.context_window)
            .field("anthropic_version", &self.anthropic_version)
            .field("connect_timeout", &self.connect_timeout)
            .field("first_token_timeout", &self.first_token_timeout)
            .field("idle_timeout", &self.idle_timeout)
            .field("total_timeout", &self.total_timeout)
            .field("temperature", &self.temperature)
            .finish()
    }
}

impl AnthropicConfig {
    fn timeouts(&self) -> Timeouts {
        Timeouts {
            connect: self.connect_timeout,
            first_token: self.first_token_timeout,
            idle: self.idle_timeout,
            total: self.total_timeout,
        }
    }
}

/// Streaming client for Anthropic's Messages API.
pub struct Anthropic {
    cfg: AnthropicConfig,
    name: String,
    url: String,
    headers: HeaderMap,
    client: reqwest::Client,
    counter: Arc<dyn TokenCounter>,
}

impl std::fmt::Debug for Anthropic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Anthropic")
            .field("name", &self.name)
            .field("url", &self.url)
            .finish()
    }
}

impl Anthropic {
    /// Validates `cfg` and builds the provider and its HTTP client.
    pub fn new(cfg: AnthropicConfig) -> Result<Self, LlmError> {
        let base = wire::validate_base_url(&cfg.base_url)?;
        let key = cfg.api_key.trim();
        if key.is_empty() {
            return Err(LlmError::Config("anthropic needs an api_key".into()));
        }
        if cfg.model.trim().is_empty() {
            return Err(LlmError::Config("model must not be empty".into()));
        }
        if cfg.context_window == 0 {
            return Err(LlmError::Config("context_window must be positive".into()));
        }
        cfg.timeouts().validate()?;
        let invalid = |what: &str| LlmError::Config(format!("{what} contains invalid characters"));
        let mut key_value = HeaderValue::from_str(key).map_err(|_| invalid("api_key"))?;
        key_value.set_sensitive(true);
        let mut headers = HeaderMap::new();
        headers.insert(HeaderName::from_static("x-api-key"), key_value);
        headers.insert(
            HeaderName::from_static("anthropic-version"),
            HeaderValue::from_str(cfg.anthropic_version.trim())
                .map_err(|_| invalid("anthropic_version"))?,
        );
        headers.insert(
            reqwest::header::ACCEPT,
            HeaderValue::from_static("text/event-stream"),
        );
        let client = wire::build_client(&cfg.timeouts())?;
        let name = cfg
            .name
            .clone()
            .unwrap_or_else(|| format!("anthropic:{}", cfg.model));
        Ok(Self {
            url: format!("{base}/v1/messages"),
            name,
            headers,
            client,
            counter: Arc::new(EstimateCounter),
            cfg,
        })
    }

    /// Replaces the token counter.
    pub fn with_counter(mut self, counter: Arc<dyn TokenCounter>) -> Self {
        self.counter = counter;
        self
    }

    /// The configuration in use.
    pub fn config(&self) -> &AnthropicConfig {
        &self.cfg
    }

    /// The full Messages URL requests go to.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The prompt and the JSON body this provider would send for `req`.
    pub fn request_body(&self, req: &AnswerRequest) -> (Prompt, Value) {
        let budget = TokenBudget {
            context_window: self.cfg.context_window,
            max_answer_tokens: req.max_answer_tokens,
        };
        let prompt = build_messages(req, &budget, &*self.counter);
        let max_tokens = req
            .max_answer_tokens
            .min(self.cfg.context_window.saturating_sub(prompt.prompt_tokens))
            .max(1);
        let mut merged: Vec<(Role, String)> = Vec::new();
        for (role, text) in &prompt.messages {
            if merged.is_empty() && *role == Role::Assistant {
                continue;
            }
            match merged.last_mut() {
                Some((last, acc)) if last == role => {
                    acc.push_str("\n\n");
                    acc.push_str(text);
                }
                _ => merged.push((*role, text.clone())),
            }
        }
        let messages: Vec<Value> = merged
            .iter()
            .map(|(role, text)| json!({"role": role.as_str(), "content": text}))
            .collect();
        let mut body = json!({
            "model": self.cfg.model,
            "system": prompt.system,
            "messages": messages,
            "max_tokens": max_tokens,
            "stream": true,
        });
        if let Some(t) = self.cfg.temperature {
            body["temperature"] = json!(t);
        }
        (prompt, body)
    }
}

#[async_trait]
impl LanguageModel for Anthropic {
    fn name(&self) -> &str {
        &self.name
    }

    fn context_window(&self) -> u32 {
        self.cfg.context_window
    }

    async fn stream(&self, req: &AnswerRequest) -> Result<EventStream, LlmError> {
        let (prompt, body) = self.request_body(req);
        let timeouts = self.cfg.timeouts();
        let started = Instant::now();
        let rb = self
            .client
            .post(&self.url)
            .headers(self.headers.clone())
            .json(&body);
        let resp = wire::send(rb, &timeouts, started).await?;
        tracing::debug!(provider = %self.name, prompt_tokens = prompt.prompt_tokens, "streaming answer");
        let bytes = resp
            .bytes_stream()
            .map(|r| r.map_err(|e| wire::body_error(&e)))
            .boxed();
        Ok(wire::drive(
            bytes,
            AnthropicWire::default(),
            DriveCtx {
                provider: self.name.clone(),
                timeouts,
                started,
                counter: self.counter.clone(),
                prompt_tokens: prompt.prompt_tokens,
            },
        ))
    }
}

/// The Messages streaming protocol.
#[derive(Debug, Default)]
pub(crate) struct AnthropicWire {
    started: bool,
}

fn error_event(v: &Value) -> LlmError {
    let err = v.get("error").unwrap_or(v);
    let kind = err.get("type").and_then(Value::as_str).unwrap_or("");
    let message = err.get("message").and_then(Value::as_str).unwrap_or("");
    let text = format!("error event: {kind}: {message}");
    match kind {
        "overloaded_error" | "api_error" | "timeout_error" => LlmError::Unavailable(text),
        "rate_limit_error" => LlmError::RateLimited { retry_after: None },
        "authentication_error" | "permission_error" | "not_found_error" => LlmError::Config(text),
        _ => LlmError::BadResponse(text),
    }
}

impl WireProtocol for AnthropicWire {
    fn end_marker(&self) -> &'static str {
        "message_stop"
    }

    fn on_event(&mut self, ev: &SseEvent, out: &mut Vec<Parsed>) -> Result<(), LlmError> {
        let data = ev.data.trim();
        if data.is_empty() {
            return Ok(());
        }
        let v: Value = serde_json::from_str(data).map_err(|e| {
            LlmError::BadResponse(format!("an event is not valid JSON ({e}): {data:.200}"))
        })?;
        let kind = v
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or(ev.event.as_str());
        match kind {
            "message_start" => {
                self.started = true;
                let usage = v.pointer("/message/usage");
                let input = json_u32(usage.and_then(|u| u.get("input_tokens")));
                let cached = ["cache_creation_input_tokens", "cache_read_input_tokens"]
                    .iter()
                    .filter_map(|k| json_u32(usage.and_then(|u| u.get(*k))))
                    .fold(0u32, u32::saturating_add);
                out.push(Parsed::Usage {
                    prompt: input.map(|i| i.saturating_add(cached)),
                    completion: json_u32(usage.and_then(|u| u.get("output_tokens"))),
                });
            }
            "content_block_delta" => {
                let delta = v.get("delta");
                let is_text = delta
                    .and_then(|d| d.get("type"))
                    .and_then(Value::as_str)
                    .is_some_and(|t| t == "text_delta");
                if is_text
                    && let Some(t) = delta.and_then(|d| d.get("text")).and_then(Value::as_str)
                {
                    out.push(Parsed::Text(t.to_owned()));
                }
            }
            "message_delta" => {
                if let Some(n) = json_u32(v.pointer("/usage/output_tokens")) {
                    out.push(Parsed::Usage {
                        prompt: None,
                        completion: Some(n),
                    });
                }
            }
            "message_stop" => {
                if !self.started {
                    return Err(LlmError::BadResponse(
                        "message_stop without message_start".into(),
                    ));
                }
                out.push(Parsed::End);
            }
            "error" => return Err(error_event(&v)),
            // ping, content_block_start, content_block_stop, and future types.
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{Passage, Turn};

    fn ev(event: &str, data: &str) -> SseEvent {
        SseEvent {
            event: event.into(),
            data: data.into(),
            id: None,
        }
    }

    #[test]
    fn config_needs_a_key_and_has_defaults() {
        assert!(matches!(
            Anthropic::new(AnthropicConfig::default()),
            Err(LlmError::Config(_))
        ));
        let cfg: AnthropicConfig =
            serde_json::from_str(r#"{"api_key":"sk-ant","idle_timeout_ms":700}"#).expect("cfg");
        assert_eq!(cfg.idle_timeout, Duration::from_millis(700));
        assert_eq!(cfg.anthropic_version, "2023-06-01");
        assert!(!format!("{cfg:?}").contains("sk-ant"));
        let p = Anthropic::new(cfg).expect("provider");
        assert_eq!(p.name(), "anthropic:claude-haiku-4-5");
        assert_eq!(p.url(), "https://api.anthropic.com/v1/messages");
        assert_eq!(p.context_window(), 200_000);
    }

    #[test]
    fn body_alternates_roles_starting_with_the_user() {
        let p = Anthropic::new(AnthropicConfig {
            api_key: "k".into(),
            ..AnthropicConfig::default()
        })
        .expect("provider");
        let req = AnswerRequest {
            persona_name: "Amani".into(),
            subject: None,
            language: "fr".into(),
            grade_level: None,
            instructions: None,
            rules: vec![],
            passages: vec![Passage {
                relevance: None,
                n: 1,
                source_title: "T".into(),
                page: 1,
                text: "Texte.".into(),
            }],
            history: vec![
                Turn {
                    role: Role::Assistant,
                    text: "Bonjour !".into(),
                },
                Turn {
                    role: Role::User,
                    text: "Salut".into(),
                },
                Turn {
                    role: Role::User,
                    text: "Tu es là ?".into(),
                },
            ],
            question: "C'est quoi ?".into(),
            max_answer_tokens: 300,
        };
        let (prompt, body) = p.request_body(&req);
        assert_eq!(body["system"], prompt.system.as_str());
        assert_eq!(body["stream"], true);
        assert_eq!(body["max_tokens"], 300);
        let msgs = body["messages"].as_array().expect("messages");
        assert_eq!(msgs.len(), 1, "{msgs:?}");
        assert_eq!(msgs[0]["role"], "user");
        let content = msgs[0]["content"].as_str().unwrap_or("");
        assert!(content.starts_with("Salut\n\nTu es là ?\n\n"));
        assert!(content.contains("<passage n=\"1\""));
    }

    #[test]
    fn wire_protocol_events() {
        let mut w = AnthropicWire::default();
        let mut out = Vec::new();
        for (e, d) in [
            (
                "message_start",
                r#"{"type":"message_start","message":{"usage":{"input_tokens":25,"cache_read_input_tokens":5,"output_tokens":1}}}"#,
            ),
            (
                "content_block_start",
                r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
            ),
            ("ping", r#"{"type": "ping"}"#),
            (
                "content_block_delta",
                r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hello"}}"#,
            ),
            (
                "content_block_delta",
                r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{"}}"#,
            ),
            (
                "content_block_stop",
                r#"{"type":"content_block_stop","index":0}"#,
            ),
            (
                "message_delta",
                r#"{"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":15}}"#,
            ),
            ("brand_new_event", r#"{"type":"brand_new_event"}"#),
            ("message_stop", r#"{"type":"message_stop"}"#),
        ] {
            w.on_event(&ev(e, d), &mut out).expect(e);
        }
        assert_eq!(
            out,
            vec![
                Parsed::Usage {
                    prompt: Some(30),
                    completion: Some(1)
                },
                Parsed::Text("Hello".into()),
                Parsed::Usage {
                    prompt: None,
                    completion: Some(15)
                },
                Parsed::End,
            ]
        );
        let err = |t: &str| {
            AnthropicWire::default().on_event(
                &ev(
                    "error",
                    &format!(r#"{{"type":"error","error":{{"type":"{t}","message":"m"}}}}"#),
                ),
                &mut Vec::new(),
            )
        };
        assert!(matches!(
            err("overloaded_error"),
            Err(LlmError::Unavailable(_))
        ));
        assert!(matches!(err("api_error"), Err(LlmError::Unavailable(_))));
        assert!(matches!(
            err("rate_limit_error"),
            Err(LlmError::RateLimited { .. })
        ));
        assert!(matches!(
            err("invalid_request_error"),
            Err(LlmError::BadResponse(_))
        ));
        assert!(matches!(
            AnthropicWire::default().on_event(
                &ev("message_stop", r#"{"type":"message_stop"}"#),
                &mut Vec::new()
            ),
            Err(LlmError::BadResponse(_))
        ));
    }
}
