//! Liveness, readiness, metrics, OpenAPI coverage, request ids, CORS.

use crate::helpers::{Backend, assert_problem, redis_url, spawn_app, spawn_app_with};
use crate::on_both_databases;

on_both_databases!(
    healthz_answers_ok_with_a_request_id,
    readyz_checks_the_database,
    metrics_count_requests_by_route_pattern,
    openapi_lists_every_v1_route,
);

async fn healthz_answers_ok_with_a_request_id(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let res = app.get("/healthz").await;
    assert_eq!(res.status(), 200);
    let generated = res.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert!(uuid::Uuid::parse_str(&generated).is_ok());
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body, serde_json::json!({"status": "ok"}));

    // A client's own id is kept; a hostile one is replaced.
    let res = app
        .client
        .get(app.url("/healthz"))
        .header("x-request-id", "client-abc.123")
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["x-request-id"], "client-abc.123");
    let res = app
        .client
        .get(app.url("/healthz"))
        .header("x-request-id", "evil\tid with spaces")
        .send()
        .await
        .unwrap();
    assert_ne!(res.headers()["x-request-id"], "evil\tid with spaces");
}

async fn readyz_checks_the_database(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let res = app.get("/readyz").await;
    assert_eq!(res.status(), 200);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["database"], "ok");
    assert_eq!(body["redis"], "disabled");

    // The database goes away: not ready, and the answer says no more than that.
    app.state.db.close().await;
    let res = app.get("/readyz").await;
    assert!(res.headers().contains_key("retry-after"));
    let body = assert_problem(res, 503, "service_unavailable").await;
    assert!(body["detail"].as_str().unwrap().contains("database"));
    // Liveness does not depend on the database.
    assert_eq!(app.get("/healthz").await.status(), 200);
}

#[actix_web::test]
async fn readyz_checks_redis_when_configured() {
    let Some(url) = redis_url() else { return };
    let app = spawn_app_with(Backend::Sqlite, |s| {
        s.redis_url = url;
        s.redis.key_prefix = format!("test:{}:", uuid::Uuid::new_v4());
    })
    .await
    .unwrap();
    let res = app.get("/readyz").await;
    assert_eq!(res.status(), 200);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["redis"], "ok");
}

#[actix_web::test]
async fn start_up_fails_fast_when_redis_is_unreachable() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = crate::helpers::test_settings(
        dir.path(),
        &format!("sqlite://{}", dir.path().join("t.db").display()),
    );
    // A port nothing listens on.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    settings.redis_url = format!("redis://127.0.0.1:{port}");
    let err = match bwenge::Application::build(settings).await {
        Ok(_) => panic!("start-up should fail without Redis"),
        Err(e) => format!("{e:#}"),
    };
    assert!(err.contains("Redis"), "{err}");
}

async fn metrics_count_requests_by_route_pattern(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    for _ in 0..3 {
        app.get("/healthz").await;
    }
    app.get("/no/such/route/12345").await;
    let res = app.get("/metrics").await;
    assert_eq!(res.status(), 200);
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = res.text().await.unwrap();
    let healthz = text
        .lines()
        .find(|l| {
            l.starts_with("bwenge_http_requests_total{")
                && l.contains("route=\"/healthz\"")
                && l.contains("method=\"GET\"")
                && l.contains("status=\"200\"")
        })
        .expect("a request counter for /healthz");
    let count: f64 = healthz.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(count >= 3.0, "{healthz}");
    assert!(text.contains("bwenge_http_request_duration_seconds_bucket{"));
    assert!(text.contains("bwenge_process_resident_memory_bytes"));
    // Unknown paths share one label value instead of one series per path.
    assert!(!text.contains("/no/such/route/12345"));
    assert!(text.contains("route=\"unmatched\""));
}

async fn openapi_lists_every_v1_route(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let res = app.get("/v1/openapi.json").await;
    assert_eq!(res.status(), 200);
    let doc: serde_json::Value = res.json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let routes = bwenge::http::route_table(&app.state);
    let v1: Vec<_> = routes
        .iter()
        .filter(|r| r.path.starts_with("/v1/"))
        .collect();
    assert!(!v1.is_empty());
    let mut missing = Vec::new();
    for r in v1 {
        let method = r.method.as_str().to_ascii_lowercase();
        if doc["paths"][r.path][&method].is_null() {
            missing.push(format!("{} {}", r.method, r.path));
        }
    }
    assert!(
        missing.is_empty(),
        "routes missing from OpenAPI: {missing:?}"
    );
}

#[actix_web::test]
async fn cors_allows_only_configured_origins() {
    let app = spawn_app_with(Backend::Sqlite, |s| {
        s.http.cors_origins = vec!["https://school.example".into()];
    })
    .await
    .unwrap();
    let res = app
        .client
        .get(app.url("/healthz"))
        .header("origin", "https://school.example")
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.headers()["access-control-allow-origin"],
        "https://school.example"
    );
    let preflight = app
        .client
        .request(reqwest::Method::OPTIONS, app.url("/healthz"))
        .header("origin", "https://school.example")
        .header("access-control-request-method", "GET")
        .header("access-control-request-headers", "authorization")
        .send()
        .await
        .unwrap();
    assert!(preflight.status().is_success(), "{}", preflight.status());
    let res = app
        .client
        .get(app.url("/healthz"))
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert!(!res.headers().contains_key("access-control-allow-origin"));
}
