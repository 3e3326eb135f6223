//! Bus adapters: [`InProcessBus`] (tokio broadcast channels, one node) and
//! [`RedisBus`] (Redis PUBLISH/SUBSCRIBE, several nodes).
//!
//! Both hand out a [`Subscription`] fed by a forwarding task that reads a
//! bounded broadcast channel and pushes into the subscription's bounded mpsc.
//! A slow subscriber therefore never blocks publishers: once both buffers are
//! full the broadcast channel overwrites its oldest messages, which the
//! forwarder counts in `bwenge_bus_dropped_total`. Dropping the subscription
//! aborts the task(s), which releases the broadcast receiver or closes the
//! dedicated Redis connection.
//!
//! Payloads are JSON of typed messages ([`publish_json`], [`decode`],
//! [`messages`]).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use bwenge_actors::ports::{Bus, BusMessage, PortError, PortResult, Subscription};
use futures_util::StreamExt;
use tokio::sync::{broadcast, mpsc};
use tokio::task::AbortHandle;

use super::{lock, unavailable};

/// Capacity of each subscription's mpsc and of each broadcast channel.
const BUFFER: usize = 1024;

/// How long opening a dedicated pub/sub connection may take before
/// `subscribe` gives up; without it an unreachable Redis could hang a caller.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Aborts the subscription's tasks when the [`Subscription`] is dropped.
struct AbortOnDrop(Vec<AbortHandle>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        for handle in &self.0 {
            handle.abort();
        }
    }
}

