//! `GET /v1/chat/ws`: the WebSocket transport and the `WsConnection` actor.
//! The whole transport (`actix-ws`) is in this file.
//!
//! # What it owns
//!
//! One `WsConnection` per socket owns the socket's state: who is connected
//! (authenticated before the upgrade: a bad or missing token is an HTTP 401
//! problem), the session it is attached to, which stored `seq`s it has
//! delivered (so no stored event is delivered twice or skipped, whatever
//! races between replay and
//! live events), the heartbeat clock, and its abuse counters. Only its own
//! handlers mutate them.
//!
//! The socket's frames arrive as a stream of the actor's own (no task of
//! their own): while a handler waits on something (a question being
//! stored), the actor reads no further frames, so a flooding client is
//! slowed to the actor's pace. Outgoing frames go straight into the
//! socket's queue (actix-ws's, bounded); when it is full, into the actor's
//! backlog, drained in order as the socket takes them. A client too slow to
//! read fills the backlog (or stalls a send past the client timeout) and is
//! disconnected instead of growing memory; it can resume. An idle
//! connection is the actor and the socket's own halves: no task, channel or
//! buffer of its own (the backlog allocates only while it holds frames).
//!
//! Close codes: 4401 not authenticated (tokens revoked), 4404 unknown
//! session or persona, 4408 heartbeat timeout, 4429 rate limited, 1008
//! repeated malformed frames, 1009 frame over the hard limit, 1013 too slow.

use std::collections::VecDeque;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use actix::prelude::*;
use actix_web::web::Bytes;
use actix_web::{HttpRequest, HttpResponse, web};
use actix_ws::{CloseCode, CloseReason, Closed, Message as WsMessage, ProtocolError, Session};
use bwenge_actors::ports::{RateDecision, RateLimit};
use bwenge_actors::registry::{Lookup, Touch};
use chrono::Utc;
use serde_json::{Value, json};

use super::hub::{CloseWith, Push};
use super::session::{ChatError, ChatSession, Post, Resumed};
use super::store::{self, SessionRow};
use crate::auth::AuthUser;
use crate::auth::routes::{authenticate, bearer_token};
use crate::error::ApiError;
use crate::ids::{PersonaId, SessionId};
use crate::state::AppState;

/// Frames above this many bytes end the connection (1009); frames between
/// `chat.max_frame_bytes` and this get an `error` frame.
const HARD_FRAME_LIMIT: usize = 1 << 20;
/// Rate-limit refusals before the connection is closed with 4429.
const MAX_STRIKES: u32 = 3;
/// Events per `replay` frame.
const REPLAY_BATCH: i64 = 200;
const MAX_CLIENT_ID: usize = 128;

/// Upgrades an authenticated request to a chat connection.
#[utoipa::path(get, path = "/v1/chat/ws", tag = "chat",
    params(("access_token" = Option<String>, Query, description = "For browsers: the access token, instead of the Authorization header")),
    responses((status = 101, description = "WebSocket: JSON frames as API.md describes (`start`, `resume`, `message`, `ping` → `session`, `ack`, `delta`, `message`, `replay`, `pong`, `error`, `ingest`)"),
        (status = 401, description = "`unauthorized`: missing or invalid token")),
    security(("bearer" = [])))]
pub async fn chat_ws(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let token = bearer_token(&req).ok_or_else(ApiError::unauthorized)?;
    let user = authenticate(&state, &token)
        .await?
        .ok_or_else(ApiError::unauthorized)?;
    let (response, socket, stream) = actix_ws::handle(&req, body)
        .map_err(|_| ApiError::bad_request("This route only speaks WebSocket."))?;
    let stream = stream.max_frame_size(HARD_FRAME_LIMIT);
    WsConnection::create(move |ctx| {
        ctx.add_stream(stream);
        WsConnection {
            id: 0,
            user,
            state,
            socket: Some(socket),
            backlog: VecDeque::new(),
            draining: false,
            session: None,
            delivered: Delivered::default(),
            last_heard: Instant::now(),
            last_touch: Instant::now(),
            bad_frames: 0,
            strikes: 0,
        }
    });
    Ok(response)
}

