//! This node's chat hub: what the WebSocket connections and chat sessions
//! of one node share.
//!
//! * **Live sessions**: chat-session actors register here while they run,
//!   so events another node publishes on [`EVENTS_TOPIC`] reach the local
//!   session (and through it, its connections) without starting one.
//! * **Connections**: every open socket with its user, organisation and
//!   role, so a revocation ([`REVOKED_TOPIC`]) closes that user's sockets at
//!   once and ingest progress (`ingest.<org>`) reaches the organisation's
//!   teachers and admins. One bus subscription per organisation with staff
//!   connected here, dropped when the last one leaves.
//!
//! Only this module's functions mutate the maps, each under its lock for a
//! few instructions; nothing awaits while holding one.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use actix::Recipient;
use bwenge_actors::ports::Bus;
use parking_lot::Mutex;
use serde_json::{Value, json};

use crate::auth::model::Role;
use crate::ids::{OrgId, SessionId, UserId};

/// Bus topic carrying session events between nodes (payload: JSON
/// `{node, session_id, frame}`).
pub const EVENTS_TOPIC: &str = "chat.events";
/// Bus topic announcing that a user's tokens were revoked (payload: the
/// user id).
pub const REVOKED_TOPIC: &str = "auth.revoked";

/// A frame for a connection: the JSON text and, for stored events, their
/// `seq` (so a connection never delivers one twice).
#[derive(Debug, Clone, actix::Message)]
#[rtype(result = "()")]
pub struct Push {
    pub frame: Arc<str>,
    pub seq: Option<i64>,
}

/// Close a connection with a WebSocket close code.
#[derive(Debug, Clone, Copy, actix::Message)]
#[rtype(result = "()")]
pub struct CloseWith(pub u16);

/// An event published by another node for a session that lives here.
#[derive(Debug, Clone, actix::Message)]
#[rtype(result = "()")]
pub struct RemoteEvent(pub Value);

struct Conn {
    user: UserId,
    org: OrgId,
    staff: bool,
    push: Recipient<Push>,
    close: Recipient<CloseWith>,
}

#[derive(Default)]
struct Inner {
    sessions: HashMap<SessionId, Recipient<RemoteEvent>>,
    conns: HashMap<u64, Conn>,
    /// Per organisation with staff connected: the task relaying its ingest
    /// progress, aborted with the last staff connection.
    ingest: HashMap<OrgId, tokio::task::JoinHandle<()>>,
}

/// The hub; cheap to clone.
#[derive(Clone)]
pub struct ChatHub {
    inner: Arc<Mutex<Inner>>,
    next_conn: Arc<AtomicU64>,
    bus: Arc<dyn Bus>,
    node_id: String,
}

impl ChatHub {
    pub fn new(bus: Arc<dyn Bus>, node_id: String) -> Self {
        Self {
            inner: Arc::default(),
            next_conn: Arc::new(AtomicU64::new(1)),
            bus,
            node_id,
        }
    }

    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// Starts relaying other nodes' session events and revocations; call
    /// once at start-up.
    pub async fn start(&self) -> anyhow::Result<()> {
        let mut events = self
            .bus
            .subscribe(EVENTS_TOPIC)
            .await
            .map_err(|e| anyhow::anyhow!("subscribing to chat events: {e}"))?;
        let hub = self.clone();
        actix_web::rt::spawn(async move {
            while let Some(msg) = events.recv().await {
                let Ok(v) = serde_json::from_slice::<Value>(&msg.payload) else {
                    continue;
                };
                if v["node"].as_str() == Some(hub.node_id.as_str()) {
                    continue;
                }
                let Some(id) = v["session_id"].as_str().and_then(|s| s.parse().ok()) else {
                    continue;
                };
                let target = hub.inner.lock().sessions.get(&SessionId(id)).cloned();
                if let Some(t) = target {
                    t.do_send(RemoteEvent(v["frame"].clone()));
                }
            }
        });
        let mut revoked = self
            .bus
            .subscribe(REVOKED_TOPIC)
            .await
            .map_err(|e| anyhow::anyhow!("subscribing to revocations: {e}"))?;
        let hub = self.clone();
        actix_web::rt::spawn(async move {
            while let Some(msg) = revoked.recv().await {
                if let Ok(user) = String::from_utf8_lossy(&msg.payload).parse::<UserId>() {
                    hub.close_user(user, 4401);
                }
            }
        });
        Ok(())
    }

