//! Chat over WebSocket through the real server, with a real WebSocket
//! client: authentication at the handshake, start, durable acks, streamed
//! answers, repeated client ids, resume with replay, strict frames,
//! heartbeats, rate limits, revocation, ingest progress for teachers,
//! tenancy, and zero loss when a server is killed or a client moves nodes.

use std::time::Duration;

use bwenge::chat::{EventRole, ServerFrame};
use bwenge_llm::testing::{StubBehaviour, StubServer};
use futures_util::{SinkExt, StreamExt};
use reqwest::Method;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::helpers::{
    Backend, Member, TestApp, email, fresh_postgres_database, redis_url, spawn_app, spawn_app_with,
    test_settings,
};
use crate::on_both_databases;
use crate::personas::{create_persona, material};

on_both_databases!(
    a_student_chats_and_resumes_without_loss_or_duplicates,
    bad_frames_heartbeats_and_rate_limits_are_handled,
);

/// A session with a socket attached is in use, however long the registry's
/// idle timeout: a question after a quiet spell is still answered.
#[actix_web::test]
async fn an_attached_session_is_not_swept_as_idle() {
    let Some(app) = spawn_app_with(Backend::Sqlite, |s| {
        s.registry.idle_timeout_secs = 1;
        s.chat.heartbeat_interval_secs = 1;
    })
    .await
    else {
        return;
    };
    let teacher = app.register("Quiet School", &email("t")).await;
    let persona = create_persona(&app, &teacher, json!({"name": "Tutor"})).await;
    let mut ws = Ws::connect(&app, &teacher).await;
    ws.start(persona["id"].as_str().unwrap()).await;
    // Several idle timeouts pass; the client only answers pings.
    for _ in 0..4 {
        ws.send(json!({"type": "ping"})).await;
        ws.until("pong").await;
        tokio::time::sleep(Duration::from_millis(900)).await;
    }
    assert_eq!(ws.ask("late", "Hello!").await, 1);
    let (_, answer) = ws.until_answer(1).await;
    assert_eq!(answer["seq"], 2);
}

/// A client that stops reading fills its bounded queue and is disconnected
/// (it can resume) while a reading client of the same burst keeps up.
#[actix_web::test]
async fn a_client_too_slow_to_read_is_disconnected() {
    let Some(app) = spawn_app_with(Backend::Sqlite, |s| s.chat.outbound_queue = 16).await else {
        return;
    };
    let teacher = app.register("Slow School", &email("t")).await;
    let mut slow = Ws::connect(&app, &teacher).await;
    slow.send(json!({"type": "ping"})).await;
    slow.until("pong").await;
    // 4,000 frames of 16 KiB (64 MiB) without reading: far past what the
    // socket buffers and a 16-frame queue hold.
    let res = app
        .client
        .post(app.url(&format!(
            "/__test/chat-flood?user_id={}&frames=4000&bytes=16384",
            teacher.id
        )))
        .send()
        .await
        .unwrap();
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["sockets"], 1);
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Reading now: some frames, then the end of the connection, long
    // before 4,000 frames.
    let mut frames = 0;
    let closed = loop {
        match tokio::time::timeout(Duration::from_secs(10), slow.inner.next()).await {
            Ok(Some(Ok(Message::Text(_)))) => frames += 1,
            Ok(Some(Ok(Message::Close(c)))) => break c.map(|c| u16::from(c.code)),
            Ok(Some(Ok(_))) => {}
            Ok(Some(Err(_))) | Ok(None) => break None,
            Err(_) => panic!("the slow client was never disconnected ({frames} frames read)"),
        }
    };
    assert!(
        frames < 4000,
        "read {frames} frames: the queue was not bounded"
    );
    assert_ne!(closed, Some(1000), "closed normally, not for being slow");
    // The server is fine and a new connection works.
    let mut again = Ws::connect(&app, &teacher).await;
    again.send(json!({"type": "ping"})).await;
    assert_eq!(again.until("pong").await.last().unwrap()["type"], "pong");
}

