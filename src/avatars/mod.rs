//! 3D avatar models: teachers upload glTF models for their personas; every
//! member gets them through short-lived signed URLs.
//!
//! Routes (handlers here are thin: the work is in [`service`], which knows
//! no HTTP; storage in [`store`]; URL signing in [`signing`]):
//!
//! | call | who | answer |
//! |---|---|---|
//! | `POST /v1/models` | teacher, admin | `201 model` |
//! | `GET /v1/models`, `GET /v1/models/{id}` | members | `200`, fresh signed URLs |
//! | `POST /v1/models/{id}/versions` | teacher, admin | `201 model`, `version` + 1 |
//! | `DELETE /v1/models/{id}` | teacher, admin | `204` |
//! | `GET /v1/personas/{id}/avatar` | members | `200 {model, gestures}` |
//! | `GET`/`HEAD /assets/{key}?exp=…&sig=…` | anyone with the URL | the file |
//!
//! **Uploads** are `multipart/form-data`: `file` (a `.glb`, or a `.gltf`
//! with embedded buffers; the format is decided from the bytes, never from
//! the name), `name` (optional: when absent or blank the file name without
//! its extension is used; at most 100 characters, else `422` field `name`),
//! `persona_id` (optional: a persona of the organisation, else `422` field
//! `persona_id`; the model becomes that persona's avatar). On a new version
//! `name`, when sent, renames the model. The body streams to a temporary
//! file under `<data_dir>/tmp`; over `assets.max_model_bytes` (50 MiB by
//! default) it is refused with `413` at once when `Content-Length` says so,
//! else as soon as the limit is crossed. The file is then inspected
//! (`bwenge_avatars::inspect`): not glTF 2.0 at all → `415
//! unsupported_media_type`; broken, inconsistent, needing external files or
//! over a limit → `422 validation_failed`, field `file`; `detail` says what
//! is wrong. A refused upload leaves nothing: no file, no row. An accepted
//! one is kept at `<data_dir>/files/models/<model id>/v<version>-<random>.<glb|gltf>`
//! (never the client's name) with a row in `avatar_model_versions`.
//! Attaching a model to a persona, or a new version whose clips changed,
//! drops that persona's gesture overrides naming clips the model no longer
//! has; deleting a model clears the overrides of the personas that used it
//! (their `avatar_model_id` becomes null).
//!
//! **`model`** = `{id, name, version, versions: [{version, size_bytes,
//! created_at, media_type, url, url_expires_at}], size_bytes, bounding_box:
//! {min, max}, animations, url, url_expires_at, persona_id, created_at,
//! updated_at, media_type, triangle_count, vertex_count}`: the top-level
//! figures are the current (newest) version's; `versions` is oldest first,
//! each with its own signed URL, so older versions stay downloadable;
//! `persona_id` is the first persona (by creation) using the model, or null.
//!
//! **Avatar**: `{model: model | null, gestures: {gesture: clip | null}}`,
//! every gesture of `bwenge_avatars::GESTURES` present. The map is matched
//! from the current version's clip names, then the persona's overrides
//! (`PATCH /v1/personas/{id}` `{"gestures": …}`) are applied; an override
//! naming a clip the model does not have is ignored. A persona without a
//! model answers `{model: null, gestures: {every gesture: null}}`.
//!
//! **Assets** (`/assets/{key}`, outside `/v1`, so not in the OpenAPI
//! document): no bearer token, the signature is the authority (see
//! [`signing`] for key, expiry and URL). A wrong, malformed or missing
//! signature, or an expired one, is `403 forbidden` (checked before
//! anything is looked up); a valid signature for a key that no longer
//! exists (deleted model) is `404`. Answers carry `Content-Type`
//! (`model/gltf-binary` or `model/gltf+json`), a strong `ETag` from the
//! file's SHA-256, `Cache-Control: private, max-age=<seconds until the URL
//! expires>`, `Accept-Ranges: bytes` and `X-Content-Type-Options: nosniff`.
//! `If-None-Match` matching → `304`; one `Range: bytes=…` → `206` with
//! `Content-Range` (several ranges, or a malformed header, get the whole
//! file); a range past the end → `416` problem+json `range_not_satisfiable`
//! with `Content-Range: bytes */<length>`; an `If-Range` other than the
//! current ETag gets the whole file. The file is streamed from disk
//! [`crate::http::files::SERVE_CHUNK_BYTES`] at a time. `HEAD` answers the same
//! headers without the body. The version row behind a key is cached in
//! process for [`service::ASSET_CACHE_TTL`] (5 s; rows never change, and a
//! delete on this node evicts at once), so a model deleted through another
//! node may still be revalidated (`304`) that long; its file is gone at once.
//!
//! **Metrics** ([`MODEL_UPLOADS_TOTAL`], [`MODEL_REJECTIONS_TOTAL`],
//! [`ASSET_BYTES_SERVED_TOTAL`]):
//! `bwenge_model_uploads_total{format="glb"|"gltf"}` (accepted files, new
//! models and versions), `bwenge_model_rejections_total{reason}` with
//! `reason` one of `too_large`, `unsupported_type`, `invalid` (including a
//! missing or empty file), `external_reference`, `too_complex`, and
//! `bwenge_asset_bytes_served_total` (body bytes sent by `/assets`).