/// A frame for the socket.
enum Out {
    Text(Arc<str>),
    Ping,
    Pong(Bytes),
}

/// Offers a frame to the socket's queue without waiting: `None` when the
/// queue is full. (The send is polled once; a send that would wait is
/// dropped, which takes nothing from the queue. Unconstrained: the actor's
/// task may have spent its cooperative budget, which must not read as a
/// full queue.)
fn offer(socket: &mut Session, out: &Out) -> Option<Result<(), Closed>> {
    poll_once(send_out(socket, out))
}

/// Polls a send once: its result, or `None` if it would wait.
fn poll_once(f: impl Future<Output = Result<(), Closed>>) -> Option<Result<(), Closed>> {
    let mut f = std::pin::pin!(tokio::task::unconstrained(f));
    match f
        .as_mut()
        .poll(&mut std::task::Context::from_waker(std::task::Waker::noop()))
    {
        Poll::Ready(r) => Some(r),
        Poll::Pending => None,
    }
}

/// Sends a frame, waiting for room in the socket's queue.
async fn send_out(socket: &mut Session, out: &Out) -> Result<(), Closed> {
    match out {
        Out::Text(t) => socket.text(&**t).await,
        Out::Ping => socket.ping(b"").await,
        Out::Pong(b) => socket.pong(b).await,
    }
}

pub(crate) struct WsConnection {
    id: u64,
    user: AuthUser,
    state: web::Data<AppState>,
    /// The socket's sending half; `None` once a close is on its way.
    socket: Option<Session>,
    /// Frames waiting for room in the socket's queue, oldest first.
    backlog: VecDeque<Out>,
    /// A send from the backlog is waiting for room.
    draining: bool,
    session: Option<Joined>,
    /// The stored events delivered on this socket.
    delivered: Delivered,
    last_heard: Instant,
    /// When the session was last marked in use at the registry.
    last_touch: Instant,
    bad_frames: u32,
    strikes: u32,
}

/// The session a connection is attached to.
struct Joined {
    row: SessionRow,
    /// Its actor, once this connection has asked something (or resumed
    /// with a question unanswered); kept in use while attached.
    actor: Option<Addr<ChatSession>>,
}

impl WsConnection {
    /// Queues a frame; a full backlog means the client cannot keep up.
    fn send(&mut self, frame: Arc<str>, ctx: &mut Context<Self>) {
        self.enqueue(Out::Text(frame), ctx);
    }

    fn enqueue(&mut self, out: Out, ctx: &mut Context<Self>) {
        let Some(socket) = self.socket.as_mut() else {
            return;
        };
        if self.backlog.is_empty() && !self.draining {
            match offer(socket, &out) {
                Some(Ok(())) => return,
                Some(Err(Closed)) => return ctx.stop(),
                None => {}
            }
        }
        if self.backlog.len() >= self.state.settings.chat.outbound_queue.max(8) {
            tracing::info!(user_id = %self.user.user_id, "chat client too slow; disconnecting");
            metrics::counter!(crate::metrics::WS_SLOW_DISCONNECTS_TOTAL).increment(1);
            self.backlog.clear();
            return self.close(1013, ctx);
        }
        self.backlog.push_back(out);
        self.drain(ctx);
    }

    /// Sends the backlog's oldest frame once the socket has room, then as
    /// many as fit; repeats while frames wait. A send stalled past the
    /// client timeout (the peer stopped reading) ends the connection.
    fn drain(&mut self, ctx: &mut Context<Self>) {
        if self.draining {
            return;
        }
        let (Some(mut socket), Some(out)) = (self.socket.clone(), self.backlog.pop_front()) else {
            return;
        };
        self.draining = true;
        let timeout = self.send_timeout();
        let sending =
            async move { tokio::time::timeout(timeout, send_out(&mut socket, &out)).await };
        ctx.spawn(sending.into_actor(self).map(|sent, act, ctx| {
            act.draining = false;
            if !matches!(sent, Ok(Ok(()))) {
                tracing::info!(user_id = %act.user.user_id, "chat client stopped reading; disconnecting");
                metrics::counter!(crate::metrics::WS_SLOW_DISCONNECTS_TOTAL).increment(1);
                return ctx.stop();
            }
            while let (Some(socket), Some(out)) = (act.socket.as_mut(), act.backlog.front()) {
                match offer(socket, out) {
                    Some(Ok(())) => {
                        act.backlog.pop_front();
                    }
                    Some(Err(Closed)) => return ctx.stop(),
                    None => break,
                }
            }
            act.drain(ctx);
        }));
    }

