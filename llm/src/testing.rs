//! Test doubles for this crate's tests and the server's tests and benches
//! (cargo feature `testing`):
//!
//! * [`StubServer`]: a real HTTP/1.1 server on `127.0.0.1:0`, written on
//!   tokio's `TcpListener` with a hand-written responder, that speaks the
//!   OpenAI chat-completions SSE protocol or the Anthropic Messages SSE
//!   protocol ([`Protocol`]) — `content-type: text/event-stream`, chunked
//!   transfer encoding, role/usage chunks, `data: [DONE]` or
//!   `message_stop` — and misbehaves on request ([`StubBehaviour`]): rate
//!   limits, 5xx, 529, a slow first byte, a socket closed mid-answer, an
//!   in-stream error event. It records every request (headers and parsed
//!   JSON body) and counts them.
//! * [`ScriptedModel`]: an in-process [`LanguageModel`] that plays
//!   [`Script`]s, for testing consumers (the chain, the server's actors)
//!   without sockets.
//!
//! Stub usage numbers: `prompt_tokens` is the number of whitespace-separated
//! words in the request's system prompt and messages, `completion_tokens`
//! the number of words in the answer.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt;
use parking_lot::Mutex;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::anthropic::AnthropicConfig;
use crate::openai::OpenAiConfig;
use crate::types::{
    Animation, AnswerRequest, EventStream, LanguageModel, LlmError, StreamEvent, Usage,
};

/// Which wire protocol a [`StubServer`] speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// `POST …/chat/completions`, `data: {chunk}` … `data: [DONE]`.
    OpenAi,
    /// `POST /v1/messages`, `event: message_start` … `event: message_stop`.
    Anthropic,
}

/// How a [`StubServer`] answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StubBehaviour {
    /// Stream `text` in `chunks` pieces (split on character boundaries),
    /// `chunk_delay` apart, then the protocol's usage and end marker.
    Stream {
        /// The answer text (may contain an animation tag).
        text: String,
        /// Number of text pieces (at least 1).
        chunks: usize,
        /// Pause before each piece.
        chunk_delay: Duration,
    },
    /// Answer from the request: the first passage's first sentence with its
    /// `[n]` marker and `[[animation gesture=explaining emotion=neutral]]`
    /// (or, with no passage, "My course material doesn't cover that." with
    /// thinking/concerned), streamed three words per chunk.
    Echo {
        /// Pause before each piece.
        chunk_delay: Duration,
    },
    /// Reply with this HTTP status and the protocol's JSON error body
    /// (429 → rate-limit error, 529 → overloaded, 5xx → server error).
    Status {
        /// The status code.
        code: u16,
        /// A `retry-after` header value, if any ("2", or an HTTP date).
        retry_after: Option<String>,
    },
    /// Wait `first_byte_after` before the response head, then stream `text`.
    Slow {
        /// Delay before the first byte.
        first_byte_after: Duration,
        /// The answer.
        text: String,
    },
    /// Stream the first `after_chunks` of `text`'s pieces (word by word),
    /// then close the socket abruptly: no end marker, no chunked terminator.
    DieMidway {
        /// The answer that never finishes.
        text: String,
        /// Pieces sent before the socket closes.
        after_chunks: usize,
    },
    /// Like `DieMidway`, but the HTTP body ends cleanly (terminating chunk)
    /// without the protocol's end marker.
    EndWithoutMarker {
        /// The answer that never finishes.
        text: String,
        /// Pieces sent before the body ends.
        after_chunks: usize,
    },
    /// Stream `after_chunks` word pieces of `text`, then an in-stream error
    /// event (OpenAI: `{"error":{"type":"server_error",…}}`; Anthropic:
    /// `event: error` with `overloaded_error`), then end the body.
    ErrorEvent {
        /// The answer that is interrupted.
        text: String,
        /// Pieces sent before the error.
        after_chunks: usize,
    },
    /// Send exactly these body bytes as an event stream (200 OK), in HTTP
    /// chunks of `write_size` bytes, `delay` apart.
    Raw {
        /// The raw SSE body.
        body: Vec<u8>,
        /// Bytes per write (at least 1).
        write_size: usize,
        /// Pause between writes.
        delay: Duration,
    },
    /// One behaviour per request in order; the last one repeats. (A
    /// `Sequence` nested inside one answers 500.)
    Sequence(Vec<StubBehaviour>),
}

