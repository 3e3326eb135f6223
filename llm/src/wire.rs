//! What the two HTTP providers share: sending the request under the
//! first-token deadline, mapping HTTP statuses and `reqwest` errors to
//! [`LlmError`] (Retry-After included), and the streaming driver that turns a
//! provider's SSE byte stream into [`StreamEvent`]s under the first-token,
//! idle and total timeouts, through the [`AnimationTagFilter`], ending in
//! exactly one `Done` — or in an error when the protocol's end marker never
//! came.
//!
//! Also the serde helpers for the configs' `*_ms` / `*_secs` duration fields.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures_util::{Stream, StreamExt};
use reqwest::header::HeaderMap;
use tokio::time::{Instant, timeout_at};

use crate::prompt::AnimationTagFilter;
use crate::sse::{SseDecoder, SseEvent};
use crate::tokens::TokenCounter;
use crate::types::{EventStream, LlmError, StreamEvent, Usage};

/// The four timeouts of one streamed call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Timeouts {
    /// TCP + TLS connect (enforced by the client).
    pub connect: Duration,
    /// From sending the request to the first text delta.
    pub first_token: Duration,
    /// Between two network chunks once text is flowing.
    pub idle: Duration,
    /// The whole answer.
    pub total: Duration,
}

impl Timeouts {
    pub(crate) fn validate(&self) -> Result<(), LlmError> {
        for (name, d) in [
            ("connect_timeout", self.connect),
            ("first_token_timeout", self.first_token),
            ("idle_timeout", self.idle),
            ("total_timeout", self.total),
        ] {
            if d.is_zero() {
                return Err(LlmError::Config(format!(
                    "{name} must be greater than zero"
                )));
            }
        }
        Ok(())
    }
}

/// Builds the one `reqwest::Client` a provider uses.
pub(crate) fn build_client(t: &Timeouts) -> Result<reqwest::Client, LlmError> {
    reqwest::Client::builder()
        .connect_timeout(t.connect)
        .tcp_nodelay(true)
        .pool_idle_timeout(Duration::from_secs(90))
        .user_agent(concat!("bwenge-llm/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| LlmError::Config(format!("cannot build the HTTP client: {}", chain(&e))))
}

/// Checks a configured base URL.
pub(crate) fn validate_base_url(url: &str) -> Result<String, LlmError> {
    let url = url.trim().trim_end_matches('/');
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(LlmError::Config(format!(
            "base_url must start with http:// or https://, got `{url}`"
        )));
    }
    if url.contains(['?', '#', ' ']) {
        return Err(LlmError::Config(format!(
            "base_url must not contain a query, a fragment or spaces: `{url}`"
        )));
    }
    Ok(url.to_owned())
}

/// An error and its sources, joined with ": ".
pub(crate) fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        let t = inner.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        src = inner.source();
    }
    s
}

/// A `reqwest` error while sending or waiting for the response head.
pub(crate) fn send_error(e: &reqwest::Error) -> LlmError {
    if e.is_timeout() {
        LlmError::Timeout
    } else if e.is_builder() {
        LlmError::Config(chain(e))
    } else if e.is_connect() {
        LlmError::Unavailable(format!("cannot connect: {}", chain(e)))
    } else {
        LlmError::Unavailable(chain(e))
    }
}

/// A `reqwest` error while reading the body: the answer died mid-way.
pub(crate) fn body_error(e: &reqwest::Error) -> LlmError {
    if e.is_timeout() {
        LlmError::Timeout
    } else {
        LlmError::BadResponse(format!("connection lost mid-answer: {}", chain(e)))
    }
}

/// Sends `rb` and waits for the response head before the first-token (and
/// total) deadline; maps non-2xx statuses and non-event-stream bodies to errors.
pub(crate) async fn send(
    rb: reqwest::RequestBuilder,
    t: &Timeouts,
    started: Instant,
) -> Result<reqwest::Response, LlmError> {
    let deadline = (started + t.first_token).min(started + t.total);
    let resp = match timeout_at(deadline, rb.send()).await {
        Err(_) => return Err(LlmError::Timeout),
        Ok(Err(e)) => return Err(send_error(&e)),
        Ok(Ok(r)) => r,
    };
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    if (200..300).contains(&status) {
        let ct = headers
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase();
        if ct.is_empty() || ct.contains("text/event-stream") {
            return Ok(resp);
        }
        let body = read_excerpt(resp, deadline).await;
        return Err(LlmError::BadResponse(format!(
            "expected text/event-stream, got `{ct}`: {}",
            error_message(&body)
        )));
    }
    let body = read_excerpt(resp, deadline.max(Instant::now() + Duration::from_secs(2))).await;
    Err(status_error(status, &headers, &body))
}

