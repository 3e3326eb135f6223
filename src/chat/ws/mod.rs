//! `GET /v1/chat/ws`: the `WsConnection` actor, one per socket. Its jobs
//! live in their own files: the WebSocket library ([`transport`], the only
//! file that knows it), frame decoding ([`super::frames`]), delivery
//! tracking ([`delivered`]) and the heartbeat ([`heartbeat`]). What a
//! connection asks of chat goes through the [`ChatService`].
//!
//! # What it owns
//!
//! One `WsConnection` per socket owns the socket's state: who is connected
//! (authenticated at the upgrade: a bad or missing token upgrades and
//! closes at once with 4401, which a browser can read), the session it is attached to, which stored `seq`s it has
//! delivered, the heartbeat clock, and its abuse counters. Only its own
//! handlers mutate them. It logs within a span carrying `user_id` and the
//! attached `session_id`.
//!
//! The socket's frames arrive as a stream of the actor's own (no task of
//! their own): while a handler waits on something (a question being
//! stored), the actor reads no further frames, so a flooding client is
//! slowed to the actor's pace. Outgoing frames go straight into the
//! socket's queue (the transport's, bounded); when it is full, into the
//! actor's backlog, drained in order as the socket takes them. A client too
//! slow to read fills the backlog (or stalls a send past the client
//! timeout) and is disconnected instead of growing memory; it can resume.
//! An idle connection is the actor and the socket's own halves: no task,
//! channel or buffer of its own (the backlog allocates only while it holds
//! frames).
//!
//! The socket lives on its access token: it closes with 4401 within one
//! heartbeat of the token's expiry unless the client sent a fresh one
//! (`{"type":"auth","access_token":…}`, answered `authenticated`), and it
//! checks every `chat.auth_check_secs` that its user's tokens still hold
//! (a revocation whose broadcast was lost still ends it).
//!
//! Close codes: 4401 not authenticated (no valid token, tokens revoked,
//! token expired),
//! 4403 forbidden (a role change took away the attached session), 4404 unknown
//! session or persona, 4408 heartbeat timeout, 4429 rate limited, 1008
//! repeated malformed frames, 1009 frame over the hard limit, 1013 too slow.

mod delivered;
mod heartbeat;
mod transport;

use std::borrow::Cow;
use std::collections::VecDeque;
use std::sync::Arc;

use actix::prelude::*;
use actix_web::{HttpRequest, HttpResponse, web};
use tokio::time::Instant;
use tracing::Instrument;

use super::activity::{Activity, SessionRef};
use super::error::{BadFrame, ChatError};
use super::frames::{self, ClientFrame, ServerFrame, Tagged};
use super::hub::{CloseWith, Push, Revoke, SocketSlot};
use super::service::{Attached, ChatService, ChatUser, REPLAY_BATCH};
use super::session::ChatSession;
use super::store::SessionRow;
use crate::auth::AuthService;
use crate::auth::routes::bearer_token;
use crate::error::ApiError;
use crate::ids::{PersonaId, SessionId};
use crate::state::AppState;
pub(crate) use delivered::Delivered;
use transport::{Closed, Incoming, Out, Socket};

/// Rate-limit refusals before the connection is closed with 4429.
const MAX_STRIKES: u32 = 3;

/// Upgrades an authenticated request to a chat connection.
#[utoipa::path(get, path = "/v1/chat/ws", tag = "chat",
    params(("access_token" = Option<String>, Query, description = "For browsers: the access token, instead of the Authorization header")),
    responses((status = 101, description = "WebSocket: JSON frames as API.md describes (`start`, `resume`, `message`, `ping`, `auth` → `session`, `ack`, `queued`, `delta`, `message`, `replay`, `pong`, `error`, `ingest`, `authenticated`); an answer's `message` also carries `refusal` (`safety`, `blocked_topic`, `off_subject`, `not_covered`) when the question was declined. \
`resume`'s `last_seq` is clamped to the session (below 0: from the start; beyond its end: its end). \
`{\"type\":\"auth\",\"access_token\":\"…\"}` gives the socket a fresh access token in place (answered `{\"type\":\"authenticated\",\"expires_at\":\"…\"}`); \
a socket closes with 4401 within one heartbeat of its token's expiry unless one came, and every `chat.auth_check_secs` it checks that its user's tokens still hold. \
A question that must wait for its turn to be answered (more are being answered on the node than `chat.answer_concurrency`) is told its place after its `ack`: `{\"type\":\"queued\",\"reply_to\":SEQ,\"position\":N}` (1: next); when `chat.answer_queue` questions already wait, a new one is refused before it is stored with an `error` frame `overloaded` carrying its `client_id` and `retry_after_ms`: send it again later with the same `client_id`. \
`start` frames (`chat.starts_burst`, `chat.starts_per_sec`) and questions (`chat.messages_*`, shared with `POST /v1/personas/{id}/ask`) are rate limited per user (`error` frame `rate_limited`, then 4429). \
Close codes: 4401 not authenticated (no valid token at the upgrade, tokens revoked, token expired, a bad `auth` frame), \
4403 forbidden (a role change took away the session the socket follows, or an `auth` frame of another user), 4404 unknown session or persona, 4408 heartbeat timeout, \
4429 rate limited or over `chat.max_sockets_per_user` open sockets, 1008 repeated malformed frames, 1009 frame too large, 1013 too slow to read"),
        (status = 401, description = "`unauthorized`: missing or invalid token on a request that is no WebSocket handshake (a handshake without a valid token is upgraded and closed at once with 4401)")),
    security(("bearer" = [])))]
