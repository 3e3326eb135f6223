//! Routes the test-suite uses to provoke failures a real route should never
//! produce on purpose: a panic, a slow request, a failing query. Compiled
//! only with the `testing` cargo feature, which only the test-suite turns on
//! (a release build has no such code, whatever its environment says).

use std::time::Duration;

use actix_web::http::Method;
use actix_web::{HttpResponse, web};
use serde::Deserialize;

use crate::db::StoreError;
use crate::error::ApiResult;
use crate::http::RouteDef;
use crate::state::AppState;

pub fn routes() -> Vec<RouteDef> {
    vec![
        RouteDef::new(Method::GET, "/__test/panic", || web::get().to(panic)),
        RouteDef::new(Method::GET, "/__test/sleep", || web::get().to(sleep)),
        RouteDef::new(Method::GET, "/__test/db-error", || web::get().to(db_error)),
        RouteDef::new(Method::POST, "/__test/echo", || web::post().to(echo)),
        RouteDef::new(Method::POST, "/__test/chat-flood", || {
            web::post().to(chat_flood)
        }),
    ]
}

async fn panic() -> HttpResponse {
    panic!("deliberate panic from /__test/panic")
}

#[derive(Deserialize)]
struct SleepQuery {
    ms: u64,
}

async fn sleep(q: web::Query<SleepQuery>) -> HttpResponse {
    tokio::time::sleep(Duration::from_millis(q.ms.min(60_000))).await;
    HttpResponse::Ok().json(serde_json::json!({ "slept_ms": q.ms }))
}

/// Runs a query against a table that does not exist: the answer must not
/// show SQL, table names or driver messages.
async fn db_error(state: web::Data<AppState>) -> ApiResult<HttpResponse> {
    crate::on_db!(&state.db, |pool| sqlx::query(
        "SELECT secret_column FROM no_such_table_xyz"
    )
    .execute(pool)
    .await
    .map(|_| ())
    .map_err(StoreError::from)?);
    Ok(HttpResponse::Ok().finish())
}

#[derive(Deserialize, serde::Serialize)]
struct Echo {
    name: String,
    count: u32,
}

async fn echo(body: web::Json<Echo>) -> HttpResponse {
    HttpResponse::Ok().json(body.into_inner())
}

#[derive(Deserialize)]
struct Flood {
    user_id: crate::ids::UserId,
    frames: usize,
    bytes: usize,
}

/// Pushes `frames` frames of about `bytes` bytes to a user's sockets, as a
/// burst of session events would: for the slow-reader test.
async fn chat_flood(state: web::Data<AppState>, q: web::Query<Flood>) -> HttpResponse {
    let text = "x".repeat(q.bytes.min(1 << 20));
    let frame: std::sync::Arc<str> =
        std::sync::Arc::from(serde_json::json!({"type": "flood", "text": text}).to_string());
    let mut sockets = 0;
    for _ in 0..q.frames.min(1_000_000) {
        // The socket may already be gone (dropped as too slow) before the
        // last frames: report how many were reached at all.
        sockets = sockets.max(state.chat.hub().push_to_user(
            q.user_id,
            crate::chat::hub::Push {
                frame: frame.clone(),
                session: None,
                seq: None,
            },
        ));
    }
    HttpResponse::Ok().json(serde_json::json!({ "sockets": sockets }))
}