/// Reads up to 8 KiB of an (error) body before `deadline`.
async fn read_excerpt(mut resp: reqwest::Response, deadline: Instant) -> String {
    let mut buf = Vec::new();
    while buf.len() < 8192 {
        match timeout_at(deadline, resp.chunk()).await {
            Ok(Ok(Some(c))) => buf.extend_from_slice(&c),
            _ => break,
        }
    }
    buf.truncate(8192);
    String::from_utf8_lossy(&buf).into_owned()
}

/// The `error.message` of an OpenAI- or Anthropic-style error body, or the
/// body itself, shortened.
pub(crate) fn error_message(body: &str) -> String {
    let from_json = serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| {
            let err = v.get("error")?;
            Some(match err {
                serde_json::Value::String(s) => s.clone(),
                other => {
                    let msg = other.get("message").and_then(|m| m.as_str()).unwrap_or("");
                    let kind = other
                        .get("type")
                        .or_else(|| other.get("code"))
                        .and_then(|m| m.as_str())
                        .unwrap_or("");
                    match (kind.is_empty(), msg.is_empty()) {
                        (false, false) => format!("{kind}: {msg}"),
                        (false, true) => kind.to_owned(),
                        _ => msg.to_owned(),
                    }
                }
            })
        });
    let text = from_json.unwrap_or_else(|| body.trim().to_owned());
    let text = if text.is_empty() {
        "(empty body)".to_owned()
    } else {
        text
    };
    shorten(&text, 300)
}

fn shorten(s: &str, max_chars: usize) -> String {
    if s.chars().count() <= max_chars {
        s.to_owned()
    } else {
        let mut out: String = s.chars().take(max_chars).collect();
        out.push('…');
        out
    }
}

/// Maps a non-2xx HTTP status to an error.
pub(crate) fn status_error(status: u16, headers: &HeaderMap, body: &str) -> LlmError {
    let msg = error_message(body);
    match status {
        429 if body.contains("insufficient_quota") => {
            LlmError::Config(format!("HTTP 429: the account's quota is exhausted: {msg}"))
        }
        429 => LlmError::RateLimited {
            retry_after: retry_after(headers, SystemTime::now()),
        },
        408 => LlmError::Timeout,
        401 | 403 => LlmError::Config(format!(
            "HTTP {status}: the provider rejected the credentials: {msg}"
        )),
        404 => LlmError::Config(format!("HTTP 404: unknown model or wrong base_url: {msg}")),
        500..=599 => LlmError::Unavailable(format!("HTTP {status}: {msg}")),
        _ => LlmError::BadResponse(format!("HTTP {status}: {msg}")),
    }
}

/// How long a rate-limited provider asks us to wait: `retry-after-ms`, then
/// `Retry-After` (delay-seconds or an HTTP date), then OpenAI's
/// `x-ratelimit-reset-requests` / `x-ratelimit-reset-tokens` (the exhausted
/// one, or the later of the two).
pub(crate) fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let get = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    if let Some(ms) = get("retry-after-ms").and_then(|v| v.parse::<f64>().ok())
        && ms.is_finite()
        && ms >= 0.0
    {
        return Some(Duration::from_secs_f64(ms / 1000.0));
    }
    if let Some(v) = get("retry-after") {
        if let Ok(secs) = v.parse::<f64>()
            && secs.is_finite()
            && secs >= 0.0
        {
            return Some(Duration::from_secs_f64(secs));
        }
        if let Ok(at) = httpdate::parse_http_date(v) {
            return Some(at.duration_since(now).unwrap_or(Duration::ZERO));
        }
    }
    let reset_req = get("x-ratelimit-reset-requests").and_then(parse_go_duration);
    let reset_tok = get("x-ratelimit-reset-tokens").and_then(parse_go_duration);
    let exhausted = |name: &str| get(name) == Some("0");
    match (
        exhausted("x-ratelimit-remaining-requests"),
        exhausted("x-ratelimit-remaining-tokens"),
    ) {
        (true, false) if reset_req.is_some() => reset_req,
        (false, true) if reset_tok.is_some() => reset_tok,
        _ => reset_req.max(reset_tok),
    }
}

