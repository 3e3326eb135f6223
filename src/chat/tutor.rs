//! The port through which chat asks a persona: [`Tutor`], owned by chat,
//! and [`PersonaTutor`], its one implementation over the personas domain.
//! Besides this file, only the two wrappers the personas' HTTP `ask` calls
//! (`chat::history_for_ask`, `chat::record_exchange`) name personas'
//! types. Chat's own logic is tested with a stand-in tutor.

use std::sync::Arc;

use async_trait::async_trait;
use bwenge_llm::Turn;
use tokio::sync::mpsc;

use super::error::ChatError;
use super::frames::AnswerExtras;
use crate::db::Db;
use crate::ids::{OrgId, PersonaId, UserId};
use crate::personas::PersonaError;

/// A piece of an answer as it streams: `Text`, or `Restart` (forget the
/// pieces so far; the model changed midway). The personas' own stream type,
/// reused as is so that pieces reach the sockets without a hop through
/// another channel and task per answer (plain data: chat's tests build
/// them without any persona).
pub type Piece = crate::personas::Delta;

/// What a tutor is asked.
#[derive(Debug)]
pub struct Asked {
    pub org: OrgId,
    pub user: UserId,
    pub persona: PersonaId,
    pub text: String,
    /// Earlier turns, oldest first.
    pub history: Vec<Turn>,
    /// Where pieces go as they come (`None`: only the finished answer).
    pub pieces: Option<mpsc::Sender<Piece>>,
}

/// A finished answer: its text and what is stored and sent with it.
#[derive(Debug, Clone, PartialEq)]
pub struct TutorAnswer {
    pub text: String,
    pub extras: AnswerExtras,
}

/// What chat needs from the personas: is the question acceptable, does the
/// persona exist, and its answer.
#[async_trait]
pub trait Tutor: Send + Sync + 'static {
    /// The question as it will be asked (trimmed), or why it cannot be.
    fn check_question(&self, text: &str) -> Result<String, ChatError>;
    async fn persona_exists(&self, org: OrgId, persona: PersonaId) -> Result<bool, ChatError>;
    async fn ask(&self, q: Asked) -> Result<TutorAnswer, ChatError>;
}

/// [`Tutor`] over the personas domain: its registry of persona actors and
/// its store.
pub struct PersonaTutor {
    pub db: Db,
    pub personas: crate::personas::PersonaRegistry,
    pub max_question_chars: usize,
}

impl PersonaTutor {
    pub fn new(
        db: Db,
        personas: crate::personas::PersonaRegistry,
        max_question_chars: usize,
    ) -> Arc<Self> {
        Arc::new(Self {
            db,
            personas,
            max_question_chars,
        })
    }
}

/// An answer's extras as chat stores and sends them.
pub fn extras_of(a: &crate::personas::Answer) -> AnswerExtras {
    AnswerExtras {
        animation: serde_json::to_value(a.animation).ok(),
        citations: serde_json::to_value(&a.citations).ok(),
        grounded: Some(a.grounded),
        provider: Some(serde_json::Value::String(a.provider.clone())),
        usage: serde_json::to_value(a.usage).ok(),
        refusal: a.refusal.clone(),
    }
}

/// The personas' failures, as chat's.
fn from_persona(e: PersonaError) -> ChatError {
    match e {
        PersonaError::NotFound => ChatError::PersonaNotFound,
        PersonaError::LlmUnavailable { retry_after } => ChatError::ModelUnavailable { retry_after },
        PersonaError::Invalid(i) => ChatError::InvalidQuestion(i.detail),
        PersonaError::Store(e) => ChatError::Store(e),
        PersonaError::Forbidden(e) => {
            ChatError::Internal(anyhow::Error::new(e).context("asking a persona was refused"))
        }
        PersonaError::Internal(e) => ChatError::Internal(e),
    }
}

#[async_trait]
impl Tutor for PersonaTutor {
    fn check_question(&self, text: &str) -> Result<String, ChatError> {
        crate::personas::check_question(text, self.max_question_chars)
            .map_err(|e| ChatError::InvalidQuestion(e.detail))
    }

    async fn persona_exists(&self, org: OrgId, persona: PersonaId) -> Result<bool, ChatError> {
        Ok(crate::personas::store::get(&self.db, org, persona)
            .await?
            .is_some())
    }

    async fn ask(&self, q: Asked) -> Result<TutorAnswer, ChatError> {
        let answer = crate::personas::ask_with(
            &self.personas,
            q.persona,
            crate::personas::Question {
                org: q.org,
                user: q.user,
                text: q.text,
                history: q.history,
                deltas: q.pieces,
            },
        )
        .await
        .map_err(from_persona)?;
        Ok(TutorAnswer {
            extras: extras_of(&answer),
            text: answer.text,
        })
    }
}
