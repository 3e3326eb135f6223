//! `POST /v1/personas/{id}/ask`: one question over HTTP, optionally as a
//! turn of a chat session (its history given to the model, the exchange
//! recorded in it). Served by chat, which owns conversations; the
//! answering is the persona's.

use actix_web::{HttpResponse, web};
use serde::Deserialize;
use utoipa::ToSchema;

use crate::auth::AuthUser;
use crate::error::ApiResult;
use crate::ids::{PersonaId, SessionId};
use crate::personas::{Answer, Question};
use crate::state::AppState;

/// Body of `POST /v1/personas/{id}/ask`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct AskBody {
    pub question: String,
    /// A chat session of this persona to take the conversation from (and
    /// to record the exchange in).
    pub session_id: Option<SessionId>,
}

/// Asks a persona a question and returns the finished answer (students,
/// teachers and admins of the organisation).
#[utoipa::path(post, path = "/v1/personas/{id}/ask", tag = "personas", request_body = AskBody,
    params(("id" = String, Path, description = "The persona's id")),
    responses((status = 200, body = Answer), (status = 404, description = "`not_found`: no such persona, or `session_id` names no session of the caller's with it"), (status = 422, description = "empty or over-long question"),
        (status = 429, description = "`rate_limited`, with `Retry-After`: the caller's question budget (`chat.messages_burst`, `chat.messages_per_sec`), shared with the WebSocket"),
        (status = 503, description = "`llm_unavailable`: no provider of the chain could answer; see `Retry-After`")),
    security(("bearer" = [])))]
pub async fn ask(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<PersonaId>,
    body: web::Json<AskBody>,
) -> ApiResult<HttpResponse> {
    let persona = path.into_inner();
    let body = body.into_inner();
    let text = state.personas.check_question(&body.question)?;
    // The same budget as questions over the WebSocket.
    state.chat.check_question_rate(user.into()).await?;
    let history = match body.session_id {
        Some(session) => super::history_for_ask(&state, &user, persona, session).await?,
        None => Vec::new(),
    };
    let answer = state
        .personas
        .ask(
            persona,
            Question {
                org: user.org_id,
                user: user.user_id,
                text: text.clone(),
                history,
                deltas: None,
            },
        )
        .await?;
    if let Some(session) = body.session_id {
        super::record_exchange(&state, &user, session, &text, &answer).await?;
    }
    Ok(HttpResponse::Ok().json(answer))
}