/// Parses Go-style durations as OpenAI sends them: "1s", "6m0s", "20ms",
/// "1h2m3.5s"; a bare number is seconds.
pub(crate) fn parse_go_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    if let Ok(secs) = s.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs));
    }
    let mut total = 0.0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_len == 0 {
            return None;
        }
        let value: f64 = rest[..num_len].parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let factor = match &rest[..unit_len] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" => 1e-6,
            "ns" => 1e-9,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += value * factor;
    }
    (total.is_finite() && total >= 0.0).then(|| Duration::from_secs_f64(total))
}

/// What a protocol found in one SSE event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Parsed {
    /// Answer text.
    Text(String),
    /// Usage numbers (either may be absent).
    Usage {
        prompt: Option<u32>,
        completion: Option<u32>,
    },
    /// The protocol's end marker.
    End,
}

/// A provider's streaming protocol on top of SSE.
pub(crate) trait WireProtocol: Send + 'static {
    /// The end marker's name, for error messages ("[DONE]", "message_stop").
    fn end_marker(&self) -> &'static str;

    /// Interprets one event; an `Err` ends the stream with that error.
    fn on_event(&mut self, ev: &SseEvent, out: &mut Vec<Parsed>) -> Result<(), LlmError>;
}

/// Per-call facts the driver needs.
pub(crate) struct DriveCtx {
    pub provider: String,
    pub timeouts: Timeouts,
    pub started: Instant,
    pub counter: Arc<dyn TokenCounter>,
    pub prompt_tokens: u32,
}

struct Drive<S, P> {
    body: S,
    proto: P,
    ctx: DriveCtx,
    decoder: SseDecoder,
    filter: Option<AnimationTagFilter>,
    queue: VecDeque<Result<StreamEvent, LlmError>>,
    raw: String,
    got_text: bool,
    shown: bool,
    usage_prompt: Option<u32>,
    usage_completion: Option<u32>,
    finished: bool,
}

/// Turns a provider's SSE byte stream into the port's event stream.
pub(crate) fn drive<S, B, P>(body: S, proto: P, ctx: DriveCtx) -> EventStream
where
    S: Stream<Item = Result<B, LlmError>> + Send + Unpin + 'static,
    B: AsRef<[u8]>,
    P: WireProtocol,
{
    let state = Drive {
        body,
        proto,
        ctx,
        decoder: SseDecoder::new(),
        filter: Some(AnimationTagFilter::new()),
        queue: VecDeque::new(),
        raw: String::new(),
        got_text: false,
        shown: false,
        usage_prompt: None,
        usage_completion: None,
        finished: false,
    };
    futures_util::stream::unfold(state, |mut st| async move {
        let item = st.next_event().await?;
        Some((item, st))
    })
    .boxed()
}