impl StubBehaviour {
    /// `Stream` with no delay.
    pub fn stream(text: impl Into<String>, chunks: usize) -> Self {
        StubBehaviour::Stream {
            text: text.into(),
            chunks,
            chunk_delay: Duration::ZERO,
        }
    }

    /// `Status` without Retry-After.
    pub fn status(code: u16) -> Self {
        StubBehaviour::Status {
            code,
            retry_after: None,
        }
    }

    /// `Status(429)` with `retry-after: {secs}`.
    pub fn rate_limited(secs: u64) -> Self {
        StubBehaviour::Status {
            code: 429,
            retry_after: Some(secs.to_string()),
        }
    }

    /// `Echo` with no delay.
    pub fn echo() -> Self {
        StubBehaviour::Echo {
            chunk_delay: Duration::ZERO,
        }
    }
}

/// One request a [`StubServer`] received.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedRequest {
    /// HTTP method.
    pub method: String,
    /// Path and query.
    pub path: String,
    /// Headers, names in lower case, in the order received.
    pub headers: Vec<(String, String)>,
    /// The body parsed as JSON (`Null` if it was not JSON).
    pub body: Value,
}

impl RecordedRequest {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The system prompt: OpenAI's first `system` message or Anthropic's `system`.
    pub fn system_prompt(&self) -> Option<&str> {
        if let Some(s) = self.body.get("system").and_then(Value::as_str) {
            return Some(s);
        }
        self.body
            .get("messages")?
            .as_array()?
            .iter()
            .find(|m| m.get("role").and_then(Value::as_str) == Some("system"))?
            .get("content")?
            .as_str()
    }

    /// The last user message's text.
    pub fn last_user_message(&self) -> Option<String> {
        let msg = self
            .body
            .get("messages")?
            .as_array()?
            .iter()
            .rev()
            .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))?;
        content_text(msg.get("content")?)
    }
}

fn content_text(content: &Value) -> Option<String> {
    match content {
        Value::String(s) => Some(s.clone()),
        Value::Array(parts) => Some(
            parts
                .iter()
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .collect::<Vec<_>>()
                .join(""),
        ),
        _ => None,
    }
}

struct StubState {
    protocol: Protocol,
    behaviour: Mutex<StubBehaviour>,
    requests: Mutex<Vec<RecordedRequest>>,
    count: AtomicUsize,
    fragment: Mutex<Option<usize>>,
    usage: Mutex<bool>,
}

/// A local OpenAI- or Anthropic-protocol server; see the module docs.
/// Stops accepting connections when dropped.
pub struct StubServer {
    addr: SocketAddr,
    state: Arc<StubState>,
    accept: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for StubServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StubServer")
            .field("addr", &self.addr)
            .field("protocol", &self.state.protocol)
            .finish()
    }
}

