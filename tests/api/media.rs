//! Audio and video through a transcription service speaking the OpenAI
//! protocol (`POST /v1/audio/transcriptions`, multipart, `verbose_json`),
//! served here on loopback.

use std::sync::{Arc, Mutex};

use actix_web::{App, HttpResponse, HttpServer, web};
use serde_json::json;

use crate::helpers::{Backend, email, spawn_app_with};
use crate::knowledge::{search, upload_and_wait};

#[derive(Default)]
struct Seen {
    bodies: Vec<String>,
    auth: Vec<String>,
}

fn wav() -> Vec<u8> {
    let mut wav = b"RIFF\x24\x08\x00\x00WAVEfmt ".to_vec();
    wav.extend_from_slice(&[
        16, 0, 0, 0, 1, 0, 1, 0, 0x44, 0xac, 0, 0, 0x88, 0x58, 1, 0, 2, 0, 16, 0,
    ]);
    wav.extend_from_slice(b"data\x00\x08\x00\x00");
    wav.extend(std::iter::repeat_n(0u8, 2048));
    wav
}

/// Starts a transcription service that answers `status` with `body`.
fn transcription_server(status: u16, body: serde_json::Value) -> (String, Arc<Mutex<Seen>>) {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let state = seen.clone();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = HttpServer::new(move || {
        let state = state.clone();
        let body = body.clone();
        App::new().route(
            "/v1/audio/transcriptions",
            web::post().to(move |req: actix_web::HttpRequest, bytes: web::Bytes| {
                let state = state.clone();
                let body = body.clone();
                async move {
                    let mut s = state.lock().unwrap();
                    s.bodies.push(String::from_utf8_lossy(&bytes).into_owned());
                    s.auth.push(
                        req.headers()
                            .get("authorization")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default()
                            .to_owned(),
                    );
                    HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap())
                        .json(body)
                }
            }),
        )
    })
    .workers(1)
    .listen(listener)
    .unwrap()
    .run();
    actix_web::rt::spawn(server);
    (format!("http://127.0.0.1:{port}"), seen)
}

#[actix_web::test]
async fn audio_is_transcribed_with_timestamps_and_searchable() {
    let (url, seen) = transcription_server(
        200,
        json!({
            "text": "Welcome. Today: the water cycle.",
            "segments": [
                {"start": 0.0, "end": 3.5, "text": " Welcome to today's science lesson."},
                {"start": 125.0, "end": 131.0, "text": " Evaporation lifts water vapour from the oceans into the clouds."}
            ]
        }),
    );
    let app = spawn_app_with(Backend::Sqlite, move |s| {
        s.transcription.base_url = url;
        s.transcription.api_key = bwenge::config::Secret::new("sk-test-key");
    })
    .await
    .unwrap();
    let teacher = app.register("School", &email("teacher")).await;
    let done = upload_and_wait(&app, &teacher, "lesson.wav", wav()).await;
    assert_eq!(done["status"], "ready", "{done}");
    assert_eq!(done["media_type"], "audio/x-wav");
    let hits = search(&app, &teacher, "evaporation water vapour clouds").await;
    assert_eq!(hits[0]["source_id"], done["id"]);
    // 2:05 is in the third minute: page 3.
    assert_eq!(hits[0]["page"], 3, "{hits:?}");
    let seen = seen.lock().unwrap();
    assert_eq!(seen.auth, vec!["Bearer sk-test-key".to_owned()]);
    let body = &seen.bodies[0];
    for part in [
        "name=\"model\"",
        "whisper-1",
        "name=\"response_format\"",
        "verbose_json",
        "name=\"file\"",
        "filename=\"lesson.wav\"",
    ] {
        assert!(body.contains(part), "the request lacks {part}");
    }
}

#[actix_web::test]
async fn a_refusal_by_the_transcription_service_fails_the_source_clearly() {
    let (url, _) = transcription_server(400, json!({"error": {"message": "unsupported audio"}}));
    let app = spawn_app_with(Backend::Sqlite, move |s| s.transcription.base_url = url)
        .await
        .unwrap();
    let teacher = app.register("School", &email("teacher")).await;
    let done = upload_and_wait(&app, &teacher, "noise.wav", wav()).await;
    assert_eq!(done["status"], "failed", "{done}");
    assert!(
        done["error"].as_str().unwrap().contains("transcription"),
        "{done}"
    );
}
