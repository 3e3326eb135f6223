//! The WebSocket frames of `GET /v1/chat/ws`, both directions, as API.md
//! "Chat over WebSocket" lists them: [`ClientFrame`] (decoded by
//! [`decode`], with the error a malformed frame gets) and [`ServerFrame`]
//! (what the server sends; the tests and `bench/ws` parse it back).
//!
//! Server frames borrow what they carry (`Cow`), so building one to send
//! copies nothing; [`ServerFrame::to_text`] serialises straight into the
//! frame's text. Parsed back (`serde_json::from_str::<ServerFrame>`), they
//! own their strings. Members are written `type` first, then in the
//! order declared (alphabetical, as they were when frames were built as
//! `serde_json::Value` maps).
//!
//! Pure data: no I/O, no actor, no HTTP.

use std::borrow::Cow;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::error::{BadFrame, ChatError};
use crate::ids::{PersonaId, SessionId};

/// A `client_id` is 1 to this many bytes.
pub const MAX_CLIENT_ID: usize = 128;

/// A frame from the client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientFrame {
    /// Open a new session with a persona.
    Start {
        persona_id: PersonaId,
    },
    /// Continue a session after `last_seq` (0 when absent).
    Resume {
        session_id: SessionId,
        #[serde(default)]
        last_seq: i64,
    },
    /// A question; a repeated `client_id` is acknowledged again, never
    /// answered twice.
    Message {
        client_id: String,
        text: String,
    },
    Ping,
    /// A fresh access token for this socket (refresh in place): sent before
    /// the current one expires, it keeps the socket open.
    Auth {
        access_token: String,
    },
}

/// Who a message frame's event is from, as stored (`chat_events.role`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventRole {
    /// A question.
    User,
    /// An answer.
    Assistant,
}

impl EventRole {
    pub const fn as_str(self) -> &'static str {
        match self {
            EventRole::User => "user",
            EventRole::Assistant => "assistant",
        }
    }
}

impl std::str::FromStr for EventRole {
    type Err = UnknownRole;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "user" => Ok(EventRole::User),
            "assistant" => Ok(EventRole::Assistant),
            other => Err(UnknownRole(other.chars().take(40).collect())),
        }
    }
}

/// A stored role that is neither `user` nor `assistant`.
#[derive(Debug, thiserror::Error)]
#[error("unknown chat event role {0:?}")]
pub struct UnknownRole(pub String);

/// What an answer carries besides its text: stored as the event's
/// `payload` and sent with it. Opaque to chat (the persona's types).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AnswerExtras {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub animation: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub citations: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grounded: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<Value>,
    /// Why the question was declined (the persona's reason), if it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refusal: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Value>,
}

/// A stored event as clients see it: the `message` frame, the elements of
/// `replay.events` and of the history route's `events`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventFrame<'a> {
    #[serde(flatten)]
    pub extras: Cow<'a, AnswerExtras>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<Cow<'a, str>>,
    /// Absent on an answer sent live (it is in history and replay).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<i64>,
    pub role: EventRole,
    pub seq: i64,
    pub text: Cow<'a, str>,
}

/// The same, with the `type` member (history's `events` and `replay`'s
/// elements are `message` objects too).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Tagged<'a> {
    Message(EventFrame<'a>),
}

