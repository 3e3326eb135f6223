//! Chat: sessions between a student and a persona, their durable
//! sequenced events ([`store`]), the chat-session actors ([`session`]), the
//! WebSocket transport ([`ws`]), this node's hub ([`hub`]) and the history
//! routes.

pub mod ask;
pub mod hub;
pub mod session;
pub mod store;
pub mod ws;

use actix_web::http::Method;
use actix_web::{HttpResponse, web};
use bwenge_llm::{Role, Turn};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;

use crate::auth::AuthUser;
use crate::auth::model::Role as UserRole;
use crate::error::{ApiError, ApiResult};
use crate::http::RouteDef;
use crate::ids::{PersonaId, SessionId, UserId};
use crate::pagination::{Cursor, List, PageQuery, page_of};

/// The session registry's address.
pub type SessionRegistry =
    actix::Addr<bwenge_actors::registry::Registry<SessionId, session::ChatSession>>;
use crate::personas::Answer;
use crate::state::AppState;
use store::{EventRow, NewEvent, SessionRow};

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
pub fn event_json(e: &EventRow) -> Value {
    let mut v = json!({
        "type": "message",
        "seq": e.seq,
        "role": e.role,
        "text": e.text,
        "created_at": e.created_at,
    });
    if let Some(c) = &e.client_id {
        v["client_id"] = json!(c);
    }
    if let Some(r) = e.reply_to {
        v["reply_to"] = json!(r);
    }
    if let Ok(Value::Object(extra)) = serde_json::from_str::<Value>(&e.payload) {
        for (k, val) in extra {
            v[k] = val;
        }
    }
    v
}

/// The stored payload of an answer event.
pub fn answer_payload(a: &Answer) -> String {
    json!({
        "citations": a.citations,
        "animation": a.animation,
        "grounded": a.grounded,
        "provider": a.provider,
        "usage": a.usage,
    })
    .to_string()
}

/// May `user` read this session? Students: their own; staff: the
/// organisation's (the session was already read within the organisation).
fn may_read(user: &AuthUser, s: &SessionRow) -> bool {
    user.role.is_staff() || s.user_id == user.user_id
}

/// The conversation so far, for `ask` with a `session_id`: the session must
/// be the asker's own and of this persona.
pub async fn history_for_ask(
    state: &AppState,
    user: &AuthUser,
    persona: PersonaId,
    session: SessionId,
) -> ApiResult<Vec<Turn>> {
    let s = store::session(&state.db, user.org_id, session)
        .await?
        .filter(|s| s.user_id == user.user_id && s.persona_id == persona)
        .ok_or_else(|| {
            ApiError::validation(
                "session_id",
                "session_id names no session of yours with this persona.",
            )
        })?;
    let n = (state.settings.personas.history_turns as i64).max(0);
    Ok(store::recent_events(&state.db, user.org_id, s.id, n)
        .await?
        .into_iter()
        .map(|e| Turn {
            role: if e.role == "user" {
                Role::User
            } else {
                Role::Assistant
            },
            text: e.text,
        })
        .collect())
}

/// Records a question asked over HTTP and its answer in the session.
pub async fn record_exchange(
    state: &AppState,
    user: &AuthUser,
    session: SessionId,
    question: &str,
    answer: &Answer,
) -> ApiResult<()> {
    let q = store::append(
        &state.db,
        user.org_id,
        session,
        &NewEvent {
            role: "user",
            client_id: None,
            reply_to: None,
            text: question,
            payload: "{}",
            at: chrono::Utc::now(),
        },
    )
    .await?
    .ok_or_else(ApiError::not_found)?;
    let payload = answer_payload(answer);
    store::append(
        &state.db,
        user.org_id,
        session,
        &NewEvent {
            role: "assistant",
            client_id: None,
            reply_to: Some(q.seq()),
            text: &answer.text,
            payload: &payload,
            at: chrono::Utc::now(),
        },
    )
    .await?;
    Ok(())
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
pub struct SessionHistory {
    pub id: SessionId,
    pub persona_id: PersonaId,
    pub user_id: UserId,
    pub created_at: DateTime<Utc>,
    /// Every stored event in `seq` order: questions (`role: user`, with
    /// `client_id`) and answers (`role: assistant`, with `reply_to`,
    /// `citations`, `animation`, `grounded`).
    #[schema(value_type = Vec<Object>)]
    pub events: Vec<Value>,
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
    let who = if user.role == UserRole::Student {
        Some(user.user_id)
    } else {
        q.user_id
    };
    let rows = store::list_sessions(&state.db, user.org_id, who, q.persona_id, page).await?;
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
    let s = store::session(&state.db, user.org_id, path.into_inner())
        .await?
        .filter(|s| may_read(&user, s))
        .ok_or_else(ApiError::not_found)?;
    let mut events = Vec::new();
    let mut after = 0;
    loop {
        let batch = store::events_after(&state.db, user.org_id, s.id, after, 500).await?;
        let done = batch.len() < 500;
        if let Some(last) = batch.last() {
            after = last.seq;
        }
        events.extend(batch.iter().map(event_json));
        if done {
            break;
        }
    }
    Ok(HttpResponse::Ok().json(SessionHistory {
        id: s.id,
        persona_id: s.persona_id,
        user_id: s.user_id,
        created_at: s.created_at,
        events,
    }))
}