    fn send_timeout(&self) -> Duration {
        Duration::from_secs(self.state.settings.chat.client_timeout_secs.max(1))
    }

    fn send_json(&mut self, v: Value, ctx: &mut Context<Self>) {
        self.send(Arc::from(v.to_string()), ctx);
    }

    fn error(&mut self, code: &str, message: &str, ctx: &mut Context<Self>) {
        self.send_json(
            json!({"type": "error", "code": code, "message": message}),
            ctx,
        );
    }

    /// Sends what is queued, then a close frame with `code` (within the
    /// client timeout, in a task of its own), and stops the actor.
    fn close(&mut self, code: u16, ctx: &mut Context<Self>) {
        if let Some(mut socket) = self.socket.take() {
            let backlog = std::mem::take(&mut self.backlog);
            let reason = CloseReason {
                code: CloseCode::Other(code),
                description: None,
            };
            let timeout = self.send_timeout();
            actix_web::rt::spawn(async move {
                let _ = tokio::time::timeout(timeout, async move {
                    for out in backlog {
                        send_out(&mut socket, &out).await?;
                    }
                    socket.close(Some(reason)).await
                })
                .await;
            });
        }
        ctx.stop();
    }

    /// A malformed or unknown frame: an `error` frame, and a close after
    /// too many.
    fn bad_frame(&mut self, code: &str, message: &str, ctx: &mut Context<Self>) {
        self.bad_frames += 1;
        self.error(code, message, ctx);
        if self.bad_frames > self.state.settings.chat.max_bad_frames {
            self.close(1008, ctx);
        }
    }

    fn on_text(&mut self, text: &str, ctx: &mut Context<Self>) {
        if text.len() > self.state.settings.chat.max_frame_bytes {
            return self.bad_frame(
                "frame_too_large",
                &format!(
                    "Frames may be at most {} bytes.",
                    self.state.settings.chat.max_frame_bytes
                ),
                ctx,
            );
        }
        let Ok(frame) = serde_json::from_str::<Value>(text) else {
            return self.bad_frame("bad_frame", "Every frame must be one JSON object.", ctx);
        };
        let Some(kind) = frame.get("type").and_then(Value::as_str) else {
            return self.bad_frame("bad_frame", "Every frame needs a string \"type\".", ctx);
        };
        match kind {
            "ping" => self.send_json(json!({"type": "pong"}), ctx),
            "start" => match frame["persona_id"].as_str().map(str::parse::<PersonaId>) {
                Some(Ok(persona)) => self.start_session(persona, ctx),
                _ => self.bad_frame("bad_frame", "start needs a persona_id (a UUID).", ctx),
            },
            "resume" => {
                let session = frame["session_id"].as_str().map(str::parse::<SessionId>);
                let last_seq = frame.get("last_seq").map_or(Some(0), Value::as_i64);
                match (session, last_seq) {
                    (Some(Ok(s)), Some(n)) if n >= 0 => self.resume(s, n, ctx),
                    _ => self.bad_frame(
                        "bad_frame",
                        "resume needs a session_id (a UUID) and a last_seq (a number ≥ 0).",
                        ctx,
                    ),
                }
            }
            "message" => {
                let client_id = frame["client_id"].as_str().map(str::to_owned);
                let text = frame["text"].as_str().map(str::to_owned);
                match (client_id, text) {
                    (Some(c), Some(t)) if !c.is_empty() && c.len() <= MAX_CLIENT_ID => {
                        self.message(c, t, ctx)
                    }
                    _ => self.bad_frame(
                        "bad_frame",
                        "message needs a client_id (1–128 characters) and a text.",
                        ctx,
                    ),
                }
            }
            other => {
                let msg = format!(
                    "Unknown frame type \"{}\"; expected start, resume, message or ping.",
                    other.chars().take(40).collect::<String>()
                );
                self.bad_frame("unknown_type", &msg, ctx)
            }
        }
    }