pub mod service;
pub mod signing;
pub mod store;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use actix_multipart::Multipart;
use actix_web::body::SizedStream;
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::{HttpRequest, HttpResponse, web};
use bwenge_avatars::http_range::{content_range, etag_matches, strong_etag};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::AuthUser;
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::http::RouteDef;
use crate::http::upload;
use crate::ids::{ModelId, PersonaId};
use crate::pagination::{Cursor, List, PageQuery, page_of};
use crate::state::AppState;
use service::{AvatarError, ModelDetail, Rejection, Upload};
use signing::AssetSigner;
use store::VersionRow;

/// Accepted model files (new models and versions), by `format`.
pub const MODEL_UPLOADS_TOTAL: &str = "bwenge_model_uploads_total";
/// Refused model uploads, by `reason` (see the module doc for the set).
pub const MODEL_REJECTIONS_TOTAL: &str = "bwenge_model_rejections_total";
/// Body bytes sent by `/assets/{key}`.
pub const ASSET_BYTES_SERVED_TOTAL: &str = "bwenge_asset_bytes_served_total";

pub fn routes() -> Vec<RouteDef> {
    vec![
        RouteDef::new(Method::POST, "/v1/models", || web::post().to(upload_model)),
        RouteDef::new(Method::GET, "/v1/models", || web::get().to(list_models)),
        RouteDef::new(Method::GET, "/v1/models/{id}", || web::get().to(get_model)),
        RouteDef::new(Method::DELETE, "/v1/models/{id}", || {
            web::delete().to(delete_model)
        }),
        RouteDef::new(Method::POST, "/v1/models/{id}/versions", || {
            web::post().to(add_version)
        }),
        RouteDef::new(Method::GET, "/v1/personas/{id}/avatar", || {
            web::get().to(persona_avatar)
        }),
        RouteDef::new(Method::GET, "/assets/{key:.*}", || {
            web::get().to(serve_asset)
        }),
        RouteDef::new(Method::HEAD, "/assets/{key:.*}", || {
            web::head().to(serve_asset)
        }),
    ]
}

// ---------------------------------------------------------------------------
// Views.

/// Axis-aligned bounding box of the model's default scene, in model units
/// (glTF: metres, +Y up).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, ToSchema)]
pub struct BoundingBoxView {
    /// Smallest x, y, z.
    #[schema(value_type = Vec<f32>)]
    pub min: [f32; 3],
    /// Largest x, y, z.
    #[schema(value_type = Vec<f32>)]
    pub max: [f32; 3],
}

/// One stored version of a model.
#[derive(Debug, Serialize, ToSchema)]
pub struct VersionView {
    pub version: i64,
    pub size_bytes: i64,
    pub created_at: DateTime<Utc>,
    /// `model/gltf-binary` or `model/gltf+json`.
    pub media_type: String,
    /// Signed URL of this version's file.
    pub url: String,
    pub url_expires_at: DateTime<Utc>,
}