pub async fn chat_ws(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let linger = state.chat.config().client_timeout();
    // Without a valid token the socket is opened and closed at once with
    // 4401: a browser sees the close code, never a refused upgrade's status.
    let token = bearer_token(&req).unwrap_or_default();
    let found = if token.is_empty() {
        None
    } else {
        state.auth.authenticate_until(&token).await?
    };
    let Some((user, expires_at)) = found else {
        return transport::refuse(&req, body, 4401, "not authenticated", linger)
            .ok_or_else(ApiError::unauthorized);
    };
    let auth = SocketAuth {
        service: state.auth.clone(),
        token,
        expires_at,
        checked: Instant::now(),
        checking: false,
    };
    let user: ChatUser = user.into();
    let chat = state.chat.clone();
    let Some(slot) = chat
        .hub()
        .reserve_socket(user.user_id, chat.config().chat.max_sockets_per_user)
    else {
        return transport::refuse(&req, body, 4429, "too many sockets", linger)
            .ok_or_else(|| ApiError::bad_request("This route only speaks WebSocket."));
    };
    transport::upgrade(&req, body, move |socket| {
        WsConnection::new(user, chat, socket, auth, slot)
    })
    .ok_or_else(|| ApiError::bad_request("This route only speaks WebSocket."))
}

pub(crate) struct WsConnection {
    id: u64,
    /// The user's socket slot, held until the connection has registered.
    slot: Option<SocketSlot>,
    user: ChatUser,
    chat: ChatService,
    /// The socket's sending half; `None` once a close is on its way.
    socket: Option<Socket>,
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
    /// `user_id`, and `session_id` once attached.
    span: tracing::Span,
    /// The access token the socket lives on.
    auth: SocketAuth,
}

/// The access token a socket lives on: until it expires (an `auth` frame
/// brings a fresh one), and while its user's tokens hold (checked every
/// `chat.auth_check_secs`, in case a revocation's broadcast was lost).
struct SocketAuth {
    service: AuthService,
    token: String,
    expires_at: chrono::DateTime<chrono::Utc>,
    /// When the token was last checked against the user's current state.
    checked: Instant,
    /// A check is running.
    checking: bool,
}

/// The session a connection is attached to.
struct Joined {
    row: SessionRow,
    /// Its actor, once this connection has asked something (or resumed
    /// with a question unanswered); kept in use while attached.
    actor: Option<Addr<ChatSession>>,
}

impl WsConnection {
    fn new(
        user: ChatUser,
        chat: ChatService,
        socket: Socket,
        auth: SocketAuth,
        slot: SocketSlot,
    ) -> Self {
        let now = Instant::now();
        Self {
            slot: Some(slot),
            id: 0,
            span: tracing::info_span!("chat_ws", user_id = %user.user_id,
                session_id = tracing::field::Empty),
            user,
            chat,
            socket: Some(socket),
            backlog: VecDeque::new(),
            draining: false,
            session: None,
            delivered: Delivered::default(),
            last_heard: now,
            last_touch: now,
            bad_frames: 0,
            strikes: 0,
            auth,
        }
    }

    /// Whether a role change (to staff or not: `staff`) takes away what
    /// this socket is attached to: someone else's session, which only
    /// staff may follow.
    fn forbidden_after(&self, staff: bool) -> bool {
        !staff
            && self
                .session
                .as_ref()
                .is_some_and(|j| j.row.user_id != self.user.user_id)
    }

