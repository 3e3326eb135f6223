//! The chat-session actor: one per live session on this node, owned by the
//! session registry (`Registry<SessionId, ChatSession>`).
//!
//! # What it owns
//!
//! Which questions this node is answering, and when another node last
//! showed activity on a question. The connections attached to the session
//! are the hub's ([`ChatHub::subscribe`]): a session has an actor here only
//! while it takes questions or answers them (started by the first question
//! a connection sends, or by a resume that finds one unanswered), and the
//! actor sends its events through the hub. The session's *sequence* lives in the
//! database ([`super::store::append`] allocates `seq` atomically), so two
//! nodes, or a node and the HTTP `ask` route, never hand out one `seq`
//! twice; the actor only orders what happens on this node.
//!
//! A question is stored before it is acknowledged; a repeated `client_id`
//! gets its original `seq` and is never answered twice (the unique index on
//! `(session, reply_to)` holds across nodes). The answer's pieces go to
//! every subscriber here and to the other nodes on the bus; the finished
//! answer is stored, then sent. A question found unanswered when a client
//! attaches (the node that took it died) is answered after a short grace
//! in which no other node showed activity on it.
//!
//! Only this actor's handlers mutate its state. Written in the `bwenge`
//! crate rather than `bwenge-actors` because it drives the chat service's
//! store and [`Tutor`](super::tutor::Tutor) directly; its messages are in
//! this file for the same reason. It logs within a span carrying its
//! `session_id` (and, for a question, the asker's `user_id`), and the
//! answering work on the pool ([`crate::work`]) runs in the asking span.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use bwenge_actors::registry::Shutdown;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::Instrument;

use super::activity::{Activity, SessionRef};
use super::admission::Ticket;
use super::error::ChatError;
use super::frames::{EventFrame, EventRole, ServerFrame};
use super::hub::{Push, RemoteEvent};
use super::service::{ChatCore, ChatUser, payload_of, turn};
use super::store::{self, Appended, NewEvent, SessionRow};
use super::tutor::{Asked, Piece};
use crate::ids::SessionId;

/// Text pieces already waiting are merged into one `delta` frame up to
/// this many bytes.
const MAX_COALESCED_DELTA: usize = 2048;

/// A connection resumed the session and found questions without their
/// answer: they are answered after a grace in which no other node showed
/// activity on them.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Resumed {
    pub row: SessionRow,
}

/// A question (sent by `WsConnection` through the service): stored, then
/// acknowledged to the asking connection (an `ack` frame in its event
/// queue); answered with the `seq`.
#[derive(Message)]
#[rtype(result = "Result<i64, ChatError>")]
pub struct Post {
    pub conn: u64,
    pub user: ChatUser,
    /// The session, as the connection read it when it attached.
    pub row: SessionRow,
    pub client_id: String,
    pub text: String,
    /// The asking connection's span: the question is stored and answered
    /// within it.
    pub span: tracing::Span,
}

/// This node finished (or gave up) answering `reply_to`.
#[derive(Message)]
#[rtype(result = "()")]
struct Answered {
    reply_to: i64,
}

/// Answer questions left unanswered, if nobody else did meanwhile.
#[derive(Message)]
#[rtype(result = "()")]
struct Recover;

/// Sends a frame to every subscriber (from this actor's own futures).
#[derive(Message)]
#[rtype(result = "()")]
struct Broadcast {
    frame: ServerFrame<'static>,
    publish: bool,
}

/// Whether a question found unanswered should be answered here now: not
/// while another node showed activity on it within the grace.
pub(crate) fn orphaned(last_remote: Option<Instant>, now: Instant, grace: Duration) -> bool {
    last_remote.is_none_or(|t| now.saturating_duration_since(t) >= grace)
}

pub struct ChatSession {
    id: SessionId,
    core: Arc<ChatCore>,
    row: Option<SessionRow>,
    answering: HashSet<i64>,
    /// Last time another node showed activity on a question (its answer's
    /// deltas or the answer itself).
    remote_activity: HashMap<i64, Instant>,
    span: tracing::Span,
}

impl ChatSession {
    pub fn new(id: SessionId, core: Arc<ChatCore>) -> Self {
        Self {
            id,
            core,
            row: None,
            answering: HashSet::new(),
            remote_activity: HashMap::new(),
            span: tracing::info_span!("chat_session", session_id = %id),
        }
    }

    fn grace(&self) -> Duration {
        self.core.config.orphan_grace()
    }

