//! The live classroom's service: what chat reports ([`Observed`], through
//! the adapter of chat's activity port) becomes frames published on the
//! organisation's bus topic (`classroom.<org>`), and each node relays its
//! organisations' topics to the teachers watching here ([`Watch`]).
//!
//! # Publishing
//!
//! [`ClassroomService::observe`] never waits: it queues (bounded; a full
//! queue drops the event and counts it in
//! `bwenge_classroom_events_dropped_total`, chat goes on). One task per node
//! takes the queue in order, so one node's frames reach the bus in the
//! order chat reported them (a question before its answer). It adds the
//! student's name (cached), keeps the node's part of the presence map, and
//! publishes.
//!
//! # Presence
//!
//! Online students live in the shared [`Presence`] map (in memory on one
//! node, a Redis hash across nodes), one entry per node, student and
//! session: `presence` frames go out when a student's first socket on this
//! node attaches to a session and when the last one leaves it. The node
//! puts its entries again every [`ClassroomConfig::presence_refresh`]; the
//! entries of a node that dies expire after
//! [`ClassroomConfig::presence_ttl`].
//!
//! # Watching
//!
//! A watcher first follows the organisation's topic (one bus subscription
//! per organisation watched on this node, shared by its watchers and
//! dropped with the last), then reads the snapshot: presence map and the
//! latest stored questions. Whatever happens in between arrives live (a
//! question the snapshot had already is skipped by the watcher), so
//! nothing falls between the two.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bwenge_actors::ports::Bus;
use chrono::{DateTime, Utc};
use parking_lot::Mutex;
use tokio::sync::{broadcast, mpsc, watch};
use tokio::task::AbortHandle;
use tokio::time::Instant;

use super::error::ClassroomError;
use super::frames::{
    AnswerFrame, ClassroomFrame, FlagFrame, Live, OnlineStudent, PresenceFrame, QuestionFrame,
};
use crate::db::StoreError;
use crate::ids::{OrgId, PersonaId, SessionId, UserId};
use crate::infra::bus::messages::Revoked;
use crate::infra::bus::{decode, publish_json};
use crate::infra::presence::Presence;

/// The bus topic of an organisation's live classroom.
pub fn topic(org: OrgId) -> String {
    format!("classroom.{org}")
}

/// The bus topic announcing revoked tokens (chat's, shared).
pub const REVOKED_TOPIC: &str = "auth.revoked";

/// Refusal reasons that make a `flag`.
pub const FLAG_REASONS: &[&str] = &[
    "self_harm",
    "sexual",
    "weapons",
    "drugs",
    "hate",
    "blocked_topic",
];

/// What the classroom needs of other domains: names, personas, the
/// stored questions.
#[async_trait]
pub trait Directory: Send + Sync + 'static {
    async fn full_name(&self, org: OrgId, user: UserId) -> Result<Option<String>, StoreError>;
    async fn persona_exists(&self, org: OrgId, persona: PersonaId) -> Result<bool, StoreError>;
    /// The organisation's latest `n` questions (of one persona, if given),
    /// newest first.
    async fn recent_questions(
        &self,
        org: OrgId,
        persona: Option<PersonaId>,
        n: usize,
    ) -> Result<Vec<QuestionFrame>, StoreError>;
}

/// What chat reported, as the classroom takes it.
#[derive(Debug, Clone, PartialEq)]
pub enum Observed {
    /// A student's connection (`conn`, this node's number) attached to a
    /// session.
    Joined {
        conn: u64,
        org: OrgId,
        user: UserId,
        session: SessionId,
        persona: PersonaId,
        at: DateTime<Utc>,
    },
    /// It left the session.
    Left {
        conn: u64,
        org: OrgId,
        user: UserId,
        session: SessionId,
        persona: PersonaId,
    },
    Asked {
        org: OrgId,
        user: UserId,
        session: SessionId,
        persona: PersonaId,
        seq: i64,
        text: String,
        at: DateTime<Utc>,
    },
    Answered {
        org: OrgId,
        user: UserId,
        session: SessionId,
        persona: PersonaId,
        reply_to: i64,
        seq: i64,
        grounded: bool,
        citations: u32,
        first_token_ms: u64,
        total_ms: u64,
        refusal: Option<String>,
        /// The question's text (for a `flag`).
        question: String,
        at: DateTime<Utc>,
    },
}