/// `model` as API.md defines it, plus `updated_at`, `media_type`,
/// `triangle_count`, `vertex_count` and a URL per version.
#[derive(Debug, Serialize, ToSchema)]
pub struct ModelView {
    pub id: ModelId,
    pub name: String,
    /// The current (newest) version.
    pub version: i64,
    /// Every version, oldest first.
    pub versions: Vec<VersionView>,
    pub size_bytes: i64,
    pub bounding_box: BoundingBoxView,
    /// Animation clip names, in file order.
    pub animations: Vec<String>,
    /// Signed URL of the current version's file (`/assets/…`), valid until
    /// `url_expires_at`; no bearer token needed.
    pub url: String,
    pub url_expires_at: DateTime<Utc>,
    /// The first persona using this model, if any.
    pub persona_id: Option<PersonaId>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// `model/gltf-binary` or `model/gltf+json`.
    pub media_type: String,
    /// Triangles drawn by the default scene.
    pub triangle_count: i64,
    /// Vertices of the default scene.
    pub vertex_count: i64,
}

/// A persona's avatar.
#[derive(Debug, Serialize, ToSchema)]
pub struct AvatarView {
    /// The persona's model, or null when it has none.
    pub model: Option<ModelView>,
    /// Every gesture → the clip that plays it, or null.
    pub gestures: BTreeMap<String, Option<String>>,
}

/// Signs URLs for the views of one answer.
struct Urls {
    signer: AssetSigner,
    exp: i64,
}

impl Urls {
    fn new(state: &AppState) -> ApiResult<Self> {
        let signer = signer(state)?;
        let exp = signer.expiry(Utc::now().timestamp());
        Ok(Self { signer, exp })
    }

    fn version(&self, v: &VersionRow) -> VersionView {
        let signed = self.signer.url(&v.storage_key, self.exp);
        VersionView {
            version: v.version,
            size_bytes: v.size_bytes,
            created_at: v.created_at,
            media_type: v.media_type.clone(),
            url: signed.url,
            url_expires_at: signed.expires_at,
        }
    }

    fn model(&self, d: ModelDetail) -> ModelView {
        let versions: Vec<VersionView> = d.versions.iter().map(|v| self.version(v)).collect();
        let current = d.current();
        let current_view = current.and_then(|c| versions.iter().find(|v| v.version == c.version));
        ModelView {
            id: d.model.id,
            name: d.model.name.clone(),
            version: d.model.current_version,
            size_bytes: current.map_or(0, |c| c.size_bytes),
            bounding_box: current
                .and_then(|c| serde_json::from_str(&c.bounding_box).ok())
                .unwrap_or_default(),
            animations: current.map(VersionRow::animations).unwrap_or_default(),
            url: current_view.map(|v| v.url.clone()).unwrap_or_default(),
            url_expires_at: current_view.map_or_else(Utc::now, |v| v.url_expires_at),
            persona_id: d.persona_id,
            created_at: d.model.created_at,
            updated_at: d.model.updated_at,
            media_type: current.map(|c| c.media_type.clone()).unwrap_or_default(),
            triangle_count: current.map_or(0, |c| c.triangle_count),
            vertex_count: current.map_or(0, |c| c.vertex_count),
            versions,
        }
    }
}

/// The server's asset signer (also signs knowledge file links).
pub(crate) fn signer(state: &AppState) -> ApiResult<AssetSigner> {
    AssetSigner::from_settings(&state.settings)
        .map_err(|e| ApiError::internal(anyhow::Error::new(e).context("the asset signing key")))
}

// ---------------------------------------------------------------------------
// Models.

