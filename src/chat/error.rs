//! Chat's errors: why the chat service refused or failed, with no HTTP
//! in them. Their status and stable `code` (for HTTP answers and for
//! `error` frames alike) come from one table, [`crate::error::chat`].

use std::borrow::Cow;
use std::time::Duration;

use crate::db::StoreError;

/// Why chat refused a request or could not serve it.
#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    #[error("no such session in the organisation")]
    SessionNotFound,
    #[error("no such persona in the organisation")]
    PersonaNotFound,
    /// A session named for `ask` is not the asker's with this persona.
    #[error("the session is not the asker's with this persona")]
    NotYourSession,
    /// Only the student who opened the session may ask in it.
    #[error("only the session's student may ask in it")]
    NotSessionOwner,
    /// A `message` before `start` or `resume`.
    #[error("no session attached")]
    NoSession,
    #[error("rate limited for {retry_after:?}")]
    RateLimited { retry_after: Duration },
    #[error("invalid frame: {0}")]
    InvalidFrame(#[from] BadFrame),
    /// The question itself (empty, too long): the sentence says why.
    #[error("invalid question: {0}")]
    InvalidQuestion(String),
    /// No language model could answer.
    #[error("no language model could answer")]
    ModelUnavailable { retry_after: Duration },
    /// A service chat depends on is not answering.
    #[error("a dependency is unavailable")]
    Unavailable { retry_after: Duration },
    /// Too many questions already wait to be answered on this node
    /// ([`super::admission`]); this one was not stored.
    #[error("too many questions waiting")]
    Overloaded { retry_after: Duration },
    /// The organisation's question allowance is used up; the sentence
    /// names it and when it resets.
    #[error("quota exceeded: {0}")]
    QuotaExceeded(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("internal: {0}")]
    Internal(#[source] anyhow::Error),
}

impl From<super::admission::Full> for ChatError {
    fn from(full: super::admission::Full) -> Self {
        ChatError::Overloaded {
            retry_after: full.retry_after,
        }
    }
}

/// A frame that does not decode, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadFrame {
    #[error("not one JSON object")]
    NotJson,
    #[error("no string type")]
    NoType,
    #[error("unknown type {0:?}")]
    UnknownType(String),
    #[error("start without a persona id")]
    Start,
    #[error("resume without a session id and last seq")]
    Resume,
    #[error("message without a client id and text")]
    Message,
    #[error("auth without an access token")]
    Auth,
    #[error("a frame over {max_bytes} bytes")]
    TooLarge { max_bytes: usize },
    /// Binary or continuation frames.
    #[error("not text")]
    NotText,
}

impl ChatError {
    pub fn internal(e: impl Into<anyhow::Error>) -> Self {
        ChatError::Internal(e.into())
    }

    /// How long to wait before trying again, when that is the point.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ChatError::RateLimited { retry_after }
            | ChatError::ModelUnavailable { retry_after }
            | ChatError::Unavailable { retry_after }
            | ChatError::Overloaded { retry_after } => Some(*retry_after),
            _ => None,
        }
    }

    /// The sentence a client is shown (never internals).
    pub fn client_message(&self) -> Cow<'static, str> {
        Cow::Borrowed(match self {
            ChatError::SessionNotFound | ChatError::PersonaNotFound => {
                "No such session or persona in your organisation."
            }
            ChatError::NotYourSession => "session_id names no session of yours with this persona.",
            ChatError::NotSessionOwner => "Only the student who opened this session may ask in it.",
            ChatError::NoSession => "Send start or resume before a message.",
            ChatError::RateLimited { .. } => "Too many messages; slow down.",
            ChatError::InvalidFrame(b) => return b.message(),
            ChatError::InvalidQuestion(why) | ChatError::QuotaExceeded(why) => {
                return Cow::Owned(why.clone());
            }
            ChatError::ModelUnavailable { .. } => {
                "No language model can answer right now; try again shortly."
            }
            ChatError::Overloaded { .. } => {
                "Too many questions are waiting to be answered; ask again in a moment."
            }
            ChatError::Unavailable { .. } | ChatError::Store(StoreError::Unavailable(_)) => {
                "The database is not answering; try again shortly."
            }
            ChatError::Store(_) | ChatError::Internal(_) => {
                "Something went wrong on our side; it has been logged."
            }
        })
    }
}

impl BadFrame {
    /// The `error` frame's sentence (as it always was).
    pub fn message(&self) -> Cow<'static, str> {
        Cow::Borrowed(match self {
            BadFrame::NotJson => "Every frame must be one JSON object.",
            BadFrame::NoType => "Every frame needs a string \"type\".",
            BadFrame::UnknownType(t) => {
                return Cow::Owned(format!(
                    "Unknown frame type \"{t}\"; expected start, resume, message or ping."
                ));
            }
            BadFrame::Start => "start needs a persona_id (a UUID).",
            BadFrame::Resume => {
                "resume needs a session_id (a UUID) and a last_seq (a whole number)."
            }
            BadFrame::Message => "message needs a client_id (1–128 characters) and a text.",
            BadFrame::Auth => "auth needs an access_token (a string).",
            BadFrame::TooLarge { max_bytes } => {
                return Cow::Owned(format!("Frames may be at most {max_bytes} bytes."));
            }
            BadFrame::NotText => "Frames must be JSON text.",
        })
    }
}
