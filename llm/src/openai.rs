//! [`OpenAiCompatible`]: the streaming client for the OpenAI chat-completions
//! protocol — OpenAI itself, Azure OpenAI, Ollama (`/v1`), vLLM, llama.cpp's
//! server and anything else that speaks it — and its [`OpenAiConfig`].
//!
//! One request per answer: `POST {base_url}/chat/completions` with
//! `stream: true` and `stream_options.include_usage`, the system prompt and
//! messages from [`build_messages`]. The SSE stream's
//! `choices[0].delta.content` pieces become deltas, `data: [DONE]` ends it,
//! usage comes from the final chunk or is counted locally
//! ([`TiktokenCounter`](crate::TiktokenCounter) for OpenAI models,
//! [`EstimateCounter`](crate::EstimateCounter) otherwise).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt;
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::prompt::{Prompt, TokenBudget, build_messages};
use crate::sse::SseEvent;
use crate::tokens::{TokenCounter, counter_for_model};
use crate::types::{AnswerRequest, EventStream, LanguageModel, LlmError};
use crate::wire::{self, DriveCtx, Parsed, Timeouts, WireProtocol, json_u32};

/// Settings of an [`OpenAiCompatible`] provider. Every field has a default;
/// unknown keys are refused.
///
/// | key | default |
/// | --- | --- |
/// | `name` | `"openai:{model}"` (`"azure:{model}"` with `azure`) |
/// | `base_url` | `"https://api.openai.com/v1"` |
/// | `api_key` | none (Ollama, vLLM and llama.cpp need none) |
/// | `model` | `"gpt-4o-mini"` |
/// | `context_window` | `128000` |
/// | `connect_timeout_ms` | `5000` |
/// | `first_token_timeout_ms` | `20000` |
/// | `idle_timeout_ms` | `15000` |
/// | `total_timeout_secs` | `120` |
/// | `temperature` | none (the server's default) |
/// | `azure` | `false`: send the key as `api-key` instead of `Authorization: Bearer` |
/// | `api_version` | none: Azure's `?api-version=` query value |
/// | `max_completion_tokens` | auto: `true` for o1/o3/o4/gpt-5, which reject `max_tokens` |
#[derive(Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct OpenAiConfig {
    /// Provider name in logs, metrics and `Done.provider`.
    pub name: Option<String>,
    /// API root, without `/chat/completions`: `https://api.openai.com/v1`,
    /// `http://localhost:11434/v1` (Ollama), or for Azure
    /// `https://RESOURCE.openai.azure.com/openai/deployments/DEPLOYMENT`.
    pub base_url: String,
    /// The API key; never serialized or printed.
    #[serde(skip_serializing)]
    pub api_key: Option<String>,
    /// Model (or Azure deployment's model) name.
    pub model: String,
    /// Context window in tokens.
    pub context_window: u32,
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
    /// Sampling temperature; omitted from the request when `None`.
    pub temperature: Option<f32>,
    /// Azure OpenAI: the key goes in an `api-key` header.
    pub azure: bool,
    /// Appended as `?api-version=…` (Azure's classic endpoints need it).
    pub api_version: Option<String>,
    /// Send `max_completion_tokens` instead of `max_tokens`; `None` decides
    /// from the model name.
    pub max_completion_tokens: Option<bool>,
}

impl Default for OpenAiConfig {
    fn default() -> Self {
        Self {
            name: None,
            base_url: "https://api.openai.com/v1".to_owned(),
            api_key: None,
            model: "gpt-4o-mini".to_owned(),
            context_window: 128_000,
            connect_timeout: Duration::from_millis(5_000),
            first_token_timeout: Duration::from_millis(20_000),
            idle_timeout: Duration::from_millis(15_000),
            total_timeout: Duration::from_secs(120),
            temperature: None,
            azure: false,
            api_version: None,
            max_completion_tokens: None,
        }
    }
}

impl std::fmt::Debug for OpenAiConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAiConfig")
            .field("name", &self.name)
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("model", &self.model)
            .field("context_window", &self.context_window)
            .field("connect_timeout", &self.connect_timeout)
            .field("first_token_timeout", &self.first_token_timeout)
            .field("idle_timeout", &self.idle_timeout)
            .field("total_timeout", &self.total_timeout)
            .field("temperature", &self.temperature)
            .field("azure", &self.azure)
            .field("api_version", &self.api_version)
            .field("max_completion_tokens", &self.max_completion_tokens)
            .finish()
    }
}