impl Drop for StubServer {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

impl StubServer {
    /// Binds `127.0.0.1:0` and serves `protocol` with `behaviour`.
    pub async fn start(protocol: Protocol, behaviour: StubBehaviour) -> std::io::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(StubState {
            protocol,
            behaviour: Mutex::new(behaviour),
            requests: Mutex::new(Vec::new()),
            count: AtomicUsize::new(0),
            fragment: Mutex::new(None),
            usage: Mutex::new(true),
        });
        let st = state.clone();
        let accept = tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                let st = st.clone();
                tokio::spawn(async move {
                    if let Err(e) = serve(sock, st).await {
                        tracing::debug!(error = %e, "stub connection ended with an error");
                    }
                });
            }
        });
        Ok(Self {
            addr,
            state,
            accept,
        })
    }

    /// An OpenAI-protocol stub.
    pub async fn openai(behaviour: StubBehaviour) -> std::io::Result<Self> {
        Self::start(Protocol::OpenAi, behaviour).await
    }

    /// An Anthropic-protocol stub.
    pub async fn anthropic(behaviour: StubBehaviour) -> std::io::Result<Self> {
        Self::start(Protocol::Anthropic, behaviour).await
    }

    /// The socket address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The base URL to configure a provider with: `http://127.0.0.1:PORT/v1`
    /// for OpenAI (as `base_url` excludes `/chat/completions`) and
    /// `http://127.0.0.1:PORT` for Anthropic (as `base_url` excludes `/v1/messages`).
    pub fn base_url(&self) -> String {
        match self.state.protocol {
            Protocol::OpenAi => format!("http://{}/v1", self.addr),
            Protocol::Anthropic => format!("http://{}", self.addr),
        }
    }

    /// The protocol spoken.
    pub fn protocol(&self) -> Protocol {
        self.state.protocol
    }

    /// Changes the behaviour for the following requests.
    pub fn set_behaviour(&self, behaviour: StubBehaviour) {
        *self.state.behaviour.lock() = behaviour;
    }

    /// Splits every body write into HTTP chunks of at most `bytes` bytes
    /// (so SSE lines and UTF-8 characters arrive split); `None` turns it off.
    pub fn fragment_writes(&self, bytes: Option<usize>) {
        *self.state.fragment.lock() = bytes.map(|b| b.max(1));
    }

    /// Whether to report usage (OpenAI: the final usage chunk, when the
    /// request asked for it; Anthropic: always reported). Default true.
    pub fn report_usage(&self, on: bool) {
        *self.state.usage.lock() = on;
    }

    /// Requests received so far.
    pub fn request_count(&self) -> usize {
        self.state.count.load(Ordering::SeqCst)
    }

    /// Copies of the requests received so far.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.state.requests.lock().clone()
    }

    /// The last request received.
    pub fn last_request(&self) -> Option<RecordedRequest> {
        self.state.requests.lock().last().cloned()
    }

    /// A provider config pointing at this (OpenAI-protocol) stub, with key
    /// `sk-stub`, the given model, a 16 384-token window and short timeouts
    /// (connect 1 s, first token 5 s, idle 5 s, total 20 s).
    pub fn openai_config(&self, model: &str) -> OpenAiConfig {
        OpenAiConfig {
            base_url: self.base_url(),
            api_key: Some("sk-stub".into()),
            model: model.into(),
            context_window: 16_384,
            connect_timeout: Duration::from_secs(1),
            first_token_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(5),
            total_timeout: Duration::from_secs(20),
            ..OpenAiConfig::default()
        }
    }

    /// A provider config pointing at this (Anthropic-protocol) stub, with key
    /// `sk-ant-stub`, the given model and the same short timeouts.
    pub fn anthropic_config(&self, model: &str) -> AnthropicConfig {
        AnthropicConfig {
            base_url: self.base_url(),
            api_key: "sk-ant-stub".into(),
            model: model.into(),
            context_window: 16_384,
            connect_timeout: Duration::from_secs(1),
            first_token_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(5),
            total_timeout: Duration::from_secs(20),
            ..AnthropicConfig::default()
        }
    }
}