    /// Sends a frame to the connections attached here.
    /// Sends a frame to one connection, in order with the session's events.
    fn send_to(&self, conn: u64, frame: &ServerFrame<'_>) {
        self.core.hub.push_conn(
            conn,
            Push {
                frame: frame.to_text(),
                session: Some(self.id),
                seq: None,
            },
        );
    }

    fn send_all(&self, frame: &ServerFrame<'_>) {
        self.core
            .hub
            .push_session(self.id, frame.to_text(), frame.seq());
    }

    /// Sends a frame here and (when another node may listen) to the other
    /// nodes.
    fn broadcast(&self, frame: ServerFrame<'static>) {
        self.send_all(&frame);
        if self.core.hub.shares_events() {
            let hub = self.core.hub.clone();
            let id = self.id;
            actix::spawn(async move { hub.publish(id, &frame).await });
        }
    }

    /// Starts answering `q` (stored question) on this node, within `span`,
    /// when `ticket`'s turn comes.
    fn answer(
        &mut self,
        q: store::EventRow,
        span: tracing::Span,
        ticket: Ticket,
        ctx: &mut Context<Self>,
    ) {
        if !self.answering.insert(q.seq) {
            return;
        }
        let Some(row) = self.row.clone() else {
            return;
        };
        let me = ctx.address();
        let core = Arc::clone(&self.core);
        let reply_to = q.seq;
        // On the answering pool: the session's own thread only orders
        // what happens here. The work runs in the asking span.
        let _asking = span.enter();
        crate::work::spawn(async move {
            if let Err(e) = answer_question(&core, &row, &q, me.clone(), ticket).await {
                tracing::warn!(reply_to, error = %e, "answer failed");
                me.do_send(Broadcast {
                    frame: ServerFrame::error_about(&e, None, Some(reply_to)),
                    publish: false,
                });
            }
            me.do_send(Answered { reply_to });
        });
    }
}

/// Asks the tutor about a stored question; stores and broadcasts the
/// answer.
async fn answer_question(
    core: &ChatCore,
    row: &SessionRow,
    q: &store::EventRow,
    me: Addr<ChatSession>,
    ticket: Ticket,
) -> Result<(), ChatError> {
    let n = (core.config.history_turns as i64).max(0);
    // A session's first event has nothing before it: no read.
    let history = if q.seq <= 1 || n == 0 {
        Vec::new()
    } else {
        store::recent_events(&core.db, row.organization_id, row.id, n + 1)
            .await?
            .into_iter()
            .filter(|e| e.seq < q.seq)
            .map(turn)
            .collect()
    };
    // The turn covers the tutor's work (retrieval, the model), not the
    // reads and writes around it, which wait on the database, not a core.
    // Latencies count the wait for the turn: the student waited too.
    let started = std::time::Instant::now();
    let turn = ticket.turn().await;
    let (tx, mut rx) = mpsc::channel::<Piece>(64);
    let reply_to = q.seq;
    let forward = {
        let me = me.clone();
        tokio::spawn(
            async move {
                let mut first_piece = None;
                while let Some(first) = rx.recv().await {
                    first_piece.get_or_insert_with(std::time::Instant::now);
                    // Pieces that are already waiting go out as one frame: a
                    // model that produces its answer at once (the extractive
                    // responder) costs one frame, not one per word group,
                    // while a model streaming at its own pace still streams.
                    let mut pending = Some(first);
                    while let Some(d) = pending.take() {
                        let frame = match d {
                            Piece::Text(mut text) => {
                                while text.len() < MAX_COALESCED_DELTA {
                                    match rx.try_recv() {
                                        Ok(Piece::Text(more)) => text.push_str(&more),
                                        Ok(other) => {
                                            pending = Some(other);
                                            break;
                                        }
                                        Err(_) => break,
                                    }
                                }
                                ServerFrame::Delta {
                                    reply_to,
                                    reset: false,
                                    text: Cow::Owned(text),
                                }
                            }
                            Piece::Restart => ServerFrame::Delta {
                                reply_to,
                                reset: true,
                                text: Cow::Borrowed(""),
                            },
                        };
                        me.do_send(Broadcast {
                            frame,
                            publish: true,
                        });
                    }
                }
                first_piece
            }
            .in_current_span(),
        )
    };
    let answer = core
        .tutor
        .ask(Asked {
            org: row.organization_id,
            user: row.user_id,
            persona: row.persona_id,
            text: q.text.clone(),
            history,
            pieces: Some(tx),
        })
        .await;
    drop(turn);
    let first_piece = forward.await.ok().flatten();
    let answer = answer?;
    let payload = payload_of(&answer.extras);
    let stored = store::append(
        &core.db,
        row.organization_id,
        row.id,
        &NewEvent {
            role: EventRole::Assistant,
            client_id: None,
            reply_to: Some(reply_to),
            text: &answer.text,
            payload: &payload,
            at: chrono::Utc::now(),
        },
    )
    .await?;
    if let Some(Appended::New(seq)) = stored {
        let ms = |t: std::time::Instant| {
            u64::try_from(t.saturating_duration_since(started).as_millis()).unwrap_or(u64::MAX)
        };
        let total_ms = ms(std::time::Instant::now());
        core.activity.record(Activity::Answered {
            session: SessionRef::of(row),
            reply_to,
            seq,
            grounded: answer.extras.grounded.unwrap_or(false),
            citations: answer
                .extras
                .citations
                .as_ref()
                .and_then(|c| c.as_array())
                .map_or(0, Vec::len),
            refusal: answer.extras.refusal.clone(),
            provider: answer
                .extras
                .provider
                .as_ref()
                .and_then(|p| p.as_str())
                .map(str::to_owned),
            first_token_ms: first_piece.map_or(total_ms, ms),
            total_ms,
            question: q.text.clone(),
            at: chrono::Utc::now(),
        });
        me.do_send(Broadcast {
            frame: ServerFrame::Message(EventFrame {
                extras: Cow::Owned(answer.extras),
                client_id: None,
                created_at: None,
                reply_to: Some(reply_to),
                role: EventRole::Assistant,
                seq,
                text: Cow::Owned(answer.text),
            }),
            publish: true,
        });
    }
    Ok(())
}