impl OpenAiConfig {
    pub(crate) fn timeouts(&self) -> Timeouts {
        Timeouts {
            connect: self.connect_timeout,
            first_token: self.first_token_timeout,
            idle: self.idle_timeout,
            total: self.total_timeout,
        }
    }
}

/// Streaming client for OpenAI-compatible chat-completions endpoints.
pub struct OpenAiCompatible {
    cfg: OpenAiConfig,
    name: String,
    url: String,
    headers: HeaderMap,
    client: reqwest::Client,
    counter: Arc<dyn TokenCounter>,
}

impl std::fmt::Debug for OpenAiCompatible {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAiCompatible")
            .field("name", &self.name)
            .field("url", &self.url)
            .field("counter", &self.counter.name())
            .finish()
    }
}

fn wants_max_completion_tokens(model: &str) -> bool {
    let m = model.trim().to_ascii_lowercase();
    ["o1", "o3", "o4", "gpt-5"].iter().any(|p| m.starts_with(p))
}

impl OpenAiCompatible {
    /// Validates `cfg` and builds the provider and its HTTP client.
    pub fn new(cfg: OpenAiConfig) -> Result<Self, LlmError> {
        let base = wire::validate_base_url(&cfg.base_url)?;
        if cfg.model.trim().is_empty() {
            return Err(LlmError::Config("model must not be empty".into()));
        }
        if cfg.context_window == 0 {
            return Err(LlmError::Config("context_window must be positive".into()));
        }
        cfg.timeouts().validate()?;
        let mut url = format!("{base}/chat/completions");
        if let Some(v) = cfg.api_version.as_deref().map(str::trim) {
            if v.is_empty()
                || !v
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
            {
                return Err(LlmError::Config(format!("invalid api_version `{v}`")));
            }
            url.push_str("?api-version=");
            url.push_str(v);
        }
        let key = cfg
            .api_key
            .as_deref()
            .map(str::trim)
            .filter(|k| !k.is_empty());
        if cfg.azure && key.is_none() {
            return Err(LlmError::Config("azure needs an api_key".into()));
        }
        let mut headers = HeaderMap::new();
        headers.insert(
            reqwest::header::ACCEPT,
            HeaderValue::from_static("text/event-stream"),
        );
        if let Some(key) = key {
            let (name, value) = if cfg.azure {
                ("api-key", key.to_owned())
            } else {
                (AUTHORIZATION.as_str(), format!("Bearer {key}"))
            };
            let mut value = HeaderValue::from_str(&value)
                .map_err(|_| LlmError::Config("api_key contains invalid characters".into()))?;
            value.set_sensitive(true);
            headers.insert(reqwest::header::HeaderName::from_static(name), value);
        }
        let client = wire::build_client(&cfg.timeouts())?;
        let name = cfg.name.clone().unwrap_or_else(|| {
            let prefix = if cfg.azure { "azure" } else { "openai" };
            format!("{prefix}:{}", cfg.model)
        });
        let counter = counter_for_model(&cfg.model);
        Ok(Self {
            cfg,
            name,
            url,
            headers,
            client,
            counter,
        })
    }

    /// Replaces the token counter (for models tiktoken does not know but
    /// whose tokenizer you can count with).
    pub fn with_counter(mut self, counter: Arc<dyn TokenCounter>) -> Self {
        self.counter = counter;
        self
    }

    /// The configuration in use.
    pub fn config(&self) -> &OpenAiConfig {
        &self.cfg
    }

    /// The full chat-completions URL requests go to.
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
        let mut messages = vec![json!({"role": "system", "content": prompt.system})];
        messages.extend(
            prompt
                .messages
                .iter()
                .map(|(role, text)| json!({"role": role.as_str(), "content": text})),
        );
        let mut body = json!({
            "model": self.cfg.model,
            "messages": messages,
            "stream": true,
            "stream_options": {"include_usage": true},
        });
        let max_key = if self
            .cfg
            .max_completion_tokens
            .unwrap_or_else(|| wants_max_completion_tokens(&self.cfg.model))
        {
            "max_completion_tokens"
        } else {
            "max_tokens"
        };
        body[max_key] = json!(max_tokens);
        if let Some(t) = self.cfg.temperature {
            body["temperature"] = json!(t);
        }
        (prompt, body)
    }
}