struct RawRequest {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

async fn read_request(sock: &mut TcpStream) -> std::io::Result<Option<RawRequest>> {
    let mut buf = Vec::with_capacity(8192);
    let mut tmp = [0u8; 8192];
    let head_end = loop {
        if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break pos;
        }
        if buf.len() > 256 * 1024 {
            return Err(std::io::Error::other("request head too large"));
        }
        let n = sock.read(&mut tmp).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&tmp[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or("");
    let mut parts = request_line.split_whitespace();
    let method = parts.next().unwrap_or("").to_owned();
    let path = parts.next().unwrap_or("").to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let len: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < len {
        let n = sock.read(&mut tmp).await?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&tmp[..n]);
    }
    body.truncate(len);
    Ok(Some(RawRequest {
        method,
        path,
        headers,
        body,
    }))
}

async fn serve(mut sock: TcpStream, st: Arc<StubState>) -> std::io::Result<()> {
    sock.set_nodelay(true)?;
    let Some(raw) = read_request(&mut sock).await? else {
        return Ok(());
    };
    let body: Value = serde_json::from_slice(&raw.body).unwrap_or(Value::Null);
    let rec = RecordedRequest {
        method: raw.method,
        path: raw.path,
        headers: raw.headers,
        body,
    };
    let index = st.count.fetch_add(1, Ordering::SeqCst);
    st.requests.lock().push(rec.clone());

    let expected = match st.protocol {
        Protocol::OpenAi => "/chat/completions",
        Protocol::Anthropic => "/v1/messages",
    };
    let path_only = rec.path.split('?').next().unwrap_or("");
    if rec.method != "POST" || !path_only.ends_with(expected) {
        let body = error_body(st.protocol, 404);
        return write_status(&mut sock, 404, None, &body).await;
    }

    let behaviour = match &*st.behaviour.lock() {
        StubBehaviour::Sequence(list) => list
            .get(index)
            .or_else(|| list.last())
            .cloned()
            .unwrap_or_else(|| StubBehaviour::stream("", 1)),
        other => other.clone(),
    };
    let fragment = *st.fragment.lock();
    let usage_on = *st.usage.lock();
    let mut w = Responder {
        sock,
        fragment,
        protocol: st.protocol,
        model: rec
            .body
            .get("model")
            .and_then(Value::as_str)
            .unwrap_or("stub")
            .to_owned(),
        prompt_words: prompt_words(&rec.body),
        include_usage: usage_on
            && (st.protocol == Protocol::Anthropic
                || rec.body.pointer("/stream_options/include_usage") == Some(&Value::Bool(true))),
    };
    w.run(behaviour, &rec).await
}

fn prompt_words(body: &Value) -> usize {
    let mut n = body
        .get("system")
        .and_then(Value::as_str)
        .map(|s| s.split_whitespace().count())
        .unwrap_or(0);
    if let Some(msgs) = body.get("messages").and_then(Value::as_array) {
        for m in msgs {
            if let Some(t) = m.get("content").and_then(content_text) {
                n += t.split_whitespace().count();
            }
        }
    }
    n
}

fn error_body(protocol: Protocol, code: u16) -> String {
    let (kind, message) = match code {
        429 => ("rate_limit_error", "Rate limit reached, please retry later"),
        529 => ("overloaded_error", "Overloaded"),
        401 => ("authentication_error", "Invalid API key"),
        404 => ("not_found_error", "Not found"),
        500..=599 => (
            "api_error",
            "The server had an error while processing your request",
        ),
        _ => ("invalid_request_error", "Invalid request"),
    };
    match protocol {
        Protocol::Anthropic => {
            json!({"type": "error", "error": {"type": kind, "message": message}}).to_string()
        }
        Protocol::OpenAi => {
            let (t, c) = match code {
                429 => ("requests", "rate_limit_exceeded"),
                500..=599 => ("server_error", "server_error"),
                401 => ("invalid_request_error", "invalid_api_key"),
                _ => ("invalid_request_error", "invalid_request"),
            };
            json!({"error": {"message": message, "type": t, "code": c}}).to_string()
        }
    }
}

fn reason(code: u16) -> &'static str {
    match code {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        529 => "Overloaded",
        _ => "Status",
    }
}

async fn write_status(
    sock: &mut TcpStream,
    code: u16,
    retry_after: Option<&str>,
    body: &str,
) -> std::io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {code} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n",
        reason(code),
        body.len()
    );
    if let Some(r) = retry_after {
        head.push_str(&format!("retry-after: {r}\r\n"));
    }
    head.push_str("\r\n");
    sock.write_all(head.as_bytes()).await?;
    sock.write_all(body.as_bytes()).await?;
    sock.flush().await?;
    sock.shutdown().await
}