    /// What attaching needs, owned, for a future outside the actor.
    fn parts(&self) -> Parts {
        Parts {
            state: self.state.clone(),
            user: self.user,
            conn: self.id,
        }
    }

    fn start_session(&mut self, persona: PersonaId, ctx: &mut Context<Self>) {
        let parts = self.parts();
        let fut = async move {
            let state = &parts.state;
            let user = parts.user;
            crate::personas::store::get(&state.db, user.org_id, persona)
                .await?
                .ok_or(ChatError::NotFound)?;
            let now = Utc::now();
            let row = SessionRow {
                id: SessionId::new(),
                organization_id: user.org_id,
                persona_id: persona,
                user_id: user.user_id,
                last_seq: 0,
                created_at: now,
                updated_at: now,
            };
            store::create_session(&state.db, &row).await?;
            let id = row.id;
            attach_and_replay(parts, Some(row), id, 0, false).await
        };
        ctx.wait(
            fut.into_actor(self)
                .map(|res, act, ctx| act.attached(res, false, ctx)),
        );
    }

    fn resume(&mut self, session: SessionId, last_seq: i64, ctx: &mut Context<Self>) {
        let fut = attach_and_replay(self.parts(), None, session, last_seq, true);
        ctx.wait(
            fut.into_actor(self)
                .map(|res, act, ctx| act.attached(res, true, ctx)),
        );
    }

    fn attached(
        &mut self,
        res: Result<Attached, ChatError>,
        resumed: bool,
        ctx: &mut Context<Self>,
    ) {
        let a = match res {
            Ok(a) => a,
            Err(e) => {
                // Still attached where it was (the failed attempt may have
                // moved it at the hub).
                if let Some(j) = &self.session {
                    self.state.hub.subscribe(j.row.id, self.id);
                }
                self.error(e.code(), e.message(), ctx);
                if e == ChatError::NotFound {
                    self.close(4404, ctx);
                }
                return;
            }
        };
        // The hub has moved this connection to the new session already.
        let current = a.replay.last().map_or(a.row.last_seq.max(a.last_seq), |e| {
            e.seq.max(a.row.last_seq)
        });
        self.send_json(
            json!({"type": "session", "session_id": a.row.id, "persona_id": a.row.persona_id,
                "resumed": resumed, "last_seq": current}),
            ctx,
        );
        self.delivered = Delivered::from(a.last_seq);
        for batch in a.replay.chunks(REPLAY_BATCH as usize) {
            let events: Vec<Value> = batch.iter().map(super::event_json).collect();
            if let Some(last) = batch.last() {
                self.delivered = Delivered::from(last.seq.max(self.delivered.floor));
            }
            self.send_json(json!({"type": "replay", "events": events}), ctx);
        }
        self.session = Some(Joined {
            row: a.row,
            actor: a.actor,
        });
        self.last_touch = Instant::now();
    }

