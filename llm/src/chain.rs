//! [`Chain`]: an ordered fallback list of language models, each behind its
//! own circuit breaker, that is itself a [`LanguageModel`] named `chain`.
//!
//! A call tries the providers in order. A provider whose breaker is open (or
//! that asked us, with a Retry-After, to wait) is skipped without a call. An
//! error before the provider's first delta moves on silently; an error after
//! some deltas emits [`StreamEvent::Restart`] first, so the consumer drops
//! the partial text; the first provider to finish wins and its `Done` names
//! it. When every provider fails the call fails with
//! [`LlmError::AllFailed`]; if that happens before any output it is returned
//! by [`LanguageModel::stream`] itself, otherwise it is the stream's last item.
//!
//! Breakers: `failure_threshold` consecutive failures open a provider's
//! breaker for `open_for` (a rate limit that says how long to wait is not a
//! failure: the provider is skipped for that long, at most
//! [`MAX_RATE_LIMIT_COOLDOWN`], instead); after that one probe call is let through
//! (half-open) — success closes the breaker, failure re-opens it for another
//! `open_for`. A probe abandoned by the consumer frees the slot for the next
//! call. Time is `tokio::time::Instant`, so tests can pause and advance it.
//!
//! Metrics (through the `metrics` facade; label `provider` is the provider's
//! [`name`](LanguageModel::name)):
//!
//! | name | type | labels | meaning |
//! | --- | --- | --- | --- |
//! | `bwenge_llm_calls_total` | counter | `provider`, `outcome` | one per attempt: `ok`, `error`, `rate_limited`, `timeout`, `circuit_open` (skipped, not called), `aborted` (the consumer dropped the stream) |
//! | `bwenge_llm_latency_seconds` | histogram | `provider` | start of the call to `Done`, successful answers |
//! | `bwenge_llm_first_token_seconds` | histogram | `provider` | start of the call to the first delta |
//! | `bwenge_llm_tokens_total` | counter | `provider`, `kind` = `prompt` \| `completion` | usage of successful answers |
//! | `bwenge_llm_circuit_open` | gauge | `provider` | 1 while the breaker is open or half-open, else 0 |

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::types::{AnswerRequest, EventStream, LanguageModel, LlmError, StreamEvent};
use crate::wire;

/// Counter: calls per provider and outcome.
pub const METRIC_CALLS: &str = "bwenge_llm_calls_total";
/// Histogram: seconds from call start to `Done`.
pub const METRIC_LATENCY: &str = "bwenge_llm_latency_seconds";
/// Histogram: seconds from call start to the first delta.
pub const METRIC_FIRST_TOKEN: &str = "bwenge_llm_first_token_seconds";
/// Counter: prompt and completion tokens.
pub const METRIC_TOKENS: &str = "bwenge_llm_tokens_total";
/// Gauge: 1 while a provider's breaker is open or half-open.
pub const METRIC_CIRCUIT_OPEN: &str = "bwenge_llm_circuit_open";

/// A provider's Retry-After is honoured up to this long.
pub const MAX_RATE_LIMIT_COOLDOWN: Duration = Duration::from_secs(300);

/// Circuit-breaker settings, shared by every provider of a chain.
///
/// Serde keys: `failure_threshold` (default 3), `open_for_secs` (default 30).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BreakerConfig {
    /// Consecutive failures that open the breaker (at least 1).
    pub failure_threshold: u32,
    /// How long an open breaker skips its provider before a probe.
    #[serde(rename = "open_for_secs", with = "wire::duration_secs")]
    pub open_for: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            failure_threshold: 3,
            open_for: Duration::from_secs(30),
        }
    }
}

/// A breaker's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    /// Calls go through.
    Closed,
    /// Calls are skipped until `open_for` has passed.
    Open,
    /// `open_for` has passed: the next call is a probe.
    HalfOpen,
}

/// One provider's health, for readiness endpoints and logs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProviderStatus {
    /// The provider's name.
    pub name: String,
    /// Its breaker's state.
    pub state: BreakerState,
    /// Consecutive failures counted while closed.
    pub consecutive_failures: u32,
    /// How long until it will be called again (0 when it would be now).
    pub available_in: Duration,
}

#[derive(Debug, Default)]
struct Breaker {
    failures: u32,
    open_until: Option<Instant>,
    probing: bool,
    cooldown_until: Option<Instant>,
}