impl Actor for ChatSession {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.core
            .hub
            .session_started(self.id, ctx.address().recipient());
    }

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        self.core.hub.session_stopped(self.id);
    }
}

impl Handler<Shutdown> for ChatSession {
    type Result = ();

    fn handle(&mut self, _: Shutdown, ctx: &mut Self::Context) {
        // Answers in flight finish in their own tasks and are stored; only
        // idle sessions are swept, so this rarely interrupts anything.
        ctx.stop();
    }
}

impl Handler<Resumed> for ChatSession {
    type Result = ();

    fn handle(&mut self, msg: Resumed, ctx: &mut Self::Context) {
        self.row.get_or_insert(msg.row);
        let grace = self.grace();
        ctx.run_later(grace, |_, ctx| ctx.notify(Recover));
    }
}

impl Handler<Post> for ChatSession {
    type Result = ResponseActFuture<Self, Result<i64, ChatError>>;

    fn handle(&mut self, msg: Post, _ctx: &mut Self::Context) -> Self::Result {
        // A place in the answering line before anything is stored: a full
        // line refuses the question, which the client may send again.
        let ticket = match self.core.admission.admit() {
            Ok(t) => t,
            Err(full) => return Box::pin(actix::fut::ready(Err(full.into()))),
        };
        let db = self.core.db.clone();
        let id = self.id;
        let row = self.row.get_or_insert(msg.row);
        let owner = (row.id == id).then_some(row.user_id);
        let conn = msg.conn;
        let span = msg.span;
        let stored_span = span.clone();
        Box::pin(
            async move {
                if owner != Some(msg.user.user_id) {
                    return Err(ChatError::NotSessionOwner);
                }
                let at = chrono::Utc::now();
                let stored = store::append(
                    &db,
                    msg.user.org_id,
                    id,
                    &NewEvent {
                        role: EventRole::User,
                        client_id: Some(&msg.client_id),
                        reply_to: None,
                        text: &msg.text,
                        payload: "{}",
                        at,
                    },
                )
                .await?
                .ok_or(ChatError::SessionNotFound)?;
                let seq = stored.seq();
                let (q, answered) = match stored {
                    // Just stored: the event is what was sent, no re-read.
                    Appended::New(_) => (
                        store::EventRow {
                            session_id: id,
                            seq,
                            organization_id: msg.user.org_id,
                            role: EventRole::User,
                            client_id: Some(msg.client_id),
                            reply_to: None,
                            text: msg.text,
                            payload: "{}".to_owned(),
                            created_at: at,
                        },
                        false,
                    ),
                    // A repeat: the question as first stored, and whether
                    // it has its answer.
                    Appended::Existing(_) => {
                        let q = store::events_after(&db, msg.user.org_id, id, seq - 1, 1)
                            .await?
                            .into_iter()
                            .next()
                            .ok_or(ChatError::SessionNotFound)?;
                        let answered = !store::unanswered(&db, msg.user.org_id, id)
                            .await?
                            .iter()
                            .any(|e| e.seq == seq);
                        (q, answered)
                    }
                };
                Ok((stored, q, answered))
            }
            .instrument(stored_span)
            .into_actor(self)
            .map(move |res, act, ctx| {
                let (stored, q, answered) = res?;
                let seq = stored.seq();
                // The ack goes through the same queue as the session's
                // events, so it always precedes the question's echo and
                // its answer on the asking connection.
                let ack = ServerFrame::Ack {
                    client_id: Cow::Borrowed(q.client_id.as_deref().unwrap_or_default()),
                    seq,
                };
                act.send_to(conn, &ack);
                if let Appended::New(_) = stored {
                    if let Some(row) = &act.row {
                        act.core.activity.record(Activity::Asked {
                            session: SessionRef::of(row),
                            seq,
                            text: q.text.clone(),
                            at: q.created_at,
                        });
                    }
                    let echo = ServerFrame::Message(super::event_frame(&q));
                    act.send_all(&echo);
                    if act.core.hub.shares_events() {
                        act.broadcast_remote(echo.into_owned());
                    }
                }
                // New, or a repeat of a question nobody answered: answer it
                // (once: `answering` and the unique reply index see to it).
                if !answered && !act.answering.contains(&seq) {
                    if ticket.position() > 0 {
                        let queued = ServerFrame::Queued {
                            reply_to: seq,
                            position: ticket.position(),
                        };
                        act.send_to(conn, &queued);
                    }
                    act.answer(q, span, ticket, ctx);
                }
                Ok(seq)
            }),
        )
    }
}