impl<S, B, P> Drive<S, P>
where
    S: Stream<Item = Result<B, LlmError>> + Send + Unpin + 'static,
    B: AsRef<[u8]>,
    P: WireProtocol,
{
    async fn next_event(&mut self) -> Option<Result<StreamEvent, LlmError>> {
        loop {
            if let Some(ev) = self.queue.pop_front() {
                return Some(ev);
            }
            if self.finished {
                return None;
            }
            let t = &self.ctx.timeouts;
            let total = self.ctx.started + t.total;
            let deadline = if self.got_text {
                (Instant::now() + t.idle).min(total)
            } else {
                (self.ctx.started + t.first_token).min(total)
            };
            match timeout_at(deadline, self.body.next()).await {
                Err(_) => return Some(self.fail(LlmError::Timeout)),
                Ok(Some(Err(e))) => return Some(self.fail(e)),
                Ok(Some(Ok(chunk))) => {
                    for ev in self.decoder.push(chunk.as_ref()) {
                        self.handle(&ev);
                        if self.finished {
                            break;
                        }
                    }
                }
                Ok(None) => {
                    if let Some(ev) = self.decoder.finish() {
                        self.handle(&ev);
                    }
                    if !self.finished {
                        let marker = self.proto.end_marker();
                        let err = LlmError::BadResponse(format!(
                            "the stream ended before `{marker}`: the answer is incomplete"
                        ));
                        let err = self.fail(err);
                        self.queue.push_back(err);
                    }
                }
            }
        }
    }

    fn fail(&mut self, e: LlmError) -> Result<StreamEvent, LlmError> {
        self.finished = true;
        tracing::debug!(provider = %self.ctx.provider, error = %e, "language model stream failed");
        Err(e)
    }

    fn handle(&mut self, ev: &SseEvent) {
        let mut parsed = Vec::new();
        if let Err(e) = self.proto.on_event(ev, &mut parsed) {
            let err = self.fail(e);
            self.queue.push_back(err);
            return;
        }
        for p in parsed {
            match p {
                Parsed::Text(t) => {
                    if t.is_empty() {
                        continue;
                    }
                    self.got_text = true;
                    self.raw.push_str(&t);
                    if let Some(f) = self.filter.as_mut() {
                        let shown = f.push(&t);
                        if !shown.is_empty() {
                            self.shown = true;
                            self.queue.push_back(Ok(StreamEvent::Delta(shown)));
                        }
                    }
                }
                Parsed::Usage { prompt, completion } => {
                    self.usage_prompt = prompt.or(self.usage_prompt);
                    self.usage_completion = completion.or(self.usage_completion);
                }
                Parsed::End => {
                    self.end();
                    return;
                }
            }
        }
    }

    fn end(&mut self) {
        let (rest, animation) = self.filter.take().map(|f| f.finish()).unwrap_or_default();
        if !rest.is_empty() {
            self.shown = true;
            self.queue.push_back(Ok(StreamEvent::Delta(rest)));
        }
        if !self.shown {
            let err = self.fail(LlmError::BadResponse(
                "the model returned an empty answer".to_owned(),
            ));
            self.queue.push_back(err);
            return;
        }
        let usage = Usage {
            prompt_tokens: self.usage_prompt.unwrap_or(self.ctx.prompt_tokens),
            completion_tokens: self
                .usage_completion
                .unwrap_or_else(|| self.ctx.counter.count(&self.raw)),
        };
        self.queue.push_back(Ok(StreamEvent::Done {
            provider: self.ctx.provider.clone(),
            usage,
            animation,
        }));
        self.finished = true;
    }
}

/// Reads a JSON number as `u32` (saturating).
pub(crate) fn json_u32(v: Option<&serde_json::Value>) -> Option<u32> {
    v.and_then(serde_json::Value::as_u64)
        .map(|n| u32::try_from(n).unwrap_or(u32::MAX))
}

/// Serde helpers: a `Duration` as integer (or fractional) milliseconds.
pub(crate) mod duration_ms {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let ms = f64::deserialize(d)?;
        super::non_negative(ms / 1000.0).map_err(serde::de::Error::custom)
    }
}

/// Serde helpers: a `Duration` as integer (or fractional) seconds.
pub(crate) mod duration_secs {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        if d.subsec_nanos() == 0 {
            s.serialize_u64(d.as_secs())
        } else {
            s.serialize_f64(d.as_secs_f64())
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let secs = f64::deserialize(d)?;
        super::non_negative(secs).map_err(serde::de::Error::custom)
    }
}

