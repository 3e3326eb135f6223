//! The HTTP surface: the route table, the app factory and the extractor
//! settings shared by every domain.
//!
//! Every route is declared once, in [`route_table`]. The app factory
//! registers exactly these, and the tests walk the same table (OpenAPI
//! coverage, tenant isolation), so a route cannot exist without being checked.

pub mod files;
pub mod middleware;
pub mod upload;

use actix_cors::Cors;
use actix_web::error::{JsonPayloadError, PathError, QueryPayloadError};
use actix_web::http::{Method, header};
use actix_web::{HttpRequest, HttpResponse, Route, web};

use crate::error::{ApiError, ErrorCode, current_request_id, problem_response};
use crate::state::AppState;

/// One route: its method, its path pattern (actix syntax, as in OpenAPI) and
/// how to build its handler.
#[derive(Clone)]
pub struct RouteDef {
    pub method: Method,
    pub path: &'static str,
    pub build: fn() -> Route,
}

impl RouteDef {
    pub const fn new(method: Method, path: &'static str, build: fn() -> Route) -> Self {
        Self {
            method,
            path,
            build,
        }
    }
}

/// Every route of the server, domain by domain.
pub fn route_table(_state: &AppState) -> Vec<RouteDef> {
    let mut routes = Vec::new();
    routes.extend(crate::ops::routes());
    routes.extend(crate::auth::routes());
    routes.extend(crate::orgs::routes());
    routes.extend(crate::knowledge::routes());
    routes.extend(crate::personas::routes());
    routes.extend(crate::chat::routes());
    routes.extend(crate::classroom::routes());
    routes.extend(crate::avatars::routes());
    routes.extend(crate::analytics::routes());
    routes.extend(crate::billing::routes());
    #[cfg(feature = "testing")]
    routes.extend(crate::ops::testing::routes());
    routes
}

/// Registers the route table, one resource per path so that a wrong method
/// on a known path answers 405 (two resources with one path would shadow
/// each other).
pub fn configure(cfg: &mut web::ServiceConfig, routes: &[RouteDef], settings_json_limit: usize) {
    cfg.app_data(json_config(settings_json_limit))
        .app_data(web::PayloadConfig::new(settings_json_limit))
        .app_data(web::QueryConfig::default().error_handler(query_error))
        .app_data(web::PathConfig::default().error_handler(path_error));
    let mut paths: Vec<&'static str> = Vec::new();
    for r in routes {
        if !paths.contains(&r.path) {
            paths.push(r.path);
        }
    }
    for path in paths {
        let mut resource = web::resource(path);
        let mut allow: Vec<&str> = Vec::new();
        for r in routes.iter().filter(|r| r.path == path) {
            resource = resource.route((r.build)().method(r.method.clone()));
            allow.push(r.method.as_str());
        }
        let allow = allow.join(", ");
        cfg.service(resource.default_service(web::to(move || {
            let allow = allow.clone();
            async move { method_not_allowed(&allow) }
        })));
    }
}

pub fn cors(origins: &[String]) -> Cors {
    let mut cors = Cors::default()
        .allowed_methods(["GET", "POST", "PATCH", "PUT", "DELETE", "OPTIONS"])
        .allowed_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::ACCEPT,
            header::HeaderName::from_static("x-request-id"),
        ])
        .expose_headers([
            header::HeaderName::from_static("x-request-id"),
            header::RETRY_AFTER,
        ])
        .max_age(3600);
    for origin in origins {
        cors = cors.allowed_origin(origin);
    }
    cors
}

fn json_config(limit: usize) -> web::JsonConfig {
    web::JsonConfig::default()
        .limit(limit)
        .error_handler(|err, _req| json_error(err).into())
}

/// Maps the JSON extractor's failures to the error table.
fn json_error(err: JsonPayloadError) -> ApiError {
    match err {
        JsonPayloadError::Overflow { limit }
        | JsonPayloadError::OverflowKnownLength { limit, .. } => ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!("The JSON body is larger than the limit of {limit} bytes."),
        ),
        JsonPayloadError::ContentType => ApiError::new(
            ErrorCode::UnsupportedMediaType,
            "Send the body as application/json.",
        ),
        JsonPayloadError::Deserialize(e) if e.is_data() => {
            let msg = e.to_string();
            match field_of(&msg) {
                Some(field) => ApiError::validation(field.clone(), strip_position(&msg)),
                None => ApiError::new(ErrorCode::ValidationFailed, strip_position(&msg)),
            }
        }
        JsonPayloadError::Deserialize(e) => ApiError::bad_request(format!(
            "The body is not valid JSON: {}",
            strip_position(&e.to_string())
        )),
        _ => ApiError::bad_request("The request body could not be read."),
    }
}

/// serde names the field in backticks: "missing field `email`".
fn field_of(msg: &str) -> Option<String> {
    let start = msg.find('`')? + 1;
    let len = msg[start..].find('`')?;
    msg.starts_with("missing field")
        .then(|| msg[start..start + len].to_owned())
        .or_else(|| {
            msg.contains("unknown field")
                .then(|| msg[start..start + len].to_owned())
        })
}

/// Drops serde_json's " at line 1 column 9" suffix: noise to a client.
fn strip_position(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_owned(),
        None => msg.to_owned(),
    }
}

fn query_error(err: QueryPayloadError, _req: &HttpRequest) -> actix_web::Error {
    ApiError::bad_request(format!("Invalid query string: {err}")).into()
}

/// A path that does not parse (an id that is not a UUID) cannot name an
/// existing resource.
fn path_error(_err: PathError, _req: &HttpRequest) -> actix_web::Error {
    ApiError::not_found().into()
}

fn method_not_allowed(allow: &str) -> HttpResponse {
    let mut res = problem_response(
        ErrorCode::MethodNotAllowed,
        &format!("This path accepts only: {allow}."),
        None,
        None,
        current_request_id(),
    );
    if let Ok(value) = header::HeaderValue::from_str(allow) {
        res.headers_mut().insert(header::ALLOW, value);
    }
    res
}

pub async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::new(ErrorCode::NotFound, "No such route."))
}