    fn message(&mut self, client_id: String, text: String, ctx: &mut Context<Self>) {
        let Some(joined) = &self.session else {
            return self.error("no_session", "Send start or resume before a message.", ctx);
        };
        let row = joined.row.clone();
        let actor = joined.actor.clone();
        let text = match crate::personas::check_question(
            &text,
            self.state.settings.personas.max_question_chars,
        ) {
            Ok(t) => t,
            Err(e) => return self.error("validation_failed", &e.detail, ctx),
        };
        let state = self.state.clone();
        let user = self.user;
        let conn = self.id;
        let session = row.id;
        // Error frames name the question they are about.
        let asked = client_id.clone();
        let fut = async move {
            let c = &state.settings.chat;
            let decision = state
                .limiter
                .check(
                    &format!("ws:{}", user.user_id),
                    RateLimit {
                        capacity: c.messages_burst,
                        refill_per_sec: c.messages_per_sec,
                    },
                    1,
                )
                .await;
            if let Ok(RateDecision::Limited { retry_after }) = decision {
                return Err(Refused::Limited(retry_after));
            }
            let post = Post {
                conn,
                user,
                row,
                client_id,
                text,
            };
            // The session's actor: the one this connection used, unless it
            // has stopped since (idle), else the registry's.
            let (actor, sent) = match actor {
                Some(a) if a.connected() => {
                    let sent = a.send(post).await;
                    (a, sent)
                }
                _ => {
                    let a = session_actor(&state, session)
                        .await
                        .map_err(Refused::Chat)?;
                    let sent = a.send(post).await;
                    (a, sent)
                }
            };
            let seq = sent
                .map_err(|e| Refused::Chat(ChatError::Internal(e.to_string())))?
                .map_err(Refused::Chat)?;
            Ok((actor, seq))
        };
        ctx.wait(fut.into_actor(self).map(move |res, act, ctx| match res {
            // The session sent the ack (see `Post`); this connection keeps
            // its actor in use while attached.
            Ok((actor, _)) => {
                if let Some(j) = act.session.as_mut().filter(|j| j.row.id == session)
                    && j.actor.is_none()
                {
                    j.actor = Some(actor);
                    act.last_touch = Instant::now();
                }
            }
            Err(Refused::Limited(after)) => {
                act.strikes += 1;
                act.send_json(
                    json!({"type": "error", "code": "rate_limited",
                        "message": "Too many messages; slow down.",
                        "retry_after_ms": after.as_millis() as u64, "client_id": asked}),
                    ctx,
                );
                if act.strikes >= MAX_STRIKES {
                    act.close(4429, ctx);
                }
            }
            Err(Refused::Chat(e)) => {
                act.send_json(
                    json!({"type": "error", "code": e.code(), "message": e.message(),
                        "client_id": asked}),
                    ctx,
                );
            }
        }));
    }
}

struct Parts {
    state: web::Data<AppState>,
    user: AuthUser,
    conn: u64,
}

/// The session's actor on this node (started if need be).
async fn session_actor(state: &AppState, id: SessionId) -> Result<Addr<ChatSession>, ChatError> {
    state
        .chat
        .send(Lookup::new(id))
        .await
        .map_err(|e| ChatError::Internal(e.to_string()))
}

/// Checks the user may see the session (`row` when just created), attaches
/// the connection to it at the hub, then reads what to replay: attaching
/// first means an event stored meanwhile arrives live (and is dropped by
/// [`Delivered`] if the replay also had it), never lost between the two.
/// On a resume that finds questions unanswered, the session's actor is
/// started to answer them.
async fn attach_and_replay(
    p: Parts,
    row: Option<SessionRow>,
    id: SessionId,
    last_seq: i64,
    resumed: bool,
) -> Result<Attached, ChatError> {
    let state = &p.state;
    let row = match row {
        Some(row) => row,
        None => store::session(&state.db, p.user.org_id, id)
            .await?
            .ok_or(ChatError::NotFound)?,
    };
    if row.user_id != p.user.user_id && !p.user.role.is_staff() {
        return Err(ChatError::NotFound);
    }
    state.hub.subscribe(id, p.conn);
    let read = async {
        let mut replay = Vec::new();
        let mut actor = None;
        if resumed {
            let mut after = last_seq;
            loop {
                let batch =
                    store::events_after(&state.db, p.user.org_id, id, after, REPLAY_BATCH).await?;
                let done = (batch.len() as i64) < REPLAY_BATCH;
                if let Some(l) = batch.last() {
                    after = l.seq;
                }
                replay.extend(batch);
                if done {
                    break;
                }
            }
            // A question stored but never answered (its node died) is
            // answered now, unless another node is on it.
            if !store::unanswered(&state.db, p.user.org_id, id)
                .await?
                .is_empty()
            {
                let a = session_actor(state, id).await?;
                a.do_send(Resumed { row: row.clone() });
                actor = Some(a);
            }
        }
        Ok::<_, ChatError>((replay, actor))
    };
    match read.await {
        Ok((replay, actor)) => Ok(Attached {
            actor,
            row,
            replay,
            last_seq,
        }),
        Err(e) => {
            state.hub.unsubscribe(id, p.conn);
            Err(e)
        }
    }
}