fn non_negative(secs: f64) -> Result<Duration, String> {
    if secs.is_finite() && (0.0..1e9).contains(&secs) {
        Ok(Duration::from_secs_f64(secs))
    } else {
        Err(format!("invalid duration: {secs}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokens::EstimateCounter;
    use reqwest::header::{HeaderName, HeaderValue};

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                HeaderName::from_bytes(k.as_bytes()).expect("name"),
                HeaderValue::from_str(v).expect("value"),
            );
        }
        h
    }

    #[test]
    fn retry_after_in_all_its_forms() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(
            retry_after(&headers(&[("retry-after", "12")]), now),
            Some(Duration::from_secs(12))
        );
        assert_eq!(
            retry_after(&headers(&[("retry-after", "1.5")]), now),
            Some(Duration::from_millis(1500))
        );
        let later = httpdate::fmt_http_date(now + Duration::from_secs(30));
        assert_eq!(
            retry_after(&headers(&[("retry-after", &later)]), now),
            Some(Duration::from_secs(30))
        );
        let past = httpdate::fmt_http_date(now - Duration::from_secs(30));
        assert_eq!(
            retry_after(&headers(&[("retry-after", &past)]), now),
            Some(Duration::ZERO)
        );
        assert_eq!(
            retry_after(
                &headers(&[("retry-after-ms", "250"), ("retry-after", "9")]),
                now
            ),
            Some(Duration::from_millis(250))
        );
        assert_eq!(
            retry_after(
                &headers(&[
                    ("x-ratelimit-remaining-requests", "0"),
                    ("x-ratelimit-reset-requests", "1m2s"),
                    ("x-ratelimit-remaining-tokens", "500"),
                    ("x-ratelimit-reset-tokens", "6m0s"),
                ]),
                now
            ),
            Some(Duration::from_secs(62))
        );
        assert_eq!(
            retry_after(
                &headers(&[
                    ("x-ratelimit-reset-requests", "20ms"),
                    ("x-ratelimit-reset-tokens", "1.5s"),
                ]),
                now
            ),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(retry_after(&headers(&[("retry-after", "soon")]), now), None);
        assert_eq!(retry_after(&HeaderMap::new(), now), None);
    }

    #[test]
    fn go_durations() {
        assert_eq!(
            parse_go_duration("1h2m3.5s"),
            Some(Duration::from_millis(3_723_500))
        );
        assert_eq!(parse_go_duration("20ms"), Some(Duration::from_millis(20)));
        assert_eq!(parse_go_duration("7"), Some(Duration::from_secs(7)));
        assert_eq!(parse_go_duration("1x"), None);
        assert_eq!(parse_go_duration("s"), None);
        assert_eq!(parse_go_duration(""), None);
    }

    #[test]
    fn statuses_map_to_errors() {
        let h = headers(&[("retry-after", "3")]);
        assert_eq!(
            status_error(429, &h, "{}"),
            LlmError::RateLimited {
                retry_after: Some(Duration::from_secs(3))
            }
        );
        assert!(matches!(
            status_error(
                429,
                &h,
                r#"{"error":{"code":"insufficient_quota","message":"x"}}"#
            ),
            LlmError::Config(_)
        ));
        assert!(matches!(status_error(401, &h, ""), LlmError::Config(_)));
        assert!(matches!(status_error(403, &h, ""), LlmError::Config(_)));
        assert!(matches!(status_error(404, &h, ""), LlmError::Config(_)));
        assert!(matches!(
            status_error(400, &h, ""),
            LlmError::BadResponse(_)
        ));
        assert!(matches!(
            status_error(500, &h, ""),
            LlmError::Unavailable(_)
        ));
        assert!(matches!(
            status_error(529, &h, ""),
            LlmError::Unavailable(_)
        ));
        assert_eq!(status_error(408, &h, ""), LlmError::Timeout);
        let e = status_error(
            503,
            &h,
            r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
        );
        assert_eq!(
            e,
            LlmError::Unavailable("HTTP 503: overloaded_error: Overloaded".into())
        );
        assert_eq!(error_message("  plain text "), "plain text");
        assert_eq!(error_message(""), "(empty body)");
        assert_eq!(error_message(r#"{"error":"nope"}"#), "nope");
    }

    /// A protocol for driver tests: `data: text` is text, `data: END` the end.
    struct Plain;
    impl WireProtocol for Plain {
        fn end_marker(&self) -> &'static str {
            "END"
        }
        fn on_event(&mut self, ev: &SseEvent, out: &mut Vec<Parsed>) -> Result<(), LlmError> {
            match ev.data.as_str() {
                "END" => out.push(Parsed::End),
                "BOOM" => return Err(LlmError::Unavailable("boom".into())),
                t => out.push(Parsed::Text(t.to_owned())),
            }
            Ok(())
        }
    }

    fn ctx(first_token_ms: u64, idle_ms: u64, total_ms: u64) -> DriveCtx {
        DriveCtx {
            provider: "plain".into(),
            timeouts: Timeouts {
                connect: Duration::from_secs(1),
                first_token: Duration::from_millis(first_token_ms),
                idle: Duration::from_millis(idle_ms),
                total: Duration::from_millis(total_ms),
            },
            started: Instant::now(),
            counter: Arc::new(EstimateCounter),
            prompt_tokens: 42,
        }
    }

    /// A byte stream whose chunks each arrive after a delay.
    fn timed(chunks: Vec<(u64, &'static str)>) -> EventStreamBytes {
        futures_util::stream::iter(chunks)
            .then(|(delay, s)| async move {
                tokio::time::sleep(Duration::from_millis(delay)).await;
                Ok::<_, LlmError>(s.as_bytes().to_vec())
            })
            .boxed()
    }

    type EventStreamBytes = futures_util::stream::BoxStream<'static, Result<Vec<u8>, LlmError>>;

    async fn collect(s: EventStream) -> Vec<Result<StreamEvent, LlmError>> {
        s.collect().await
    }

    #[tokio::test(start_paused = true)]
    async fn driver_streams_text_then_one_done() {
        let body = timed(vec![
            (5, "data: Hello\n\ndata: , wor"),
            (5, "ld [1].\n\ndata: \ndata: [[animation gesture=pointing"),
            (5, " emotion=curious]]\n\ndata: END\n\ndata: ignored\n\n"),
        ]);
        let events = collect(drive(body, Plain, ctx(100, 100, 1000))).await;
        let text: String = events
            .iter()
            .filter_map(|e| match e {
                Ok(StreamEvent::Delta(t)) => Some(t.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(text, "Hello, world [1].");
        let last = events.last().expect("events");
        assert_eq!(
            last,
            &Ok(StreamEvent::Done {
                provider: "plain".into(),
                usage: Usage {
                    prompt_tokens: 42,
                    completion_tokens: EstimateCounter
                        .count("Hello, world [1].\n[[animation gesture=pointing emotion=curious]]"),
                },
                animation: Some(crate::Animation::new(
                    crate::Gesture::Pointing,
                    crate::Emotion::Curious
                )),
            })
        );
        assert_eq!(
            events
                .iter()
                .filter(|e| matches!(e, Ok(StreamEvent::Done { .. })))
                .count(),
            1
        );
    }

    #[tokio::test(start_paused = true)]
    async fn driver_never_marks_a_truncated_stream_done() {
        let body = timed(vec![(1, "data: Half an ans"), (1, "wer\n\n")]);
        let events = collect(drive(body, Plain, ctx(100, 100, 1000))).await;
        assert!(matches!(events.last(), Some(Err(LlmError::BadResponse(m))) if m.contains("END")));
        assert!(
            !events
                .iter()
                .any(|e| matches!(e, Ok(StreamEvent::Done { .. })))
        );

        // A protocol error ends the stream with that error.
        let body = timed(vec![(1, "data: Hi\n\ndata: BOOM\n\ndata: END\n\n")]);
        let events = collect(drive(body, Plain, ctx(100, 100, 1000))).await;
        assert_eq!(
            events.last(),
            Some(&Err(LlmError::Unavailable("boom".into())))
        );
        assert_eq!(events.len(), 2);

        // End with no visible text is not an answer.
        let body = timed(vec![(
            1,
            "data: [[animation gesture=idle emotion=neutral]]\n\ndata: END\n\n",
        )]);
        let events = collect(drive(body, Plain, ctx(100, 100, 1000))).await;
        assert!(matches!(events.as_slice(), [Err(LlmError::BadResponse(_))]));
    }

    #[tokio::test(start_paused = true)]
    async fn driver_enforces_first_token_idle_and_total_timeouts() {
        // Keep-alive comments do not count as a first token.
        let body = timed(vec![
            (40, ": ping\n\n"),
            (40, ": ping\n\n"),
            (40, "data: late\n\n"),
        ]);
        let events = collect(drive(body, Plain, ctx(100, 1000, 1000))).await;
        assert_eq!(events, vec![Err(LlmError::Timeout)]);

        // A gap longer than idle after text started.
        let body = timed(vec![
            (10, "data: a\n\n"),
            (60, "data: b\n\n"),
            (10, "data: END\n\n"),
        ]);
        let events = collect(drive(body, Plain, ctx(100, 50, 1000))).await;
        assert_eq!(
            events,
            vec![Ok(StreamEvent::Delta("a".into())), Err(LlmError::Timeout)]
        );

        // Steady chunks, but the whole answer takes longer than total.
        let chunks: Vec<(u64, &'static str)> = (0..20).map(|_| (30, "data: x\n\n")).collect();
        let events = collect(drive(timed(chunks), Plain, ctx(100, 50, 300))).await;
        assert_eq!(events.last(), Some(&Err(LlmError::Timeout)));
        assert!(events.len() > 5);
    }

    #[test]
    fn duration_fields_deserialize_from_numbers() {
        #[derive(serde::Deserialize, serde::Serialize)]
        struct T {
            #[serde(with = "duration_ms")]
            a_ms: Duration,
            #[serde(with = "duration_secs")]
            b_secs: Duration,
        }
        let t: T = serde_json::from_str(r#"{"a_ms": 250, "b_secs": 1.5}"#).expect("parse");
        assert_eq!(t.a_ms, Duration::from_millis(250));
        assert_eq!(t.b_secs, Duration::from_millis(1500));
        assert_eq!(
            serde_json::to_string(&t).expect("ser"),
            r#"{"a_ms":250,"b_secs":1.5}"#
        );
        assert!(serde_json::from_str::<T>(r#"{"a_ms": -1, "b_secs": 1}"#).is_err());
    }
}
