//! HTTP routes of knowledge: thin handlers over
//! [`super::service::KnowledgeService`].

use actix_multipart::Multipart;
use actix_web::http::Method;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::service::Received;
use super::{SearchHit, SourceView};
use crate::auth::AuthUser;
use crate::error::ApiResult;
use crate::http::RouteDef;
use crate::http::upload;
use crate::ids::{PersonaId, SourceId};
use crate::pagination::{Cursor, List, PageQuery, page_of};
use crate::state::AppState;

pub fn routes() -> Vec<RouteDef> {
    vec![
        RouteDef::new(Method::POST, "/v1/knowledge", || {
            web::post().to(upload_source)
        }),
        RouteDef::new(Method::GET, "/v1/knowledge", || web::get().to(list_sources)),
        RouteDef::new(Method::GET, "/v1/knowledge/{id}", || {
            web::get().to(get_source)
        }),
        RouteDef::new(Method::DELETE, "/v1/knowledge/{id}", || {
            web::delete().to(delete_source)
        }),
        RouteDef::new(Method::GET, "/v1/knowledge/{id}/file", || {
            web::get().to(super::file::source_file)
        }),
        RouteDef::new(Method::GET, "/v1/knowledge/{id}/file-url", || {
            web::get().to(super::file::file_link)
        }),
        RouteDef::new(Method::GET, "/v1/search", || web::get().to(search)),
    ]
}

/// Uploads course material (teachers, admins): `multipart/form-data` with
/// `file` and an optional `title`. Answers at once; processing continues in
/// the background (watch `status`, `stage`, `progress`).
#[utoipa::path(post, path = "/v1/knowledge", tag = "knowledge",
    request_body(content_type = "multipart/form-data", description = "`file` (required), `title` (optional)"),
    responses(
        (status = 202, body = SourceView),
        (status = 413, description = "`payload_too_large`: over `knowledge.max_upload_bytes` (100 MiB by default)"),
        (status = 415, description = "`unsupported_media_type`: the bytes are not an accepted type; `detail` lists them"),
        (status = 403, description = "students may not upload")),
    security(("bearer" = [])))]
pub async fn upload_source(
    state: web::Data<AppState>,
    req: HttpRequest,
    user: AuthUser,
    payload: Multipart,
) -> ApiResult<HttpResponse> {
    user.require_staff()?;
    let limit = state.settings.knowledge.max_upload_bytes;
    upload::check_content_length(&req, limit)?;
    let tmp = state.settings.data_dir.join("tmp");
    let (received, _) = upload::receive(payload, &tmp, limit, &["title"]).await?;
    let row = state
        .knowledge
        .add_source(
            &user,
            Received {
                temp: received.temp,
                filename: received.filename,
                title: received.title,
                size: received.size,
                sha256: received.sha256,
            },
        )
        .await?;
    Ok(HttpResponse::Accepted().json(SourceView::from(row)))
}

/// The organisation's sources, oldest first.
#[utoipa::path(get, path = "/v1/knowledge", tag = "knowledge", params(PageQuery),
    responses((status = 200, body = List<SourceView>)), security(("bearer" = [])))]
pub async fn list_sources(
    state: web::Data<AppState>,
    user: AuthUser,
    q: web::Query<PageQuery>,
) -> ApiResult<HttpResponse> {
    let page = q.parse()?;
    let rows = state.knowledge.list(&user, page).await?;
    Ok(HttpResponse::Ok().json(page_of(
        rows,
        page.limit,
        |r| Cursor {
            t: r.created_at,
            id: r.id.0,
        },
        SourceView::from,
    )))
}

/// One source, with its processing state.
#[utoipa::path(get, path = "/v1/knowledge/{id}", tag = "knowledge",
    params(("id" = String, Path, description = "The source's id")),
    responses((status = 200, body = SourceView), (status = 404)), security(("bearer" = [])))]
pub async fn get_source(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<SourceId>,
) -> ApiResult<HttpResponse> {
    let row = state.knowledge.get(&user, path.into_inner()).await?;
    Ok(HttpResponse::Ok().json(SourceView::from(row)))
}

/// Deletes a source (teachers, admins): its passages leave search at once
/// and its file is removed.
#[utoipa::path(delete, path = "/v1/knowledge/{id}", tag = "knowledge",
    params(("id" = String, Path, description = "The source's id")),
    responses((status = 204), (status = 404)), security(("bearer" = [])))]
pub async fn delete_source(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<SourceId>,
) -> ApiResult<HttpResponse> {
    state.knowledge.delete(&user, path.into_inner()).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct SearchQuery {
    /// The question or keywords.
    q: String,
    /// Hits to return, 1–50 (default 10).
    k: Option<usize>,
    /// Search only this persona's sources. Required for students (without
    /// it the search covers the whole library, which is for teachers and
    /// admins: `403`); a persona of another organisation is `404`.
    persona_id: Option<uuid::Uuid>,
    /// `hybrid` (default: BM25 and vectors fused by reciprocal rank, as
    /// personas search), `bm25` or `dense` alone, to compare them.
    #[serde(default)]
    #[param(inline)]
    mode: crate::knowledge::SearchMode,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SearchAnswer {
    pub hits: Vec<SearchHit>,
}

/// Hybrid search (BM25 + vectors, fused by reciprocal rank) over the
/// organisation's ready sources.
#[utoipa::path(get, path = "/v1/search", tag = "knowledge", params(SearchQuery),
    responses((status = 200, body = SearchAnswer), (status = 422),
        (status = 403, description = "`forbidden`: a student searching without `persona_id`"),
        (status = 404, description = "`not_found`: `persona_id` names no persona of the caller's organisation")),
    security(("bearer" = [])))]
pub async fn search(
    state: web::Data<AppState>,
    user: AuthUser,
    q: web::Query<SearchQuery>,
) -> ApiResult<HttpResponse> {
    let q = q.into_inner();
    let hits = state
        .knowledge
        .search(&user, &q.q, q.k, q.persona_id.map(PersonaId), q.mode)
        .await?;
    Ok(HttpResponse::Ok().json(SearchAnswer { hits }))
}