/// Which stored events a socket has delivered: every `seq` up to `floor`,
/// and those above it in `above` (events can arrive out of order: an answer
/// stored after a question may overtake the question's echo).
#[derive(Debug, Default)]
pub(crate) struct Delivered {
    floor: i64,
    above: std::collections::BTreeSet<i64>,
}

impl From<i64> for Delivered {
    fn from(floor: i64) -> Self {
        Self {
            floor,
            above: Default::default(),
        }
    }
}

impl Delivered {
    /// Records `seq`; false when it was delivered already.
    pub(crate) fn first_time(&mut self, seq: i64) -> bool {
        // In order, the usual case: no set (which, once used, keeps a node).
        if seq == self.floor + 1 && self.above.is_empty() {
            self.floor = seq;
            return true;
        }
        if seq <= self.floor || !self.above.insert(seq) {
            return false;
        }
        while self.above.remove(&(self.floor + 1)) {
            self.floor += 1;
        }
        true
    }
}

enum Refused {
    Limited(Duration),
    Chat(ChatError),
}

struct Attached {
    actor: Option<Addr<ChatSession>>,
    row: SessionRow,
    replay: Vec<store::EventRow>,
    last_seq: i64,
}

impl Actor for WsConnection {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.id = self.state.hub.connect(
            self.user.user_id,
            self.user.org_id,
            self.user.role,
            ctx.address().downgrade(),
        );
        metrics::gauge!(crate::metrics::WS_CONNECTIONS).increment(1.0);
        let every = Duration::from_secs(self.state.settings.chat.heartbeat_interval_secs.max(1));
        heartbeat::join(ctx.address().downgrade(), every);
    }

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        self.state.hub.disconnect(self.id);
        if let Some(socket) = self.socket.take() {
            // Answers the client's close, or ends a connection dropped as
            // too slow: a close frame if the queue has room.
            let _ = poll_once(socket.close(None));
        }
        metrics::gauge!(crate::metrics::WS_CONNECTIONS).decrement(1.0);
    }
}

impl Handler<heartbeat::Beat> for WsConnection {
    type Result = ();

    /// Pings the client, or closes a connection silent past the timeout;
    /// keeps a session actor this connection uses from being swept as idle.
    fn handle(&mut self, _: heartbeat::Beat, ctx: &mut Self::Context) {
        let settings = &self.state.settings;
        let timeout = Duration::from_secs(settings.chat.client_timeout_secs.max(1));
        let touch_every = Duration::from_secs(settings.registry.idle_timeout_secs) / 4;
        if self.last_heard.elapsed() > timeout {
            tracing::debug!(user_id = %self.user.user_id, "chat client silent; closing");
            return self.close(4408, ctx);
        }
        self.enqueue(Out::Ping, ctx);
        // A few touches per idle timeout are enough; ten thousand sockets
        // touching at every heartbeat would keep the registry's thread
        // busy for nothing.
        if let Some(Joined {
            row,
            actor: Some(_),
        }) = &self.session
            && self.last_touch.elapsed() >= touch_every
        {
            self.state.chat.do_send(Touch(row.id));
            self.last_touch = Instant::now();
        }
    }
}

/// The heartbeat of a worker thread's sockets: one timer per thread (and
/// interval) instead of one per socket, which would cost each idle socket
/// a timer entry and its boxed future. Sockets wait in a queue in the
/// order they are due (one interval after connecting, then every
/// interval): each tick, every fiftieth of an interval, beats those due and
/// puts them back at the end, so the pings stay spread over the interval as
/// the sockets' own timers spread them, at most a tick late. A socket that
/// has gone is dropped when it comes due.
mod heartbeat {
    use std::cell::RefCell;
    use std::collections::{HashMap, VecDeque};
    use std::time::{Duration, Instant};

    use actix::{Message, WeakAddr};

    use super::WsConnection;

    /// Time to ping (or to close a silent client).
    #[derive(Message)]
    #[rtype(result = "()")]
    pub(super) struct Beat;

    const TICKS_PER_INTERVAL: u32 = 50;

    /// Sockets in the order they are due, with when.
    type Queue = VecDeque<(Instant, WeakAddr<WsConnection>)>;

