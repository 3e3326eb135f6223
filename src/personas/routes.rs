//! HTTP routes of personas: thin handlers over
//! [`super::service::PersonaCatalog`]. (`POST /v1/personas/{id}/ask` is
//! served by chat, which owns conversations.)

use actix_web::http::Method;
use actix_web::{HttpResponse, web};

use super::model::{PersonaInput, PersonaView};
use crate::auth::AuthUser;
use crate::error::ApiResult;
use crate::http::RouteDef;
use crate::ids::PersonaId;
use crate::pagination::{List, PageQuery};
use crate::state::AppState;

pub fn routes() -> Vec<RouteDef> {
    vec![
        RouteDef::new(Method::POST, "/v1/personas", || web::post().to(create)),
        RouteDef::new(Method::GET, "/v1/personas", || web::get().to(list)),
        RouteDef::new(Method::GET, "/v1/personas/{id}", || web::get().to(get)),
        RouteDef::new(Method::PATCH, "/v1/personas/{id}", || {
            web::patch().to(update)
        }),
        RouteDef::new(Method::DELETE, "/v1/personas/{id}", || {
            web::delete().to(delete)
        }),
    ]
}

/// Creates a persona (teachers, admins).
#[utoipa::path(post, path = "/v1/personas", tag = "personas", request_body = PersonaInput,
    responses((status = 201, body = PersonaView), (status = 422, description = "`validation_failed` naming the field"),
        (status = 403)), security(("bearer" = [])))]
pub async fn create(
    state: web::Data<AppState>,
    user: AuthUser,
    body: web::Json<PersonaInput>,
) -> ApiResult<HttpResponse> {
    let view = state.personas.create(&user, body.into_inner()).await?;
    Ok(HttpResponse::Created().json(view))
}

/// The organisation's personas, oldest first.
#[utoipa::path(get, path = "/v1/personas", tag = "personas", params(PageQuery),
    responses((status = 200, body = List<PersonaView>)), security(("bearer" = [])))]
pub async fn list(
    state: web::Data<AppState>,
    user: AuthUser,
    q: web::Query<PageQuery>,
) -> ApiResult<HttpResponse> {
    let page = q.parse()?;
    Ok(HttpResponse::Ok().json(state.personas.list(&user, page).await?))
}

/// One persona.
#[utoipa::path(get, path = "/v1/personas/{id}", tag = "personas",
    params(("id" = String, Path, description = "The persona's id")),
    responses((status = 200, body = PersonaView), (status = 404)), security(("bearer" = [])))]
pub async fn get(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<PersonaId>,
) -> ApiResult<HttpResponse> {
    Ok(HttpResponse::Ok().json(state.personas.get(&user, path.into_inner()).await?))
}

/// Changes a persona (teachers, admins): only the fields sent change;
/// `null` clears an optional one.
#[utoipa::path(patch, path = "/v1/personas/{id}", tag = "personas", request_body = PersonaInput,
    params(("id" = String, Path, description = "The persona's id")),
    responses((status = 200, body = PersonaView), (status = 404), (status = 422)), security(("bearer" = [])))]
pub async fn update(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<PersonaId>,
    body: web::Json<PersonaInput>,
) -> ApiResult<HttpResponse> {
    let view = state
        .personas
        .update(&user, path.into_inner(), body.into_inner())
        .await?;
    Ok(HttpResponse::Ok().json(view))
}

/// Deletes a persona and its chat sessions (teachers, admins).
#[utoipa::path(delete, path = "/v1/personas/{id}", tag = "personas",
    params(("id" = String, Path, description = "The persona's id")),
    responses((status = 204), (status = 404)), security(("bearer" = [])))]
pub async fn delete(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<PersonaId>,
) -> ApiResult<HttpResponse> {
    state.personas.delete(&user, path.into_inner()).await?;
    Ok(HttpResponse::NoContent().finish())
}