/// Spawns the task moving messages from `rx` into a new subscription.
/// Returns the subscription's receiver and the task's abort handle.
fn spawn_forwarder(
    mut rx: broadcast::Receiver<BusMessage>,
    backend: &'static str,
) -> (mpsc::Receiver<BusMessage>, AbortHandle) {
    let (tx, out) = mpsc::channel(BUFFER);
    let task = tokio::spawn(async move {
        loop {
            match rx.recv().await {
                Ok(msg) => {
                    // Waiting here (rather than try_send) keeps the newest
                    // messages queued in the broadcast channel, so lag drops
                    // the oldest not yet handed to the subscription's mpsc,
                    // never the latest state change.
                    if tx.send(msg).await.is_err() {
                        break;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    metrics::counter!("bwenge_bus_dropped_total", "backend" => backend)
                        .increment(n);
                }
                Err(broadcast::error::RecvError::Closed) => break,
            }
        }
    });
    (out, task.abort_handle())
}

/// The bus inside one process: one tokio broadcast channel per topic.
#[derive(Debug, Default)]
pub struct InProcessBus {
    topics: Mutex<Topics>,
}

#[derive(Debug, Default)]
struct Topics {
    senders: HashMap<String, broadcast::Sender<BusMessage>>,
    /// Size at which `subscribe` next drops senders nobody listens to;
    /// doubling it after each sweep keeps the sweep amortised O(1).
    sweep_at: usize,
}

impl InProcessBus {
    /// An empty bus; topics are created on first subscription.
    pub fn new() -> Self {
        Self::default()
    }

    #[cfg(test)]
    fn receiver_count(&self, topic: &str) -> usize {
        lock(&self.topics)
            .senders
            .get(topic)
            .map_or(0, broadcast::Sender::receiver_count)
    }
}

#[async_trait]
impl Bus for InProcessBus {
    fn reaches_other_nodes(&self) -> bool {
        false
    }

    async fn publish(&self, topic: &str, payload: &[u8]) -> PortResult<()> {
        let mut topics = lock(&self.topics);
        if let Some(sender) = topics.senders.get(topic) {
            let msg = BusMessage {
                topic: topic.to_owned(),
                payload: payload.to_vec(),
            };
            // An error only means nobody is listening any more: forget the
            // topic so the map holds live topics only.
            if sender.send(msg).is_err() {
                topics.senders.remove(topic);
            }
        }
        metrics::counter!("bwenge_bus_published_total", "backend" => "in_process").increment(1);
        Ok(())
    }

    async fn subscribe(&self, topic: &str) -> PortResult<Subscription> {
        // The receiver is created under the lock, before returning, so every
        // publish after `subscribe` returns reaches it.
        let rx = {
            let mut topics = lock(&self.topics);
            if topics.senders.len() >= topics.sweep_at {
                // Topics subscribed to and never published again would
                // otherwise keep their sender forever.
                topics.senders.retain(|_, s| s.receiver_count() > 0);
                topics.sweep_at = (topics.senders.len() * 2).max(64);
            }
            topics
                .senders
                .entry(topic.to_owned())
                .or_insert_with(|| broadcast::channel(BUFFER).0)
                .subscribe()
        };
        let (out, task) = spawn_forwarder(rx, "in_process");
        Ok(Subscription::new(
            out,
            Some(Box::new(AbortOnDrop(vec![task]))),
        ))
    }
}

/// The bus across nodes: Redis PUBLISH on channel `{prefix}bus:{topic}`;
/// each subscription holds its own pub/sub connection.
///
/// If that connection drops, the subscription ends (`recv` returns `None`);
/// the subscriber decides whether to subscribe again.
#[derive(Debug, Clone)]
pub struct RedisBus {
    pool: deadpool_redis::Pool,
    client: redis::Client,
    key_prefix: String,
}

impl RedisBus {
    /// `pool` serves PUBLISH; `redis_url` opens the dedicated pub/sub
    /// connections (a pooled connection cannot be put in subscribe mode).
    /// Fails if the URL is invalid; does not connect yet.
    pub fn new(
        pool: deadpool_redis::Pool,
        redis_url: &str,
        key_prefix: &str,
    ) -> Result<Self, PortError> {
        let client = redis::Client::open(redis_url).map_err(|e| unavailable("url", e))?;
        Ok(Self {
            pool,
            client,
            key_prefix: key_prefix.to_owned(),
        })
    }

    fn channel(&self, topic: &str) -> String {
        format!("{}bus:{topic}", self.key_prefix)
    }
}

#[async_trait]
impl Bus for RedisBus {
    async fn publish(&self, topic: &str, payload: &[u8]) -> PortResult<()> {
        let mut conn = self.pool.get().await.map_err(|e| unavailable("pool", e))?;
        redis::cmd("PUBLISH")
            .arg(self.channel(topic))
            .arg(payload)
            .query_async::<i64>(&mut conn)
            .await
            .map_err(|e| unavailable("PUBLISH", e))?;
        metrics::counter!("bwenge_bus_published_total", "backend" => "redis").increment(1);
        Ok(())
    }

    async fn subscribe(&self, topic: &str) -> PortResult<Subscription> {
        let mut pubsub = tokio::time::timeout(CONNECT_TIMEOUT, self.client.get_async_pubsub())
            .await
            .map_err(|_| unavailable("pubsub connect", "timed out"))?
            .map_err(|e| unavailable("pubsub connect", e))?;
        // SUBSCRIBE waits for the server's confirmation, so a PUBLISH issued
        // after this returns is delivered.
        pubsub
            .subscribe(self.channel(topic))
            .await
            .map_err(|e| unavailable("SUBSCRIBE", e))?;
        let mut stream = pubsub.into_on_message();

        // The redis crate buffers without bound; draining it into a bounded
        // broadcast channel gives Redis subscribers the same drop-oldest
        // behaviour as in-process ones.
        let (relay, rx) = broadcast::channel(BUFFER);
        let topic = topic.to_owned();
        let reader = tokio::spawn(async move {
            while let Some(msg) = stream.next().await {
                let msg = BusMessage {
                    topic: topic.clone(),
                    payload: msg.get_payload_bytes().to_vec(),
                };
                if relay.send(msg).is_err() {
                    break;
                }
            }
            // Ending drops the stream (closing the connection) and the relay,
            // which ends the forwarder and so the subscription.
            tracing::debug!(topic, "redis bus subscription ended");
        });
        let (out, forwarder) = spawn_forwarder(rx, "redis");
        Ok(Subscription::new(
            out,
            Some(Box::new(AbortOnDrop(vec![
                reader.abort_handle(),
                forwarder,
            ]))),
        ))
    }
}

/// Publishes `msg` on `topic` as JSON: every bus payload is one of the
/// typed messages below (or a domain's own, such as chat's session events),
/// never a hand-built string.
pub async fn publish_json<T: serde::Serialize + ?Sized>(
    bus: &dyn Bus,
    topic: &str,
    msg: &T,
) -> PortResult<()> {
    let payload = serde_json::to_vec(msg).map_err(|e| PortError::Invalid(e.to_string()))?;
    bus.publish(topic, &payload).await
}

/// Reads a message published with [`publish_json`]; `None` (logged) when it
/// is not a `T`, such as a message of an older node.
pub fn decode<'a, T: serde::Deserialize<'a>>(msg: &'a BusMessage) -> Option<T> {
    match serde_json::from_slice(&msg.payload) {
        Ok(v) => Some(v),
        Err(e) => {
            tracing::warn!(topic = %msg.topic, error = %e, "an unreadable bus message was dropped");
            None
        }
    }
}

/// The typed payloads of the bus topics shared by several domains. Each
/// says its topic.
pub mod messages {
    use serde::{Deserialize, Serialize};

    use crate::ids::{OrgId, PersonaId, SourceId, UserId};

    /// `index.changed`: a node changed an organisation's chunks; the others
    /// rebuild its index from the database on next use.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub struct IndexChanged {
        /// The announcing node (which ignores its own).
        pub node: String,
        pub organization_id: OrgId,
    }

    /// `persona.changed`: a node changed a persona; the others drop their
    /// loaded copy.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub struct PersonaChanged {
        pub node: String,
        pub persona_id: PersonaId,
    }

    /// `auth.revoked`: a user's tokens no longer hold; every node closes
    /// their sockets.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
    pub struct Revoked {
        pub user_id: UserId,
        /// Set when the revocation is a role change: whether the new role
        /// is staff (a socket the new role no longer allows closes with
        /// 4403 instead of 4401).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub staff: Option<bool>,
    }

    /// `ingest.<org>`: the progress of one of the organisation's sources
    /// (relayed to its teachers' and admins' chat sockets as an `ingest`
    /// frame).
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct IngestProgress {
        pub error: Option<String>,
        pub progress: f64,
        pub source_id: SourceId,
        pub stage: String,
        pub status: String,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::Arc;

    use super::*;
    use crate::infra::test_support::{pool, prefix, redis_url};

    /// Lets a test ask a backend how many subscribers it still serves.
    enum Probe {
        InProcess(Arc<InProcessBus>),
        Redis(deadpool_redis::Pool, String),
    }

    impl Probe {
        async fn subscribers(&self, topic: &str) -> usize {
            match self {
                Probe::InProcess(bus) => bus.receiver_count(topic),
                Probe::Redis(pool, channel_prefix) => {
                    let mut conn = pool.get().await.unwrap();
                    let (_, n): (String, usize) = redis::cmd("PUBSUB")
                        .arg("NUMSUB")
                        .arg(format!("{channel_prefix}bus:{topic}"))
                        .query_async(&mut conn)
                        .await
                        .unwrap();
                    n
                }
            }
        }
    }

    struct Case {
        name: &'static str,
        bus: Arc<dyn Bus>,
        probe: Probe,
    }

    fn redis_bus(url: &str, key_prefix: &str) -> RedisBus {
        RedisBus::new(pool(url), url, key_prefix).unwrap()
    }

    /// The in-process bus always; the Redis one when configured.
    fn cases() -> Vec<Case> {
        let in_process = Arc::new(InProcessBus::new());
        let mut cases = vec![Case {
            name: "in_process",
            bus: in_process.clone(),
            probe: Probe::InProcess(in_process),
        }];
        if let Some(url) = redis_url() {
            let p = prefix();
            let bus = redis_bus(&url, &p);
            cases.push(Case {
                name: "redis",
                probe: Probe::Redis(bus.pool.clone(), p),
                bus: Arc::new(bus),
            });
        }
        cases
    }

    async fn recv(name: &str, sub: &mut Subscription) -> BusMessage {
        tokio::time::timeout(Duration::from_secs(2), sub.recv())
            .await
            .unwrap_or_else(|_| panic!("[{name}] no message within 2 s"))
            .unwrap_or_else(|| panic!("[{name}] subscription closed"))
    }

    /// Nothing arrives within a short grace period.
    async fn assert_quiet(name: &str, sub: &mut Subscription) {
        if let Ok(msg) = tokio::time::timeout(Duration::from_millis(50), sub.recv()).await {
            panic!("[{name}] unexpected {msg:?}");
        }
    }

    #[tokio::test]
    async fn delivers_to_every_subscriber_of_a_topic_in_order_and_only_that_topic() {
        for Case { name, bus, .. } in cases() {
            // Published before anyone listens: nobody receives it.
            bus.publish("a", b"early").await.unwrap();

            let mut a1 = bus.subscribe("a").await.unwrap();
            let mut a2 = bus.subscribe("a").await.unwrap();
            let mut b = bus.subscribe("b").await.unwrap();

            for i in 0..20u8 {
                bus.publish("a", &[i]).await.unwrap();
            }
            bus.publish("b", b"for b").await.unwrap();
            bus.publish("a", b"end").await.unwrap();

            for sub in [&mut a1, &mut a2] {
                for i in 0..20u8 {
                    let msg = recv(name, sub).await;
                    assert_eq!(
                        msg,
                        BusMessage {
                            topic: "a".into(),
                            payload: vec![i]
                        },
                        "[{name}]"
                    );
                }
                // "for b" was published before "end": had it leaked into
                // topic a, it would come first.
                assert_eq!(recv(name, sub).await.payload, b"end", "[{name}]");
            }
            let msg = recv(name, &mut b).await;
            assert_eq!(
                msg,
                BusMessage {
                    topic: "b".into(),
                    payload: b"for b".to_vec()
                },
                "[{name}]"
            );
            assert_quiet(name, &mut b).await;
        }
    }

    #[tokio::test]
    async fn dropped_subscription_stops_receiving() {
        for Case { name, bus, probe } in cases() {
            let gone = bus.subscribe("t").await.unwrap();
            let mut kept = bus.subscribe("t").await.unwrap();
            assert_eq!(probe.subscribers("t").await, 2, "[{name}]");

            drop(gone);
            // The forwarding task (and for Redis its connection) goes away
            // asynchronously after the abort.
            let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
            while probe.subscribers("t").await != 1 {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "[{name}] dropped subscription still subscribed"
                );
                tokio::time::sleep(Duration::from_millis(5)).await;
            }

            bus.publish("t", b"after").await.unwrap();
            assert_eq!(recv(name, &mut kept).await.payload, b"after", "[{name}]");

            drop(kept);
            let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
            while probe.subscribers("t").await != 0 {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "[{name}] subscription still alive after drop"
                );
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            // Publishing to a topic nobody listens to is fine.
            bus.publish("t", b"nobody").await.unwrap();
        }
    }

    #[tokio::test]
    async fn slow_subscriber_drops_messages_without_blocking_publishers() {
        const N: u32 = 3 * BUFFER as u32;
        for Case { name, bus, .. } in cases() {
            let mut sub = bus.subscribe("flood").await.unwrap();
            for i in 0..N {
                bus.publish("flood", &i.to_be_bytes()).await.unwrap();
            }
            let mut got = Vec::new();
            loop {
                let msg = recv(name, &mut sub).await;
                let i = u32::from_be_bytes(msg.payload.try_into().unwrap());
                got.push(i);
                if i == N - 1 {
                    break;
                }
            }
            assert_quiet(name, &mut sub).await;
            assert!(got.len() < N as usize, "[{name}] nothing was dropped");
            assert!(got.len() >= BUFFER, "[{name}] only {} kept", got.len());
            assert!(got.windows(2).all(|w| w[0] < w[1]), "[{name}] out of order");
            // The newest messages survive: the tail is contiguous.
            let tail = &got[got.len() - BUFFER..];
            assert!(
                tail.windows(2).all(|w| w[1] == w[0] + 1),
                "[{name}] newest messages were dropped"
            );
        }
    }

    #[tokio::test]
    async fn two_redis_nodes_see_each_others_messages() {
        let Some(url) = redis_url() else {
            return;
        };
        let p = prefix();
        // Separate pools and clients: two nodes sharing one Redis.
        let node_a: Arc<dyn Bus> = Arc::new(redis_bus(&url, &p));
        let node_b: Arc<dyn Bus> = Arc::new(redis_bus(&url, &p));
        let mut on_a = node_a.subscribe("x").await.unwrap();
        let mut on_b = node_b.subscribe("x").await.unwrap();

        node_a.publish("x", b"from a").await.unwrap();
        node_b.publish("x", b"from b").await.unwrap();

        for sub in [&mut on_a, &mut on_b] {
            assert_eq!(recv("redis", sub).await.payload, b"from a");
            assert_eq!(recv("redis", sub).await.payload, b"from b");
        }

        // A different prefix is a different deployment: isolated.
        let other: Arc<dyn Bus> = Arc::new(redis_bus(&url, &prefix()));
        other.publish("x", b"elsewhere").await.unwrap();
        assert_quiet("redis", &mut on_a).await;
    }

    #[tokio::test]
    async fn redis_errors_are_unavailable() {
        assert!(matches!(
            RedisBus::new(pool("redis://127.0.0.1:1"), "not a url", "p:"),
            Err(PortError::Unavailable(_))
        ));
        // Nothing listens on port 1: connecting fails fast.
        let bus = redis_bus("redis://127.0.0.1:1", "p:");
        assert!(matches!(
            bus.publish("t", b"x").await,
            Err(PortError::Unavailable(_))
        ));
        assert!(matches!(
            bus.subscribe("t").await,
            Err(PortError::Unavailable(_))
        ));
    }
}