enum Skip {
    Open,
    Cooldown,
}

impl Breaker {
    fn state(&self, now: Instant) -> BreakerState {
        match self.open_until {
            None => BreakerState::Closed,
            Some(t) if now < t => BreakerState::Open,
            Some(_) => BreakerState::HalfOpen,
        }
    }

    fn available_in(&self, now: Instant) -> Duration {
        let open = match self.open_until {
            Some(t) if now < t => t - now,
            _ => Duration::ZERO,
        };
        let cool = match self.cooldown_until {
            Some(t) if now < t => t - now,
            _ => Duration::ZERO,
        };
        open.max(cool)
    }
}

struct Entry {
    model: Arc<dyn LanguageModel>,
    name: String,
    breaker: Mutex<Breaker>,
}

impl Entry {
    fn acquire(self: &Arc<Self>, now: Instant) -> Result<Permit, Skip> {
        let mut b = self.breaker.lock();
        if let Some(c) = b.cooldown_until {
            if now < c {
                return Err(Skip::Cooldown);
            }
            b.cooldown_until = None;
        }
        let probe = match b.open_until {
            None => false,
            Some(t) if now < t => return Err(Skip::Open),
            Some(_) if b.probing => return Err(Skip::Open),
            Some(_) => {
                b.probing = true;
                tracing::info!(provider = %self.name, "circuit half-open: probing the provider");
                true
            }
        };
        Ok(Permit {
            entry: self.clone(),
            probe,
            settled: false,
        })
    }

    fn set_gauge(&self, open: bool) {
        metrics::gauge!(METRIC_CIRCUIT_OPEN, "provider" => self.name.clone()).set(if open {
            1.0
        } else {
            0.0
        });
    }
}

/// The right to make one call; settles the breaker when the call ends.
struct Permit {
    entry: Arc<Entry>,
    probe: bool,
    settled: bool,
}

impl Permit {
    fn success(mut self) {
        self.settled = true;
        let mut b = self.entry.breaker.lock();
        let was_open = b.open_until.is_some();
        b.failures = 0;
        b.open_until = None;
        if self.probe {
            b.probing = false;
        }
        drop(b);
        if was_open {
            tracing::info!(provider = %self.entry.name, "circuit closed");
            self.entry.set_gauge(false);
        }
    }

    fn failure(mut self, err: &LlmError, cfg: &BreakerConfig, now: Instant) {
        self.settled = true;
        let mut b = self.entry.breaker.lock();
        if self.probe {
            b.probing = false;
        }
        let opened = match err {
            // The provider is healthy but throttling and said for how long:
            // wait that long instead of counting it against the breaker.
            LlmError::RateLimited {
                retry_after: Some(d),
            } if !self.probe => {
                b.cooldown_until = Some(now + (*d).min(MAX_RATE_LIMIT_COOLDOWN));
                false
            }
            _ if b.open_until.is_some() => {
                // A failed probe (or a call that started before the breaker opened).
                b.open_until = Some(now + cfg.open_for);
                true
            }
            _ => {
                b.failures = b.failures.saturating_add(1);
                if b.failures >= cfg.failure_threshold.max(1) {
                    b.open_until = Some(now + cfg.open_for);
                    true
                } else {
                    false
                }
            }
        };
        drop(b);
        if opened {
            tracing::warn!(
                provider = %self.entry.name,
                open_for_secs = cfg.open_for.as_secs_f64(),
                error = %err,
                "circuit open"
            );
            self.entry.set_gauge(true);
        }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if !self.settled {
            if self.probe {
                self.entry.breaker.lock().probing = false;
            }
            metrics::counter!(METRIC_CALLS, "provider" => self.entry.name.clone(), "outcome" => "aborted")
                .increment(1);
        }
    }
}

struct ChainInner {
    entries: Vec<Arc<Entry>>,
    cfg: BreakerConfig,
}

/// An ordered list of language models with circuit breakers; see the module docs.
pub struct Chain {
    inner: Arc<ChainInner>,
}

impl std::fmt::Debug for Chain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chain")
            .field(
                "providers",
                &self
                    .inner
                    .entries
                    .iter()
                    .map(|e| &e.name)
                    .collect::<Vec<_>>(),
            )
            .field("breaker", &self.inner.cfg)
            .finish()
    }
}

