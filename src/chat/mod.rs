//! Chat: sessions between a student and a persona, their durable
//! sequenced events ([`store`]), the chat service ([`service`]) that the
//! history routes, the WebSocket connections ([`ws`]) and the chat-session
//! actors ([`session`]) call, this node's hub ([`hub`]), the frames
//! ([`frames`]), chat's errors ([`error`]) and the port through which it
//! asks the personas ([`tutor`]).
//!
//! The handlers here are thin: extract, call [`ChatService`], map the
//! result (errors through [`crate::error::chat`]).

pub mod activity;
pub mod admission;
pub mod ask;
pub mod error;
pub mod frames;
pub mod hub;
pub mod quota;
pub mod service;
pub mod session;
pub mod store;
pub mod tutor;
pub mod ws;

use std::borrow::Cow;

use actix_web::http::Method;
use actix_web::{HttpResponse, web};
use bwenge_llm::Turn;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub use activity::{Activity, ChatActivity};
pub use error::{BadFrame, ChatError};
pub use frames::{ClientFrame, EventFrame, EventRole, ServerFrame};
pub use quota::QuestionQuota;
pub use service::{ChatConfig, ChatService, ChatUser, SessionRegistry};
pub use tutor::{PersonaTutor, Tutor};

use crate::auth::AuthUser;
use crate::error::{ApiError, ApiResult};
use crate::http::RouteDef;
use crate::ids::{PersonaId, SessionId, UserId};
use crate::pagination::{Cursor, List, PageQuery, page_of};
use crate::personas::Answer;
use crate::state::AppState;
use store::{EventRow, SessionRow};

pub fn routes() -> Vec<RouteDef> {
    vec![
        RouteDef::new(Method::GET, "/v1/chat/sessions", || {
            web::get().to(list_sessions)
        }),
        RouteDef::new(Method::GET, "/v1/chat/sessions/{id}", || {
            web::get().to(get_session)
        }),
        RouteDef::new(Method::GET, "/v1/chat/ws", || web::get().to(ws::chat_ws)),
        RouteDef::new(Method::POST, "/v1/personas/{id}/ask", || {
            web::post().to(ask::ask)
        }),
    ]
}

/// An event as clients see it (in history, replay and live): the same
/// object as the WebSocket `message` frame.
pub fn event_frame(e: &EventRow) -> EventFrame<'_> {
    // Questions store `{}`: nothing to read.
    let extras = if e.payload.len() > 2 {
        serde_json::from_str(&e.payload).unwrap_or_default()
    } else {
        frames::AnswerExtras::default()
    };
    EventFrame {
        extras: Cow::Owned(extras),
        client_id: e.client_id.as_deref().map(Cow::Borrowed),
        created_at: Some(e.created_at),
        reply_to: e.reply_to,
        role: e.role,
        seq: e.seq,
        text: Cow::Borrowed(&e.text),
    }
}

/// The conversation so far, for `ask` with a `session_id`: the session must
/// be the asker's own and of this persona.
pub async fn history_for_ask(
    state: &AppState,
    user: &AuthUser,
    persona: PersonaId,
    session: SessionId,
) -> ApiResult<Vec<Turn>> {
    Ok(state
        .chat
        .history_for_ask((*user).into(), persona, session)
        .await?)
}

/// Records a question asked over HTTP and its answer in the session;
/// returns the question's `seq`.
pub async fn record_exchange(
    state: &AppState,
    user: &AuthUser,
    session: SessionId,
    question: &str,
    answer: &Answer,
) -> ApiResult<(i64, i64)> {
    let extras = tutor::extras_of(answer);
    Ok(state
        .chat
        .record_exchange((*user).into(), session, question, &answer.text, &extras)
        .await?)
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SessionSummary {
    pub id: SessionId,
    pub persona_id: PersonaId,
    pub user_id: UserId,
    /// The `seq` of the session's latest event (0: none yet).
    pub last_seq: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<SessionRow> for SessionSummary {
    fn from(s: SessionRow) -> Self {
        Self {
            id: s.id,
            persona_id: s.persona_id,
            user_id: s.user_id,
            last_seq: s.last_seq,
            created_at: s.created_at,
            updated_at: s.updated_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SessionHistory<'a> {
    pub id: SessionId,
    pub persona_id: PersonaId,
    pub user_id: UserId,
    pub created_at: DateTime<Utc>,
    /// Every stored event in `seq` order: questions (`role: user`, with
    /// `client_id`) and answers (`role: assistant`, with `reply_to`,
    /// `citations`, `animation`, `grounded`).
    #[schema(value_type = Vec<Object>)]
    pub events: Vec<frames::Tagged<'a>>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct SessionFilter {
    /// Sessions with this persona.
    pub persona_id: Option<PersonaId>,
    /// Sessions of this user (teachers and admins; students always see
    /// only their own).
    pub user_id: Option<UserId>,
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

/// Chat sessions, newest first: a student's own; for teachers and admins
/// the organisation's, filterable by `persona_id` and `user_id`.
#[utoipa::path(get, path = "/v1/chat/sessions", tag = "chat", params(SessionFilter),
    responses((status = 200, body = List<SessionSummary>)), security(("bearer" = [])))]
pub async fn list_sessions(
    state: web::Data<AppState>,
    user: AuthUser,
    q: web::Query<SessionFilter>,
) -> ApiResult<HttpResponse> {
    let page = PageQuery {
        limit: q.limit,
        cursor: q.cursor.clone(),
    }
    .parse()?;
    let rows = state
        .chat
        .list_sessions(user.into(), q.user_id, q.persona_id, page)
        .await?;
    Ok(HttpResponse::Ok().json(page_of(
        rows,
        page.limit,
        |r| Cursor {
            t: r.created_at,
            id: r.id.0,
        },
        SessionSummary::from,
    )))
}

/// One session with all its events.
#[utoipa::path(get, path = "/v1/chat/sessions/{id}", tag = "chat",
    params(("id" = String, Path, description = "The session's id")),
    responses((status = 200, body = SessionHistory), (status = 404)), security(("bearer" = [])))]
pub async fn get_session(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<SessionId>,
) -> ApiResult<HttpResponse> {
    let (s, events) = state
        .chat
        .history(user.into(), path.into_inner())
        .await
        .map_err(|e| match e {
            // As every missing resource reads over HTTP.
            ChatError::SessionNotFound => ApiError::not_found(),
            other => other.into(),
        })?;
    Ok(HttpResponse::Ok().json(SessionHistory {
        id: s.id,
        persona_id: s.persona_id,
        user_id: s.user_id,
        created_at: s.created_at,
        events: events
            .iter()
            .map(|e| frames::Tagged::Message(event_frame(e)))
            .collect(),
    }))
}