pub struct Ws {
    inner: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

fn ws_url(base: &str, token: &str) -> String {
    format!(
        "{}/v1/chat/ws?access_token={token}",
        base.replacen("http://", "ws://", 1)
    )
}

impl Ws {
    pub async fn connect_url(base: &str, token: &str) -> Ws {
        let (inner, _) = tokio::time::timeout(
            Duration::from_secs(20),
            tokio_tungstenite::connect_async(ws_url(base, token)),
        )
        .await
        .expect("a WebSocket handshake within 20 s")
        .unwrap();
        Ws { inner }
    }

    pub async fn connect(app: &TestApp, who: &Member) -> Ws {
        Self::connect_url(&app.url(""), &who.access).await
    }

    pub async fn send(&mut self, v: Value) {
        self.inner.send(Message::text(v.to_string())).await.unwrap();
    }

    /// The next frame, as the server's frame type: every frame the server
    /// sends must parse as one.
    pub async fn next_frame(&mut self) -> ServerFrame<'static> {
        let v = self.next().await;
        serde_json::from_value(v.clone()).unwrap_or_else(|e| panic!("not a server frame: {e}: {v}"))
    }

    /// The next JSON frame (pings are answered by the client library),
    /// checked to be a [`ServerFrame`].
    pub async fn next(&mut self) -> Value {
        // One deadline for the frame: the server's pings must not keep a
        // test waiting for a frame that never comes.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let msg = tokio::time::timeout_at(deadline, self.inner.next())
                .await
                .expect("a frame within 20 s")
                .expect("the socket is open")
                .unwrap();
            match msg {
                Message::Text(t) => {
                    if let Err(e) = serde_json::from_str::<ServerFrame<'_>>(&t) {
                        panic!("not a server frame: {e}: {t}");
                    }
                    return serde_json::from_str(&t).unwrap();
                }
                Message::Close(c) => panic!("closed: {c:?}"),
                _ => continue,
            }
        }
    }

    /// Frames until (and including) the first of type `ty`.
    pub async fn until(&mut self, ty: &str) -> Vec<Value> {
        let mut seen = Vec::new();
        loop {
            let f = self.next().await;
            let done = f["type"] == ty;
            seen.push(f);
            if done {
                return seen;
            }
        }
    }

    /// Frames until the assistant's answer to `reply_to`.
    pub async fn until_answer(&mut self, reply_to: i64) -> (Vec<Value>, Value) {
        let mut seen = Vec::new();
        loop {
            let f = self.next().await;
            if f["type"] == "message" && f["role"] == "assistant" && f["reply_to"] == reply_to {
                return (seen, f);
            }
            seen.push(f);
        }
    }

    /// Whether the server kept this socket: a ping is answered with a pong,
    /// not a close.
    pub async fn answers_ping(&mut self) -> bool {
        let ping = Message::text(json!({"type": "ping"}).to_string());
        let _ = self.inner.send(ping).await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            match tokio::time::timeout_at(deadline, self.inner.next())
                .await
                .expect("a pong or a close within 20 s")
            {
                Some(Ok(Message::Text(t))) if t.contains("\"pong\"") => return true,
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return false,
                Some(Ok(_)) => continue,
            }
        }
    }

    /// Reads until the server closes; returns the close code.
    pub async fn close_code(&mut self) -> Option<u16> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let next = tokio::time::timeout_at(deadline, self.inner.next())
                .await
                .expect("a close within 20 s");
            match next {
                Some(Ok(Message::Close(c))) => return c.map(|c| u16::from(c.code)),
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return None,
            }
        }
    }

    pub async fn start(&mut self, persona: &str) -> Value {
        self.send(json!({"type": "start", "persona_id": persona}))
            .await;
        let f = self.next().await;
        match serde_json::from_value::<ServerFrame<'_>>(f.clone()).unwrap() {
            ServerFrame::Session {
                persona_id,
                resumed: false,
                ..
            } => assert_eq!(persona_id.to_string(), persona),
            other => panic!("expected a new session, got {other:?}"),
        }
        f
    }

    pub async fn ask(&mut self, client_id: &str, text: &str) -> i64 {
        self.send(json!({"type": "message", "client_id": client_id, "text": text}))
            .await;
        // Frames of earlier questions may still be arriving.
        loop {
            match self.next_frame().await {
                ServerFrame::Ack { client_id: c, seq } if c == client_id => return seq,
                f @ ServerFrame::Error { .. } => panic!("refused: {f:?}"),
                _ => {}
            }
        }
    }

    pub async fn close(mut self) {
        let _ = self.inner.close(None).await;
    }
}

