//! The port through which chat tells the rest of the application what
//! happens in it: [`ChatActivity`], owned by chat, implemented in
//! `adapters` (the live classroom; analytics and billing can listen at the
//! same places). Chat calls it at four places only: a connection attaches
//! to a session, leaves it, a question is stored, an answer is stored.
//!
//! Calls are made on chat's own path (the socket's actor, the session's
//! actor, the answering task), so an implementation must return at once:
//! queue the event and do its I/O elsewhere, dropping rather than waiting
//! when its queue is full. Chat never learns whether anyone listened.

use chrono::{DateTime, Utc};

use super::service::ChatUser;
use crate::ids::{OrgId, PersonaId, SessionId, UserId};

/// The session an event is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionRef {
    pub org: OrgId,
    pub session: SessionId,
    pub persona: PersonaId,
    /// The session's owner (the student asking).
    pub owner: UserId,
}

impl SessionRef {
    pub fn of(row: &super::store::SessionRow) -> Self {
        Self {
            org: row.organization_id,
            session: row.id,
            persona: row.persona_id,
            owner: row.user_id,
        }
    }
}

/// Something that happened in chat.
#[derive(Debug, Clone, PartialEq)]
pub enum Activity {
    /// Connection `conn` (this node's number for it) of `user` attached to
    /// a session: a `start`, or a `resume` (`resumed`). `user` is not
    /// always the owner: staff may attach to their students' sessions.
    Attached {
        conn: u64,
        user: ChatUser,
        session: SessionRef,
        resumed: bool,
        at: DateTime<Utc>,
    },
    /// The connection left the session: it closed, or attached to another.
    Detached {
        conn: u64,
        user: ChatUser,
        session: SessionRef,
    },
    /// A question (by the session's owner) was stored with `seq`; repeats
    /// of a `client_id` are not reported again.
    Asked {
        session: SessionRef,
        seq: i64,
        text: String,
        at: DateTime<Utc>,
    },
    /// The answer to `reply_to` was stored with `seq`.
    Answered {
        session: SessionRef,
        reply_to: i64,
        seq: i64,
        grounded: bool,
        /// How many citations it carries.
        citations: usize,
        /// Why the question was declined, if it was (the persona's reason:
        /// a safety category, `blocked_topic`, `off_subject`,
        /// `not_covered`).
        refusal: Option<String>,
        /// Which provider answered (`none` when no model was asked).
        provider: Option<String>,
        /// From the start of answering to its first piece (the whole
        /// answer's time when it came in one piece or none).
        first_token_ms: u64,
        total_ms: u64,
        /// The question's text.
        question: String,
        at: DateTime<Utc>,
    },
    /// A question asked over HTTP (`POST /v1/personas/{id}/ask`) was
    /// answered, all at once; stored in `session` (with the question's
    /// `seq`) when the caller named one.
    AskedOverHttp {
        org: OrgId,
        user: UserId,
        persona: PersonaId,
        session: Option<SessionId>,
        /// The question's `seq` in `session`.
        seq: Option<i64>,
        /// The answer's `seq` in `session`.
        answer_seq: Option<i64>,
        text: String,
        grounded: bool,
        citations: usize,
        refusal: Option<String>,
        provider: Option<String>,
        /// From the request's arrival to its answer.
        ms: u64,
        at: DateTime<Utc>,
    },
}

/// Hears chat's [`Activity`]. Must not block (see the module's notes).
pub trait ChatActivity: Send + Sync + 'static {
    fn record(&self, event: Activity);
}

/// Nobody listens (unit tests, tools).
pub struct Unobserved;

/// Several listeners, each told everything in turn.
pub struct Listeners(pub Vec<std::sync::Arc<dyn ChatActivity>>);

impl ChatActivity for Listeners {
    fn record(&self, event: Activity) {
        if let Some((last, rest)) = self.0.split_last() {
            for l in rest {
                l.record(event.clone());
            }
            last.record(event);
        }
    }
}

impl ChatActivity for Unobserved {
    fn record(&self, _: Activity) {}
}
