//! The OpenAPI 3 document of every `/v1` route, served at
//! `/v1/openapi.json`. A test walks the route table and fails on any `/v1`
//! route missing here, so new routes must be listed in [`ApiDoc`].

use actix_web::HttpResponse;
use utoipa::OpenApi;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Bwenge API",
        version = "1",
        description = "Real-time AI tutoring for schools. Errors are application/problem+json \
            with a stable `code`; lists take `limit` (default 50, max 200) and `cursor` and \
            answer `{items, next_cursor}`; every answer carries `X-Request-Id`."
    ),
    paths(
        crate::ops::healthz,
        crate::ops::readyz,
        crate::ops::metrics,
        openapi_json,
    ),
    components(schemas(crate::ops::Health, crate::ops::Readiness, ProblemSchema)),
    tags((name = "operations", description = "Health, readiness, metrics, this document"))
)]
pub struct ApiDoc;

/// The problem+json error body every failing call answers.
#[derive(utoipa::ToSchema)]
#[schema(as = Problem)]
#[allow(dead_code)]
pub struct ProblemSchema {
    /// A URI naming the problem type.
    #[schema(rename = "type")]
    kind: String,
    title: String,
    status: u16,
    detail: String,
    /// Stable snake_case code clients switch on.
    code: String,
    /// For `validation_failed`: the offending field.
    field: Option<String>,
    /// The `X-Request-Id` of the call, to quote to support.
    request_id: Option<String>,
}

/// This document.
#[utoipa::path(get, path = "/v1/openapi.json", tag = "operations",
    responses((status = 200, description = "The OpenAPI 3 document", content_type = "application/json")))]
pub async fn openapi_json() -> HttpResponse {
    HttpResponse::Ok().json(ApiDoc::openapi())
}