    /// Whether session events are worth publishing: another node may be
    /// listening.
    pub fn shares_events(&self) -> bool {
        self.bus.reaches_other_nodes()
    }

    /// Publishes a session event for the other nodes.
    pub async fn publish(&self, session: SessionId, frame: &Value) {
        // One node: nobody else would read it (our own relay skips it).
        if !self.bus.reaches_other_nodes() {
            return;
        }
        let payload = json!({"node": self.node_id, "session_id": session, "frame": frame});
        if let Err(e) = self
            .bus
            .publish(EVENTS_TOPIC, payload.to_string().as_bytes())
            .await
        {
            tracing::warn!(error = %e, "could not publish a chat event");
        }
    }

    pub fn session_started(&self, id: SessionId, r: Recipient<RemoteEvent>) {
        self.inner.lock().sessions.insert(id, r);
    }

    pub fn session_stopped(&self, id: SessionId) {
        self.inner.lock().sessions.remove(&id);
    }

    /// Registers a connection; returns its id.
    pub fn connect(
        &self,
        user: UserId,
        org: OrgId,
        role: Role,
        push: Recipient<Push>,
        close: Recipient<CloseWith>,
    ) -> u64 {
        let id = self.next_conn.fetch_add(1, Ordering::Relaxed);
        let staff = role.is_staff();
        let mut inner = self.inner.lock();
        inner.conns.insert(
            id,
            Conn {
                user,
                org,
                staff,
                push,
                close,
            },
        );
        if staff && !inner.ingest.contains_key(&org) {
            let hub = self.clone();
            let task = actix_web::rt::spawn(async move { hub.relay_ingest(org).await });
            inner.ingest.insert(org, task);
        }
        id
    }

    pub fn disconnect(&self, id: u64) {
        let mut inner = self.inner.lock();
        let Some(conn) = inner.conns.remove(&id) else {
            return;
        };
        if conn.staff
            && !inner.conns.values().any(|c| c.staff && c.org == conn.org)
            && let Some(task) = inner.ingest.remove(&conn.org)
        {
            task.abort();
        }
    }

    /// Open connections on this node.
    pub fn connections(&self) -> usize {
        self.inner.lock().conns.len()
    }

    /// Sends a frame to every socket of a user on this node; returns how
    /// many there were.
    pub fn push_to_user(&self, user: UserId, push: Push) -> usize {
        let targets: Vec<Recipient<Push>> = self
            .inner
            .lock()
            .conns
            .values()
            .filter(|c| c.user == user)
            .map(|c| c.push.clone())
            .collect();
        for t in &targets {
            t.do_send(push.clone());
        }
        targets.len()
    }

    fn close_user(&self, user: UserId, code: u16) {
        let targets: Vec<Recipient<CloseWith>> = self
            .inner
            .lock()
            .conns
            .values()
            .filter(|c| c.user == user)
            .map(|c| c.close.clone())
            .collect();
        for t in targets {
            t.do_send(CloseWith(code));
        }
    }

    async fn relay_ingest(&self, org: OrgId) {
        let topic = crate::knowledge::ingest::progress_topic(org);
        let mut sub = match self.bus.subscribe(&topic).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "could not follow ingest progress");
                return;
            }
        };
        while let Some(msg) = sub.recv().await {
            let Ok(mut v) = serde_json::from_slice::<Value>(&msg.payload) else {
                continue;
            };
            v["type"] = json!("ingest");
            let frame: Arc<str> = Arc::from(v.to_string());
            let targets: Vec<Recipient<Push>> = self
                .inner
                .lock()
                .conns
                .values()
                .filter(|c| c.staff && c.org == org)
                .map(|c| c.push.clone())
                .collect();
            for t in targets {
                t.do_send(Push {
                    frame: frame.clone(),
                    seq: None,
                });
            }
        }
    }
}

/// Announces that a user's tokens no longer hold: every node closes that
/// user's sockets with 4401.
pub async fn announce_revoked(bus: &dyn Bus, user: UserId) {
    if let Err(e) = bus
        .publish(REVOKED_TOPIC, user.to_string().as_bytes())
        .await
    {
        tracing::warn!(error = %e, "could not announce a revocation");
    }
}