    /// Checks the socket's token against its user's current state: a
    /// revoked token closes with 4401, a role that no longer allows the
    /// attached session with 4403.
    fn recheck(&mut self, ctx: &mut Context<Self>) {
        self.auth.checking = true;
        let (service, token) = (self.auth.service.clone(), self.auth.token.clone());
        let fut = async move { service.authenticate(&token).await };
        ctx.spawn(fut.into_actor(self).map(|res, act, ctx| {
            act.auth.checking = false;
            act.auth.checked = Instant::now();
            match res {
                Ok(None) => act.close(4401, ctx),
                Ok(Some(u)) if u.role.is_staff() != act.user.staff => {
                    let code = if act.forbidden_after(u.role.is_staff()) { 4403 } else { 4401 };
                    act.close(code, ctx)
                }
                Ok(Some(_)) => {}
                Err(e) => {
                    tracing::warn!(parent: &act.span, error = %e, "could not check a socket's token");
                }
            }
        }));
    }

    /// `{"type":"auth","access_token":…}`: a fresh token for this socket.
    /// One of the same user keeps the socket open until it expires; an
    /// invalid one closes it with 4401, another user's with 4403.
    fn reauthenticate(&mut self, token: String, ctx: &mut Context<Self>) {
        let service = self.auth.service.clone();
        let checked = token.clone();
        let fut = async move { service.authenticate_until(&checked).await };
        ctx.wait(fut.into_actor(self).map(move |res, act, ctx| match res {
            Ok(Some((u, expires_at)))
                if u.user_id == act.user.user_id && u.org_id == act.user.org_id =>
            {
                if u.role.is_staff() != act.user.staff {
                    // The role changed since the socket opened: what it
                    // may follow changed too; the client reconnects.
                    let code = if act.forbidden_after(u.role.is_staff()) {
                        4403
                    } else {
                        4401
                    };
                    return act.close(code, ctx);
                }
                act.auth.token = token;
                act.auth.expires_at = expires_at;
                act.auth.checked = Instant::now();
                act.send_frame(&ServerFrame::Authenticated { expires_at }, ctx);
            }
            Ok(Some(_)) => act.close(4403, ctx),
            Ok(None) => act.close(4401, ctx),
            Err(e) => {
                tracing::error!(parent: &act.span, error = ?e, "could not check an auth frame");
                let frame = ServerFrame::Error {
                    client_id: None,
                    code: Cow::Borrowed("service_unavailable"),
                    message: Cow::Borrowed("The token could not be checked; send it again."),
                    reply_to: None,
                    retry_after_ms: Some(1000),
                };
                act.send_frame(&frame, ctx);
            }
        }));
    }

    /// Queues a frame; a full backlog means the client cannot keep up.
    fn send(&mut self, frame: Arc<str>, ctx: &mut Context<Self>) {
        self.enqueue(Out::Text(frame), ctx);
    }

    fn send_frame(&mut self, frame: &ServerFrame<'_>, ctx: &mut Context<Self>) {
        self.send(frame.to_text(), ctx);
    }