/// A frame from the server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame<'a> {
    /// Attached to a session (after `start` or `resume`).
    Session {
        last_seq: i64,
        persona_id: PersonaId,
        resumed: bool,
        session_id: SessionId,
    },
    /// A question is stored durably with this `seq`.
    Ack {
        client_id: Cow<'a, str>,
        seq: i64,
    },
    /// The question `reply_to` is stored and waits for its turn to be
    /// answered; `position` is its place in line (1: next). Sent after its
    /// `ack` on the asking connection, only when it must wait; not stored,
    /// not replayed.
    Queued {
        reply_to: i64,
        position: usize,
    },
    /// A piece of the answer to `reply_to` (not stored, not replayed);
    /// `reset`: discard the pieces so far.
    Delta {
        reply_to: i64,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        reset: bool,
        text: Cow<'a, str>,
    },
    /// A stored event: a question's echo or an answer.
    Message(EventFrame<'a>),
    /// Events missed, after a `resume`.
    Replay {
        events: Vec<Tagged<'a>>,
    },
    Pong,
    Error {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client_id: Option<Cow<'a, str>>,
        code: Cow<'a, str>,
        message: Cow<'a, str>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reply_to: Option<i64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_after_ms: Option<u64>,
    },
    /// Ingest progress of one of the organisation's sources (teachers and
    /// admins).
    Ingest(crate::infra::bus::messages::IngestProgress),
    /// An `auth` frame's token is taken: the socket now lives until
    /// `expires_at` (send the next `auth` before then).
    Authenticated {
        expires_at: DateTime<Utc>,
    },
}

impl ServerFrame<'_> {
    /// The frame as WebSocket text.
    pub fn to_text(&self) -> Arc<str> {
        // Serialising these types cannot fail (string keys, no maps with
        // other keys); the fallback keeps a bug from panicking a socket.
        match serde_json::to_string(self) {
            Ok(s) => Arc::from(s),
            Err(e) => {
                tracing::error!(error = %e, "a chat frame could not be serialised");
                Arc::from(
                    r#"{"type":"error","code":"internal","message":"Something went wrong on our side; it has been logged."}"#,
                )
            }
        }
    }

    /// The `error` frame for a refusal.
    pub fn error(e: &ChatError) -> ServerFrame<'static> {
        ServerFrame::error_about(e, None, None)
    }

    /// The `error` frame for a refusal about a question: `client_id` (a
    /// question refused) or `reply_to` (an answer that failed).
    pub fn error_about<'c>(
        e: &ChatError,
        client_id: Option<Cow<'c, str>>,
        reply_to: Option<i64>,
    ) -> ServerFrame<'c> {
        let (_, code) = crate::error::chat(e);
        ServerFrame::Error {
            client_id,
            code: Cow::Borrowed(code),
            message: e.client_message(),
            reply_to,
            retry_after_ms: e.retry_after().map(|d| d.as_millis() as u64),
        }
    }

    /// For a stored event, its `seq` (a connection delivers each once).
    pub fn seq(&self) -> Option<i64> {
        match self {
            ServerFrame::Message(e) => Some(e.seq),
            _ => None,
        }
    }

    /// The question a frame is about (deltas, answers, answer errors).
    pub fn reply_to(&self) -> Option<i64> {
        match self {
            ServerFrame::Message(e) => e.reply_to,
            ServerFrame::Delta { reply_to, .. } => Some(*reply_to),
            ServerFrame::Error { reply_to, .. } => *reply_to,
            _ => None,
        }
    }

    /// Owns everything it borrowed.
    pub fn into_owned(self) -> ServerFrame<'static> {
        fn own(c: Cow<'_, str>) -> Cow<'static, str> {
            Cow::Owned(c.into_owned())
        }
        match self {
            ServerFrame::Session {
                last_seq,
                persona_id,
                resumed,
                session_id,
            } => ServerFrame::Session {
                last_seq,
                persona_id,
                resumed,
                session_id,
            },
            ServerFrame::Ack { client_id, seq } => ServerFrame::Ack {
                client_id: own(client_id),
                seq,
            },
            ServerFrame::Queued { reply_to, position } => {
                ServerFrame::Queued { reply_to, position }
            }
            ServerFrame::Delta {
                reply_to,
                reset,
                text,
            } => ServerFrame::Delta {
                reply_to,
                reset,
                text: own(text),
            },
            ServerFrame::Message(e) => ServerFrame::Message(e.into_owned()),
            ServerFrame::Replay { events } => ServerFrame::Replay {
                events: events
                    .into_iter()
                    .map(|Tagged::Message(e)| Tagged::Message(e.into_owned()))
                    .collect(),
            },
            ServerFrame::Pong => ServerFrame::Pong,
            ServerFrame::Error {
                client_id,
                code,
                message,
                reply_to,
                retry_after_ms,
            } => ServerFrame::Error {
                client_id: client_id.map(own),
                code: own(code),
                message: own(message),
                reply_to,
                retry_after_ms,
            },
            ServerFrame::Ingest(p) => ServerFrame::Ingest(p),
            ServerFrame::Authenticated { expires_at } => ServerFrame::Authenticated { expires_at },
        }
    }
}

