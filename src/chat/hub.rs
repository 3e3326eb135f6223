//! This node's chat hub: what the WebSocket connections and chat sessions
//! of one node share.
//!
//! * **Subscriptions**: which connections are attached to which session.
//!   A session's events (its acks, questions, answers and their deltas, and
//!   those another node publishes on [`EVENTS_TOPIC`]) reach its
//!   connections from here, whether or not the session has an actor on
//!   this node: a session gets one only to take a question or to answer
//!   one left unanswered, so an idle session costs its sockets a map entry,
//!   not an actor.
//! * **Live sessions**: chat-session actors register here while they run,
//!   so they hear of another node's activity on their questions.
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

use std::borrow::Cow;

use actix::{Recipient, WeakAddr};
use bwenge_actors::ports::Bus;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use super::frames::ServerFrame;
use super::ws::WsConnection;
use crate::ids::{OrgId, SessionId, UserId};
use crate::infra::bus::messages::{IngestProgress, Revoked};
use crate::infra::bus::{decode, publish_json};

/// Bus topic carrying session events between nodes (payload:
/// [`ChatEvent`]).
pub const EVENTS_TOPIC: &str = "chat.events";
/// Bus topic announcing that a user's tokens were revoked (payload:
/// [`Revoked`]).
pub const REVOKED_TOPIC: &str = "auth.revoked";

/// A session event published for the other nodes (`chat.events`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatEvent<'a> {
    /// The publishing node (which ignores its own).
    pub node: Cow<'a, str>,
    pub session_id: SessionId,
    pub frame: ServerFrame<'a>,
}

/// A frame for a connection: the JSON text, the session it belongs to (a
/// connection that has moved on drops it) and, for stored events, their
/// `seq` (so a connection never delivers one twice).
#[derive(Debug, Clone, actix::Message)]
#[rtype(result = "()")]
pub struct Push {
    pub frame: Arc<str>,
    pub session: Option<SessionId>,
    pub seq: Option<i64>,
}

/// Close a connection with a WebSocket close code.
#[derive(Debug, Clone, Copy, actix::Message)]
#[rtype(result = "()")]
pub struct CloseWith(pub u16);

/// The connection's tokens were revoked: it closes with 4401, or with
/// 4403 when a role change (`staff`: the new role's) took away the session
/// it is attached to.
#[derive(Debug, Clone, Copy, actix::Message)]
#[rtype(result = "()")]
pub struct Revoke {
    pub staff: Option<bool>,
}

/// Another node showed activity on a question of a session that lives
/// here (a piece of its answer, the answer, or its failure).
#[derive(Debug, Clone, Copy, actix::Message)]
#[rtype(result = "()")]
pub struct RemoteEvent {
    pub reply_to: i64,
}

struct Conn {
    user: UserId,
    org: OrgId,
    staff: bool,
    /// The session it is attached to.
    session: Option<SessionId>,
    /// Weak: a strong address allocates a sender of its own per holder,
    /// which ten thousand idle sockets would pay for nothing.
    addr: WeakAddr<WsConnection>,
}

impl Conn {
    fn send<M>(&self, msg: M)
    where
        M: actix::Message + Send + 'static,
        M::Result: Send,
        WsConnection: actix::Handler<M>,
    {
        if let Some(addr) = self.addr.upgrade() {
            addr.do_send(msg);
        }
    }
}

#[derive(Default)]
struct Inner {
    sessions: HashMap<SessionId, Recipient<RemoteEvent>>,
    /// Per session, the connections attached to it.
    subscribers: HashMap<SessionId, Vec<u64>>,
    conns: HashMap<u64, Conn>,
    /// Per user, sockets accepted whose connection has not registered yet
    /// (see [`ChatHub::reserve_socket`]).
    pending: HashMap<UserId, usize>,
    /// Per organisation with staff connected: the task relaying its ingest
    /// progress, aborted with the last staff connection.
    ingest: HashMap<OrgId, tokio::task::JoinHandle<()>>,
}

/// A socket accepted for a user and not yet registered (see
/// [`ChatHub::reserve_socket`]).
pub(crate) struct SocketSlot {
    inner: Arc<Mutex<Inner>>,
    user: UserId,
}