impl Chain {
    /// A chain over `providers`, tried in the given order.
    pub fn new(providers: Vec<Arc<dyn LanguageModel>>, cfg: BreakerConfig) -> Self {
        let entries = providers
            .into_iter()
            .map(|model| {
                let entry = Entry {
                    name: model.name().to_owned(),
                    model,
                    breaker: Mutex::new(Breaker::default()),
                };
                entry.set_gauge(false);
                Arc::new(entry)
            })
            .collect();
        Self {
            inner: Arc::new(ChainInner { entries, cfg }),
        }
    }

    /// The breaker settings.
    pub fn breaker_config(&self) -> BreakerConfig {
        self.inner.cfg
    }

    /// Each provider's name and breaker state, in chain order.
    pub fn status(&self) -> Vec<ProviderStatus> {
        let now = Instant::now();
        self.inner
            .entries
            .iter()
            .map(|e| {
                let b = e.breaker.lock();
                ProviderStatus {
                    name: e.name.clone(),
                    state: b.state(now),
                    consecutive_failures: b.failures,
                    available_in: b.available_in(now),
                }
            })
            .collect()
    }

    /// A Retry-After hint for clients after [`LlmError::AllFailed`]: the time
    /// until the first provider will be called again (its breaker's open
    /// period or its own Retry-After, whichever ends later for that
    /// provider), rounded up to whole seconds and at least one second.
    pub fn retry_after(&self) -> Duration {
        let now = Instant::now();
        let soonest = self
            .inner
            .entries
            .iter()
            .map(|e| e.breaker.lock().available_in(now))
            .min()
            .unwrap_or(self.inner.cfg.open_for);
        let secs = soonest.as_secs_f64().ceil().max(1.0);
        Duration::from_secs_f64(secs)
    }
}

#[async_trait]
impl LanguageModel for Chain {
    fn name(&self) -> &str {
        "chain"
    }

    /// The smallest context window of its providers (0 when empty).
    fn context_window(&self) -> u32 {
        self.inner
            .entries
            .iter()
            .map(|e| e.model.context_window())
            .min()
            .unwrap_or(0)
    }

    async fn stream(&self, req: &AnswerRequest) -> Result<EventStream, LlmError> {
        let mut run = ChainRun {
            inner: self.inner.clone(),
            req: Arc::new(req.clone()),
            next: 0,
            current: None,
            last_error: None,
            finished: false,
        };
        match run.next_event().await {
            Some(Ok(first)) => {
                let rest = futures_util::stream::unfold(run, |mut run| async move {
                    let item = run.next_event().await?;
                    Some((item, run))
                });
                Ok(futures_util::stream::once(async move { Ok(first) })
                    .chain(rest)
                    .boxed())
            }
            Some(Err(e)) => Err(e),
            None => Err(LlmError::AllFailed {
                last: Box::new(LlmError::Config("the chain ended without an answer".into())),
            }),
        }
    }
}

struct Attempt {
    entry: Arc<Entry>,
    stream: EventStream,
    permit: Permit,
    started: Instant,
    deltas: usize,
}

struct ChainRun {
    inner: Arc<ChainInner>,
    req: Arc<AnswerRequest>,
    next: usize,
    current: Option<Attempt>,
    last_error: Option<LlmError>,
    finished: bool,
}

