//! The outermost middleware, [`observe`]: request ids, panics, the
//! problem+json guarantee, metrics and the request log line.
//!
//! - `X-Request-Id` is kept when the client sends a sane one, generated
//!   otherwise, echoed on the response, put in every error body and logged.
//! - A panic in a handler becomes `500 internal`; the worker keeps serving.
//! - Any error answer that is not problem+json yet (the framework's own) is
//!   rewritten into one, so clients only ever see one error format.

use std::panic::AssertUnwindSafe;
use std::time::Instant;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{HttpMessage, HttpResponse};
use futures_util::FutureExt;
use tracing_actix_web::{DefaultRootSpanBuilder, RootSpanBuilder};

use crate::error::{ErrorCode, REQUEST_ID, problem_response};
use crate::metrics;

pub const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// The request's id, in the request extensions.
#[derive(Clone, Debug)]
pub struct RequestId(pub String);

/// Accepts a client's id only if it is short and printable, so it cannot
/// inject into logs.
fn client_request_id(req: &ServiceRequest) -> Option<String> {
    let value = req.headers().get(&REQUEST_ID_HEADER)?.to_str().ok()?;
    let ok = !value.is_empty()
        && value.len() <= 128
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b));
    ok.then(|| value.to_owned())
}

pub async fn observe(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let started = Instant::now();
    let request_id = client_request_id(&req).unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    req.extensions_mut().insert(RequestId(request_id.clone()));
    // Read before the call: actix needs the request uniquely owned while it
    // routes, so no clone of it may be kept across `next.call`.
    let method = req.method().to_string();
    let route = req
        .match_pattern()
        .unwrap_or_else(|| "unmatched".to_owned());

    let outcome = REQUEST_ID
        .scope(request_id.clone(), async {
            match AssertUnwindSafe(next.call(req)).catch_unwind().await {
                Ok(Ok(res)) => Ok(res.map_into_boxed_body()),
                // Render errors here, inside the scope, so their bodies
                // carry the request id.
                Ok(Err(err)) => Err((err.to_string(), err.error_response())),
                Err(panic) => {
                    let what = panic
                        .downcast_ref::<&str>()
                        .map(|s| (*s).to_owned())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "unknown panic".to_owned());
                    tracing::error!(request_id = %request_id, panic = %what, "handler panicked");
                    metrics::record_panic();
                    let res = problem_response(
                        ErrorCode::Internal,
                        "Something went wrong on our side; it has been logged.",
                        None,
                        None,
                        Some(request_id.clone()),
                    );
                    Err(("handler panicked".to_owned(), res))
                }
            }
        })
        .await;

    let (status, result) = match outcome {
        Ok(res) => {
            let (http_req, res) = res.into_parts();
            let res = finish(res, &request_id);
            (res.status(), Ok(ServiceResponse::new(http_req, res)))
        }
        Err((cause, res)) => {
            let res = finish(res, &request_id);
            let status = res.status();
            (
                status,
                Err(actix_web::error::InternalError::from_response(cause, res).into()),
            )
        }
    };
    let elapsed = started.elapsed();
    metrics::record_request(&route, &method, status.as_u16(), elapsed);
    let latency_ms = elapsed.as_secs_f64() * 1000.0;
    let status = status.as_u16();
    if route == "/healthz" || route == "/metrics" {
        tracing::debug!(request_id = %request_id, %method, %route, status, latency_ms, "request");
    } else if status >= 500 {
        tracing::warn!(request_id = %request_id, %method, %route, status, latency_ms, "request");
    } else {
        tracing::info!(request_id = %request_id, %method, %route, status, latency_ms, "request");
    }
    result
}

/// Makes an answer ready to leave: problem+json if it is an error, and the
/// request id header.
fn finish(res: HttpResponse<BoxBody>, request_id: &str) -> HttpResponse<BoxBody> {
    let mut res = normalise_error(res, request_id);
    if let Ok(value) = HeaderValue::from_str(request_id) {
        res.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    res
}

/// Rewrites a framework error answer (plain text, empty) into problem+json,
/// keeping the headers clients rely on.
fn normalise_error(res: HttpResponse<BoxBody>, request_id: &str) -> HttpResponse<BoxBody> {
    let status = res.status();
    if status.as_u16() < 400 {
        return res;
    }
    let is_problem = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/problem+json"));
    if is_problem {
        return res;
    }
    let code = ErrorCode::for_status(status);
    let detail = status.canonical_reason().unwrap_or("The request failed.");
    let mut fresh = problem_response(code, detail, None, None, Some(request_id.to_owned()));
    // Keep the framework's status (e.g. 400 from a bad header) when the
    // table maps it to a neighbour.
    *fresh.status_mut() = status;
    for (name, value) in res.headers() {
        let keep = [header::ALLOW, header::RETRY_AFTER, header::WWW_AUTHENTICATE].contains(name)
            || name.as_str().starts_with("access-control-");
        if keep {
            fresh.headers_mut().insert(name.clone(), value.clone());
        }
    }
    fresh
}

/// Root span of every request for `tracing-actix-web`, carrying our request
/// id so every log line of a request can be joined.
pub struct BwengeRootSpan;

impl RootSpanBuilder for BwengeRootSpan {
    fn on_request_start(request: &ServiceRequest) -> tracing::Span {
        let request_id = request
            .extensions()
            .get::<RequestId>()
            .map(|r| r.0.clone())
            .unwrap_or_default();
        let route = request.match_pattern().unwrap_or_default();
        tracing::info_span!(
            "http_request",
            method = %request.method(),
            route = %route,
            request_id = %request_id,
            org_id = tracing::field::Empty,
            user_id = tracing::field::Empty,
        )
    }

    fn on_request_end<B: MessageBody>(
        span: tracing::Span,
        outcome: &Result<ServiceResponse<B>, actix_web::Error>,
    ) {
        DefaultRootSpanBuilder::on_request_end(span, outcome);
    }
}