#[async_trait]
impl LanguageModel for OpenAiCompatible {
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
            OpenAiWire,
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

/// The chat-completions chunk protocol.
pub(crate) struct OpenAiWire;

/// Maps an in-stream `{"error": …}` object.
fn stream_error(err: &Value) -> LlmError {
    let field = |k: &str| err.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
    let (kind, code, message) = (field("type"), field("code"), field("message"));
    let all = format!("{kind} {code} {message}").to_ascii_lowercase();
    let text = wire::error_message(&json!({ "error": err }).to_string());
    if all.contains("rate_limit") || all.contains("rate limit") {
        LlmError::RateLimited { retry_after: None }
    } else if all.contains("server_error")
        || all.contains("overloaded")
        || all.contains("unavailable")
        || all.contains("timeout")
    {
        LlmError::Unavailable(format!("error event: {text}"))
    } else {
        LlmError::BadResponse(format!("error event: {text}"))
    }
}

impl WireProtocol for OpenAiWire {
    fn end_marker(&self) -> &'static str {
        "data: [DONE]"
    }

    fn on_event(&mut self, ev: &SseEvent, out: &mut Vec<Parsed>) -> Result<(), LlmError> {
        let data = ev.data.trim();
        if data == "[DONE]" {
            out.push(Parsed::End);
            return Ok(());
        }
        if data.is_empty() {
            return Ok(());
        }
        let v: Value = serde_json::from_str(data).map_err(|e| {
            LlmError::BadResponse(format!(
                "a stream chunk is not valid JSON ({e}): {data:.200}"
            ))
        })?;
        if let Some(err) = v.get("error").filter(|e| !e.is_null()) {
            return Err(stream_error(err));
        }
        if ev.event == "error" {
            return Err(stream_error(&v));
        }
        if let Some(u) = v.get("usage").filter(|u| u.is_object()) {
            out.push(Parsed::Usage {
                prompt: json_u32(u.get("prompt_tokens")),
                completion: json_u32(u.get("completion_tokens")),
            });
        }
        if let Some(text) = v
            .pointer("/choices/0/delta/content")
            .and_then(Value::as_str)
        {
            out.push(Parsed::Text(text.to_owned()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{Passage, Role, Turn};

    fn req() -> AnswerRequest {
        AnswerRequest {
            persona_name: "Amani".into(),
            subject: None,
            language: "en".into(),
            grade_level: None,
            instructions: None,
            rules: vec![],
            passages: vec![Passage {
                relevance: None,
                n: 1,
                source_title: "Biology".into(),
                page: 2,
                text: "Cells are the units of life.".into(),
            }],
            history: vec![Turn {
                role: Role::Assistant,
                text: "Hello!".into(),
            }],
            question: "What is a cell?".into(),
            max_answer_tokens: 256,
        }
    }

    #[test]
    fn config_defaults_and_serde_names() {
        let cfg: OpenAiConfig = serde_json::from_str(
            r#"{"model":"llama3.1","base_url":"http://localhost:11434/v1",
                "first_token_timeout_ms": 1500, "total_timeout_secs": 30, "api_key": "sk-x"}"#,
        )
        .expect("config");
        assert_eq!(cfg.first_token_timeout, Duration::from_millis(1500));
        assert_eq!(cfg.total_timeout, Duration::from_secs(30));
        assert_eq!(cfg.idle_timeout, Duration::from_secs(15));
        assert_eq!(cfg.context_window, 128_000);
        assert!(!format!("{cfg:?}").contains("sk-x"));
        let out = serde_json::to_value(&cfg).expect("ser");
        assert!(out.get("api_key").is_none());
        assert_eq!(out["connect_timeout_ms"], 5000);
        assert!(
            serde_json::from_str::<OpenAiConfig>(r#"{"modle":"x"}"#).is_err(),
            "unknown keys are refused"
        );
    }

    #[test]
    fn builds_the_request_body() {
        let p = OpenAiCompatible::new(OpenAiConfig {
            api_key: Some("sk-test".into()),
            temperature: Some(0.2),
            ..OpenAiConfig::default()
        })
        .expect("provider");
        assert_eq!(p.name(), "openai:gpt-4o-mini");
        assert_eq!(p.url(), "https://api.openai.com/v1/chat/completions");
        assert_eq!(
            p.headers.get("authorization").map(|v| v.as_bytes()),
            Some(&b"Bearer sk-test"[..])
        );
        let (prompt, body) = p.request_body(&req());
        assert_eq!(body["model"], "gpt-4o-mini");
        assert_eq!(body["stream"], true);
        assert_eq!(body["stream_options"]["include_usage"], true);
        assert_eq!(body["max_tokens"], 256);
        assert!((body["temperature"].as_f64().unwrap_or(0.0) - 0.2).abs() < 1e-6);
        let msgs = body["messages"].as_array().expect("messages");
        assert_eq!(msgs.len(), 3);
        assert_eq!(msgs[0]["role"], "system");
        assert_eq!(msgs[0]["content"], prompt.system.as_str());
        assert_eq!(msgs[1]["role"], "assistant");
        assert_eq!(msgs[2]["role"], "user");
        assert!(
            msgs[2]["content"]
                .as_str()
                .unwrap_or("")
                .contains("<passage n=\"1\"")
        );

        let o = OpenAiCompatible::new(OpenAiConfig {
            model: "o3-mini".into(),
            ..OpenAiConfig::default()
        })
        .expect("provider");
        let (_, body) = o.request_body(&req());
        assert_eq!(body["max_completion_tokens"], 256);
        assert!(body.get("max_tokens").is_none());
        assert!(body.get("temperature").is_none());
    }

    #[test]
    fn azure_and_validation() {
        let p = OpenAiCompatible::new(OpenAiConfig {
            base_url: "https://r.openai.azure.com/openai/deployments/d1/".into(),
            api_key: Some("k".into()),
            azure: true,
            api_version: Some("2024-10-21".into()),
            ..OpenAiConfig::default()
        })
        .expect("azure");
        assert_eq!(p.name(), "azure:gpt-4o-mini");
        assert_eq!(
            p.url(),
            "https://r.openai.azure.com/openai/deployments/d1/chat/completions?api-version=2024-10-21"
        );
        assert!(p.headers.get("api-key").is_some());
        assert!(p.headers.get("authorization").is_none());

        for bad in [
            OpenAiConfig {
                base_url: "ftp://x".into(),
                ..OpenAiConfig::default()
            },
            OpenAiConfig {
                azure: true,
                ..OpenAiConfig::default()
            },
            OpenAiConfig {
                model: " ".into(),
                ..OpenAiConfig::default()
            },
            OpenAiConfig {
                api_key: Some("a\nb".into()),
                ..OpenAiConfig::default()
            },
            OpenAiConfig {
                idle_timeout: Duration::ZERO,
                ..OpenAiConfig::default()
            },
            OpenAiConfig {
                api_version: Some("1&x=y".into()),
                ..OpenAiConfig::default()
            },
        ] {
            assert!(matches!(
                OpenAiCompatible::new(bad),
                Err(LlmError::Config(_))
            ));
        }
    }

    #[test]
    fn wire_protocol_reads_chunks_usage_errors_and_done() {
        let ev = |data: &str| SseEvent {
            event: "message".into(),
            data: data.into(),
            id: None,
        };
        let mut w = OpenAiWire;
        let mut out = Vec::new();
        w.on_event(
            &ev(r#"{"choices":[{"delta":{"role":"assistant","content":""}}]}"#),
            &mut out,
        )
        .expect("ok");
        w.on_event(
            &ev(r#"{"choices":[],"prompt_filter_results":[]}"#),
            &mut out,
        )
        .expect("azure preamble");
        w.on_event(
            &ev(r#"{"choices":[{"delta":{"content":"Hi"}}],"usage":null}"#),
            &mut out,
        )
        .expect("ok");
        w.on_event(
            &ev(r#"{"choices":[],"usage":{"prompt_tokens":10,"completion_tokens":2}}"#),
            &mut out,
        )
        .expect("ok");
        w.on_event(&ev("[DONE]"), &mut out).expect("ok");
        assert_eq!(
            out,
            vec![
                Parsed::Text(String::new()),
                Parsed::Text("Hi".into()),
                Parsed::Usage {
                    prompt: Some(10),
                    completion: Some(2)
                },
                Parsed::End
            ]
        );
        assert!(matches!(
            w.on_event(
                &ev(r#"{"error":{"message":"boom","type":"server_error"}}"#),
                &mut out
            ),
            Err(LlmError::Unavailable(_))
        ));
        assert!(matches!(
            w.on_event(
                &ev(r#"{"error":{"message":"bad","type":"invalid_request_error"}}"#),
                &mut out
            ),
            Err(LlmError::BadResponse(_))
        ));
        assert!(matches!(
            w.on_event(&ev(r#"{"error":{"code":"rate_limit_exceeded"}}"#), &mut out),
            Err(LlmError::RateLimited { retry_after: None })
        ));
        assert!(matches!(
            w.on_event(&ev("{not json"), &mut out),
            Err(LlmError::BadResponse(_))
        ));
    }
}