async fn a_student_chats_and_resumes_without_loss_or_duplicates(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let m = material(&app).await;
    let persona = create_persona(
        &app,
        &m.teacher,
        json!({"name": "Ms Leaf", "knowledge_source_ids": [m.photosynthesis, m.water]}),
    )
    .await;
    let pid = persona["id"].as_str().unwrap();

    // No token, or a bad one: upgraded, then closed with 4401 (a browser
    // cannot read the status of a refused upgrade).
    for token in ["", "not-a-token"] {
        let mut ws = Ws::connect_url(&app.url(""), token).await;
        assert_eq!(ws.close_code().await, Some(4401));
    }

    let mut ws = Ws::connect(&app, &m.student).await;
    let session = ws.start(pid).await;
    assert_eq!(session["resumed"], false);
    assert_eq!(session["last_seq"], 0);
    assert_eq!(session["persona_id"], pid);
    let sid = session["session_id"].as_str().unwrap().to_owned();

    // A question: stored and acked, echoed, streamed, answered, stored.
    let seq = ws.ask("q-1", "What does chlorophyll absorb?").await;
    assert_eq!(seq, 1);
    let (before, answer) = ws.until_answer(1).await;
    assert!(
        before
            .iter()
            .any(|f| f["type"] == "message" && f["role"] == "user" && f["seq"] == 1)
    );
    let deltas: String = before
        .iter()
        .filter(|f| f["type"] == "delta")
        .map(|f| f["text"].as_str().unwrap())
        .collect();
    assert!(!deltas.is_empty(), "no delta before the answer: {before:?}");
    assert_eq!(answer["seq"], 2);
    assert_eq!(answer["grounded"], true, "{answer}");
    assert!(!answer["citations"].as_array().unwrap().is_empty());
    assert!(answer["animation"]["gesture"].is_string());

    // The answer, as the server's frame type.
    let ServerFrame::Message(a) = serde_json::from_value(answer.clone()).unwrap() else {
        panic!("not a message: {answer}");
    };
    assert_eq!(
        (a.role, a.seq, a.reply_to, a.extras.grounded),
        (EventRole::Assistant, 2, Some(1), Some(true))
    );
    assert!(a.extras.citations.is_some() && a.extras.animation.is_some());

    // The same client id again: the same seq, never a second answer.
    assert_eq!(ws.ask("q-1", "What does chlorophyll absorb?").await, 1);
    ws.send(json!({"type": "ping"})).await;
    let after = ws.until("pong").await;
    assert_eq!(after.len(), 1, "a repeated question produced {after:?}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    ws.send(json!({"type": "ping"})).await;
    assert_eq!(ws.until("pong").await.len(), 1);
    ws.close().await;

    // Resume from scratch: the whole conversation once, in order.
    let mut ws = Ws::connect(&app, &m.student).await;
    ws.send(json!({"type": "resume", "session_id": sid, "last_seq": 0}))
        .await;
    let s = ws.next_frame().await;
    assert!(
        matches!(
            s,
            ServerFrame::Session {
                resumed: true,
                last_seq: 2,
                ..
            }
        ),
        "{s:?}"
    );
    let replay = ws.next().await;
    let ServerFrame::Replay { events } = serde_json::from_value(replay.clone()).unwrap() else {
        panic!("not a replay: {replay}");
    };
    let roles: Vec<_> = events
        .iter()
        .map(|bwenge::chat::frames::Tagged::Message(e)| (e.seq, e.role))
        .collect();
    assert_eq!(roles, vec![(1, EventRole::User), (2, EventRole::Assistant)]);
    let seqs: Vec<i64> = replay["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(seqs, vec![1, 2]);
    assert_eq!(replay["events"][0]["client_id"], "q-1");
    assert_eq!(replay["events"][1]["reply_to"], 1);
    assert_eq!(replay["events"][1]["text"], answer["text"]);
    // A second question continues the sequence.
    assert_eq!(ws.ask("q-2", "How do clouds form?").await, 3);
    let (_, a2) = ws.until_answer(3).await;
    assert_eq!(a2["seq"], 4);
    ws.close().await;

    // Resume from the middle: only what was missed.
    let mut ws = Ws::connect(&app, &m.student).await;
    ws.send(json!({"type": "resume", "session_id": sid, "last_seq": 3}))
        .await;
    ws.next().await;
    let replay = ws.next().await;
    let seqs: Vec<i64> = replay["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(seqs, vec![4]);
    ws.close().await;

    // History over HTTP: the student's own; the teacher sees the organisation's.
    for who in [&m.student, &m.teacher] {
        let list: Value = app
            .authed(Method::GET, "/v1/chat/sessions", &who.access)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(list["items"][0]["id"], sid.as_str(), "{list}");
        let h: Value = app
            .authed(
                Method::GET,
                &format!("/v1/chat/sessions/{sid}"),
                &who.access,
            )
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(h["events"].as_array().unwrap().len(), 4, "{h}");
        assert_eq!(h["persona_id"], pid);
    }
    // Asking over HTTP within the session continues it.
    let res = app
        .authed(
            Method::POST,
            &format!("/v1/personas/{pid}/ask"),
            &m.student.access,
        )
        .json(&json!({"question": "And what do stomata do?", "session_id": sid}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let h: Value = app
        .authed(
            Method::GET,
            &format!("/v1/chat/sessions/{sid}"),
            &m.student.access,
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let events = h["events"].as_array().unwrap();
    assert_eq!(events.len(), 6, "{h}");
    assert_eq!(events[4]["text"], "And what do stomata do?");
    assert_eq!(events[5]["reply_to"], 5);
    let other_student = app
        .invite_and_accept(&m.teacher, &email("other-student"), "student")
        .await;
    // Someone else's session cannot be used for an ask.
    let res = app
        .authed(
            Method::POST,
            &format!("/v1/personas/{pid}/ask"),
            &other_student.access,
        )
        .json(&json!({"question": "What do stomata do?", "session_id": sid}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    let list: Value = app
        .authed(Method::GET, "/v1/chat/sessions", &other_student.access)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["items"], json!([]));
    let res = app
        .authed(
            Method::GET,
            &format!("/v1/chat/sessions/{sid}"),
            &other_student.access,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    // Another student cannot resume it (4404), nor can another organisation.
    let mut ws = Ws::connect(&app, &other_student).await;
    ws.send(json!({"type": "resume", "session_id": sid, "last_seq": 0}))
        .await;
    let e = ws.next().await;
    assert_eq!(e["code"], "not_found");
    assert_eq!(ws.close_code().await, Some(4404));
    let stranger = app.register("Far School", &email("far")).await;
    let mut ws = Ws::connect(&app, &stranger).await;
    ws.send(json!({"type": "start", "persona_id": pid})).await;
    assert_eq!(ws.next().await["code"], "not_found");
    assert_eq!(ws.close_code().await, Some(4404));

    // A teacher's socket gets the organisation's ingest progress.
    let mut teacher_ws = Ws::connect(&app, &m.teacher).await;
    teacher_ws.send(json!({"type": "ping"})).await;
    teacher_ws.until("pong").await;
    let res = crate::knowledge::upload(
        &app,
        &m.teacher,
        "more.txt",
        b"Roots take up water and minerals from the soil.".to_vec(),
        None,
    )
    .await;
    let src: Value = res.json().await.unwrap();
    loop {
        let f = teacher_ws.next().await;
        if f["type"] == "ingest" && f["source_id"] == src["id"] && f["status"] == "ready" {
            assert_eq!(f["progress"], 1.0);
            assert_eq!(f["stage"], "ready");
            break;
        }
    }

    // Signing out everywhere closes the student's open sockets at once.
    let mut ws = Ws::connect(&app, &m.student).await;
    ws.send(json!({"type": "ping"})).await;
    ws.until("pong").await;
    let res = app
        .post_json(
            "/v1/auth/logout",
            &json!({"refresh_token": m.student.refresh}),
        )
        .await;
    assert!(res.status().is_success(), "{}", res.status());
    assert_eq!(ws.close_code().await, Some(4401));
}

async fn bad_frames_heartbeats_and_rate_limits_are_handled(backend: Backend) {
    let Some(app) = spawn_app_with(backend, |s| {
        s.chat.heartbeat_interval_secs = 1;
        s.chat.client_timeout_secs = 2;
        s.chat.messages_burst = 2;
        s.chat.messages_per_sec = 0.01;
        s.chat.max_frame_bytes = 1024;
        s.chat.max_bad_frames = 5;
    })
    .await
    else {
        return;
    };
    let teacher = app.register("Rate School", &email("t")).await;
    let persona = create_persona(&app, &teacher, json!({"name": "Tutor"})).await;
    let pid = persona["id"].as_str().unwrap();

    let mut ws = Ws::connect(&app, &teacher).await;
    for (frame, code) in [
        ("{not json".to_owned(), "bad_frame"),
        (json!({"type": "dance"}).to_string(), "unknown_type"),
        (json!({"kind": "ping"}).to_string(), "bad_frame"),
        (
            json!({"type": "start", "persona_id": 7}).to_string(),
            "bad_frame",
        ),
        (
            json!({"type": "ping", "pad": "x".repeat(2000)}).to_string(),
            "frame_too_large",
        ),
    ] {
        ws.inner.send(Message::text(frame)).await.unwrap();
        match ws.next_frame().await {
            ServerFrame::Error { code: c, .. } => assert_eq!(c, code),
            other => panic!("expected an error frame, got {other:?}"),
        }
    }
    // A message before a session.
    ws.send(json!({"type": "message", "client_id": "x", "text": "hi"}))
        .await;
    assert_eq!(ws.next().await["code"], "no_session");
    // Still serving after five bad frames.
    ws.send(json!({"type": "ping"})).await;
    assert_eq!(ws.next().await["type"], "pong");
    // One more bad frame than allowed closes it (policy).
    for _ in 0..2 {
        let _ = ws.inner.send(Message::text("nope")).await;
    }
    assert_eq!(ws.close_code().await, Some(1008));

    // Rate limits: an error frame, then 4429.
    let mut ws = Ws::connect(&app, &teacher).await;
    ws.start(pid).await;
    ws.ask("a", "Hello!").await;
    ws.ask("b", "Hello again!").await;
    let mut codes = Vec::new();
    let mut retry_afters = Vec::new();
    for i in 0..3 {
        ws.send(json!({"type": "message", "client_id": format!("x{i}"), "text": "more?"}))
            .await;
        loop {
            if let ServerFrame::Error {
                code,
                client_id,
                retry_after_ms,
                ..
            } = ws.next_frame().await
            {
                assert_eq!(client_id.as_deref(), Some(format!("x{i}").as_str()));
                codes.push(code.into_owned());
                retry_afters.push(retry_after_ms.unwrap_or(0));
                break;
            }
        }
    }
    assert_eq!(codes, vec!["rate_limited"; 3]);
    assert!(
        retry_afters.iter().all(|ms| *ms > 0),
        "rate_limited frames carry retry_after_ms: {retry_afters:?}"
    );
    assert_eq!(ws.close_code().await, Some(4429));

    // A client that never answers pings is closed with 4408.
    let mut ws = Ws::connect(&app, &teacher).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(ws.close_code().await, Some(4408));
}

/// HTTP against a server running as its own process.
struct Remote {
    base: String,
    client: reqwest::Client,
}

impl Remote {
    fn new(base: &str) -> Self {
        Self {
            base: base.to_owned(),
            client: reqwest::Client::new(),
        }
    }

    /// A school whose admin uploads a lesson and creates a persona over it;
    /// returns the admin's token and the persona id.
    async fn school_with_persona(&self) -> (String, String) {
        let res = self
            .client
            .post(format!("{}/v1/auth/register", self.base))
            .json(
                &json!({"organization_name": "Kill School", "full_name": "Ada Admin",
                "email": email("kill"), "password": crate::helpers::PASSWORD}),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 201);
        let body: Value = res.json().await.unwrap();
        let token = body["tokens"]["access_token"].as_str().unwrap().to_owned();
        let form = reqwest::multipart::Form::new().part(
            "file",
            reqwest::multipart::Part::bytes(
                b"Chlorophyll. The green pigment chlorophyll absorbs red and blue light.".to_vec(),
            )
            .file_name("leaf.txt"),
        );
        let src: Value = self
            .client
            .post(format!("{}/v1/knowledge", self.base))
            .bearer_auth(&token)
            .multipart(form)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let id = src["id"].as_str().unwrap().to_owned();
        for _ in 0..600 {
            let s: Value = self
                .client
                .get(format!("{}/v1/knowledge/{id}", self.base))
                .bearer_auth(&token)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if s["status"] == "ready" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let p: Value = self
            .client
            .post(format!("{}/v1/personas", self.base))
            .bearer_auth(&token)
            .json(&json!({"name": "Ms Leaf", "knowledge_source_ids": [id]}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        (token, p["id"].as_str().unwrap().to_owned())
    }
}

/// A server killed with SIGKILL between a question's ack and its answer:
/// after a restart on the same database, resuming gets the question and a
/// single answer.
#[actix_web::test]
async fn a_question_survives_a_killed_server() {
    let stub = StubServer::openai(StubBehaviour::Stream {
        text: "Chlorophyll absorbs red and blue light [1].".into(),
        chunks: 20,
        chunk_delay: Duration::from_millis(400),
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bwenge.toml");
    std::fs::write(
        &config,
        format!(
            "[llm]\nchain = [\"openai\"]\n[llm.openai]\nbase_url = \"{}\"\napi_key = \"k\"\n\
             model = \"gpt-4o-mini\"\n[chat]\norphan_grace_ms = 300\n[embeddings]\n\
             provider = \"hashing\"\nallow_download = false\n",
            stub.base_url()
        ),
    )
    .unwrap();
    let cfg = config.to_str().unwrap().to_owned();
    let start = || crate::cli::serve_args(dir.path(), &[], &["--config", &cfg]);
    let server = start();
    let base = format!("http://127.0.0.1:{}", server.port);
    let remote = Remote::new(&base);
    let (token, persona) = remote.school_with_persona().await;
    let mut ws = Ws::connect_url(&base, &token).await;
    let s = ws.start(&persona).await;
    let sid = s["session_id"].as_str().unwrap().to_owned();
    assert_eq!(ws.ask("k-1", "What does chlorophyll absorb?").await, 1);
    // The answer is streaming (slowly); kill the server mid-answer.
    loop {
        if ws.next().await["type"] == "delta" {
            break;
        }
    }
    let mut server = server;
    server.child.kill().unwrap();
    server.child.wait().unwrap();

    let server = start();
    let base = format!("http://127.0.0.1:{}", server.port);
    stub.set_behaviour(StubBehaviour::stream(
        "Chlorophyll absorbs red and blue light [1].",
        3,
    ));
    let mut ws = Ws::connect_url(&base, &token).await;
    ws.send(json!({"type": "resume", "session_id": sid, "last_seq": 0}))
        .await;
    let s = ws.next().await;
    assert_eq!(s["resumed"], true);
    let replay = ws.next().await;
    let events = replay["events"].as_array().unwrap().clone();
    assert_eq!(events.len(), 1, "only the question was stored: {replay}");
    assert_eq!(events[0]["client_id"], "k-1");
    let (_, answer) = ws.until_answer(1).await;
    assert_eq!(answer["seq"], 2);
    assert!(answer["text"].as_str().unwrap().contains("red and blue"));
    // Exactly one answer, now and after another resume.
    ws.close().await;
    let mut ws = Ws::connect_url(&base, &token).await;
    ws.send(json!({"type": "resume", "session_id": sid, "last_seq": 0}))
        .await;
    ws.next().await;
    let replay = ws.next().await;
    let seqs: Vec<i64> = replay["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(seqs, vec![1, 2]);
    tokio::time::sleep(Duration::from_millis(800)).await;
    ws.send(json!({"type": "ping"})).await;
    assert_eq!(ws.until("pong").await.len(), 1, "a second answer appeared");
    drop(server);
}

/// Two nodes sharing PostgreSQL and Redis: a client moves from A to B in the
/// middle of an answer and gets that answer, once.
#[actix_web::test]
async fn a_client_moving_nodes_mid_answer_gets_the_answer_once() {
    let Some(redis) = redis_url() else { return };
    let Some(pg) = fresh_postgres_database().await else {
        return;
    };
    let stub = StubServer::openai(StubBehaviour::Stream {
        text: "Chlorophyll absorbs red and blue light [1].".into(),
        chunks: 10,
        chunk_delay: Duration::from_millis(200),
    })
    .await
    .unwrap();
    let prefix = format!("test:{}:", uuid::Uuid::new_v4());
    let node = |pg: String, redis: String, prefix: String, base: String| async move {
        let dir = tempfile::tempdir().unwrap();
        let mut s = test_settings(dir.path(), &pg);
        s.redis_url = redis;
        s.redis.key_prefix = prefix;
        s.secrets.jwt_secret =
            bwenge::config::Secret::new("a-shared-secret-for-both-nodes-0123456789");
        s.llm.chain = vec![bwenge::config::LlmProvider::Openai];
        s.llm.openai.base_url = base;
        s.llm.openai.model = "gpt-4o-mini".into();
        s.chat.orphan_grace_ms = 1500;
        crate::helpers::start(s, Backend::Postgres, dir).await
    };
    let a = node(pg.clone(), redis.clone(), prefix.clone(), stub.base_url()).await;
    let b = node(pg, redis, prefix, stub.base_url()).await;
    let m = material(&a).await;
    let persona = create_persona(
        &a,
        &m.teacher,
        json!({"name": "Ms Leaf", "knowledge_source_ids": [m.photosynthesis]}),
    )
    .await;

    let mut on_a = Ws::connect(&a, &m.student).await;
    let s = on_a.start(persona["id"].as_str().unwrap()).await;
    let sid = s["session_id"].as_str().unwrap().to_owned();
    assert_eq!(on_a.ask("m-1", "What does chlorophyll absorb?").await, 1);
    loop {
        if on_a.next().await["type"] == "delta" {
            break;
        }
    }
    on_a.close().await;

    let mut on_b = Ws::connect(&b, &m.student).await;
    on_b.send(json!({"type": "resume", "session_id": sid, "last_seq": 1}))
        .await;
    let s = on_b.next().await;
    assert_eq!(s["resumed"], true);
    // Either the answer was stored before the resume (then it is replayed)
    // or it arrives live from A through the bus; once either way.
    let mut answers = Vec::new();
    let f = on_b.next().await;
    if f["type"] == "replay" {
        answers.extend(
            f["events"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|e| e["role"] == "assistant")
                .cloned(),
        );
    }
    if answers.is_empty() {
        let (frames, answer) = on_b.until_answer(1).await;
        assert!(
            frames.iter().any(|f| f["type"] == "delta"),
            "no live deltas from A: {frames:?}"
        );
        answers.push(answer);
    }
    assert_eq!(answers.len(), 1);
    assert_eq!(answers[0]["seq"], 2);
    // Past B's grace: still a single answer stored.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let h: Value = b
        .authed(
            Method::GET,
            &format!("/v1/chat/sessions/{sid}"),
            &m.student.access,
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let roles: Vec<&str> = h["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, vec!["user", "assistant"], "{h}");
}

/// Past the node's answering capacity questions wait in line, in order,
/// and are told their place; past the line's end they are refused before
/// anything is stored, over the socket and HTTP alike, and may be sent
/// again. The `ack` never waits for answering.
#[actix_web::test]
async fn questions_wait_in_line_and_a_full_line_refuses_them() {
    // Each answer streams for about two seconds.
    let stub = StubServer::openai(StubBehaviour::Stream {
        text: "Chlorophyll absorbs red and blue light [1].".into(),
        chunks: 5,
        chunk_delay: Duration::from_millis(400),
    })
    .await
    .unwrap();
    let base = stub.base_url();
    let Some(app) = spawn_app_with(Backend::Sqlite, |s| {
        s.llm.chain = vec![bwenge::config::LlmProvider::Openai];
        s.llm.openai.base_url = base.clone();
        s.llm.openai.model = "gpt-4o-mini".into();
        s.personas.cache_ttl_secs = 0;
        s.chat.messages_burst = 1000;
        s.chat.answer_concurrency = 1;
        s.chat.answer_queue = 1;
    })
    .await
    else {
        return;
    };
    let m = material(&app).await;
    let persona = create_persona(
        &app,
        &m.teacher,
        json!({"name": "Ms Leaf", "knowledge_source_ids": [m.photosynthesis]}),
    )
    .await;
    let pid = persona["id"].as_str().unwrap().to_owned();
    let mut ws = Ws::connect(&app, &m.student).await;
    let sid = ws.start(&pid).await["session_id"]
        .as_str()
        .unwrap()
        .to_owned();

    // The first is answered at once; the second waits, first in line. Its
    // ack does not wait for the first answer (two seconds away).
    assert_eq!(ws.ask("a", "What does chlorophyll absorb?").await, 1);
    ws.send(json!({"type": "message", "client_id": "b", "text": "What does chlorophyll absorb?"}))
        .await;
    let before_ack = ws.until("ack").await;
    assert_eq!(before_ack.last().unwrap()["seq"], 2, "{before_ack:?}");
    assert!(
        !before_ack
            .iter()
            .any(|f| f["type"] == "message" && f["role"] == "assistant"),
        "the ack waited for an answer: {before_ack:?}"
    );
    let seen = ws.until("queued").await;
    assert_eq!(
        seen.last().unwrap(),
        &json!({"type": "queued", "reply_to": 2, "position": 1})
    );

    // The line is full: the third is refused, not stored.
    ws.send(json!({"type": "message", "client_id": "c", "text": "What is chlorophyll?"}))
        .await;
    let refused = loop {
        let f = ws.next().await;
        if f["type"] == "error" {
            break f;
        }
    };
    assert_eq!(refused["code"], "overloaded", "{refused}");
    assert_eq!(refused["client_id"], "c");
    assert!(
        refused["retry_after_ms"].as_u64().unwrap() >= 1000,
        "{refused}"
    );
    // Over HTTP too: 503 with Retry-After, nothing counted or stored.
    let res = app
        .authed(
            Method::POST,
            &format!("/v1/personas/{pid}/ask"),
            &m.student.access,
        )
        .json(&json!({"question": "What is chlorophyll?", "session_id": sid}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 503);
    assert!(res.headers().get("retry-after").is_some());
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["code"], "overloaded");

    // Answered in the order asked; then the refused one, sent again, is
    // stored after them and answered.
    let (_, first) = ws.until_answer(1).await;
    let (_, second) = ws.until_answer(2).await;
    assert!(first["seq"].as_i64() < second["seq"].as_i64());
    let again = ws.ask("c", "What is chlorophyll?").await;
    assert_eq!(again, 5);
    ws.until_answer(again).await;
    let h: Value = app
        .authed(
            Method::GET,
            &format!("/v1/chat/sessions/{sid}"),
            &m.student.access,
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let roles: Vec<(i64, String)> = h["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["seq"].as_i64().unwrap(),
                e["role"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let expected: Vec<(i64, String)> = [
        (1, "user"),
        (2, "user"),
        (3, "assistant"),
        (4, "assistant"),
        (5, "user"),
        (6, "assistant"),
    ]
    .into_iter()
    .map(|(s, r)| (s, r.to_owned()))
    .collect();
    assert_eq!(roles, expected);
}
