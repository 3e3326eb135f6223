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
//! crate rather than `bwenge-actors` because it drives the answer pipeline
//! and storage directly; its messages are in this file for the same reason.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use bwenge_actors::registry::Shutdown;
use bwenge_llm::{Role as TurnRole, Turn};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::hub::{ChatHub, Push, RemoteEvent};
use super::store::{self, Appended, NewEvent, SessionRow};
use crate::auth::AuthUser;
use crate::config::Settings;
use crate::db::Db;
use crate::ids::SessionId;
use crate::personas::{Delta, PersonaRegistry, Question};

/// Text pieces already waiting are merged into one `delta` frame up to
/// this many bytes.
const MAX_COALESCED_DELTA: usize = 2048;

/// What every session actor on this node shares.
#[derive(Clone)]
pub struct ChatContext {
    pub db: Db,
    pub settings: Arc<Settings>,
    pub hub: ChatHub,
    pub personas: PersonaRegistry,
}

/// Why a session refused a request; each maps to an `error` frame code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChatError {
    NotFound,
    Forbidden,
    Internal(String),
}

impl ChatError {
    /// The `error` frame's message.
    pub fn message(&self) -> &'static str {
        match self {
            ChatError::NotFound => "No such session or persona in your organisation.",
            ChatError::Forbidden => "Only the student who opened this session may ask in it.",
            ChatError::Internal(_) => "Something went wrong on our side; it has been logged.",
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            ChatError::NotFound => "not_found",
            ChatError::Forbidden => "forbidden",
            ChatError::Internal(_) => "internal",
        }
    }
}

impl From<crate::error::StoreError> for ChatError {
    fn from(e: crate::error::StoreError) -> Self {
        tracing::error!(error = %e, "chat storage failed");
        ChatError::Internal(e.to_string())
    }
}

/// A connection resumed the session and found questions without their
/// answer: they are answered after a grace in which no other node showed
/// activity on them.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Resumed {
    pub row: SessionRow,
}

/// A question (sent by `WsConnection`): stored, then acknowledged to the
/// asking connection (an `ack` frame in its event queue); answered with the
/// `seq`.
#[derive(Message)]
#[rtype(result = "Result<i64, ChatError>")]
pub struct Post {
    pub conn: u64,
    pub user: AuthUser,
    /// The session, as the connection read it when it attached.
    pub row: SessionRow,
    pub client_id: String,
    pub text: String,
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
    frame: Value,
    seq: Option<i64>,
    publish: bool,
}

pub struct ChatSession {
    id: SessionId,
    ctx: Arc<ChatContext>,
    row: Option<SessionRow>,
    answering: HashSet<i64>,
    /// Last time another node showed activity on a question (its answer's
    /// deltas or the answer itself).
    remote_activity: HashMap<i64, Instant>,
}

impl ChatSession {
    pub fn new(id: SessionId, ctx: Arc<ChatContext>) -> Self {
        Self {
            id,
            ctx,
            row: None,
            answering: HashSet::new(),
            remote_activity: HashMap::new(),
        }
    }

    fn grace(&self) -> Duration {
        Duration::from_millis(self.ctx.settings.chat.orphan_grace_ms)
    }

    /// Sends a frame to the connections attached here.
    fn send_all(&self, frame: &Value, seq: Option<i64>) {
        self.ctx
            .hub
            .push_session(self.id, Arc::from(frame.to_string()), seq);
    }

    /// Starts answering `q` (stored question) on this node.
    fn answer(&mut self, q: store::EventRow, ctx: &mut Context<Self>) {
        if !self.answering.insert(q.seq) {
            return;
        }
        let Some(row) = self.row.clone() else {
            return;
        };
        let me = ctx.address();
        let c = Arc::clone(&self.ctx);
        let session = self.id;
        let reply_to = q.seq;
        // On the answering pool: the session's own thread only orders
        // what happens here.
        crate::work::spawn(async move {
            let result = answer_question(&c, &row, &q, me.clone()).await;
            if let Err(e) = result {
                tracing::warn!(session_id = %session, reply_to, error = %e.detail, "answer failed");
                me.do_send(Broadcast {
                    frame: json!({"type": "error", "code": e.code.as_str(), "message": e.detail,
                        "reply_to": reply_to}),
                    seq: None,
                    publish: false,
                });
            }
            me.do_send(Answered { reply_to });
        });
    }
}

