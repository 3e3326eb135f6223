//! The port's vocabulary: what the server asks ([`AnswerRequest`] with its
//! [`Passage`]s and [`Turn`]s), what a model streams back ([`StreamEvent`],
//! [`Usage`], [`Animation`] with its fixed [`Gesture`] and [`Emotion`]
//! vocabularies), how it fails ([`LlmError`]) and the [`LanguageModel`] trait
//! every provider, the extractive responder and the [`Chain`](crate::Chain)
//! implement.
//!
//! Nothing here speaks HTTP: provider errors are mapped to [`LlmError`] at the
//! edge, so the server never depends on `reqwest`.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::stream::BoxStream;
use serde::{Deserialize, Serialize};

/// One retrieved passage the answer must be grounded in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Passage {
    /// 1-based marker number: the answer cites this passage as `[n]`.
    pub n: usize,
    /// Title of the document the passage comes from.
    pub source_title: String,
    /// Page (or slide, or minute) in that document; 0 or negative when unknown.
    pub page: i64,
    /// The passage text. Untrusted: it is course material, not instructions.
    pub text: String,
    /// How close the passage is in meaning to the question (the cosine
    /// similarity of their embeddings), when the caller knows it. The
    /// extractive responder prefers the sentences of the closest passages:
    /// a student's paraphrase shares few words with the right one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relevance: Option<f32>,
}

/// Who spoke a conversation turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// The student.
    User,
    /// The persona (a previous answer).
    Assistant,
}

impl Role {
    /// The role's wire name, as OpenAI and Anthropic spell it: `user` or `assistant`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Assistant => "assistant",
        }
    }
}

/// One earlier turn of the conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Turn {
    /// Who said it.
    pub role: Role,
    /// What was said.
    pub text: String,
}

/// Everything a model needs to answer one student question.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnswerRequest {
    /// The persona's display name ("Mwalimu Amani").
    pub persona_name: String,
    /// The persona's subject ("Biology"), if it has one.
    pub subject: Option<String>,
    /// Language to answer in, BCP-47-ish: "en", "fr", "sw", "rw", "fr-CA", …
    pub language: String,
    /// The students' grade level ("P6", "Senior 2"), if known.
    pub grade_level: Option<String>,
    /// The teacher's system prompt for this persona.
    pub instructions: Option<String>,
    /// Safety rules, already rendered as sentences by the server.
    pub rules: Vec<String>,
    /// Retrieved passages in rank order (best first).
    pub passages: Vec<Passage>,
    /// Recent conversation turns, oldest first.
    pub history: Vec<Turn>,
    /// The student's question.
    pub question: String,
    /// Upper bound on the answer's length in tokens.
    pub max_answer_tokens: u32,
}

/// Token usage of one answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Usage {
    /// Tokens the model read (system prompt, history, passages, question).
    pub prompt_tokens: u32,
    /// Tokens the model wrote.
    pub completion_tokens: u32,
}

impl Usage {
    /// Prompt plus completion tokens.
    pub fn total(&self) -> u32 {
        self.prompt_tokens.saturating_add(self.completion_tokens)
    }
}

/// The error returned when a gesture or emotion name is not in its vocabulary.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} `{value}`")]
pub struct UnknownVariant {
    /// "gesture" or "emotion".
    pub kind: &'static str,
    /// The rejected text.
    pub value: String,
}

/// Normalises a vocabulary word for parsing: trimmed, lower case, `-` and
/// spaces read as `_`.
fn vocab_key(s: &str) -> String {
    s.trim()
        .chars()
        .map(|c| match c {
            '-' | ' ' => '_',
            c => c.to_ascii_lowercase(),
        })
        .collect()
}