/// Receives an upload's multipart body (see the module doc), counting
/// refusals.
async fn receive(state: &AppState, req: &HttpRequest, payload: Multipart) -> ApiResult<Upload> {
    let limit = state.settings.assets.max_model_bytes;
    upload::check_content_length(req, limit).inspect_err(|_| Rejection::TooLarge.record())?;
    let tmp = state.settings.data_dir.join("tmp");
    let (received, texts) = upload::receive(payload, &tmp, limit, &["name", "persona_id"])
        .await
        .inspect_err(|e| match e.code {
            ErrorCode::PayloadTooLarge => Rejection::TooLarge.record(),
            ErrorCode::ValidationFailed if e.field.as_deref() == Some("file") => {
                Rejection::Invalid.record();
            }
            _ => {}
        })?;
    let text = |name: &str| {
        texts
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    Ok(Upload {
        temp: received.temp,
        file_name: received.filename,
        sha256: received.sha256,
        name: text("name"),
        persona_id: text("persona_id"),
    })
}

/// Uploads a 3D model (teachers, admins): `multipart/form-data` with `file`
/// (`.glb`, or `.gltf` with embedded buffers), `name` (default: the file
/// name without extension) and optional `persona_id` (the model becomes
/// that persona's avatar).
#[utoipa::path(post, path = "/v1/models", tag = "avatars",
    request_body(content_type = "multipart/form-data", description = "`file` (required), `name` (optional: defaults to the file name without extension), `persona_id` (optional)"),
    responses(
        (status = 201, body = ModelView),
        (status = 403, description = "students may not upload"),
        (status = 413, description = "`payload_too_large`: over `assets.max_model_bytes` (50 MiB by default)"),
        (status = 415, description = "`unsupported_media_type`: not a glTF 2.0 model; `detail` says what is accepted"),
        (status = 422, description = "`validation_failed`: field `file` (broken model, external files, over a limit; `detail` says what is wrong), `name` or `persona_id`")),
    security(("bearer" = [])))]
pub async fn upload_model(
    state: web::Data<AppState>,
    req: HttpRequest,
    user: AuthUser,
    payload: Multipart,
) -> ApiResult<HttpResponse> {
    user.require_staff()?;
    let upload = receive(&state, &req, payload).await?;
    let detail = state
        .avatars
        .create(user.org_id, user.user_id, upload)
        .await?;
    Ok(HttpResponse::Created().json(Urls::new(&state)?.model(detail)))
}

/// Adds a version to a model (teachers, admins), with the same form as an
/// upload; it becomes current, earlier versions stay downloadable. `name`,
/// when sent, renames the model.
#[utoipa::path(post, path = "/v1/models/{id}/versions", tag = "avatars",
    params(("id" = String, Path, description = "The model's id")),
    request_body(content_type = "multipart/form-data", description = "`file` (required), `name` (optional: renames the model), `persona_id` (optional)"),
    responses(
        (status = 201, body = ModelView),
        (status = 403), (status = 404),
        (status = 413), (status = 415), (status = 422)),
    security(("bearer" = [])))]
pub async fn add_version(
    state: web::Data<AppState>,
    req: HttpRequest,
    user: AuthUser,
    path: web::Path<ModelId>,
    payload: Multipart,
) -> ApiResult<HttpResponse> {
    user.require_staff()?;
    let id = path.into_inner();
    // A model of another organisation is refused before the body is read.
    if !state.avatars.exists(user.org_id, id).await? {
        return Err(ApiError::not_found());
    }
    let upload = receive(&state, &req, payload).await?;
    let detail = state.avatars.add_version(user.org_id, id, upload).await?;
    Ok(HttpResponse::Created().json(Urls::new(&state)?.model(detail)))
}

/// The organisation's models, oldest first, each with fresh signed URLs.
#[utoipa::path(get, path = "/v1/models", tag = "avatars", params(PageQuery),
    responses((status = 200, body = List<ModelView>)), security(("bearer" = [])))]
pub async fn list_models(
    state: web::Data<AppState>,
    user: AuthUser,
    q: web::Query<PageQuery>,
) -> ApiResult<HttpResponse> {
    let page = q.parse()?;
    let details = state.avatars.list(user.org_id, page).await?;
    let urls = Urls::new(&state)?;
    Ok(HttpResponse::Ok().json(page_of(
        details,
        page.limit,
        |d| Cursor {
            t: d.model.created_at,
            id: d.model.id.0,
        },
        |d| urls.model(d),
    )))
}

/// One model, with fresh signed URLs.
#[utoipa::path(get, path = "/v1/models/{id}", tag = "avatars",
    params(("id" = String, Path, description = "The model's id")),
    responses((status = 200, body = ModelView), (status = 404)), security(("bearer" = [])))]