    fn enqueue(&mut self, out: Out, ctx: &mut Context<Self>) {
        let Some(socket) = self.socket.as_mut() else {
            return;
        };
        if self.backlog.is_empty() && !self.draining {
            match socket.offer(&out) {
                Some(Ok(())) => return,
                Some(Err(Closed)) => return ctx.stop(),
                None => {}
            }
        }
        if self.backlog.len() >= self.chat.config().chat.outbound_queue.max(8) {
            tracing::info!(parent: &self.span, "chat client too slow; disconnecting");
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
        let timeout = self.chat.config().client_timeout();
        let sending = async move { tokio::time::timeout(timeout, socket.send(&out)).await };
        ctx.spawn(sending.into_actor(self).map(|sent, act, ctx| {
            act.draining = false;
            if !matches!(sent, Ok(Ok(()))) {
                tracing::info!(parent: &act.span, "chat client stopped reading; disconnecting");
                metrics::counter!(crate::metrics::WS_SLOW_DISCONNECTS_TOTAL).increment(1);
                return ctx.stop();
            }
            while let (Some(socket), Some(out)) = (act.socket.as_mut(), act.backlog.front()) {
                match socket.offer(out) {
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

    /// An `error` frame for a refusal (about the question `client_id`).
    fn refuse(&mut self, e: &ChatError, client_id: Option<&str>, ctx: &mut Context<Self>) {
        if let ChatError::Store(_) | ChatError::Internal(_) = e {
            tracing::error!(parent: &self.span, error = ?e, "chat request failed");
        }
        let frame = ServerFrame::error_about(e, client_id.map(Cow::Borrowed), None);
        self.send_frame(&frame, ctx);
    }

    /// Sends what is queued, then a close frame with `code` (within the
    /// client timeout, in a task of its own), and stops the actor.
    fn close(&mut self, code: u16, ctx: &mut Context<Self>) {
        if let Some(mut socket) = self.socket.take() {
            let backlog = std::mem::take(&mut self.backlog);
            let timeout = self.chat.config().client_timeout();
            actix_web::rt::spawn(async move {
                let _ = tokio::time::timeout(timeout, async move {
                    for out in backlog {
                        socket.send(&out).await?;
                    }
                    socket.close(code).await
                })
                .await;
            });
        }
        ctx.stop();
    }

    /// A malformed or unknown frame: an `error` frame, and a close after
    /// too many.
    fn bad_frame(&mut self, bad: BadFrame, ctx: &mut Context<Self>) {
        self.bad_frames += 1;
        self.refuse(&ChatError::InvalidFrame(bad), None, ctx);
        if self.bad_frames > self.chat.config().chat.max_bad_frames {
            self.close(1008, ctx);
        }
    }

    /// What arrived on the socket.
    fn on_incoming(&mut self, incoming: Incoming<'_>, ctx: &mut Context<Self>) {
        self.last_heard = Instant::now();
        match incoming {
            Incoming::Text(t) => self.on_text(t, ctx),
            Incoming::NotText => self.bad_frame(BadFrame::NotText, ctx),
            Incoming::Ping(b) => self.enqueue(Out::Pong(b), ctx),
            Incoming::Alive => {}
            Incoming::Close | Incoming::Broken => ctx.stop(),
            Incoming::TooLarge => self.close(1009, ctx),
        }
    }

    fn on_text(&mut self, text: &str, ctx: &mut Context<Self>) {
        match frames::decode(text, self.chat.config().chat.max_frame_bytes) {
            Ok(ClientFrame::Ping) => self.send(Arc::from(frames::PONG), ctx),
            Ok(ClientFrame::Start { persona_id }) => self.start_session(persona_id, ctx),
            Ok(ClientFrame::Resume {
                session_id,
                last_seq,
            }) => self.resume(session_id, last_seq, ctx),
            Ok(ClientFrame::Message { client_id, text }) => self.message(client_id, text, ctx),
            Ok(ClientFrame::Auth { access_token }) => self.reauthenticate(access_token, ctx),
            Err(bad) => self.bad_frame(bad, ctx),
        }
    }

    fn start_session(&mut self, persona: PersonaId, ctx: &mut Context<Self>) {
        let chat = self.chat.clone();
        let (user, conn) = (self.user, self.id);
        let fut = async move {
            chat.check_start_rate(user).await?;
            let row = chat.start_session(user, persona).await?;
            let id = row.id;
            chat.attach(user, conn, Some(row), id, 0, false).await
        }
        .instrument(self.span.clone());
        ctx.wait(fut.into_actor(self).map(|res, act, ctx| {
            // Too many new sessions: refused like too many questions.
            let limited = matches!(res, Err(ChatError::RateLimited { .. }));
            act.attached(res, false, ctx);
            if limited {
                act.strikes += 1;
                if act.strikes >= MAX_STRIKES {
                    act.close(4429, ctx);
                }
            }
        }));
    }

    fn resume(&mut self, session: SessionId, last_seq: i64, ctx: &mut Context<Self>) {
        let chat = self.chat.clone();
        let (user, conn) = (self.user, self.id);
        let fut = async move { chat.attach(user, conn, None, session, last_seq, true).await }
            .instrument(self.span.clone());
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
                    self.chat.hub().subscribe(j.row.id, self.id);
                }
                self.refuse(&e, None, ctx);
                if let ChatError::SessionNotFound | ChatError::PersonaNotFound = e {
                    self.close(4404, ctx);
                }
                return;
            }
        };
        // The hub has moved this connection to the new session already.
        self.span
            .record("session_id", tracing::field::display(a.row.id));
        self.send_frame(
            &ServerFrame::Session {
                last_seq: a.current_seq(),
                persona_id: a.row.persona_id,
                resumed,
                session_id: a.row.id,
            },
            ctx,
        );
        let before = self.session.as_ref().map(|j| SessionRef::of(&j.row));
        let now = SessionRef::of(&a.row);
        if before != Some(now) {
            self.left_session();
            self.chat.record(Activity::Attached {
                conn: self.id,
                user: self.user,
                session: now,
                resumed,
                at: chrono::Utc::now(),
            });
        }
        self.delivered = Delivered::from(a.last_seq);
        for batch in a.replay.chunks(REPLAY_BATCH as usize) {
            let events = batch
                .iter()
                .map(|e| Tagged::Message(super::event_frame(e)))
                .collect();
            if let Some(last) = batch.last() {
                self.delivered = Delivered::from(last.seq.max(self.delivered.floor()));
            }
            self.send_frame(&ServerFrame::Replay { events }, ctx);
        }
        self.session = Some(Joined {
            row: a.row,
            actor: a.actor,
        });
        self.last_touch = Instant::now();
    }

    /// Reports that this connection leaves the session it is attached to
    /// (if any).
    fn left_session(&self) {
        if let Some(j) = &self.session {
            self.chat.record(Activity::Detached {
                conn: self.id,
                user: self.user,
                session: SessionRef::of(&j.row),
            });
        }
    }

    fn message(&mut self, client_id: String, text: String, ctx: &mut Context<Self>) {
        let Some(joined) = &self.session else {
            return self.refuse(&ChatError::NoSession, None, ctx);
        };
        let row = joined.row.clone();
        let actor = joined.actor.clone();
        let text = match self.chat.check_question(&text) {
            Ok(t) => t,
            Err(e) => return self.refuse(&e, None, ctx),
        };
        let chat = self.chat.clone();
        let (user, conn) = (self.user, self.id);
        let session = row.id;
        // Error frames name the question they are about.
        let asked = client_id.clone();
        let fut = async move { chat.ask(user, conn, row, actor, client_id, text).await }
            .instrument(self.span.clone());
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
            Err(e) => {
                let limited = matches!(e, ChatError::RateLimited { .. });
                act.refuse(&e, Some(&asked), ctx);
                if limited {
                    act.strikes += 1;
                    if act.strikes >= MAX_STRIKES {
                        act.close(4429, ctx);
                    }
                }
            }
        }));
    }
}

impl Actor for WsConnection {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.id = self.chat.hub().connect(
            self.user.user_id,
            self.user.org_id,
            self.user.staff,
            ctx.address().downgrade(),
        );
        // Registered: the hub counts the connection itself from now on.
        self.slot = None;
        metrics::gauge!(crate::metrics::WS_CONNECTIONS).increment(1.0);
        heartbeat::join(
            ctx.address().downgrade(),
            self.chat.config().heartbeat_interval(),
        );
    }

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        self.left_session();
        self.chat.hub().disconnect(self.id);
        if let Some(socket) = self.socket.take() {
            // Answers the client's close, or ends a connection dropped as
            // too slow: a close frame if the queue has room.
            socket.close_now();
        }
        metrics::gauge!(crate::metrics::WS_CONNECTIONS).decrement(1.0);
    }
}

