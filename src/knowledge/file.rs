//! `GET /v1/knowledge/{id}/file`: the original file of a source, so that a
//! citation can open the document at its page (`#page=N` for a PDF).
//!
//! Who may read it: staff (teachers, admins) any source of their
//! organisation; a student only a source in the scope of one of the
//! organisation's personas (a persona scoped to "every source" covers them
//! all). Anything else, and any source of another organisation, is `404`,
//! exactly as one that does not exist.
//!
//! The answer carries the sniffed `Content-Type`, a strong `ETag` from the
//! file's SHA-256, `Accept-Ranges: bytes`, `Cache-Control: private,
//! no-cache` (the bearer token decides, so no shared cache may keep it),
//! `Content-Disposition: inline` with the uploaded name and `nosniff`.
//! `If-None-Match` → `304`; one `Range` → `206`; a range past the end →
//! `416`; the same byte-range helpers as `/assets/{key}`.
//!
//! A browser cannot put a bearer token on a link it opens in a new tab, so
//! `GET /v1/knowledge/{id}/file-url` hands whoever may read the file a link
//! to it signed for five minutes (`?org=…&exp=…&sig=…`, the asset signing
//! key over `knowledge/{org}/{id}`): the tab opens the real URL, and a PDF
//! opens at `#page=N` in the browser's own viewer. Anything but a PDF is
//! served under `Content-Security-Policy: sandbox`, so an uploaded HTML page
//! opened from the app's origin runs no script there.

use actix_web::body::SizedStream;
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, web};
use bwenge_avatars::http_range::{content_range, etag_matches, strong_etag};

use actix_web::FromRequest;
use bwenge_avatars::signing::SignatureError;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::auth::AuthUser;
use crate::db::StoreError;
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::ids::{OrgId, SourceId};
use crate::on_db;
use crate::state::AppState;

use super::store;

/// Whether a persona of `org` has `source` in its scope.
async fn in_some_persona_scope(
    db: &crate::db::Db,
    org: OrgId,
    source: SourceId,
) -> Result<bool, StoreError> {
    let sql = "SELECT COUNT(*) FROM personas p WHERE p.organization_id = $1 AND \
               (p.scope_all OR EXISTS (SELECT 1 FROM persona_sources s \
               WHERE s.persona_id = p.id AND s.source_id = $2 AND s.organization_id = $1))";
    let (n,): (i64,) = on_db!(db, |pool| sqlx::query_as(sql)
        .bind(org)
        .bind(source)
        .fetch_one(pool)
        .await?);
    Ok(n > 0)
}

/// How long a file link works, in seconds.
const FILE_LINK_TTL_SECS: i64 = 300;

/// What a file link signs.
fn link_key(org: OrgId, id: SourceId) -> String {
    format!("knowledge/{org}/{id}")
}

/// A source `user` may read, or `404`.
async fn readable(state: &AppState, user: &AuthUser, id: SourceId) -> ApiResult<store::SourceRow> {
    let row = store::source(&state.db, user.org_id, id)
        .await?
        .ok_or_else(ApiError::not_found)?;
    if user.require_staff().is_err() && !in_some_persona_scope(&state.db, user.org_id, id).await? {
        return Err(ApiError::not_found());
    }
    Ok(row)
}

/// A link to a source's file that needs no token, and when it stops working.
#[derive(Debug, Serialize, ToSchema)]
pub struct FileLink {
    /// Relative to this server: `/v1/knowledge/{id}/file?org=…&exp=…&sig=…`.
    /// Add `#page=N` to open a PDF at a page.
    pub url: String,
    pub expires_at: DateTime<Utc>,
}

/// A five-minute link to a source's file, for opening it in a new tab where
/// no bearer token can follow (same readers as the file itself).
#[utoipa::path(get, path = "/v1/knowledge/{id}/file-url", tag = "knowledge",
    params(("id" = String, Path, description = "The source's id")),
    responses(
        (status = 200, body = FileLink),
        (status = 404, description = "No such source, or not readable by this user")),
    security(("bearer" = [])))]
pub async fn file_link(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<SourceId>,
) -> ApiResult<web::Json<FileLink>> {
    let id = path.into_inner();
    readable(&state, &user, id).await?;
    let exp = Utc::now().timestamp().saturating_add(FILE_LINK_TTL_SECS);
    let sig = crate::avatars::signer(&state)?.signature(&link_key(user.org_id, id), exp);
    Ok(web::Json(FileLink {
        url: format!(
            "/v1/knowledge/{id}/file?org={}&exp={exp}&sig={sig}",
            user.org_id
        ),
        expires_at: DateTime::from_timestamp(exp, 0).unwrap_or(DateTime::<Utc>::MAX_UTC),
    }))
}