/// Splits `text` into `n` pieces of about equal character counts.
fn split_even(text: &str, n: usize) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let n = n.max(1).min(chars.len().max(1));
    let per = chars.len().div_ceil(n).max(1);
    chars
        .chunks(per)
        .map(|c| c.iter().collect::<String>())
        .collect()
}

/// Splits `text` into word pieces, each keeping its trailing whitespace.
fn split_words(text: &str, per_piece: usize) -> Vec<String> {
    let mut pieces = Vec::new();
    let mut cur = String::new();
    let mut words = 0;
    let mut in_word = false;
    for c in text.chars() {
        if c.is_whitespace() {
            if in_word {
                words += 1;
                in_word = false;
            }
        } else {
            if !in_word && words >= per_piece {
                pieces.push(std::mem::take(&mut cur));
                words = 0;
            }
            in_word = true;
        }
        cur.push(c);
    }
    if !cur.is_empty() {
        pieces.push(cur);
    }
    pieces
}

/// The `Echo` answer for a request.
fn echo_answer(rec: &RecordedRequest) -> String {
    let user = rec.last_user_message().unwrap_or_default();
    let found = user.find("<passage n=\"").and_then(|start| {
        let rest = &user[start + "<passage n=\"".len()..];
        let n_end = rest.find('"')?;
        let n = &rest[..n_end];
        let body_start = rest.find(">\n")? + 2;
        let body = &rest[body_start..];
        let body = &body[..body.find("\n</passage>")?];
        Some((n.to_owned(), body.trim().to_owned()))
    });
    match found {
        Some((n, text)) => {
            let end = text
                .char_indices()
                .find(|&(i, c)| {
                    matches!(c, '.' | '!' | '?')
                        && text[i + c.len_utf8()..]
                            .chars()
                            .next()
                            .is_none_or(char::is_whitespace)
                })
                .map(|(i, _)| i);
            let (sentence, punct) = match end {
                Some(i) => (&text[..i], &text[i..i + 1]),
                None => (text.as_str(), "."),
            };
            format!(
                "{} [{n}]{punct}\n[[animation gesture=explaining emotion=neutral]]",
                sentence.trim()
            )
        }
        None => "My course material doesn't cover that.\n[[animation gesture=thinking emotion=concerned]]"
            .to_owned(),
    }
}

struct Responder {
    sock: TcpStream,
    fragment: Option<usize>,
    protocol: Protocol,
    model: String,
    prompt_words: usize,
    include_usage: bool,
}

impl Responder {
    async fn run(
        &mut self,
        behaviour: StubBehaviour,
        rec: &RecordedRequest,
    ) -> std::io::Result<()> {
        match behaviour {
            StubBehaviour::Stream {
                text,
                chunks,
                chunk_delay,
            } => {
                self.head().await?;
                self.answer(&split_even(&text, chunks), chunk_delay, &text)
                    .await
            }
            StubBehaviour::Echo { chunk_delay } => {
                let text = echo_answer(rec);
                self.head().await?;
                self.answer(&split_words(&text, 3), chunk_delay, &text)
                    .await
            }
            StubBehaviour::Status { code, retry_after } => {
                let body = error_body(self.protocol, code);
                write_status(&mut self.sock, code, retry_after.as_deref(), &body).await
            }
            StubBehaviour::Slow {
                first_byte_after,
                text,
            } => {
                tokio::time::sleep(first_byte_after).await;
                self.head().await?;
                self.answer(&split_words(&text, 2), Duration::ZERO, &text)
                    .await
            }
            StubBehaviour::DieMidway { text, after_chunks } => {
                self.head().await?;
                self.preamble().await?;
                for piece in split_words(&text, 1).iter().take(after_chunks) {
                    self.text_event(piece).await?;
                }
                // Abrupt close: no end marker, no terminating chunk.
                self.sock.flush().await?;
                Ok(())
            }
            StubBehaviour::EndWithoutMarker { text, after_chunks } => {
                self.head().await?;
                self.preamble().await?;
                for piece in split_words(&text, 1).iter().take(after_chunks) {
                    self.text_event(piece).await?;
                }
                self.end_body().await
            }
            StubBehaviour::ErrorEvent { text, after_chunks } => {
                self.head().await?;
                self.preamble().await?;
                for piece in split_words(&text, 1).iter().take(after_chunks) {
                    self.text_event(piece).await?;
                }
                let ev = match self.protocol {
                    Protocol::OpenAi => format!(
                        "data: {}\n\n",
                        json!({"error": {"message": "The server is overloaded", "type": "server_error", "code": null}})
                    ),
                    Protocol::Anthropic => format!(
                        "event: error\ndata: {}\n\n",
                        json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
                    ),
                };
                self.write_body(ev.as_bytes()).await?;
                self.end_body().await
            }
            StubBehaviour::Raw {
                body,
                write_size,
                delay,
            } => {
                self.head().await?;
                for piece in body.chunks(write_size.max(1)) {
                    if !delay.is_zero() {
                        tokio::time::sleep(delay).await;
                    }
                    self.write_chunk(piece).await?;
                }
                self.end_body().await
            }
            StubBehaviour::Sequence(_) => {
                // A sequence inside a sequence is not supported: answer 500.
                let body = error_body(self.protocol, 500);
                write_status(&mut self.sock, 500, None, &body).await
            }
        }
    }