impl EventFrame<'_> {
    pub fn into_owned(self) -> EventFrame<'static> {
        EventFrame {
            extras: Cow::Owned(self.extras.into_owned()),
            client_id: self.client_id.map(|c| Cow::Owned(c.into_owned())),
            created_at: self.created_at,
            reply_to: self.reply_to,
            role: self.role,
            seq: self.seq,
            text: Cow::Owned(self.text.into_owned()),
        }
    }
}

/// The serialised `pong`, sent as is.
pub const PONG: &str = r#"{"type":"pong"}"#;

/// Decodes a text frame of at most `max_bytes`: one parse on the common
/// path; a frame that does not decode is looked at again (only then) to
/// say what is wrong with it.
pub fn decode(text: &str, max_bytes: usize) -> Result<ClientFrame, BadFrame> {
    if text.len() > max_bytes {
        return Err(BadFrame::TooLarge { max_bytes });
    }
    match serde_json::from_str::<ClientFrame>(text) {
        Ok(frame) => check(frame),
        Err(_) => Err(diagnose(text)),
    }
}

/// What the types cannot say: bounds.
fn check(frame: ClientFrame) -> Result<ClientFrame, BadFrame> {
    match &frame {
        ClientFrame::Message { client_id, .. }
            if client_id.is_empty() || client_id.len() > MAX_CLIENT_ID =>
        {
            Err(BadFrame::Message)
        }
        _ => Ok(frame),
    }
}

