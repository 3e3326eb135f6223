//! Operations: liveness, readiness, metrics and the OpenAPI document.

pub mod openapi;
#[cfg(feature = "testing")]
pub mod testing;

use std::time::Duration;

use actix_web::http::Method;
use actix_web::{HttpResponse, web};
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::{ApiError, ApiResult};
use crate::http::RouteDef;
use crate::state::AppState;

pub fn routes() -> Vec<RouteDef> {
    vec![
        RouteDef::new(Method::GET, "/healthz", || web::get().to(healthz)),
        RouteDef::new(Method::GET, "/readyz", || web::get().to(readyz)),
        RouteDef::new(Method::GET, "/metrics", || web::get().to(metrics)),
        RouteDef::new(Method::GET, "/v1/openapi.json", || {
            web::get().to(openapi::openapi_json)
        }),
    ]
}

#[derive(Serialize, ToSchema)]
pub struct Health {
    /// Always `ok` while the process lives.
    status: &'static str,
}

/// Liveness: the process is up.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "The process is alive", body = Health)))]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(Health { status: "ok" })
}

#[derive(Serialize, ToSchema)]
pub struct Readiness {
    /// `ready`.
    status: &'static str,
    /// `ok`, or `disabled` for Redis when none is configured.
    database: &'static str,
    redis: &'static str,
}

/// How long a readiness probe waits for a dependency.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Readiness: the database (and Redis, when configured) answer.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses(
        (status = 200, description = "Ready to serve", body = Readiness),
        (status = 503, description = "A dependency is not answering", content_type = "application/problem+json")))]
pub async fn readyz(state: web::Data<AppState>) -> ApiResult<HttpResponse> {
    let mut failing = Vec::new();
    match tokio::time::timeout(PROBE_TIMEOUT, state.db.ping()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "readiness: database failed");
            failing.push("the database");
        }
        Err(_) => failing.push("the database"),
    }
    let redis = match &state.redis {
        None => "disabled",
        Some(pool) => {
            let ping = async {
                let mut conn = pool.get().await.map_err(|e| e.to_string())?;
                redis::cmd("PING")
                    .query_async::<String>(&mut conn)
                    .await
                    .map_err(|e| e.to_string())
            };
            match tokio::time::timeout(PROBE_TIMEOUT, ping).await {
                Ok(Ok(_)) => "ok",
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "readiness: redis failed");
                    failing.push("Redis");
                    "failing"
                }
                Err(_) => {
                    failing.push("Redis");
                    "failing"
                }
            }
        }
    };
    if !failing.is_empty() {
        return Err(ApiError::unavailable(
            format!("Not ready: {} is not answering.", failing.join(" and ")),
            Duration::from_secs(5),
        ));
    }
    Ok(HttpResponse::Ok().json(Readiness {
        status: "ready",
        database: "ok",
        redis,
    }))
}

/// Prometheus metrics, text format. With `ops.metrics_token` set, only for
/// `Authorization: Bearer <metrics_token>` (production refuses a public
/// bind without one).
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text exposition format", content_type = "text/plain"),
        (status = 401, description = "`unauthorized`: `ops.metrics_token` is set and the request does not bear it", body = openapi::ProblemSchema)))]
pub async fn metrics(
    state: web::Data<AppState>,
    req: actix_web::HttpRequest,
) -> ApiResult<HttpResponse> {
    let wanted = state.settings.ops.metrics_token.expose();
    if !wanted.is_empty() {
        let given = crate::auth::routes::bearer_header(&req).unwrap_or_default();
        // Compared as digests: the time taken says nothing of the token.
        use sha2::Digest;
        if sha2::Sha256::digest(given.as_bytes()) != sha2::Sha256::digest(wanted.as_bytes()) {
            return Err(ApiError::unauthorized());
        }
    }
    let body = crate::metrics::render(&state.metrics);
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(body))
}