    async fn head(&mut self) -> std::io::Result<()> {
        let head = "HTTP/1.1 200 OK\r\n\
            content-type: text/event-stream; charset=utf-8\r\n\
            cache-control: no-cache\r\n\
            connection: close\r\n\
            transfer-encoding: chunked\r\n\r\n";
        self.sock.write_all(head.as_bytes()).await?;
        self.sock.flush().await
    }

    async fn write_chunk(&mut self, data: &[u8]) -> std::io::Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        let mut frame = format!("{:x}\r\n", data.len()).into_bytes();
        frame.extend_from_slice(data);
        frame.extend_from_slice(b"\r\n");
        self.sock.write_all(&frame).await?;
        self.sock.flush().await
    }

    async fn write_body(&mut self, data: &[u8]) -> std::io::Result<()> {
        match self.fragment {
            Some(n) => {
                // One HTTP chunk per piece: the client's body stream yields
                // them separately even when TCP coalesces the writes.
                for piece in data.chunks(n) {
                    self.write_chunk(piece).await?;
                    tokio::task::yield_now().await;
                }
                Ok(())
            }
            None => self.write_chunk(data).await,
        }
    }

    async fn end_body(&mut self) -> std::io::Result<()> {
        self.sock.write_all(b"0\r\n\r\n").await?;
        self.sock.flush().await?;
        self.sock.shutdown().await
    }

    fn openai_chunk(&self, choices: Value, usage: Option<Value>) -> String {
        let mut v = json!({
            "id": "chatcmpl-stub",
            "object": "chat.completion.chunk",
            "created": 1_700_000_000,
            "model": self.model,
            "choices": choices,
        });
        if let Some(u) = usage {
            v["usage"] = u;
        }
        format!("data: {v}\n\n")
    }

    async fn preamble(&mut self) -> std::io::Result<()> {
        let ev = match self.protocol {
            Protocol::OpenAi => self.openai_chunk(
                json!([{"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": null, "finish_reason": null}]),
                None,
            ),
            Protocol::Anthropic => format!(
                "event: message_start\ndata: {}\n\n\
                 event: content_block_start\ndata: {}\n\n\
                 event: ping\ndata: {{\"type\": \"ping\"}}\n\n",
                json!({"type": "message_start", "message": {
                    "id": "msg_stub", "type": "message", "role": "assistant",
                    "model": self.model, "content": [], "stop_reason": null,
                    "stop_sequence": null,
                    "usage": {"input_tokens": self.prompt_words, "output_tokens": 1}
                }}),
                json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            ),
        };
        self.write_body(ev.as_bytes()).await
    }

    async fn text_event(&mut self, piece: &str) -> std::io::Result<()> {
        let ev = match self.protocol {
            Protocol::OpenAi => self.openai_chunk(
                json!([{"index": 0, "delta": {"content": piece}, "logprobs": null, "finish_reason": null}]),
                None,
            ),
            Protocol::Anthropic => format!(
                "event: content_block_delta\ndata: {}\n\n",
                json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}})
            ),
        };
        self.write_body(ev.as_bytes()).await
    }

    async fn answer(
        &mut self,
        pieces: &[String],
        delay: Duration,
        full: &str,
    ) -> std::io::Result<()> {
        self.preamble().await?;
        for piece in pieces {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            self.text_event(piece).await?;
        }
        let completion = full.split_whitespace().count();
        let tail = match self.protocol {
            Protocol::OpenAi => {
                let mut t = self.openai_chunk(
                    json!([{"index": 0, "delta": {}, "logprobs": null, "finish_reason": "stop"}]),
                    None,
                );
                if self.include_usage {
                    t.push_str(&self.openai_chunk(
                        json!([]),
                        Some(json!({
                            "prompt_tokens": self.prompt_words,
                            "completion_tokens": completion,
                            "total_tokens": self.prompt_words + completion
                        })),
                    ));
                }
                t.push_str("data: [DONE]\n\n");
                t
            }
            Protocol::Anthropic => format!(
                "event: content_block_stop\ndata: {}\n\n\
                 event: message_delta\ndata: {}\n\n\
                 event: message_stop\ndata: {}\n\n",
                json!({"type": "content_block_stop", "index": 0}),
                json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null}, "usage": {"output_tokens": completion}}),
                json!({"type": "message_stop"}),
            ),
        };
        self.write_body(tail.as_bytes()).await?;
        self.end_body().await
    }
}

