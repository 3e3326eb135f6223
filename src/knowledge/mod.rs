//! Knowledge: uploads, their ingest (see [`ingest`]), and hybrid search over
//! the organisation's passages (see [`index`]).

pub mod embedders;
pub mod file;
pub mod index;
pub mod ingest;
pub mod store;
pub mod transcribe;
pub mod upload;

use std::collections::HashSet;

use actix_multipart::Multipart;
use actix_web::http::Method;
use actix_web::{HttpRequest, HttpResponse, web};
use bwenge_actors::messages::ingest::{Cancel, Enqueue, JobId};
use bwenge_parsers::MediaKind;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::AuthUser;
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::http::RouteDef;
use crate::ids::{ChunkId, SourceId};
use crate::pagination::{Cursor, List, PageQuery, page_of};
use crate::state::AppState;
use store::SourceRow;

/// Bus topic on which a node announces that an organisation's chunks
/// changed (payload: `<node id> <org id>`).
pub const INDEX_TOPIC: &str = "index.changed";

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
            web::get().to(file::source_file)
        }),
        RouteDef::new(Method::GET, "/v1/search", || web::get().to(search)),
    ]
}

/// `source` as API.md defines it.
#[derive(Debug, Serialize, ToSchema)]
pub struct SourceView {
    pub id: SourceId,
    pub title: String,
    pub filename: String,
    pub media_type: String,
    pub size_bytes: i64,
    /// `queued`, `processing`, `ready` or `failed`.
    pub status: String,
    /// `queued`, `extracting`, `chunking`, `embedding`, `indexing`, `ready`.
    pub stage: String,
    /// From 0 to 1.
    pub progress: f64,
    pub page_count: Option<i64>,
    pub chunk_count: Option<i64>,
    /// Why processing failed, for a person to read.
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<SourceRow> for SourceView {
    fn from(r: SourceRow) -> Self {
        Self {
            id: r.id,
            title: r.title,
            filename: r.filename,
            media_type: r.media_type,
            size_bytes: r.size_bytes,
            status: r.status,
            stage: r.stage,
            progress: r.progress,
            page_count: r.page_count,
            chunk_count: r.chunk_count,
            error: r.error,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

const ACCEPTED: &str = "PDF, Word (.docx), PowerPoint (.pptx), plain text, Markdown, HTML, \
     and SRT or WebVTT captions";

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
    let path = received.temp.to_path_buf();
    let hint = received.filename.clone();
    let sniffed =
        tokio::task::spawn_blocking(move || bwenge_parsers::sniff_with_mime(&path, Some(&hint)))
            .await
            .map_err(|e| ApiError::internal(anyhow::Error::new(e)))?
            .map_err(|e| {
                ApiError::internal(anyhow::Error::new(e).context("sniffing the upload"))
            })?;
    match sniffed.kind {
        MediaKind::Unknown => {
            return Err(ApiError::new(
                ErrorCode::UnsupportedMediaType,
                format!("This file type is not supported. Accepted: {ACCEPTED}."),
            ));
        }
        MediaKind::Audio | MediaKind::Video
            if !transcribe::enabled(&state.settings.transcription) =>
        {
            return Err(ApiError::new(
                ErrorCode::UnsupportedMediaType,
                "Audio and video need a transcription service, and none is configured: set \
                 BWENGE_TRANSCRIPTION__BASE_URL (an OpenAI-compatible /v1/audio/transcriptions \
                 endpoint) and, if needed, BWENGE_TRANSCRIPTION__API_KEY.",
            ));
        }
        _ => {}
    }
    let id = SourceId::new();
    let key = format!("sources/{}/{}", user.org_id, id);
    let dest = upload::storage_path(&state.settings.data_dir, &key);
    if let Some(dir) = dest.parent() {
        tokio::fs::create_dir_all(dir).await.map_err(|e| {
            ApiError::internal(anyhow::Error::new(e).context("creating the source directory"))
        })?;
    }
    received.temp.persist(&dest).map_err(|e| {
        ApiError::internal(anyhow::Error::new(e.error).context("keeping the upload"))
    })?;
    let now = Utc::now();
    let title = received.title.unwrap_or_else(|| {
        received
            .filename
            .rsplit_once('.')
            .map_or(received.filename.clone(), |(stem, _)| stem.to_owned())
    });
    let row = SourceRow {
        id,
        organization_id: user.org_id,
        title,
        filename: received.filename,
        media_type: sniffed.mime.to_owned(),
        size_bytes: received.size as i64,
        sha256: received.sha256,
        storage_key: key,
        status: "queued".into(),
        stage: "queued".into(),
        progress: 0.0,
        page_count: None,
        chunk_count: None,
        error: None,
        attempts: 0,
        uploaded_by: Some(user.user_id),
        created_at: now,
        updated_at: now,
    };
    if let Err(e) = store::insert_source(&state.db, &row).await {
        let _ = tokio::fs::remove_file(&dest).await;
        return Err(e.into());
    }
    state.ingest.do_send(Enqueue(JobId(id.0)));
    metrics::counter!("bwenge_knowledge_uploads_total", "kind" => sniffed.kind.as_str())
        .increment(1);
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
    let rows = store::list_sources(&state.db, user.org_id, page).await?;
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
    let row = store::source(&state.db, user.org_id, path.into_inner())
        .await?
        .ok_or_else(ApiError::not_found)?;
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
    user.require_staff()?;
    let id = path.into_inner();
    state.ingest.do_send(Cancel(JobId(id.0)));
    let key = store::delete_source(&state.db, user.org_id, id)
        .await?
        .ok_or_else(ApiError::not_found)?;
    state.search.delete_source(user.org_id, id).await?;
    let _ = state
        .bus
        .publish(
            INDEX_TOPIC,
            format!("{} {}", state.node_id, user.org_id).as_bytes(),
        )
        .await;
    let file = upload::storage_path(&state.settings.data_dir, &key);
    if let Err(e) = tokio::fs::remove_file(&file).await
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(error = %e, "could not remove a deleted source's file");
    }
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct SearchQuery {
    /// The question or keywords.
    q: String,
    /// Hits to return, 1–50 (default 10).
    k: Option<usize>,
    /// Search only this persona's sources (when personas exist).
    persona_id: Option<uuid::Uuid>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SearchHit {
    pub chunk_id: ChunkId,
    pub source_id: SourceId,
    pub source_title: String,
    pub page: i64,
    pub text: String,
    pub score: f32,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SearchAnswer {
    pub hits: Vec<SearchHit>,
}

/// Hybrid search (BM25 + vectors, fused by reciprocal rank) over the
/// organisation's ready sources.
#[utoipa::path(get, path = "/v1/search", tag = "knowledge", params(SearchQuery),
    responses((status = 200, body = SearchAnswer), (status = 422)), security(("bearer" = [])))]
pub async fn search(
    state: web::Data<AppState>,
    user: AuthUser,
    q: web::Query<SearchQuery>,
) -> ApiResult<HttpResponse> {
    let query = q.q.trim();
    if query.is_empty() || query.chars().count() > 2000 {
        return Err(ApiError::validation("q", "Ask with 1 to 2000 characters."));
    }
    let k = q.k.unwrap_or(10);
    if k == 0 || k > 50 {
        return Err(ApiError::validation("k", "k must be between 1 and 50."));
    }
    let scope: Option<HashSet<SourceId>> = match q.persona_id {
        None => None,
        Some(id) => {
            let id = crate::ids::PersonaId(id);
            let persona = crate::personas::store::get(&state.db, user.org_id, id)
                .await?
                .ok_or_else(ApiError::not_found)?;
            if persona.scope_all {
                None
            } else {
                Some(
                    crate::personas::store::sources(&state.db, user.org_id, id)
                        .await?
                        .into_iter()
                        .collect(),
                )
            }
        }
    };
    let hits = search_passages(&state.db, &state.search, user.org_id, query, k, scope).await?;
    Ok(HttpResponse::Ok().json(SearchAnswer { hits }))
}

/// Search with the passages' text and titles, read back from the database
/// within the organisation.
pub async fn search_passages(
    db: &crate::db::Db,
    search: &index::SearchService,
    org: crate::ids::OrgId,
    query: &str,
    k: usize,
    scope: Option<HashSet<SourceId>>,
) -> ApiResult<Vec<SearchHit>> {
    let hits = search.search(org, query, k, scope).await?;
    let ids: Vec<ChunkId> = hits.iter().map(index::chunk_id).collect();
    let rows = store::chunks_by_ids(db, org, &ids).await?;
    Ok(hits
        .iter()
        .filter_map(|h| {
            let row = rows.iter().find(|r| r.id.0 == h.chunk_id)?;
            Some(SearchHit {
                chunk_id: row.id,
                source_id: row.source_id,
                source_title: row.title.clone(),
                page: row.page,
                text: row.text.clone(),
                score: h.score,
            })
        })
        .collect())
}
