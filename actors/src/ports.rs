//! Ports: the traits the actors call and the adapters in the `bwenge` crate
//! implement. Each has an in-process implementation (the embedded default) and
//! a Redis one (several nodes). Nothing here knows about a database, HTTP or
//! Redis itself.

use std::time::Duration;

use async_trait::async_trait;

/// A failure of an adapter behind a port. Adapters keep their details in the
/// message (for logs); callers only decide whether to retry.
#[derive(Debug, thiserror::Error)]
pub enum PortError {
    /// The backing service could not be reached or answered with an error;
    /// retrying later may succeed.
    #[error("backend unavailable: {0}")]
    Unavailable(String),
    /// The call itself was wrong (bad key, bad payload); retrying will not help.
    #[error("invalid request: {0}")]
    Invalid(String),
}

pub type PortResult<T> = Result<T, PortError>;

/// One message received from the bus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BusMessage {
    pub topic: String,
    pub payload: Vec<u8>,
}

/// A live subscription to one topic. Dropping it unsubscribes.
///
/// Delivery is at-most-once and best effort: a subscriber that falls behind
/// by more than its buffer loses the oldest messages (counted in
/// `bwenge_bus_dropped_total`). Durable state lives in the database; the bus
/// only tells other nodes that something changed.
pub struct Subscription {
    rx: tokio::sync::mpsc::Receiver<BusMessage>,
    _guard: Option<Box<dyn Send + Sync>>,
}

impl Subscription {
    /// Wraps a receiver; `guard` is kept alive as long as the subscription
    /// (adapters use it to stop their forwarding task on drop).
    pub fn new(
        rx: tokio::sync::mpsc::Receiver<BusMessage>,
        guard: Option<Box<dyn Send + Sync>>,
    ) -> Self {
        Self { rx, _guard: guard }
    }

    /// The next message, or `None` once the bus has shut down.
    pub async fn recv(&mut self) -> Option<BusMessage> {
        self.rx.recv().await
    }
}

/// Publish/subscribe between the actors of one node and, with Redis, between
/// nodes.
#[async_trait]
pub trait Bus: Send + Sync + 'static {
    /// Sends `payload` to every current subscriber of `topic` on every node.
    async fn publish(&self, topic: &str, payload: &[u8]) -> PortResult<()>;
    /// Subscribes to `topic`; messages published after this returns are
    /// delivered.
    async fn subscribe(&self, topic: &str) -> PortResult<Subscription>;
    /// Whether a message published here can reach another process. An
    /// in-process bus answers `false`, so callers can skip publishing what
    /// only other nodes would read.
    fn reaches_other_nodes(&self) -> bool {
        true
    }
}

/// A key/value cache with expiry. Values are opaque bytes.
#[async_trait]
pub trait Cache: Send + Sync + 'static {
    async fn get(&self, key: &str) -> PortResult<Option<Vec<u8>>>;
    async fn set(&self, key: &str, value: &[u8], ttl: Duration) -> PortResult<()>;
    async fn delete(&self, key: &str) -> PortResult<()>;
}

/// The shape of one token bucket: `capacity` tokens, refilled continuously at
/// `refill_per_sec`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    pub capacity: u32,
    pub refill_per_sec: f64,
}

/// The answer of a rate limiter.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RateDecision {
    Allowed {
        remaining: u32,
    },
    /// Refused; a token will be available after `retry_after`.
    Limited {
        retry_after: Duration,
    },
}

impl RateDecision {
    pub fn is_allowed(&self) -> bool {
        matches!(self, RateDecision::Allowed { .. })
    }
}

/// A token-bucket rate limiter keyed by an arbitrary string (user, IP, route).
#[async_trait]
pub trait RateLimiter: Send + Sync + 'static {
    /// Takes `cost` tokens from the bucket `key` if it has them.
    async fn check(&self, key: &str, limit: RateLimit, cost: u32) -> PortResult<RateDecision>;
}
