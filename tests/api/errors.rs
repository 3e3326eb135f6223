//! The error contract: problem+json everywhere, with the right codes, and
//! nothing internal in the body.

use crate::helpers::{Backend, assert_problem, spawn_app, spawn_app_with};
use crate::on_both_databases;

on_both_databases!(
    a_database_failure_reveals_nothing,
    panics_become_500_and_the_server_keeps_serving,
);

#[actix_web::test]
async fn unknown_route_is_404_and_wrong_method_is_405() {
    let app = spawn_app(Backend::Sqlite).await.unwrap();
    let body = assert_problem(app.get("/v1/nothing-here").await, 404, "not_found").await;
    assert!(body["detail"].is_string());
    let res = app.client.delete(app.url("/healthz")).send().await.unwrap();
    assert_eq!(res.headers()["allow"], "GET");
    assert_problem(res, 405, "method_not_allowed").await;
}

#[actix_web::test]
async fn malformed_json_is_400_and_bad_fields_422() {
    let app = spawn_app(Backend::Sqlite).await.unwrap();
    let post = |body: &'static str, ct: &'static str| {
        app.client
            .post(app.url("/__test/echo"))
            .header("content-type", ct)
            .body(body)
            .send()
    };
    let res = post("{\"name\": \"a\", ", "application/json")
        .await
        .unwrap();
    assert_problem(res, 400, "bad_request").await;
    let res = post("{\"name\": \"a\"}", "application/json").await.unwrap();
    let body = assert_problem(res, 422, "validation_failed").await;
    assert_eq!(body["field"], "count", "{body}");
    let res = post("{\"name\": \"a\", \"count\": \"x\"}", "application/json")
        .await
        .unwrap();
    assert_problem(res, 422, "validation_failed").await;
    let res = post("name=a", "application/x-www-form-urlencoded")
        .await
        .unwrap();
    assert_problem(res, 415, "unsupported_media_type").await;
    let res = post("{\"name\": \"a\", \"count\": 2}", "application/json")
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.json::<serde_json::Value>().await.unwrap(),
        serde_json::json!({"name": "a", "count": 2})
    );
}

#[actix_web::test]
async fn json_bodies_over_the_limit_are_413() {
    // The default limit: 1 MiB.
    let app = spawn_app(Backend::Sqlite).await.unwrap();
    let big = format!(
        "{{\"name\": \"{}\", \"count\": 1}}",
        "x".repeat(1024 * 1024 + 10)
    );
    let res = app
        .client
        .post(app.url("/__test/echo"))
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .unwrap();
    assert_problem(res, 413, "payload_too_large").await;

    // A configured limit.
    let app = spawn_app_with(Backend::Sqlite, |s| s.http.json_limit_bytes = 64)
        .await
        .unwrap();
    let res = app
        .client
        .post(app.url("/__test/echo"))
        .header("content-type", "application/json")
        .body(format!(
            "{{\"name\": \"{}\", \"count\": 1}}",
            "y".repeat(100)
        ))
        .send()
        .await
        .unwrap();
    assert_problem(res, 413, "payload_too_large").await;
}

async fn panics_become_500_and_the_server_keeps_serving(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    // More panics than workers: none of them may take a worker down.
    for _ in 0..5 {
        let body = assert_problem(app.get("/__test/panic").await, 500, "internal").await;
        assert!(!body.to_string().contains("deliberate panic"), "{body}");
        assert!(!body.to_string().contains(".rs"), "{body}");
    }
    for _ in 0..5 {
        assert_eq!(app.get("/healthz").await.status(), 200);
    }
}

async fn a_database_failure_reveals_nothing(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let res = app.get("/__test/db-error").await;
    let status = res.status().as_u16();
    assert!(status == 500 || status == 503, "{status}");
    let body = res.text().await.unwrap();
    for leak in [
        "no_such_table",
        "secret_column",
        "SELECT",
        "sqlx",
        "sqlite",
        "postgres",
        "relation",
        "/tmp",
        "src/",
    ] {
        assert!(!body.contains(leak), "error body leaks `{leak}`: {body}");
    }
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["code"], "internal");

    // And with the pool closed: 503, still nothing internal.
    app.state.db.close().await;
    let res = app.get("/__test/db-error").await;
    let body = assert_problem(res, 503, "service_unavailable").await;
    assert!(!body.to_string().contains("Pool"), "{body}");
}

#[test]
fn the_error_format_is_pinned() {
    use bwenge::error::{ErrorCode, problem_response};
    let res = problem_response(
        ErrorCode::ValidationFailed,
        "email is not valid",
        Some("email"),
        None,
        Some("req-1".into()),
    );
    assert_eq!(res.status(), 422);
    let body = actix_web::body::to_bytes(res.into_body());
    let body = futures_executor_block_on(body).unwrap();
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        json,
        serde_json::json!({
            "type": "https://bwenge.dev/problems/validation_failed",
            "title": "Validation failed",
            "status": 422,
            "detail": "email is not valid",
            "code": "validation_failed",
            "field": "email",
            "request_id": "req-1"
        })
    );
}

fn futures_executor_block_on<F: std::future::Future>(f: F) -> F::Output {
    actix_web::rt::System::new().block_on(f)
}