impl Handler<heartbeat::Beat> for WsConnection {
    type Result = ();

    /// Pings the client, or closes a connection silent past the timeout;
    /// keeps a session actor this connection uses from being swept as idle.
    fn handle(&mut self, _: heartbeat::Beat, ctx: &mut Self::Context) {
        let (timeout, touch_every) = {
            let c = self.chat.config();
            (c.client_timeout(), c.idle_timeout / 4)
        };
        let now = Instant::now();
        if heartbeat::silent_too_long(self.last_heard, now, timeout) {
            tracing::debug!(parent: &self.span, "chat client silent; closing");
            return self.close(4408, ctx);
        }
        // The access token has expired (no `auth` frame brought a fresh
        // one): the socket ends within one heartbeat of it.
        if self.auth.service.clock().now() >= self.auth.expires_at {
            tracing::debug!(parent: &self.span, "chat socket's token expired; closing");
            return self.close(4401, ctx);
        }
        let every = std::time::Duration::from_secs(self.chat.config().chat.auth_check_secs.max(1));
        if !self.auth.checking && now.saturating_duration_since(self.auth.checked) >= every {
            self.recheck(ctx);
        }
        self.enqueue(Out::Ping, ctx);
        // A few touches per idle timeout are enough; ten thousand sockets
        // touching at every heartbeat would keep the registry's thread
        // busy for nothing.
        if let Some(Joined {
            row,
            actor: Some(_),
        }) = &self.session
            && now.saturating_duration_since(self.last_touch) >= touch_every
        {
            self.chat.touch(row.id);
            self.last_touch = now;
        }
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

impl Handler<Revoke> for WsConnection {
    type Result = ();

    /// Tokens revoked: 4401, the client signs in (or refreshes) again and
    /// resumes. After a role change that leaves staff, a socket attached to
    /// someone else's session (which only staff may follow) gets 4403: it
    /// may not resume there.
    fn handle(&mut self, msg: Revoke, ctx: &mut Self::Context) {
        let forbidden = msg.staff.is_some_and(|staff| self.forbidden_after(staff));
        self.close(if forbidden { 4403 } else { 4401 }, ctx);
    }
}