macro_rules! vocabulary {
    ($(#[$meta:meta])* $name:ident, $kind:literal, { $($(#[$vmeta:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name {
            $($(#[$vmeta])* $variant),+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The snake_case name (the serde and animation-tag spelling).
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = UnknownVariant;

            /// Parses the snake_case name, case-insensitively, reading `-` as `_`.
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                let key = vocab_key(s);
                $name::ALL
                    .iter()
                    .copied()
                    .find(|v| v.as_str() == key)
                    .ok_or_else(|| UnknownVariant { kind: $kind, value: s.to_owned() })
            }
        }
    };
}

vocabulary!(
    /// The avatar's gesture while it speaks an answer.
    Gesture, "gesture", {
        /// Standing still.
        Idle => "idle",
        /// Generic talking motion.
        Talking => "talking",
        /// Thinking (not sure, or the material does not cover it).
        Thinking => "thinking",
        /// Happy.
        Happy => "happy",
        /// Sad.
        Sad => "sad",
        /// Excited.
        Excited => "excited",
        /// Greeting the student.
        Greeting => "greeting",
        /// Explaining something.
        Explaining => "explaining",
        /// Pointing at a figure, table or diagram.
        Pointing => "pointing",
        /// Nodding (agreeing).
        Nodding => "nodding",
        /// Shaking the head (refusing, disagreeing).
        ShakingHead => "shaking_head",
        /// Waving.
        Waving => "waving",
    }
);

vocabulary!(
    /// The avatar's facial emotion while it speaks an answer.
    Emotion, "emotion", {
        /// Neutral face.
        Neutral => "neutral",
        /// Happy.
        Happy => "happy",
        /// Encouraging the student.
        Encouraging => "encouraging",
        /// Concerned (refusing, not covered).
        Concerned => "concerned",
        /// Curious.
        Curious => "curious",
    }
);

/// The structured animation hint attached to an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Animation {
    /// What the body does.
    pub gesture: Gesture,
    /// What the face shows.
    pub emotion: Emotion,
}

impl Animation {
    /// An animation from its two parts.
    pub const fn new(gesture: Gesture, emotion: Emotion) -> Self {
        Self { gesture, emotion }
    }
}

/// One event of an answer stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamEvent {
    /// The next piece of answer text.
    Delta(String),
    /// The provider that was streaming failed midway and the chain moved on:
    /// consumers must discard every Delta received so far.
    Restart {
        /// The provider that failed.
        provider: String,
        /// Why it failed (the error's text).
        reason: String,
    },
    /// The answer is complete. Exactly one per successful stream, always last.
    Done {
        /// The provider that actually answered.
        provider: String,
        /// Token usage (reported by the provider, or counted locally).
        usage: Usage,
        /// The animation hint, if the model gave a valid one.
        animation: Option<Animation>,
    },
}

/// Why a language-model call failed. Carries no HTTP types.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LlmError {
    /// The provider said "too many requests" (HTTP 429 or a rate-limit error event).
    #[error("rate limited{}", retry_hint(.retry_after))]
    RateLimited {
        /// How long the provider asked us to wait, if it said.
        retry_after: Option<Duration>,
    },
    /// No first token, no next chunk, or no complete answer in time.
    #[error("timed out")]
    Timeout,
    /// The provider cannot answer now: connection refused, 5xx, overloaded.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The provider broke its protocol, rejected the request as malformed, or
    /// its stream died before the end marker (a half answer is never complete).
    #[error("bad response: {0}")]
    BadResponse(String),
    /// The provider is misconfigured (bad key, unknown model or URL, invalid settings).
    #[error("configuration error: {0}")]
    Config(String),
    /// The provider's circuit breaker is open: it was not called.
    #[error("circuit open")]
    CircuitOpen,
    /// Every provider of a [`Chain`](crate::Chain) failed; `last` is the last error.
    #[error("all language models failed; last error: {last}")]
    AllFailed {
        /// The last provider's error.
        last: Box<LlmError>,
    },
}

fn retry_hint(retry_after: &Option<Duration>) -> String {
    match retry_after {
        Some(d) => format!(" (retry after {:.1}s)", d.as_secs_f64()),
        None => String::new(),
    }
}

impl LlmError {
    /// Whether trying again later (or another provider now) may succeed:
    /// rate limits, timeouts, unavailability and open circuits are transient;
    /// configuration errors and protocol violations are not. `AllFailed` is
    /// transient when its last error is.
    pub fn is_transient(&self) -> bool {
        match self {
            LlmError::RateLimited { .. }
            | LlmError::Timeout
            | LlmError::Unavailable(_)
            | LlmError::CircuitOpen => true,
            LlmError::BadResponse(_) | LlmError::Config(_) => false,
            LlmError::AllFailed { last } => last.is_transient(),
        }
    }