impl Drop for SocketSlot {
    fn drop(&mut self) {
        let mut inner = self.inner.lock();
        if let Some(n) = inner.pending.get_mut(&self.user) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                inner.pending.remove(&self.user);
            }
        }
    }
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
                let Some(event) = decode::<ChatEvent<'_>>(&msg) else {
                    continue;
                };
                if event.node == hub.node_id {
                    continue;
                }
                let id = event.session_id;
                hub.push_session(id, event.frame.to_text(), event.frame.seq());
                let Some(reply_to) = event.frame.reply_to() else {
                    continue;
                };
                let actor = hub.inner.lock().sessions.get(&id).cloned();
                if let Some(actor) = actor {
                    actor.do_send(RemoteEvent { reply_to });
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
                if let Some(Revoked { user_id, staff }) = decode(&msg) {
                    hub.revoke_user(user_id, staff);
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
    pub async fn publish(&self, session: SessionId, frame: &ServerFrame<'_>) {
        // One node: nobody else would read it (our own relay skips it).
        if !self.bus.reaches_other_nodes() {
            return;
        }
        // `ChatEvent`'s shape, borrowing the frame.
        #[derive(Serialize)]
        struct Out<'a> {
            node: &'a str,
            session_id: SessionId,
            frame: &'a ServerFrame<'a>,
        }
        let event = Out {
            node: &self.node_id,
            session_id: session,
            frame,
        };
        if let Err(e) = publish_json(self.bus.as_ref(), EVENTS_TOPIC, &event).await {
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
    pub(crate) fn connect(
        &self,
        user: UserId,
        org: OrgId,
        staff: bool,
        addr: WeakAddr<WsConnection>,
    ) -> u64 {
        let id = self.next_conn.fetch_add(1, Ordering::Relaxed);
        let mut inner = self.inner.lock();
        inner.conns.insert(
            id,
            Conn {
                user,
                org,
                staff,
                session: None,
                addr,
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
        if let Some(session) = conn.session {
            inner.unsubscribe(session, id);
        }
        if conn.staff
            && !inner.conns.values().any(|c| c.staff && c.org == conn.org)
            && let Some(task) = inner.ingest.remove(&conn.org)
        {
            task.abort();
        }
    }

    /// Attaches connection `conn` to `session` (leaving the session it was
    /// attached to): from now on it receives the session's events.
    pub fn subscribe(&self, session: SessionId, conn: u64) {
        let mut inner = self.inner.lock();
        let Some(c) = inner.conns.get_mut(&conn) else {
            return;
        };
        let old = c.session.replace(session);
        if old == Some(session) {
            return;
        }
        if let Some(old) = old {
            inner.unsubscribe(old, conn);
        }
        inner.subscribers.entry(session).or_default().push(conn);
    }

    /// Detaches connection `conn` from `session`, if attached to it.
    pub fn unsubscribe(&self, session: SessionId, conn: u64) {
        let mut inner = self.inner.lock();
        match inner.conns.get_mut(&conn) {
            Some(c) if c.session == Some(session) => c.session = None,
            _ => return,
        }
        inner.unsubscribe(session, conn);
    }

    /// Sends one of `session`'s frames to every connection attached to it
    /// here.
    pub fn push_session(&self, session: SessionId, frame: Arc<str>, seq: Option<i64>) {
        let inner = self.inner.lock();
        for conn in inner.subscribers.get(&session).into_iter().flatten() {
            if let Some(c) = inner.conns.get(conn) {
                c.send(Push {
                    frame: frame.clone(),
                    session: Some(session),
                    seq,
                });
            }
        }
    }

    /// Sends a frame to one connection.
    pub fn push_conn(&self, conn: u64, push: Push) {
        if let Some(c) = self.inner.lock().conns.get(&conn) {
            c.send(push);
        }
    }

    /// Takes one of `user`'s `max` sockets on this node, or `None` when they
    /// are all taken. Counted under the hub's lock with the sockets accepted
    /// but not yet registered, so sockets opened at once cannot all pass the
    /// check before any registers. The slot is given back when dropped: by
    /// the connection once it has registered, or with a failed upgrade.
    pub(crate) fn reserve_socket(&self, user: UserId, max: usize) -> Option<SocketSlot> {
        let mut inner = self.inner.lock();
        let open = inner.conns.values().filter(|c| c.user == user).count()
            + inner.pending.get(&user).copied().unwrap_or(0);
        if open >= max {
            return None;
        }
        *inner.pending.entry(user).or_default() += 1;
        Some(SocketSlot {
            inner: Arc::clone(&self.inner),
            user,
        })
    }

    /// Open connections on this node.
    pub fn connections(&self) -> usize {
        self.inner.lock().conns.len()
    }

    /// Sends a frame to every socket of a user on this node; returns how
    /// many there were.
    pub fn push_to_user(&self, user: UserId, push: Push) -> usize {
        let inner = self.inner.lock();
        let mut sent = 0;
        for c in inner.conns.values().filter(|c| c.user == user) {
            c.send(push.clone());
            sent += 1;
        }
        sent
    }

    /// Ends a user's sockets here: their tokens were revoked (`staff`:
    /// by a role change, to a staff role or not).
    fn revoke_user(&self, user: UserId, staff: Option<bool>) {
        let inner = self.inner.lock();
        for c in inner.conns.values().filter(|c| c.user == user) {
            c.send(Revoke { staff });
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
            let Some(progress) = decode::<IngestProgress>(&msg) else {
                continue;
            };
            let frame = ServerFrame::Ingest(progress).to_text();
            let inner = self.inner.lock();
            for c in inner.conns.values().filter(|c| c.staff && c.org == org) {
                c.send(Push {
                    frame: frame.clone(),
                    session: None,
                    seq: None,
                });
            }
        }
    }
}

impl Inner {
    fn unsubscribe(&mut self, session: SessionId, conn: u64) {
        if let Some(list) = self.subscribers.get_mut(&session) {
            list.retain(|c| *c != conn);
            if list.is_empty() {
                self.subscribers.remove(&session);
            }
        }
    }
}

/// Announces that a user's tokens no longer hold: every node closes that
/// user's sockets with 4401 (or, after a role change that takes away the
/// session a socket is attached to, 4403). `staff`: the new role's, when
/// the revocation is a role change.
pub async fn announce_revoked(bus: &dyn Bus, user: UserId, staff: Option<bool>) {
    let msg = Revoked {
        user_id: user,
        staff,
    };
    if let Err(e) = publish_json(bus, REVOKED_TOPIC, &msg).await {
        tracing::warn!(error = %e, "could not announce a revocation");
    }
}