impl ChainRun {
    async fn next_event(&mut self) -> Option<Result<StreamEvent, LlmError>> {
        loop {
            if self.finished {
                return None;
            }
            let Some(att) = self.current.as_mut() else {
                if let Some(ev) = self.start_next().await {
                    return Some(ev);
                }
                continue;
            };
            match att.stream.next().await {
                Some(Ok(StreamEvent::Delta(text))) => {
                    if att.deltas == 0 {
                        metrics::histogram!(METRIC_FIRST_TOKEN, "provider" => att.entry.name.clone())
                            .record(att.started.elapsed().as_secs_f64());
                    }
                    att.deltas += 1;
                    return Some(Ok(StreamEvent::Delta(text)));
                }
                Some(Ok(StreamEvent::Restart { provider, reason })) => {
                    // From a nested chain: pass it on; the text so far is void.
                    att.deltas = 0;
                    return Some(Ok(StreamEvent::Restart { provider, reason }));
                }
                Some(Ok(StreamEvent::Done {
                    provider,
                    usage,
                    animation,
                })) => {
                    let Some(att) = self.current.take() else {
                        continue;
                    };
                    let name = att.entry.name.clone();
                    metrics::counter!(METRIC_CALLS, "provider" => name.clone(), "outcome" => "ok")
                        .increment(1);
                    metrics::histogram!(METRIC_LATENCY, "provider" => name.clone())
                        .record(att.started.elapsed().as_secs_f64());
                    metrics::counter!(METRIC_TOKENS, "provider" => name.clone(), "kind" => "prompt")
                        .increment(u64::from(usage.prompt_tokens));
                    metrics::counter!(METRIC_TOKENS, "provider" => name, "kind" => "completion")
                        .increment(u64::from(usage.completion_tokens));
                    att.permit.success();
                    self.finished = true;
                    return Some(Ok(StreamEvent::Done {
                        provider,
                        usage,
                        animation,
                    }));
                }
                Some(Err(e)) => {
                    if let Some(restart) = self.fail_current(e) {
                        return Some(Ok(restart));
                    }
                }
                None => {
                    let e = LlmError::BadResponse("the stream ended without Done".into());
                    if let Some(restart) = self.fail_current(e) {
                        return Some(Ok(restart));
                    }
                }
            }
        }
    }

    /// Records the current attempt's failure; returns the Restart to emit if
    /// it had already produced text.
    fn fail_current(&mut self, e: LlmError) -> Option<StreamEvent> {
        let att = self.current.take()?;
        let name = att.entry.name.clone();
        metrics::counter!(METRIC_CALLS, "provider" => name.clone(), "outcome" => e.outcome())
            .increment(1);
        tracing::warn!(provider = %name, error = %e, deltas = att.deltas, "language model failed mid-answer; trying the next");
        att.permit.failure(&e, &self.inner.cfg, Instant::now());
        let restart = (att.deltas > 0).then(|| StreamEvent::Restart {
            provider: name,
            reason: e.to_string(),
        });
        self.last_error = Some(e);
        restart
    }