/// What a [`ScriptedModel`] does on one call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Script {
    /// Stream these deltas, then `Done` with usage {prompt 10, completion =
    /// number of deltas} and no animation.
    Answer(Vec<String>),
    /// Stream these deltas, then `Done` with this usage and animation.
    AnswerWith {
        /// The deltas.
        deltas: Vec<String>,
        /// Usage in `Done`.
        usage: Usage,
        /// Animation in `Done`.
        animation: Option<Animation>,
    },
    /// `stream()` itself fails with this error.
    FailAtStart(LlmError),
    /// Stream these deltas, then fail with `error`.
    FailAfter {
        /// Deltas before the failure.
        deltas: Vec<String>,
        /// The failure.
        error: LlmError,
    },
    /// Stream these deltas, then end without `Done` (a protocol violation).
    EndWithoutDone(Vec<String>),
    /// Never yield anything (for abort and timeout tests).
    Hang,
}

/// An in-process [`LanguageModel`] that plays [`Script`]s: queued one-off
/// scripts first, then the default script.
pub struct ScriptedModel {
    name: String,
    context_window: u32,
    delta_delay: Duration,
    default: Mutex<Script>,
    queue: Mutex<VecDeque<Script>>,
    calls: AtomicUsize,
    requests: Mutex<Vec<AnswerRequest>>,
}

impl std::fmt::Debug for ScriptedModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScriptedModel")
            .field("name", &self.name)
            .field("calls", &self.calls())
            .finish()
    }
}

impl ScriptedModel {
    /// A model named `name` that plays `default` on every call.
    pub fn new(name: impl Into<String>, default: Script) -> Self {
        Self {
            name: name.into(),
            context_window: 8_192,
            delta_delay: Duration::ZERO,
            default: Mutex::new(default),
            queue: Mutex::new(VecDeque::new()),
            calls: AtomicUsize::new(0),
            requests: Mutex::new(Vec::new()),
        }
    }

    /// A model that always answers with these deltas.
    pub fn answering(name: impl Into<String>, deltas: &[&str]) -> Self {
        Self::new(
            name,
            Script::Answer(deltas.iter().map(|d| (*d).to_owned()).collect()),
        )
    }

    /// Sleeps this long before each delta.
    pub fn with_delta_delay(mut self, delay: Duration) -> Self {
        self.delta_delay = delay;
        self
    }