pub async fn get_model(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<ModelId>,
) -> ApiResult<HttpResponse> {
    let detail = state.avatars.get(user.org_id, path.into_inner()).await?;
    Ok(HttpResponse::Ok().json(Urls::new(&state)?.model(detail)))
}

/// Deletes a model with every version and file (teachers, admins); the
/// personas using it are left without a model.
#[utoipa::path(delete, path = "/v1/models/{id}", tag = "avatars",
    params(("id" = String, Path, description = "The model's id")),
    responses((status = 204), (status = 403), (status = 404)), security(("bearer" = [])))]
pub async fn delete_model(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<ModelId>,
) -> ApiResult<HttpResponse> {
    user.require_staff()?;
    state.avatars.delete(user.org_id, path.into_inner()).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// A persona's avatar: its model (or null) and every gesture's clip (or
/// null), matched from the clip names with the persona's overrides applied.
#[utoipa::path(get, path = "/v1/personas/{id}/avatar", tag = "avatars",
    params(("id" = String, Path, description = "The persona's id")),
    responses((status = 200, body = AvatarView), (status = 404)), security(("bearer" = [])))]
pub async fn persona_avatar(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<PersonaId>,
) -> ApiResult<HttpResponse> {
    let avatar = state.avatars.avatar(user.org_id, path.into_inner()).await?;
    let model = match avatar.model {
        Some(d) => Some(Urls::new(&state)?.model(d)),
        None => None,
    };
    Ok(HttpResponse::Ok().json(AvatarView {
        model,
        gestures: avatar.gestures,
    }))
}

// ---------------------------------------------------------------------------
// Assets.

#[derive(Debug, Deserialize)]
struct AssetQuery {
    exp: Option<String>,
    sig: Option<String>,
}

fn header_str(req: &HttpRequest, name: header::HeaderName) -> Option<&str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

/// `GET`/`HEAD /assets/{key}?exp=…&sig=…`: a model file behind a signed URL
/// (see the module doc).
pub async fn serve_asset(state: web::Data<AppState>, req: HttpRequest) -> ApiResult<HttpResponse> {
    let key = req.match_info().get("key").unwrap_or_default();
    let query = web::Query::<AssetQuery>::from_query(req.query_string()).ok();
    let (exp, sig) = query
        .as_ref()
        .map_or((None, None), |q| (q.exp.as_deref(), q.sig.as_deref()));
    let now = Utc::now().timestamp();
    let exp = signer(&state)?
        .verify(key, exp, sig, now)
        .map_err(AvatarError::Link)?;
    let version = state.avatars.find_asset(key).await?;

    let etag = strong_etag(&version.sha256);
    let headers = [
        (header::ETAG, etag.clone()),
        (
            header::CACHE_CONTROL,
            format!("private, max-age={}", (exp - now).max(0)),
        ),
        (header::ACCEPT_RANGES, "bytes".to_owned()),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_owned()),
    ];
    let with_headers = |mut res: HttpResponse| {
        for (name, value) in &headers {
            if let Ok(v) = HeaderValue::from_str(value) {
                res.headers_mut().insert(name.clone(), v);
            }
        }
        res
    };

    if header_str(&req, header::IF_NONE_MATCH).is_some_and(|inm| etag_matches(inm, &etag)) {
        return Ok(with_headers(HttpResponse::NotModified().finish()));
    }
    let (file, len) = state.avatars.open_asset(key).await?;
    let (status, start, count) = match crate::http::files::requested_slice(
        header_str(&req, header::RANGE),
        header_str(&req, header::IF_RANGE),
        &etag,
        len,
    ) {
        Ok(slice) => slice,
        Err(refused) => return Ok(with_headers(*refused)),
    };
    let counter = metrics::counter!(ASSET_BYTES_SERVED_TOTAL);
    let body = crate::http::files::file_stream(file, start, count, move |n| counter.increment(n));
    let mut res = HttpResponse::build(status);
    res.content_type(version.media_type.as_str());
    if status == StatusCode::PARTIAL_CONTENT {
        res.insert_header((
            header::CONTENT_RANGE,
            content_range(start, start + count - 1, len),
        ));
    }
    Ok(with_headers(res.body(SizedStream::new(count, body))))
}