/// Why a frame did not decode.
fn diagnose(text: &str) -> BadFrame {
    let Ok(Value::Object(frame)) = serde_json::from_str::<Value>(text) else {
        return BadFrame::NotJson;
    };
    match frame.get("type").and_then(Value::as_str) {
        None => BadFrame::NoType,
        Some("start") => BadFrame::Start,
        Some("resume") => BadFrame::Resume,
        Some("message") => BadFrame::Message,
        Some("auth") => BadFrame::Auth,
        // A ping does not fail to decode; kept for completeness.
        Some("ping") => BadFrame::NotJson,
        Some(other) => BadFrame::UnknownType(other.chars().take(40).collect()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use serde_json::json;

    use super::*;

    fn frame(v: Value) -> Result<ClientFrame, BadFrame> {
        decode(&v.to_string(), 1024)
    }

    #[test]
    fn client_frames_decode_as_the_contract_writes_them() {
        let p = PersonaId::new();
        let s = SessionId::new();
        assert_eq!(
            frame(json!({"type": "start", "persona_id": p})).unwrap(),
            ClientFrame::Start { persona_id: p }
        );
        assert_eq!(
            frame(json!({"type": "resume", "session_id": s})).unwrap(),
            ClientFrame::Resume {
                session_id: s,
                last_seq: 0
            }
        );
        assert_eq!(
            frame(json!({"type": "message", "client_id": "c", "text": "hi", "extra": 1})).unwrap(),
            ClientFrame::Message {
                client_id: "c".into(),
                text: "hi".into()
            }
        );
        assert_eq!(frame(json!({"type": "ping"})).unwrap(), ClientFrame::Ping);
    }

    #[test]
    fn malformed_frames_say_what_is_wrong() {
        assert_eq!(decode("{not json", 1024), Err(BadFrame::NotJson));
        assert_eq!(decode("[1]", 1024), Err(BadFrame::NotJson));
        assert_eq!(frame(json!({"kind": "ping"})), Err(BadFrame::NoType));
        assert_eq!(frame(json!({"type": 7})), Err(BadFrame::NoType));
        assert_eq!(
            frame(json!({"type": "dance"})),
            Err(BadFrame::UnknownType("dance".into()))
        );
        assert_eq!(
            frame(json!({"type": "start", "persona_id": 7})),
            Err(BadFrame::Start)
        );
        let s = SessionId::new();
        for resume in [
            json!({"type": "resume", "session_id": s, "last_seq": null}),
            json!({"type": "resume", "session_id": s, "last_seq": 9223372036854775808u64}),
            json!({"type": "resume", "session_id": s, "last_seq": 1.5}),
            json!({"type": "resume", "last_seq": 1}),
        ] {
            assert_eq!(frame(resume), Err(BadFrame::Resume));
        }
        for message in [
            json!({"type": "message", "client_id": "", "text": "x"}),
            json!({"type": "message", "client_id": "c".repeat(129), "text": "x"}),
            json!({"type": "message", "client_id": "c"}),
        ] {
            assert_eq!(frame(message), Err(BadFrame::Message));
        }
        let big = json!({"type": "ping", "pad": "x".repeat(2000)}).to_string();
        assert_eq!(
            decode(&big, 1024),
            Err(BadFrame::TooLarge { max_bytes: 1024 })
        );
    }

    /// The frames carry every member they carried as `json!` maps.
    #[test]
    fn server_frames_keep_their_members() {
        let text = |f: ServerFrame<'_>| serde_json::from_str::<Value>(&f.to_text()).unwrap();
        assert_eq!(
            text(ServerFrame::Ack {
                client_id: "q".into(),
                seq: 3
            }),
            json!({"type": "ack", "client_id": "q", "seq": 3})
        );
        assert_eq!(
            text(ServerFrame::Delta {
                reply_to: 1,
                reset: false,
                text: "Hi".into()
            }),
            json!({"type": "delta", "reply_to": 1, "text": "Hi"})
        );
        assert_eq!(
            text(ServerFrame::Delta {
                reply_to: 1,
                reset: true,
                text: "".into()
            }),
            json!({"type": "delta", "reply_to": 1, "text": "", "reset": true})
        );
        assert_eq!(
            text(ServerFrame::Pong),
            serde_json::from_str::<Value>(PONG).unwrap()
        );
        let extras = AnswerExtras {
            animation: Some(json!({"gesture": "nodding"})),
            citations: Some(json!([])),
            grounded: Some(true),
            provider: Some(json!("extractive")),
            refusal: None,
            usage: None,
        };
        let answer = ServerFrame::Message(EventFrame {
            extras: Cow::Borrowed(&extras),
            client_id: None,
            created_at: None,
            reply_to: Some(1),
            role: EventRole::Assistant,
            seq: 2,
            text: "Green.".into(),
        });
        let wire = answer.to_text();
        assert_eq!(
            serde_json::from_str::<Value>(&wire).unwrap(),
            json!({"type": "message", "seq": 2, "role": "assistant", "reply_to": 1,
                "text": "Green.", "citations": [], "animation": {"gesture": "nodding"},
                "grounded": true, "provider": "extractive"})
        );
        // And back, as the tests and the bench read it.
        assert_eq!(
            serde_json::from_str::<ServerFrame<'_>>(&wire).unwrap(),
            answer.into_owned()
        );
        let e = ServerFrame::Error {
            client_id: Some("q".into()),
            code: "rate_limited".into(),
            message: "Too many messages; slow down.".into(),
            reply_to: None,
            retry_after_ms: Some(1500),
        };
        assert_eq!(
            text(e),
            json!({"type": "error", "code": "rate_limited", "client_id": "q",
                "message": "Too many messages; slow down.", "retry_after_ms": 1500})
        );
    }
}