    thread_local! {
        /// Per interval, this thread's queue, while its task runs.
        static QUEUES: RefCell<HashMap<Duration, Queue>> = RefCell::default();
    }

    /// Beats the socket every `every`, from this thread, while it lives.
    pub(super) fn join(addr: WeakAddr<WsConnection>, every: Duration) {
        let start = QUEUES.with(|q| {
            let mut q = q.borrow_mut();
            let start = !q.contains_key(&every);
            // Due times only grow along the queue: each socket goes back
            // one interval after its last due time, a new one one interval
            // from now.
            q.entry(every)
                .or_default()
                .push_back((Instant::now() + every, addr));
            start
        });
        if start {
            actix::spawn(beat(every));
        }
    }

    /// Runs while this thread has sockets beaten every `every`.
    async fn beat(every: Duration) {
        // When the task ends (no sockets left, or the runtime dropping it
        // with its sockets: a test's server stopping), the next socket
        // starts a new one.
        struct Forget(Duration);
        impl Drop for Forget {
            fn drop(&mut self) {
                let _ = QUEUES.try_with(|q| q.borrow_mut().remove(&self.0));
            }
        }
        let _forget = Forget(every);
        let mut tick = tokio::time::interval(every / TICKS_PER_INTERVAL);
        loop {
            tick.tick().await;
            let now = Instant::now();
            let mut due = Vec::new();
            let empty = QUEUES.with(|q| {
                let mut q = q.borrow_mut();
                let Some(queue) = q.get_mut(&every) else {
                    return true;
                };
                while queue.front().is_some_and(|(at, _)| *at <= now) {
                    if let Some((at, weak)) = queue.pop_front()
                        && let Some(addr) = weak.upgrade()
                    {
                        queue.push_back((at + every, weak));
                        due.push(addr);
                    }
                }
                queue.is_empty()
            });
            for addr in due {
                addr.do_send(Beat);
            }
            if empty {
                return;
            }
        }
    }
}

impl StreamHandler<Result<WsMessage, ProtocolError>> for WsConnection {
    fn handle(&mut self, frame: Result<WsMessage, ProtocolError>, ctx: &mut Self::Context) {
        self.last_heard = Instant::now();
        match frame {
            Ok(WsMessage::Text(t)) => self.on_text(&t, ctx),
            Ok(WsMessage::Binary(_) | WsMessage::Continuation(_)) => {
                self.bad_frame("bad_frame", "Frames must be JSON text.", ctx)
            }
            Ok(WsMessage::Ping(b)) => self.enqueue(Out::Pong(b), ctx),
            Ok(WsMessage::Pong(_) | WsMessage::Nop) => {}
            Ok(WsMessage::Close(_)) => ctx.stop(),
            Err(ProtocolError::Overflow) => self.close(1009, ctx),
            Err(_) => ctx.stop(),
        }
    }

    /// The client went away.
    fn finished(&mut self, ctx: &mut Self::Context) {
        ctx.stop();
    }
}

impl Handler<Push> for WsConnection {
    type Result = ();

    fn handle(&mut self, msg: Push, ctx: &mut Self::Context) {
        let current = self.session.as_ref().map(|j| j.row.id);
        if msg.session.is_some() && msg.session != current {
            // A frame of a session this connection has left.
            return;
        }
        if let Some(seq) = msg.seq
            && !self.delivered.first_time(seq)
        {
            return;
        }
        self.send(msg.frame, ctx);
    }
}

impl Handler<CloseWith> for WsConnection {
    type Result = ();

    fn handle(&mut self, msg: CloseWith, ctx: &mut Self::Context) {
        self.close(msg.0, ctx);
    }
}

#[cfg(test)]
mod tests {
    use super::Delivered;

    #[test]
    fn an_overtaken_event_is_still_delivered_once() {
        let mut d = Delivered::from(2);
        assert!(!d.first_time(2), "replayed already");
        assert!(d.first_time(4), "an answer overtaking its question");
        assert!(d.first_time(3), "the question's echo arrives late");
        assert!(!d.first_time(3) && !d.first_time(4));
        assert_eq!(d.floor, 4);
        assert!(d.above.is_empty());
    }
}