    /// The provider's own wait hint, if the error carries one
    /// (`RateLimited`, directly or as the last error of `AllFailed`).
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            LlmError::RateLimited { retry_after } => *retry_after,
            LlmError::AllFailed { last } => last.retry_after(),
            _ => None,
        }
    }

    /// A short label for metrics and logs: `rate_limited`, `timeout`,
    /// `circuit_open` or `error`.
    pub fn outcome(&self) -> &'static str {
        match self {
            LlmError::RateLimited { .. } => "rate_limited",
            LlmError::Timeout => "timeout",
            LlmError::CircuitOpen => "circuit_open",
            _ => "error",
        }
    }
}

/// The stream a [`LanguageModel`] returns.
pub type EventStream = BoxStream<'static, Result<StreamEvent, LlmError>>;

/// The LanguageModel port: something that answers an [`AnswerRequest`] as a
/// stream of [`StreamEvent`]s.
///
/// A successful stream yields zero or more `Delta`s (and, from a chain,
/// `Restart`s) and ends with exactly one `Done`. A stream that fails yields
/// one `Err` and ends; it never yields a `Done` for a half answer.
#[async_trait]
pub trait LanguageModel: Send + Sync {
    /// Stable name for logs, metrics and `Done.provider`, e.g.
    /// "openai:gpt-4o-mini", "anthropic:claude-haiku-4-5", "extractive".
    fn name(&self) -> &str;

    /// Context window in tokens (prompt plus answer).
    fn context_window(&self) -> u32;

    /// Starts answering. Errors that happen before the answer starts (HTTP
    /// status, connection refused) come back here; later ones in the stream.
    async fn stream(&self, req: &AnswerRequest) -> Result<EventStream, LlmError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vocabularies_round_trip_through_str_and_serde() {
        for g in Gesture::ALL {
            assert_eq!(g.as_str().parse::<Gesture>(), Ok(*g));
            let json = serde_json::to_string(g).expect("serialize");
            assert_eq!(json, format!("\"{}\"", g.as_str()));
            let back: Gesture = serde_json::from_str(&json).expect("deserialize");
            assert_eq!(back, *g);
        }
        for e in Emotion::ALL {
            assert_eq!(e.as_str().parse::<Emotion>(), Ok(*e));
            let json = serde_json::to_string(e).expect("serialize");
            assert_eq!(json, format!("\"{}\"", e.as_str()));
        }
        assert_eq!(Gesture::ALL.len(), 12);
        assert_eq!(Emotion::ALL.len(), 5);
        assert_eq!("Shaking-Head".parse::<Gesture>(), Ok(Gesture::ShakingHead));
        assert_eq!(" HAPPY ".parse::<Emotion>(), Ok(Emotion::Happy));
        let err = "dancing".parse::<Gesture>().expect_err("not a gesture");
        assert_eq!(err.to_string(), "unknown gesture `dancing`");
    }

    #[test]
    fn errors_classify_and_carry_retry_hints() {
        let rl = LlmError::RateLimited {
            retry_after: Some(Duration::from_secs(7)),
        };
        assert!(rl.is_transient());
        assert_eq!(rl.retry_after(), Some(Duration::from_secs(7)));
        assert_eq!(rl.to_string(), "rate limited (retry after 7.0s)");
        let all = LlmError::AllFailed { last: Box::new(rl) };
        assert!(all.is_transient());
        assert_eq!(all.retry_after(), Some(Duration::from_secs(7)));
        assert!(!LlmError::Config("bad key".into()).is_transient());
        assert!(!LlmError::BadResponse("x".into()).is_transient());
        assert!(LlmError::Timeout.is_transient());
        assert!(LlmError::Unavailable("503".into()).is_transient());
        assert_eq!(LlmError::Timeout.outcome(), "timeout");
        assert_eq!(LlmError::CircuitOpen.outcome(), "circuit_open");
        assert_eq!(LlmError::Unavailable(String::new()).outcome(), "error");
    }

    #[test]
    fn animation_serializes_snake_case() {
        let a = Animation::new(Gesture::ShakingHead, Emotion::Concerned);
        let json = serde_json::to_value(a).expect("serialize");
        assert_eq!(
            json,
            serde_json::json!({"gesture": "shaking_head", "emotion": "concerned"})
        );
        assert_eq!(Role::Assistant.as_str(), "assistant");
        let u = Usage {
            prompt_tokens: 3,
            completion_tokens: 4,
        };
        assert_eq!(u.total(), 7);
    }
}
