//! The handler of `GET /v1/classroom/ws`: authenticates and checks the
//! role and persona before the upgrade, starts following the organisation,
//! then hands the socket to its connection task.

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;

use super::error::ClassroomError;
use super::transport;
use super::ws::{Watcher, run};
use crate::auth::AuthUser;
use crate::error::{ApiError, ApiResult};
use crate::ids::PersonaId;
use crate::state::AppState;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct WatchQuery {
    /// Only this persona's sessions.
    pub persona_id: Option<PersonaId>,
    /// For browsers: the access token, instead of the Authorization header.
    #[allow(dead_code)] // read by the authentication extractor
    pub access_token: Option<String>,
}

/// Watches the organisation's live classroom (teachers and admins).
///
/// A WebSocket of JSON frames (`ClassroomFrame`): first one `snapshot`
/// (`online`: students connected to a chat session now, on any node;
/// `recent`: the latest questions, oldest first), then live `presence`
/// (a student's chat socket attached to a session or left it), `question`
/// (a question stored: over the chat socket, or over
/// `POST /v1/personas/{id}/ask` with a `session_id`; a question asked over
/// HTTP without a session belongs to no session and is not shown, though
/// analytics counts it), `answer` (its answer stored: `grounded`,
/// `citations` count, `first_token_ms`, `refusal`) and `flag` (a question
/// refused for safety or a blocked topic), from every node, filtered by
/// `persona_id` when given. The client may send `{"type":"ping"}` (→
/// `pong`); WebSocket pings come every `chat.heartbeat_interval_secs`.
/// Close codes: 4401 tokens revoked, 4408 silent past the client timeout,
/// 1013 too slow or stream lost (reconnect), 1011 snapshot unreadable,
/// 1008 repeated malformed frames, 1009 frame too large.
#[utoipa::path(get, path = "/v1/classroom/ws", tag = "classroom", params(WatchQuery),
    responses(
        (status = 101, description = "WebSocket of `ClassroomFrame`s: `snapshot`, then `presence`, `question`, `answer`, `flag` (and `pong`, `error`)", body = super::frames::ClassroomFrame),
        (status = 401, description = "`unauthorized`: missing or invalid token"),
        (status = 403, description = "`forbidden`: students cannot watch the classroom"),
        (status = 404, description = "`not_found`: `persona_id` is not one of the organisation's"),
        (status = 503, description = "`service_unavailable`: the bus cannot be reached")),
    security(("bearer" = [])))]
pub async fn classroom_ws(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
    user: AuthUser,
    q: web::Query<WatchQuery>,
) -> ApiResult<HttpResponse> {
    if !user.role.is_staff() {
        return Err(ClassroomError::StaffOnly.into());
    }
    let classroom = &state.classroom;
    if let Some(p) = q.persona_id
        && !classroom.persona_exists(user.org_id, p).await?
    {
        return Err(ClassroomError::PersonaNotFound.into());
    }
    let watch = classroom.watch(user.org_id).await?;
    let (response, socket, inbox) = transport::upgrade(&req, body)
        .ok_or_else(|| ApiError::bad_request("This route only speaks WebSocket."))?;
    let who = Watcher {
        user: user.user_id,
        org: user.org_id,
        persona: q.persona_id,
    };
    actix_web::rt::spawn(run(who, watch, socket, inbox, classroom.clone()));
    Ok(response)
}
