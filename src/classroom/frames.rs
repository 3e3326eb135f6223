//! The frames of `GET /v1/classroom/ws`, as API.md ("Analytics and the
//! live classroom") lists them. The live ones (`presence`, `question`,
//! `answer`, `flag`) are also the bus messages between nodes: a node
//! publishes the frame's JSON on the organisation's topic and every node
//! hands that very text to its watchers.
//!
//! Pure data: no I/O.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::ids::{PersonaId, SessionId, UserId};

/// A student connected to a chat session right now (on any node).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct OnlineStudent {
    pub user_id: UserId,
    pub full_name: String,
    pub session_id: SessionId,
    pub persona_id: PersonaId,
    /// Since when.
    pub since: DateTime<Utc>,
}

/// A student's chat socket attached to a session (`online: true`) or left
/// it (`online: false`: closed, or moved to another session).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PresenceFrame {
    pub user_id: UserId,
    pub full_name: String,
    pub session_id: SessionId,
    pub persona_id: PersonaId,
    pub online: bool,
    pub at: DateTime<Utc>,
}

/// A question stored in a chat session (live, and in the snapshot's
/// `recent`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct QuestionFrame {
    pub at: DateTime<Utc>,
    pub user_id: UserId,
    pub full_name: String,
    pub session_id: SessionId,
    /// The question's `seq` in its session.
    pub seq: i64,
    pub persona_id: PersonaId,
    pub text: String,
}

/// A question's answer, stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AnswerFrame {
    pub at: DateTime<Utc>,
    pub session_id: SessionId,
    /// The question's `seq`.
    pub reply_to: i64,
    /// The answer's own `seq`.
    pub seq: i64,
    pub user_id: UserId,
    pub persona_id: PersonaId,
    /// Whether the material supported the answer.
    pub grounded: bool,
    /// How many citations it carries.
    pub citations: u32,
    /// Milliseconds from the start of answering to its first piece.
    pub first_token_ms: u64,
    /// Milliseconds to the whole answer.
    pub total_ms: u64,
    /// Why the question was declined, if it was: `self_harm`, `sexual`,
    /// `weapons`, `drugs`, `hate`, `blocked_topic`, `off_subject`,
    /// `not_covered`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refusal: Option<String>,
}

/// A question refused for safety or a blocked topic, to look at (open the
/// session at `seq`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FlagFrame {
    pub at: DateTime<Utc>,
    pub user_id: UserId,
    pub full_name: String,
    pub persona_id: PersonaId,
    pub session_id: SessionId,
    /// The question's `seq`.
    pub seq: i64,
    /// `self_harm`, `sexual`, `weapons`, `drugs`, `hate` or
    /// `blocked_topic`.
    pub reason: String,
    /// The question.
    pub text: String,
}

/// A frame from the server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClassroomFrame {
    /// First, once: who is online now and the latest questions (oldest
    /// first), for the persona asked for if any.
    Snapshot {
        online: Vec<OnlineStudent>,
        recent: Vec<QuestionFrame>,
    },
    Presence(PresenceFrame),
    Question(QuestionFrame),
    Answer(AnswerFrame),
    Flag(FlagFrame),
    /// The answer to a client's `{"type":"ping"}`.
    Pong,
    /// A client frame the server does not take (`code`: `bad_frame`).
    Error {
        code: String,
        message: String,
    },
}

impl ClassroomFrame {
    /// The frame as WebSocket text.
    pub fn to_text(&self) -> Arc<str> {
        match serde_json::to_string(self) {
            Ok(s) => Arc::from(s),
            Err(e) => {
                tracing::error!(error = %e, "a classroom frame could not be serialised");
                Arc::from(
                    r#"{"type":"error","code":"internal","message":"Something went wrong on our side; it has been logged."}"#,
                )
            }
        }
    }

    /// The frame's `type`.
    pub fn kind(&self) -> &'static str {
        match self {
            ClassroomFrame::Snapshot { .. } => "snapshot",
            ClassroomFrame::Presence(_) => "presence",
            ClassroomFrame::Question(_) => "question",
            ClassroomFrame::Answer(_) => "answer",
            ClassroomFrame::Flag(_) => "flag",
            ClassroomFrame::Pong => "pong",
            ClassroomFrame::Error { .. } => "error",
        }
    }

    /// The persona a live frame is about.
    pub fn persona(&self) -> Option<PersonaId> {
        match self {
            ClassroomFrame::Presence(f) => Some(f.persona_id),
            ClassroomFrame::Question(f) => Some(f.persona_id),
            ClassroomFrame::Answer(f) => Some(f.persona_id),
            ClassroomFrame::Flag(f) => Some(f.persona_id),
            ClassroomFrame::Snapshot { .. }
            | ClassroomFrame::Pong
            | ClassroomFrame::Error { .. } => None,
        }
    }
}

/// What a client may send: only `{"type":"ping"}` (WebSocket pings are
/// answered too).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClassroomClientFrame {
    Ping,
}

/// A live frame as a node's watchers receive it from the bus: its text,
/// sent as is, and what they filter on.
#[derive(Debug, Clone)]
pub struct Live {
    /// The frame's `type`.
    pub kind: &'static str,
    pub persona: Option<PersonaId>,
    /// For a `question`: its session and `seq` (a watcher skips one its
    /// snapshot had).
    pub question: Option<(SessionId, i64)>,
    pub text: Arc<str>,
}

impl Live {
    /// Reads a frame published on the bus; `None` if it is not one.
    pub fn decode(payload: &[u8]) -> Option<Live> {
        let frame: ClassroomFrame = match serde_json::from_slice(payload) {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(error = %e, "an unreadable classroom message was dropped");
                return None;
            }
        };
        let text = std::str::from_utf8(payload).ok()?;
        Some(Live {
            kind: frame.kind(),
            persona: frame.persona(),
            question: match &frame {
                ClassroomFrame::Question(q) => Some((q.session_id, q.seq)),
                _ => None,
            },
            text: Arc::from(text),
        })
    }
}