#[derive(Debug, Clone)]
pub struct ClassroomConfig {
    /// Questions in a snapshot's `recent`.
    pub recent: usize,
    pub presence_ttl: Duration,
    pub presence_refresh: Duration,
    /// Events waiting to be published before new ones are dropped.
    pub queue: usize,
    /// How often watchers are pinged; silent past `client_timeout`, closed.
    pub heartbeat: Duration,
    pub client_timeout: Duration,
    /// How long a send to a watcher may wait for room before it is dropped
    /// as too slow.
    pub send_timeout: Duration,
    /// Frames a watcher may fall behind the organisation's stream before
    /// it is disconnected (it reconnects to a fresh snapshot).
    pub watcher_buffer: usize,
}

impl ClassroomConfig {
    pub fn from_settings(s: &crate::config::Settings) -> Self {
        let heartbeat = Duration::from_secs(s.chat.heartbeat_interval_secs.max(1));
        let client_timeout = Duration::from_secs(s.chat.client_timeout_secs.max(1));
        let c = &s.classroom;
        let presence_ttl = Duration::from_secs(c.presence_ttl_secs.max(3));
        Self {
            recent: c.snapshot_questions,
            presence_ttl,
            presence_refresh: presence_ttl / 3,
            queue: c.queue.max(1),
            heartbeat,
            client_timeout,
            send_timeout: client_timeout,
            watcher_buffer: c.watcher_buffer.max(1),
        }
    }
}

/// The classroom service; cheap to clone.
#[derive(Clone)]
pub struct ClassroomService {
    inner: Arc<Inner>,
}

struct Inner {
    bus: Arc<dyn Bus>,
    presence: Arc<dyn Presence>,
    directory: Arc<dyn Directory>,
    config: ClassroomConfig,
    node_id: String,
    queue: mpsc::Sender<Observed>,
    relays: Mutex<HashMap<OrgId, Relay>>,
    next_relay: std::sync::atomic::AtomicU64,
    revoked: broadcast::Sender<UserId>,
}

/// One organisation's topic, relayed to this node's watchers.
struct Relay {
    id: u64,
    tx: broadcast::Sender<Arc<Live>>,
    /// `Some(true)` once subscribed, `Some(false)` if that failed.
    ready: watch::Receiver<Option<bool>>,
    task: AbortHandle,
}

/// A watcher's view of its organisation's stream; leaving drops it.
pub struct Watch {
    rx: broadcast::Receiver<Arc<Live>>,
    revoked: broadcast::Receiver<UserId>,
    org: OrgId,
    relay: u64,
    inner: Arc<Inner>,
}

/// What a watcher hears next.
pub enum Heard {
    Frame(Arc<Live>),
    /// The watcher fell too far behind, or the stream ended: it must
    /// reconnect (to a fresh snapshot).
    Lost,
    /// A user's tokens were revoked.
    Revoked(UserId),
}

impl Watch {
    /// What is already waiting, without waiting: a revocation first, then
    /// the next frame; `None` when nothing is.
    pub fn try_next(&mut self) -> Option<Heard> {
        use broadcast::error::TryRecvError;
        match self.revoked.try_recv() {
            Ok(u) => return Some(Heard::Revoked(u)),
            Err(TryRecvError::Empty) => {}
            Err(TryRecvError::Lagged(_) | TryRecvError::Closed) => return Some(Heard::Lost),
        }
        match self.rx.try_recv() {
            Ok(f) => Some(Heard::Frame(f)),
            Err(TryRecvError::Empty) => None,
            Err(TryRecvError::Lagged(_) | TryRecvError::Closed) => Some(Heard::Lost),
        }
    }