    /// Reports this context window.
    pub fn with_context_window(mut self, tokens: u32) -> Self {
        self.context_window = tokens;
        self
    }

    /// Queues a one-off script for the next call that finds no earlier one.
    pub fn then(&self, script: Script) -> &Self {
        self.queue.lock().push_back(script);
        self
    }

    /// Replaces the default script.
    pub fn set_default(&self, script: Script) {
        *self.default.lock() = script;
    }

    /// Calls so far.
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    /// The requests received so far.
    pub fn requests(&self) -> Vec<AnswerRequest> {
        self.requests.lock().clone()
    }
}

#[async_trait]
impl LanguageModel for ScriptedModel {
    fn name(&self) -> &str {
        &self.name
    }

    fn context_window(&self) -> u32 {
        self.context_window
    }

    async fn stream(&self, req: &AnswerRequest) -> Result<EventStream, LlmError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.requests.lock().push(req.clone());
        let script = self
            .queue
            .lock()
            .pop_front()
            .unwrap_or_else(|| self.default.lock().clone());
        let name = self.name.clone();
        let (deltas, tail): (Vec<String>, Option<Result<StreamEvent, LlmError>>) = match script {
            Script::FailAtStart(e) => return Err(e),
            Script::Hang => return Ok(futures_util::stream::pending().boxed()),
            Script::Answer(deltas) => {
                let usage = Usage {
                    prompt_tokens: 10,
                    completion_tokens: u32::try_from(deltas.len()).unwrap_or(u32::MAX),
                };
                let done = StreamEvent::Done {
                    provider: name,
                    usage,
                    animation: None,
                };
                (deltas, Some(Ok(done)))
            }
            Script::AnswerWith {
                deltas,
                usage,
                animation,
            } => (
                deltas,
                Some(Ok(StreamEvent::Done {
                    provider: name,
                    usage,
                    animation,
                })),
            ),
            Script::FailAfter { deltas, error } => (deltas, Some(Err(error))),
            Script::EndWithoutDone(deltas) => (deltas, None),
        };
        let delay = self.delta_delay;
        let items: Vec<Result<StreamEvent, LlmError>> = deltas
            .into_iter()
            .map(|d| Ok(StreamEvent::Delta(d)))
            .chain(tail)
            .collect();
        Ok(futures_util::stream::iter(items)
            .then(move |item| async move {
                if !delay.is_zero() && matches!(item, Ok(StreamEvent::Delta(_))) {
                    tokio::time::sleep(delay).await;
                }
                item
            })
            .boxed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitting_helpers() {
        assert_eq!(split_even("abcdef", 3), vec!["ab", "cd", "ef"]);
        assert_eq!(split_even("ab", 5), vec!["a", "b"]);
        assert_eq!(split_even("", 3), Vec::<String>::new());
        assert_eq!(
            split_words("one two  three four", 2),
            vec!["one two  ", "three four"]
        );
        assert_eq!(split_words("a b c", 1), vec!["a ", "b ", "c"]);
    }

    #[test]
    fn echo_uses_the_first_passage() {
        let rec = RecordedRequest {
            method: "POST".into(),
            path: "/v1/chat/completions".into(),
            headers: vec![],
            body: json!({"messages": [
                {"role": "system", "content": "sys"},
                {"role": "user", "content": "Course passages:\n\n<passage n=\"2\" source=\"B\">\nWater boils at 100 °C. It freezes at 0 °C.\n</passage>\n\nStudent's question: ?"}
            ]}),
        };
        assert_eq!(
            echo_answer(&rec),
            "Water boils at 100 °C [2].\n[[animation gesture=explaining emotion=neutral]]"
        );
        assert_eq!(rec.system_prompt(), Some("sys"));
        let none = RecordedRequest {
            body: json!({"messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]}),
            ..rec
        };
        assert!(echo_answer(&none).starts_with("My course material doesn't cover that."));
        assert_eq!(none.last_user_message().as_deref(), Some("hi"));
    }
}