    /// Starts the next available provider. Returns an event only when the
    /// chain is exhausted (the final `AllFailed`).
    async fn start_next(&mut self) -> Option<Result<StreamEvent, LlmError>> {
        let Some(entry) = self.inner.entries.get(self.next).cloned() else {
            self.finished = true;
            let last = self.last_error.take().unwrap_or_else(|| {
                if self.inner.entries.is_empty() {
                    LlmError::Config("the chain has no providers".into())
                } else {
                    LlmError::CircuitOpen
                }
            });
            return Some(Err(LlmError::AllFailed {
                last: Box::new(last),
            }));
        };
        self.next += 1;
        let now = Instant::now();
        let permit = match entry.acquire(now) {
            Ok(p) => p,
            Err(skip) => {
                metrics::counter!(METRIC_CALLS, "provider" => entry.name.clone(), "outcome" => "circuit_open")
                    .increment(1);
                let why = match skip {
                    Skip::Open => "circuit open",
                    Skip::Cooldown => "rate-limit cooldown",
                };
                tracing::debug!(provider = %entry.name, why, "skipping language model");
                if self.last_error.is_none() {
                    self.last_error = Some(LlmError::CircuitOpen);
                }
                return None;
            }
        };
        match entry.model.stream(&self.req).await {
            Ok(stream) => {
                self.current = Some(Attempt {
                    entry,
                    stream,
                    permit,
                    started: now,
                    deltas: 0,
                });
            }
            Err(e) => {
                metrics::counter!(METRIC_CALLS, "provider" => entry.name.clone(), "outcome" => e.outcome())
                    .increment(1);
                tracing::warn!(provider = %entry.name, error = %e, "language model failed; trying the next");
                permit.failure(&e, &self.inner.cfg, Instant::now());
                self.last_error = Some(e);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{Script, ScriptedModel};
    use crate::types::Usage;

    fn req() -> AnswerRequest {
        AnswerRequest {
            persona_name: "Amani".into(),
            subject: None,
            language: "en".into(),
            grade_level: None,
            instructions: None,
            rules: vec![],
            passages: vec![],
            history: vec![],
            question: "Why?".into(),
            max_answer_tokens: 64,
        }
    }

    async fn answer(chain: &Chain) -> Result<Vec<StreamEvent>, LlmError> {
        let mut s = chain.stream(&req()).await?;
        let mut out = Vec::new();
        while let Some(ev) = s.next().await {
            out.push(ev?);
        }
        Ok(out)
    }

    fn done_provider(events: &[StreamEvent]) -> Option<&str> {
        match events.last() {
            Some(StreamEvent::Done { provider, .. }) => Some(provider),
            _ => None,
        }
    }

    fn cfg() -> BreakerConfig {
        BreakerConfig {
            failure_threshold: 2,
            open_for: Duration::from_secs(30),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn falls_back_before_output_without_restart() {
        let a = Arc::new(ScriptedModel::new(
            "a",
            Script::FailAtStart(LlmError::Unavailable("500".into())),
        ));
        let b = Arc::new(ScriptedModel::answering("b", &["Hello ", "there."]));
        let chain = Chain::new(vec![a.clone(), b.clone()], cfg());
        let events = answer(&chain).await.expect("answer");
        assert_eq!(
            events,
            vec![
                StreamEvent::Delta("Hello ".into()),
                StreamEvent::Delta("there.".into()),
                StreamEvent::Done {
                    provider: "b".into(),
                    usage: Usage {
                        prompt_tokens: 10,
                        completion_tokens: 2
                    },
                    animation: None
                }
            ]
        );
        assert_eq!((a.calls(), b.calls()), (1, 1));
    }

    #[tokio::test(start_paused = true)]
    async fn restarts_after_partial_output() {
        let a = Arc::new(ScriptedModel::new(
            "a",
            Script::FailAfter {
                deltas: vec!["Half ".into()],
                error: LlmError::BadResponse("dropped".into()),
            },
        ));
        let b = Arc::new(ScriptedModel::answering("b", &["Whole."]));
        let chain = Chain::new(vec![a, b], cfg());
        let events = answer(&chain).await.expect("answer");
        assert_eq!(events[0], StreamEvent::Delta("Half ".into()));
        assert!(
            matches!(&events[1], StreamEvent::Restart { provider, reason } if provider == "a" && reason.contains("dropped"))
        );
        assert_eq!(events[2], StreamEvent::Delta("Whole.".into()));
        assert_eq!(done_provider(&events), Some("b"));

        // A stream that just stops is a failure too.
        let a = Arc::new(ScriptedModel::new(
            "a",
            Script::EndWithoutDone(vec!["Half".into()]),
        ));
        let b = Arc::new(ScriptedModel::answering("b", &["Whole."]));
        let chain = Chain::new(vec![a, b], cfg());
        let events = answer(&chain).await.expect("answer");
        assert!(matches!(events[1], StreamEvent::Restart { .. }));
        assert_eq!(done_provider(&events), Some("b"));
    }

    #[tokio::test(start_paused = true)]
    async fn breaker_opens_skips_half_opens_and_closes() {
        let a = Arc::new(ScriptedModel::new(
            "a",
            Script::FailAtStart(LlmError::Unavailable("down".into())),
        ));
        let b = Arc::new(ScriptedModel::answering("b", &["ok"]));
        let chain = Chain::new(vec![a.clone(), b.clone()], cfg());
        for _ in 0..2 {
            assert_eq!(
                done_provider(&answer(&chain).await.expect("answer")),
                Some("b")
            );
        }
        assert_eq!(a.calls(), 2);
        assert_eq!(chain.status()[0].state, BreakerState::Open);
        // Open: skipped.
        for _ in 0..3 {
            answer(&chain).await.expect("answer");
        }
        assert_eq!(a.calls(), 2);
        assert_eq!(b.calls(), 5);
        // b is still available, so clients may retry right away.
        assert_eq!(chain.retry_after(), Duration::from_secs(1));

        // Half-open after open_for: one probe; it fails and re-opens.
        tokio::time::advance(Duration::from_secs(31)).await;
        assert_eq!(chain.status()[0].state, BreakerState::HalfOpen);
        answer(&chain).await.expect("answer");
        assert_eq!(a.calls(), 3);
        assert_eq!(chain.status()[0].state, BreakerState::Open);
        answer(&chain).await.expect("answer");
        assert_eq!(a.calls(), 3);

        // Next probe succeeds and closes the breaker.
        a.set_default(Script::Answer(vec!["back".into()]));
        tokio::time::advance(Duration::from_secs(31)).await;
        let events = answer(&chain).await.expect("answer");
        assert_eq!(done_provider(&events), Some("a"));
        assert_eq!(chain.status()[0].state, BreakerState::Closed);
        assert_eq!(chain.status()[0].consecutive_failures, 0);
        answer(&chain).await.expect("answer");
        assert_eq!(a.calls(), 5);
    }

    #[tokio::test(start_paused = true)]
    async fn an_abandoned_probe_frees_the_half_open_slot() {
        let a = Arc::new(ScriptedModel::new(
            "a",
            Script::FailAtStart(LlmError::Timeout),
        ));
        let chain = Chain::new(vec![a.clone()], cfg());
        for _ in 0..2 {
            assert!(matches!(
                answer(&chain).await,
                Err(LlmError::AllFailed { .. })
            ));
        }
        tokio::time::advance(Duration::from_secs(31)).await;
        a.set_default(Script::Answer(vec!["one".into(), "two".into()]));
        {
            let mut s = chain.stream(&req()).await.expect("probe starts");
            assert_eq!(s.next().await, Some(Ok(StreamEvent::Delta("one".into()))));
            // While the probe is in flight, other calls are not let through.
            let Err(err) = chain.stream(&req()).await else {
                panic!("a second call went through while the probe was in flight");
            };
            assert_eq!(
                err,
                LlmError::AllFailed {
                    last: Box::new(LlmError::CircuitOpen)
                }
            );
            // Dropped mid-answer.
        }
        let events = answer(&chain).await.expect("a new probe");
        assert_eq!(done_provider(&events), Some("a"));
        assert_eq!(chain.status()[0].state, BreakerState::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn all_failed_and_rate_limit_cooldown() {
        let a = Arc::new(ScriptedModel::new(
            "a",
            Script::FailAtStart(LlmError::RateLimited {
                retry_after: Some(Duration::from_secs(7)),
            }),
        ));
        let b = Arc::new(ScriptedModel::new(
            "b",
            Script::FailAtStart(LlmError::Unavailable("503".into())),
        ));
        let chain = Chain::new(vec![a.clone(), b.clone()], BreakerConfig::default());
        let err = answer(&chain).await.expect_err("all fail");
        assert_eq!(
            err,
            LlmError::AllFailed {
                last: Box::new(LlmError::Unavailable("503".into()))
            }
        );
        assert!(err.is_transient());
        // a asked for 7 s: skipped meanwhile, and the hint says so.
        assert_eq!(chain.retry_after(), Duration::from_secs(1));
        answer(&chain).await.expect_err("all fail");
        assert_eq!(a.calls(), 1);
        assert_eq!(b.calls(), 2);
        tokio::time::advance(Duration::from_secs(8)).await;
        answer(&chain).await.expect_err("all fail");
        assert_eq!(a.calls(), 2);

        let empty = Chain::new(vec![], BreakerConfig::default());
        assert!(matches!(
            answer(&empty).await,
            Err(LlmError::AllFailed { last }) if matches!(*last, LlmError::Config(_))
        ));
        assert_eq!(empty.context_window(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn retry_after_hint_follows_the_soonest_provider() {
        let a = Arc::new(ScriptedModel::new(
            "a",
            Script::FailAtStart(LlmError::Unavailable("x".into())),
        ));
        let chain = Chain::new(
            vec![a],
            BreakerConfig {
                failure_threshold: 1,
                open_for: Duration::from_secs(20),
            },
        );
        answer(&chain).await.expect_err("fails");
        assert_eq!(chain.retry_after(), Duration::from_secs(20));
        tokio::time::advance(Duration::from_millis(12_500)).await;
        assert_eq!(chain.retry_after(), Duration::from_secs(8));
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(chain.retry_after(), Duration::from_secs(1));
        let status = chain.status();
        assert_eq!(status[0].name, "a");
        assert_eq!(status[0].state, BreakerState::HalfOpen);
    }

    #[test]
    fn breaker_config_serde() {
        let c: BreakerConfig = serde_json::from_str(r#"{"open_for_secs": 5}"#).expect("cfg");
        assert_eq!(c.failure_threshold, 3);
        assert_eq!(c.open_for, Duration::from_secs(5));
        assert_eq!(BreakerConfig::default().open_for, Duration::from_secs(30));
    }
}