/// Runs the persona on a stored question; stores and broadcasts the answer.
async fn answer_question(
    c: &ChatContext,
    row: &SessionRow,
    q: &store::EventRow,
    me: Addr<ChatSession>,
) -> Result<(), crate::error::ApiError> {
    let n = (c.settings.personas.history_turns as i64).max(0);
    let history: Vec<Turn> = store::recent_events(&c.db, row.organization_id, row.id, n + 1)
        .await?
        .into_iter()
        .filter(|e| e.seq < q.seq)
        .map(|e| Turn {
            role: if e.role == "user" {
                TurnRole::User
            } else {
                TurnRole::Assistant
            },
            text: e.text,
        })
        .collect();
    let (tx, mut rx) = mpsc::channel::<Delta>(64);
    let reply_to = q.seq;
    let forward = {
        let me = me.clone();
        tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                // Pieces that are already waiting go out as one frame: a
                // model that produces its answer at once (the extractive
                // responder) costs one frame, not one per word group, while
                // a model streaming at its own pace still streams.
                let mut pending = Some(first);
                while let Some(d) = pending.take() {
                    let frame = match d {
                        Delta::Text(mut text) => {
                            while text.len() < MAX_COALESCED_DELTA {
                                match rx.try_recv() {
                                    Ok(Delta::Text(more)) => text.push_str(&more),
                                    Ok(other) => {
                                        pending = Some(other);
                                        break;
                                    }
                                    Err(_) => break,
                                }
                            }
                            json!({"type": "delta", "reply_to": reply_to, "text": text})
                        }
                        Delta::Restart => {
                            json!({"type": "delta", "reply_to": reply_to, "text": "", "reset": true})
                        }
                    };
                    me.do_send(Broadcast {
                        frame,
                        seq: None,
                        publish: true,
                    });
                }
            }
        })
    };
    let answer = crate::personas::ask_with(
        &c.personas,
        row.persona_id,
        Question {
            org: row.organization_id,
            user: row.user_id,
            text: q.text.clone(),
            history,
            deltas: Some(tx),
        },
    )
    .await;
    let _ = forward.await;
    let answer = answer?;
    let payload = super::answer_payload(&answer);
    let stored = store::append(
        &c.db,
        row.organization_id,
        row.id,
        &NewEvent {
            role: "assistant",
            client_id: None,
            reply_to: Some(reply_to),
            text: &answer.text,
            payload: &payload,
            at: chrono::Utc::now(),
        },
    )
    .await?;
    if let Some(Appended::New(seq)) = stored {
        let frame = json!({
            "type": "message", "seq": seq, "role": "assistant", "reply_to": reply_to,
            "text": answer.text, "citations": answer.citations, "animation": answer.animation,
            "grounded": answer.grounded, "provider": answer.provider,
        });
        me.do_send(Broadcast {
            frame,
            seq: Some(seq),
            publish: true,
        });
    }
    Ok(())
}

impl Actor for ChatSession {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.ctx
            .hub
            .session_started(self.id, ctx.address().recipient());
    }

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        self.ctx.hub.session_stopped(self.id);
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
        let db = self.ctx.db.clone();
        let id = self.id;
        let row = self.row.get_or_insert(msg.row);
        let owner = (row.id == id).then_some(row.user_id);
        let conn = msg.conn;
        Box::pin(
            async move {
                if owner != Some(msg.user.user_id) {
                    return Err(ChatError::Forbidden);
                }
                let at = chrono::Utc::now();
                let stored = store::append(
                    &db,
                    msg.user.org_id,
                    id,
                    &NewEvent {
                        role: "user",
                        client_id: Some(&msg.client_id),
                        reply_to: None,
                        text: &msg.text,
                        payload: "{}",
                        at,
                    },
                )
                .await?
                .ok_or(ChatError::NotFound)?;
                let seq = stored.seq();
                let (q, answered) = match stored {
                    // Just stored: the event is what was sent, no re-read.
                    Appended::New(_) => (
                        store::EventRow {
                            session_id: id,
                            seq,
                            organization_id: msg.user.org_id,
                            role: "user".to_owned(),
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
                            .ok_or(ChatError::NotFound)?;
                        let answered = !store::unanswered(&db, msg.user.org_id, id)
                            .await?
                            .iter()
                            .any(|e| e.seq == seq);
                        (q, answered)
                    }
                };
                Ok((stored, q, answered))
            }
            .into_actor(self)
            .map(move |res, act, ctx| {
                let (stored, q, answered) = res?;
                let seq = stored.seq();
                // The ack goes through the same queue as the session's
                // events, so it always precedes the question's echo and
                // its answer on the asking connection.
                act.ctx.hub.push_conn(
                    conn,
                    Push {
                        frame: Arc::from(
                            json!({"type": "ack", "client_id": q.client_id, "seq": seq})
                                .to_string(),
                        ),
                        session: Some(act.id),
                        seq: None,
                    },
                );
                if let Appended::New(_) = stored {
                    let frame = super::event_json(&q);
                    act.send_all(&frame, Some(seq));
                    if act.ctx.hub.shares_events() {
                        let hub = act.ctx.hub.clone();
                        let sid = act.id;
                        actix::spawn(async move { hub.publish(sid, &frame).await });
                    }
                }
                // New, or a repeat of a question nobody answered: answer it
                // (once: `answering` and the unique reply index see to it).
                if !answered && !act.answering.contains(&seq) {
                    act.answer(q, ctx);
                }
                Ok(seq)
            }),
        )
    }
}

impl Handler<Broadcast> for ChatSession {
    type Result = ();

    fn handle(&mut self, msg: Broadcast, _ctx: &mut Self::Context) {
        self.send_all(&msg.frame, msg.seq);
        if msg.publish && self.ctx.hub.shares_events() {
            let hub = self.ctx.hub.clone();
            let id = self.id;
            actix::spawn(async move { hub.publish(id, &msg.frame).await });
        }
    }
}

impl Handler<RemoteEvent> for ChatSession {
    type Result = ();

    /// The hub has sent it to the connections; here it only shows that
    /// another node is on a question.
    fn handle(&mut self, msg: RemoteEvent, _ctx: &mut Self::Context) {
        if let Some(r) = msg.0["reply_to"].as_i64() {
            self.remote_activity.insert(r, Instant::now());
        }
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
        let db = self.ctx.db.clone();
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
                let mut waiting = false;
                for q in pending {
                    if act.answering.contains(&q.seq) {
                        continue;
                    }
                    let recent_remote = act
                        .remote_activity
                        .get(&q.seq)
                        .is_some_and(|t| t.elapsed() < grace);
                    if recent_remote {
                        waiting = true;
                    } else {
                        act.answer(q, ctx);
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
