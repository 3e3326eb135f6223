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

use actix_web::body::SizedStream;
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, web};
use bwenge_avatars::http_range::{content_range, etag_matches, strong_etag};

use crate::auth::AuthUser;
use crate::db::StoreError;
use crate::error::{ApiError, ApiResult};
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

/// A source's original file (see the module doc).
#[utoipa::path(get, path = "/v1/knowledge/{id}/file", tag = "knowledge",
    params(("id" = String, Path, description = "The source's id")),
    responses(
        (status = 200, description = "The file, with its type, `ETag` and `Accept-Ranges`"),
        (status = 206, description = "The range asked for"),
        (status = 304, description = "`If-None-Match` matched"),
        (status = 404, description = "No such source, or not readable by this user"),
        (status = 416, description = "`range_not_satisfiable`")),
    security(("bearer" = [])))]
pub async fn source_file(
    state: web::Data<AppState>,
    req: HttpRequest,
    user: AuthUser,
    path: web::Path<SourceId>,
) -> ApiResult<HttpResponse> {
    let id = path.into_inner();
    let row = store::source(&state.db, user.org_id, id)
        .await?
        .ok_or_else(ApiError::not_found)?;
    if user.require_staff().is_err() && !in_some_persona_scope(&state.db, user.org_id, id).await? {
        return Err(ApiError::not_found());
    }
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