/// A signed link's query (see [`file_link`]); absent with a bearer token.
#[derive(Debug, Deserialize, IntoParams)]
pub struct FileQuery {
    org: Option<OrgId>,
    exp: Option<String>,
    sig: Option<String>,
}

/// A source's original file (see the module doc).
#[utoipa::path(get, path = "/v1/knowledge/{id}/file", tag = "knowledge",
    params(("id" = String, Path, description = "The source's id"), FileQuery),
    responses(
        (status = 200, description = "The file, with its type, `ETag` and `Accept-Ranges`"),
        (status = 206, description = "The range asked for"),
        (status = 304, description = "`If-None-Match` matched"),
        (status = 403, description = "`forbidden`: a signed link that is not valid or has expired"),
        (status = 404, description = "No such source, or not readable by this user"),
        (status = 416, description = "`range_not_satisfiable`")),
    security(("bearer" = []), ()))]
pub async fn source_file(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<SourceId>,
    query: web::Query<FileQuery>,
) -> ApiResult<HttpResponse> {
    let id = path.into_inner();
    let row = match query.into_inner() {
        FileQuery {
            org,
            exp,
            sig: Some(sig),
        } => {
            let org =
                org.ok_or_else(|| ApiError::new(ErrorCode::Forbidden, "This link is not valid."))?;
            let now = Utc::now().timestamp();
            crate::avatars::signer(&state)?
                .verify(&link_key(org, id), exp.as_deref(), Some(&sig), now)
                .map_err(|e| match e {
                    SignatureError::Expired => ApiError::new(
                        ErrorCode::Forbidden,
                        "This link has expired; open the citation again for a fresh one.",
                    ),
                    SignatureError::Invalid => {
                        ApiError::new(ErrorCode::Forbidden, "This link is not valid.")
                    }
                })?;
            store::source(&state.db, org, id)
                .await?
                .ok_or_else(ApiError::not_found)?
        }
        _ => {
            let user = AuthUser::extract(&req).await?;
            readable(&state, &user, id).await?
        }
    };
    let etag = strong_etag(&row.sha256);
    let disposition = format!(
        "inline; filename=\"{}\"",
        row.filename
            .chars()
            .map(
                |c| if (c.is_ascii_graphic() && c != '"' && c != '\\') || c == ' ' {
                    c
                } else {
                    '_'
                }
            )
            .collect::<String>()
    );
    let headers = [
        (header::ETAG, etag.clone()),
        (header::CACHE_CONTROL, "private, no-cache".to_owned()),
        (header::ACCEPT_RANGES, "bytes".to_owned()),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_owned()),
        (header::CONTENT_DISPOSITION, disposition),
        (
            header::CONTENT_SECURITY_POLICY,
            if row.media_type == "application/pdf" {
                // The browser's PDF viewer is a plugin a sandbox would block.
                "frame-ancestors 'self'".to_owned()
            } else {
                "sandbox; default-src 'none'; img-src 'self' data:; media-src 'self'; \
                 style-src 'unsafe-inline'; frame-ancestors 'self'"
                    .to_owned()
            },
        ),
    ];
    let with_headers = |mut res: HttpResponse| {
        for (name, value) in &headers {
            if let Ok(v) = HeaderValue::from_str(value) {
                res.headers_mut().insert(name.clone(), v);
            }
        }
        res
    };
    let header_str =
        |name: header::HeaderName| req.headers().get(name).and_then(|v| v.to_str().ok());
    if header_str(header::IF_NONE_MATCH).is_some_and(|inm| etag_matches(inm, &etag)) {
        return Ok(with_headers(HttpResponse::NotModified().finish()));
    }

    let file_path = crate::storage::storage_path(&state.settings.data_dir, &row.storage_key);
    let opened = tokio::task::spawn_blocking(move || {
        let file = std::fs::File::open(&file_path)?;
        let len = file.metadata()?.len();
        Ok::<_, std::io::Error>((file, len))
    })
    .await
    .map_err(|e| ApiError::internal(anyhow::Error::new(e).context("opening a source file")))?;
    let (file, len) = match opened {
        Ok(found) => found,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(ApiError::not_found()),
        Err(e) => {
            return Err(ApiError::internal(
                anyhow::Error::new(e).context("opening a source file"),
            ));
        }
    };
    let (status, start, count) = match crate::http::files::requested_slice(
        header_str(header::RANGE),
        header_str(header::IF_RANGE),
        &etag,
        len,
    ) {
        Ok(slice) => slice,
        Err(refused) => return Ok(with_headers(*refused)),
    };
    let body = crate::http::files::file_stream(file, start, count, |_| {});
    let mut res = HttpResponse::build(status);
    res.content_type(row.media_type.as_str());
    if status == StatusCode::PARTIAL_CONTENT {
        res.insert_header((
            header::CONTENT_RANGE,
            content_range(start, start + count - 1, len),
        ));
    }
    Ok(with_headers(res.body(SizedStream::new(count, body))))
}