impl ChatSession {
    /// Publishes a frame already sent here for the other nodes.
    fn broadcast_remote(&self, frame: ServerFrame<'static>) {
        let hub = self.core.hub.clone();
        let id = self.id;
        actix::spawn(async move { hub.publish(id, &frame).await });
    }
}

impl Handler<Broadcast> for ChatSession {
    type Result = ();

    fn handle(&mut self, msg: Broadcast, _ctx: &mut Self::Context) {
        if msg.publish {
            self.broadcast(msg.frame);
        } else {
            self.send_all(&msg.frame);
        }
    }
}

impl Handler<RemoteEvent> for ChatSession {
    type Result = ();

    /// The hub has sent it to the connections; here it only shows that
    /// another node is on a question.
    fn handle(&mut self, msg: RemoteEvent, _ctx: &mut Self::Context) {
        self.remote_activity.insert(msg.reply_to, Instant::now());
    }
}

impl Handler<Answered> for ChatSession {
    type Result = ();

    fn handle(&mut self, msg: Answered, _ctx: &mut Self::Context) {
        self.answering.remove(&msg.reply_to);
    }
}

impl Handler<Recover> for ChatSession {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, _: Recover, _ctx: &mut Self::Context) -> Self::Result {
        let db = self.core.db.clone();
        let id = self.id;
        let org = self.row.as_ref().map(|r| r.organization_id);
        Box::pin(
            async move {
                match org {
                    Some(org) => store::unanswered(&db, org, id).await.unwrap_or_default(),
                    None => Vec::new(),
                }
            }
            .into_actor(self)
            .map(|pending, act, ctx| {
                let grace = act.grace();
                let now = Instant::now();
                let mut waiting = false;
                for q in pending {
                    if act.answering.contains(&q.seq) {
                        continue;
                    }
                    if orphaned(act.remote_activity.get(&q.seq).copied(), now, grace) {
                        let span = act.span.clone();
                        let ticket = act.core.admission.admit_stored();
                        act.answer(q, span, ticket, ctx);
                    } else {
                        waiting = true;
                    }
                }
                // Another node is answering: check again after the grace, in
                // case it dies midway.
                if waiting {
                    ctx.run_later(grace, |_, ctx| ctx.notify(Recover));
                }
            }),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The grace runs on paused time: no sleeping.
    #[tokio::test(start_paused = true)]
    async fn a_question_is_orphaned_only_after_a_quiet_grace() {
        let grace = Duration::from_millis(1500);
        assert!(orphaned(None, Instant::now(), grace), "nobody is on it");
        let seen = Instant::now();
        tokio::time::advance(Duration::from_millis(1499)).await;
        assert!(
            !orphaned(Some(seen), Instant::now(), grace),
            "another node is on it"
        );
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(orphaned(Some(seen), Instant::now(), grace), "it went quiet");
    }
}
