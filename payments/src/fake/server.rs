//! The one HTTP server of the fakes: records every request, then routes it
//! by prefix to the provider's handler.

use std::net::TcpListener;
use std::sync::Arc;

use actix_web::dev::ServerHandle;
use actix_web::http::StatusCode;
use actix_web::web::{self, Bytes};
use actix_web::{App, HttpRequest, HttpResponse, HttpServer};
use serde_json::json;

use super::{Provider, RecordedRequest, Shared};

pub(super) fn serve(shared: Arc<Shared>, listener: TcpListener) -> std::io::Result<ServerHandle> {
    let data = web::Data::from(shared);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .app_data(web::PayloadConfig::new(1 << 20))
            .default_service(web::to(dispatch))
    })
    .workers(1)
    .disable_signals()
    .shutdown_timeout(1)
    .listen(listener)?
    .run();
    let handle = server.handle();
    tokio::spawn(server);
    Ok(handle)
}

/// The pieces of a request the handlers need.
pub(super) struct Req {
    pub(super) method: String,
    pub(super) path: String,
    pub(super) headers: Vec<(String, String)>,
    pub(super) body: Bytes,
}

impl Req {
    pub(super) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The token of `Authorization: Bearer …`.
    pub(super) fn bearer(&self) -> Option<&str> {
        let v = self.header("authorization")?;
        let (scheme, token) = v.split_once(' ')?;
        scheme
            .eq_ignore_ascii_case("bearer")
            .then_some(token.trim())
    }

    /// The decoded `user:password` of `Authorization: Basic …`.
    pub(super) fn basic(&self) -> Option<(String, String)> {
        use base64::Engine as _;
        let v = self.header("authorization")?;
        let (scheme, b64) = v.split_once(' ')?;
        if !scheme.eq_ignore_ascii_case("basic") {
            return None;
        }
        let raw = base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .ok()?;
        let text = String::from_utf8(raw).ok()?;
        let (u, p) = text.split_once(':')?;
        Some((u.to_owned(), p.to_owned()))
    }
}

pub(super) fn json_response(status: u16, body: &serde_json::Value) -> HttpResponse {
    HttpResponse::build(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .content_type("application/json")
        .body(body.to_string())
}

async fn dispatch(req: HttpRequest, body: Bytes, shared: web::Data<Shared>) -> HttpResponse {
    let full = req.path().to_owned();
    let (provider, rest) = if let Some(r) = full.strip_prefix("/momo") {
        (Provider::Momo, r)
    } else if let Some(r) = full.strip_prefix("/airtel") {
        (Provider::Airtel, r)
    } else if let Some(r) = full.strip_prefix("/stripe") {
        (Provider::Stripe, r)
    } else {
        return json_response(404, &json!({"error": "no such fake provider"}));
    };
    let headers: Vec<(String, String)> = req
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_ascii_lowercase(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let r = Req {
        method: req.method().as_str().to_owned(),
        path: rest.to_owned(),
        headers,
        body,
    };
    let down = {
        let mut inner = shared.lock();
        inner.requests.push(RecordedRequest {
            provider,
            method: r.method.clone(),
            path: r.path.clone(),
            query: req.query_string().to_owned(),
            headers: r.headers.clone(),
            body: r.body.to_vec(),
        });
        inner.unavailable.contains(&provider)
    };
    if down {
        return json_response(
            503,
            &json!({"statusCode": 503, "message": "Service Unavailable"}),
        );
    }
    let shared = shared.into_inner();
    match provider {
        Provider::Momo => super::momo::handle(&shared, &r).await,
        Provider::Airtel => super::airtel::handle(&shared, &r).await,
        Provider::Stripe => super::stripe::handle(&shared, &r).await,
    }
}