    pub async fn next(&mut self) -> Heard {
        tokio::select! {
            f = self.rx.recv() => match f {
                Ok(f) => Heard::Frame(f),
                Err(_) => Heard::Lost,
            },
            r = self.revoked.recv() => match r {
                Ok(u) => Heard::Revoked(u),
                Err(broadcast::error::RecvError::Lagged(_)) => Heard::Lost,
                Err(broadcast::error::RecvError::Closed) => Heard::Lost,
            },
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let mut relays = self.inner.relays.lock();
        // This watch's receiver still counts: it was the last one.
        if let Some(r) = relays.get(&self.org)
            && r.id == self.relay
            && r.tx.receiver_count() <= 1
        {
            r.task.abort();
            relays.remove(&self.org);
        }
    }
}

/// This node's part of the presence map, per (organisation, student,
/// session).
#[derive(Default)]
struct Local {
    entries: HashMap<(OrgId, UserId, SessionId), LocalEntry>,
    names: HashMap<UserId, (String, Instant)>,
}

struct LocalEntry {
    conns: Vec<u64>,
    student: OnlineStudent,
}

/// How long a looked-up name is used before it is read again.
const NAME_TTL: Duration = Duration::from_secs(600);
/// Names kept; past this the cache starts over.
const MAX_NAMES: usize = 50_000;

impl ClassroomService {
    pub fn new(
        bus: Arc<dyn Bus>,
        presence: Arc<dyn Presence>,
        directory: Arc<dyn Directory>,
        config: ClassroomConfig,
        node_id: String,
    ) -> (Self, mpsc::Receiver<Observed>) {
        let (queue, rx) = mpsc::channel(config.queue.max(1));
        let service = Self {
            inner: Arc::new(Inner {
                bus,
                presence,
                directory,
                config,
                node_id,
                queue,
                relays: Mutex::default(),
                next_relay: std::sync::atomic::AtomicU64::new(1),
                revoked: broadcast::channel(256).0,
            }),
        };
        (service, rx)
    }

    /// Builds the service and starts its publisher and its relay of
    /// revocations; call once, inside a runtime.
    pub async fn start(
        bus: Arc<dyn Bus>,
        presence: Arc<dyn Presence>,
        directory: Arc<dyn Directory>,
        config: ClassroomConfig,
        node_id: String,
    ) -> Result<Self, ClassroomError> {
        let (service, rx) = Self::new(bus, presence, directory, config, node_id);
        let mut revocations = service
            .inner
            .bus
            .subscribe(REVOKED_TOPIC)
            .await
            .map_err(|e| ClassroomError::Unavailable(e.to_string()))?;
        let tx = service.inner.revoked.clone();
        tokio::spawn(async move {
            while let Some(msg) = revocations.recv().await {
                // A role change to another staff role keeps the watcher.
                if let Some(Revoked { user_id, staff }) = decode(&msg)
                    && staff != Some(true)
                {
                    let _ = tx.send(user_id);
                }
            }
        });
        tokio::spawn(service.clone().publish_loop(rx));
        Ok(service)
    }

    pub fn config(&self) -> &ClassroomConfig {
        &self.inner.config
    }

    pub fn node_id(&self) -> &str {
        &self.inner.node_id
    }

    /// Organisations this node follows for its watchers.
    pub fn watched_orgs(&self) -> usize {
        self.inner.relays.lock().len()
    }

    /// Takes what chat reported; never waits (a full queue drops it).
    pub fn observe(&self, o: Observed) {
        if self.inner.queue.try_send(o).is_err() {
            metrics::counter!(crate::metrics::CLASSROOM_EVENTS_DROPPED_TOTAL).increment(1);
        }
    }

    /// Whether `persona` is one of the organisation's.
    pub async fn persona_exists(
        &self,
        org: OrgId,
        persona: PersonaId,
    ) -> Result<bool, ClassroomError> {
        Ok(self.inner.directory.persona_exists(org, persona).await?)
    }

    /// Starts following the organisation's stream (before reading its
    /// snapshot).
    pub async fn watch(&self, org: OrgId) -> Result<Watch, ClassroomError> {
        let (id, rx, mut ready) = {
            let mut relays = self.inner.relays.lock();
            let r = relays.entry(org).or_insert_with(|| self.relay(org));
            (r.id, r.tx.subscribe(), r.ready.clone())
        };
        let watch = Watch {
            rx,
            revoked: self.inner.revoked.subscribe(),
            org,
            relay: id,
            inner: Arc::clone(&self.inner),
        };
        let subscribed = ready
            .wait_for(Option::is_some)
            .await
            .map(|r| *r == Some(true))
            .unwrap_or(false);
        if !subscribed {
            return Err(ClassroomError::Unavailable(
                "could not follow the organisation's classroom".into(),
            ));
        }
        Ok(watch)
    }

