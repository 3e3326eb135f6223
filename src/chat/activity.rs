//! The port through which chat reports what happens in it (sessions
//! opened, questions answered) to whoever records activity (analytics,
//! implemented in `adapters`). Reporting never waits: implementations
//! queue and return.

use chrono::{DateTime, Utc};

use super::frames::AnswerExtras;
use super::service::ChatUser;
use crate::ids::{OrgId, PersonaId, SessionId, UserId};

/// A question answered, as chat saw it.
#[derive(Debug)]
pub struct AnsweredQuestion<'a> {
    pub org: OrgId,
    pub user: UserId,
    pub persona: PersonaId,
    /// `None` for an HTTP `ask` outside a session.
    pub session: Option<SessionId>,
    /// The question's `seq` in its session.
    pub seq: Option<i64>,
    pub text: &'a str,
    pub extras: &'a AnswerExtras,
    /// From the question's arrival to the answer's first piece.
    pub first_token_ms: u64,
    /// From the question's arrival to the stored answer.
    pub total_ms: u64,
    pub at: DateTime<Utc>,
}

/// What chat reports. Called on the request path: must not block or wait.
pub trait ChatActivity: Send + Sync + 'static {
    /// A session was started (`resumed` false) or resumed by `user`.
    fn session_opened(&self, user: ChatUser, persona: PersonaId, session: SessionId, resumed: bool);
    /// A question got its answer.
    fn answered(&self, q: &AnsweredQuestion<'_>);
}

/// Reports nowhere (chat's own tests).
pub struct NoChatActivity;

impl ChatActivity for NoChatActivity {
    fn session_opened(&self, _: ChatUser, _: PersonaId, _: SessionId, _: bool) {}
    fn answered(&self, _: &AnsweredQuestion<'_>) {}
}
