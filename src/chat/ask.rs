//! `POST /v1/personas/{id}/ask`: one question over HTTP, optionally as a
//! turn of a chat session (its history given to the model, the exchange
//! recorded in it). Served by chat, which owns conversations; the
//! answering is the persona's.

use actix_web::{HttpResponse, web};
use serde::Deserialize;
use utoipa::ToSchema;

use super::ChatError;
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
    responses((status = 200, body = Answer), (status = 402, description = "`quota_exceeded`: the month's questions are used up; `detail` says when they reset"),
        (status = 404, description = "`not_found`: no such persona, or `session_id` names no session of the caller's with it"), (status = 422, description = "empty or over-long question"),
        (status = 429, description = "`rate_limited`, with `Retry-After`: the caller's question budget (`chat.messages_burst`, `chat.messages_per_sec`), shared with the WebSocket"),
        (status = 503, description = "`llm_unavailable`: no provider of the chain could answer; `overloaded`: more questions wait to be answered on this node than `chat.answer_queue` allows, nothing was stored or counted; see `Retry-After` for both")),
    security(("bearer" = [])))]
pub async fn ask(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<PersonaId>,
    body: web::Json<AskBody>,
) -> ApiResult<HttpResponse> {
    let persona = path.into_inner();
    let body = body.into_inner();
    let asked = std::time::Instant::now();
    let text = state.personas.check_question(&body.question)?;
    // The same budget as questions over the WebSocket.
    state.chat.check_question_rate(user.into()).await?;
    let history = match body.session_id {
        Some(session) => super::history_for_ask(&state, &user, persona, session).await?,
        None => Vec::new(),
    };
    // The same line as questions over the WebSocket: refused when full,
    // before anything is counted or stored.
    let ticket = state
        .chat
        .core()
        .admission
        .admit()
        .map_err(ChatError::from)?;
    state.chat.count_question(user.org_id).await?;
    let turn = ticket.turn().await;
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
        .await;
    drop(turn);
    let answer = match answer {
        Ok(a) => a,
        Err(e) => {
            // Not answered: the question does not count.
            state.chat.uncount_question(user.org_id).await;
            return Err(e.into());
        }
    };
    let seqs = match body.session_id {
        Some(session) => {
            Some(super::record_exchange(&state, &user, session, &text, &answer).await?)
        }
        None => None,
    };
    // Over HTTP the whole answer comes at once: its first token is its last.
    state.chat.report(super::Activity::AskedOverHttp {
        org: user.org_id,
        user: user.user_id,
        persona,
        session: body.session_id,
        seq: seqs.map(|(q, _)| q),
        answer_seq: seqs.map(|(_, a)| a),
        text,
        grounded: answer.grounded,
        citations: answer.citations.len(),
        refusal: answer.refusal.clone(),
        provider: Some(answer.provider.clone()),
        ms: u64::try_from(asked.elapsed().as_millis()).unwrap_or(u64::MAX),
        at: chrono::Utc::now(),
    });
    Ok(HttpResponse::Ok().json(answer))
}