    /// A new relay of the organisation's topic (called under the lock).
    fn relay(&self, org: OrgId) -> Relay {
        let id = self
            .inner
            .next_relay
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (tx, _) = broadcast::channel(self.inner.config.watcher_buffer.max(16));
        let (set_ready, ready) = watch::channel(None);
        let inner = Arc::clone(&self.inner);
        let out = tx.clone();
        let task = tokio::spawn(async move {
            let mut sub = match inner.bus.subscribe(&topic(org)).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "could not follow a classroom");
                    let _ = set_ready.send(Some(false));
                    forget_relay(&inner, org, id);
                    return;
                }
            };
            let _ = set_ready.send(Some(true));
            while let Some(msg) = sub.recv().await {
                if let Some(live) = Live::decode(&msg.payload) {
                    let _ = out.send(Arc::new(live));
                }
            }
            // The subscription ended (Redis went away): watchers hear
            // `Lost` once the last sender is gone, and reconnect.
            tracing::info!(%org, "a classroom's bus subscription ended");
            forget_relay(&inner, org, id);
        });
        Relay {
            id,
            tx,
            ready,
            task: task.abort_handle(),
        }
    }

    /// Who is online now (for `persona`, if given), earliest first; one
    /// entry per student and session.
    pub async fn online(
        &self,
        org: OrgId,
        persona: Option<PersonaId>,
    ) -> Result<Vec<OnlineStudent>, ClassroomError> {
        let values = self
            .inner
            .presence
            .list(&org.to_string())
            .await
            .map_err(|e| ClassroomError::Unavailable(e.to_string()))?;
        let mut by_session: HashMap<(UserId, SessionId), OnlineStudent> = HashMap::new();
        for v in values {
            let Ok(s) = serde_json::from_slice::<OnlineStudent>(&v) else {
                continue;
            };
            if persona.is_some_and(|p| p != s.persona_id) {
                continue;
            }
            by_session
                .entry((s.user_id, s.session_id))
                .and_modify(|e| {
                    if s.since < e.since {
                        e.since = s.since;
                    }
                })
                .or_insert(s);
        }
        let mut online: Vec<_> = by_session.into_values().collect();
        online.sort_by_key(|a| (a.since, a.user_id.0));
        Ok(online)
    }

    /// The latest questions (for `persona`, if given), oldest first.
    pub async fn recent(
        &self,
        org: OrgId,
        persona: Option<PersonaId>,
    ) -> Result<Vec<QuestionFrame>, ClassroomError> {
        let mut q = self
            .inner
            .directory
            .recent_questions(org, persona, self.inner.config.recent)
            .await?;
        q.reverse();
        Ok(q)
    }

    /// The `snapshot` frame.
    pub async fn snapshot(
        &self,
        org: OrgId,
        persona: Option<PersonaId>,
    ) -> Result<ClassroomFrame, ClassroomError> {
        let (online, recent) =
            tokio::try_join!(self.online(org, persona), self.recent(org, persona))?;
        Ok(ClassroomFrame::Snapshot { online, recent })
    }

    /// Publishes what chat reports, in order; refreshes this node's
    /// presence entries. Runs while the service lives.
    async fn publish_loop(self, mut rx: mpsc::Receiver<Observed>) {
        let mut local = Local::default();
        let mut refresh = tokio::time::interval(self.inner.config.presence_refresh);
        refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                o = rx.recv() => match o {
                    Some(o) => self.handle(&mut local, o).await,
                    None => return,
                },
                _ = refresh.tick() => self.refresh(&local).await,
            }
        }
    }

    async fn refresh(&self, local: &Local) {
        if local.entries.is_empty() {
            return;
        }
        let entries: Vec<_> = local
            .entries
            .iter()
            .map(|(k, e)| self.presence_entry(k, &e.student))
            .collect();
        if let Err(e) = self
            .inner
            .presence
            .put(&entries, self.inner.config.presence_ttl)
            .await
        {
            tracing::warn!(error = %e, "could not refresh classroom presence");
        }
    }

    /// The presence map's entry of a student's session on this node.
    fn presence_entry(
        &self,
        (org, user, session): &(OrgId, UserId, SessionId),
        s: &OnlineStudent,
    ) -> crate::infra::presence::Entry {
        (
            org.to_string(),
            format!("{}:{user}:{session}", self.inner.node_id),
            serde_json::to_vec(s).unwrap_or_default(),
        )
    }

    async fn name(&self, local: &mut Local, org: OrgId, user: UserId) -> String {
        let now = Instant::now();
        if let Some((name, at)) = local.names.get(&user)
            && now.saturating_duration_since(*at) < NAME_TTL
        {
            return name.clone();
        }
        match self.inner.directory.full_name(org, user).await {
            Ok(Some(name)) => {
                if local.names.len() >= MAX_NAMES {
                    local.names.clear();
                }
                local.names.insert(user, (name.clone(), now));
                name
            }
            Ok(None) => String::new(),
            Err(e) => {
                tracing::warn!(error = %e, "could not read a student's name");
                local
                    .names
                    .get(&user)
                    .map(|(n, _)| n.clone())
                    .unwrap_or_default()
            }
        }
    }

    async fn handle(&self, local: &mut Local, o: Observed) {
        let (org, frames) = match o {
            Observed::Joined {
                conn,
                org,
                user,
                session,
                persona,
                at,
            } => {
                let key = (org, user, session);
                if let Some(e) = local.entries.get_mut(&key) {
                    e.conns.push(conn);
                    return;
                }
                let full_name = self.name(local, org, user).await;
                let student = OnlineStudent {
                    user_id: user,
                    full_name: full_name.clone(),
                    session_id: session,
                    persona_id: persona,
                    since: at,
                };
                let entry = self.presence_entry(&key, &student);
                if let Err(e) = self
                    .inner
                    .presence
                    .put(&[entry], self.inner.config.presence_ttl)
                    .await
                {
                    tracing::warn!(error = %e, "could not record classroom presence");
                }
                local.entries.insert(
                    key,
                    LocalEntry {
                        conns: vec![conn],
                        student,
                    },
                );
                let frame = ClassroomFrame::Presence(PresenceFrame {
                    user_id: user,
                    full_name,
                    session_id: session,
                    persona_id: persona,
                    online: true,
                    at,
                });
                (org, vec![frame])
            }
            Observed::Left {
                conn,
                org,
                user,
                session,
                persona,
            } => {
                let key = (org, user, session);
                let Some(e) = local.entries.get_mut(&key) else {
                    return;
                };
                e.conns.retain(|c| *c != conn);
                if !e.conns.is_empty() {
                    return;
                }
                let Some(e) = local.entries.remove(&key) else {
                    return;
                };
                let (_, member, _) = self.presence_entry(&key, &e.student);
                if let Err(e) = self.inner.presence.remove(&org.to_string(), &member).await {
                    tracing::warn!(error = %e, "could not record classroom presence");
                }
                let frame = ClassroomFrame::Presence(PresenceFrame {
                    user_id: user,
                    full_name: e.student.full_name,
                    session_id: session,
                    persona_id: persona,
                    online: false,
                    at: Utc::now(),
                });
                (org, vec![frame])
            }
            Observed::Asked {
                org,
                user,
                session,
                persona,
                seq,
                text,
                at,
            } => {
                let full_name = self.name(local, org, user).await;
                let frame = ClassroomFrame::Question(QuestionFrame {
                    at,
                    user_id: user,
                    full_name,
                    session_id: session,
                    seq,
                    persona_id: persona,
                    text,
                });
                (org, vec![frame])
            }
            Observed::Answered {
                org,
                user,
                session,
                persona,
                reply_to,
                seq,
                grounded,
                citations,
                first_token_ms,
                total_ms,
                refusal,
                question,
                at,
            } => {
                let flag = match refusal.as_deref() {
                    Some(reason) if FLAG_REASONS.contains(&reason) => Some(reason.to_owned()),
                    _ => None,
                };
                let mut frames = vec![ClassroomFrame::Answer(AnswerFrame {
                    at,
                    session_id: session,
                    reply_to,
                    seq,
                    user_id: user,
                    persona_id: persona,
                    grounded,
                    citations,
                    first_token_ms,
                    total_ms,
                    refusal,
                })];
                if let Some(reason) = flag {
                    let full_name = self.name(local, org, user).await;
                    frames.push(ClassroomFrame::Flag(FlagFrame {
                        at,
                        user_id: user,
                        full_name,
                        persona_id: persona,
                        session_id: session,
                        seq: reply_to,
                        reason,
                        text: question,
                    }));
                }
                (org, frames)
            }
        };
        let topic = topic(org);
        for frame in frames {
            if let Err(e) = publish_json(self.inner.bus.as_ref(), &topic, &frame).await {
                metrics::counter!(crate::metrics::CLASSROOM_EVENTS_DROPPED_TOTAL).increment(1);
                tracing::warn!(error = %e, "could not publish a classroom frame");
            }
        }
    }
}

fn forget_relay(inner: &Inner, org: OrgId, id: u64) {
    let mut relays = inner.relays.lock();
    if relays.get(&org).is_some_and(|r| r.id == id) {
        relays.remove(&org);
    }
}
