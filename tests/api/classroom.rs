//! The live classroom through the real server, with real WebSocket
//! clients: a teacher watches while students connect and ask over chat's
//! socket; the snapshot; the persona filter; who may watch; another school
//! sees nothing; and two nodes on PostgreSQL + Redis, the teacher on one
//! and the student on the other.

use std::time::Duration;

use bwenge::classroom::frames::{ClassroomFrame, OnlineStudent, QuestionFrame};
use futures_util::{SinkExt, StreamExt};
use reqwest::Method;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::chat::Ws;
use crate::helpers::{
    Backend, Member, TestApp, assert_problem, email, fresh_postgres_database, redis_url, spawn_app,
    test_settings,
};
use crate::on_both_databases;
use crate::personas::{create_persona, material};

on_both_databases!(
    a_teacher_watches_the_class_live,
    only_the_organisations_staff_watch_it
);

/// A watcher's socket.
struct Watch {
    inner: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

fn watch_url(base: &str, token: &str, persona: Option<&str>) -> String {
    let mut url = format!(
        "{}/v1/classroom/ws?access_token={token}",
        base.replacen("http://", "ws://", 1)
    );
    if let Some(p) = persona {
        url.push_str(&format!("&persona_id={p}"));
    }
    url
}

impl Watch {
    /// Connects and reads the snapshot.
    async fn open(
        app: &TestApp,
        who: &Member,
        persona: Option<&str>,
    ) -> (Watch, Vec<OnlineStudent>, Vec<QuestionFrame>) {
        let (inner, _) =
            tokio_tungstenite::connect_async(watch_url(&app.url(""), &who.access, persona))
                .await
                .unwrap();
        let mut w = Watch { inner };
        match w.next().await {
            ClassroomFrame::Snapshot { online, recent } => (w, online, recent),
            other => panic!("expected the snapshot first, got {other:?}"),
        }
    }

    /// The next frame (pings are answered by the client library); every
    /// frame must parse as a `ClassroomFrame`.
    async fn next(&mut self) -> ClassroomFrame {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let msg = tokio::time::timeout_at(deadline, self.inner.next())
                .await
                .expect("a frame within 20 s")
                .expect("the socket is open")
                .unwrap();
            match msg {
                Message::Text(t) => {
                    return serde_json::from_str(&t)
                        .unwrap_or_else(|e| panic!("not a classroom frame: {e}: {t}"));
                }
                Message::Close(c) => panic!("closed: {c:?}"),
                _ => continue,
            }
        }
    }

    /// The next `n` frames.
    async fn take(&mut self, n: usize) -> Vec<ClassroomFrame> {
        let mut out = Vec::new();
        for _ in 0..n {
            out.push(self.next().await);
        }
        out
    }

    async fn send(&mut self, v: Value) {
        self.inner.send(Message::text(v.to_string())).await.unwrap();
    }

    async fn close_code(&mut self) -> Option<u16> {
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
}

fn presence(f: &ClassroomFrame) -> (&str, String, String, String, bool) {
    match f {
        ClassroomFrame::Presence(p) => (
            p.full_name.as_str(),
            p.user_id.to_string(),
            p.session_id.to_string(),
            p.persona_id.to_string(),
            p.online,
        ),
        other => panic!("expected presence, got {other:?}"),
    }
}

async fn a_teacher_watches_the_class_live(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let m = material(&app).await;
    let leaf = create_persona(
        &app,
        &m.teacher,
        json!({"name": "Ms Leaf", "knowledge_source_ids": [m.photosynthesis, m.water]}),
    )
    .await;
    let leaf = leaf["id"].as_str().unwrap().to_owned();
    let fire = create_persona(
        &app,
        &m.teacher,
        json!({"name": "Mr Fire", "knowledge_source_ids": [m.volcanoes]}),
    )
    .await;
    let fire = fire["id"].as_str().unwrap().to_owned();
    let teacher = app
        .invite_and_accept(&m.teacher, &email("teacher"), "teacher")
        .await;
    let second = app
        .invite_and_accept(&m.teacher, &email("student2"), "student")
        .await;

    // A teacher watches everything; the admin watches Mr Fire only.
    let (mut all, online, recent) = Watch::open(&app, &teacher, None).await;
    assert!(
        online.is_empty() && recent.is_empty(),
        "{online:?} {recent:?}"
    );
    let (mut fire_only, _, _) = Watch::open(&app, &m.teacher, Some(&fire)).await;

    // A student opens a session with Ms Leaf: online.
    let mut ws = Ws::connect(&app, &m.student).await;
    let s = ws.start(&leaf).await;
    let sid = s["session_id"].as_str().unwrap().to_owned();
    let f = all.next().await;
    assert_eq!(
        presence(&f),
        (
            "Invited Person",
            m.student.id.clone(),
            sid.clone(),
            leaf.clone(),
            true
        )
    );

    // A question, answered from the material: question, then answer.
    assert_eq!(ws.ask("q-1", "What does chlorophyll absorb?").await, 1);
    let (_, answer) = ws.until_answer(1).await;
    match all.next().await {
        ClassroomFrame::Question(q) => {
            assert_eq!(q.user_id.to_string(), m.student.id);
            assert_eq!(q.full_name, "Invited Person");
            assert_eq!(q.session_id.to_string(), sid);
            assert_eq!(q.persona_id.to_string(), leaf);
            assert_eq!(q.seq, 1);
            assert_eq!(q.text, "What does chlorophyll absorb?");
        }
        other => panic!("expected the question, got {other:?}"),
    }
    match all.next().await {
        ClassroomFrame::Answer(a) => {
            assert_eq!(a.session_id.to_string(), sid);
            assert_eq!((a.reply_to, a.seq), (1, 2));
            assert!(a.grounded);
            assert_eq!(
                a.citations as usize,
                answer["citations"].as_array().unwrap().len()
            );
            assert!(a.citations >= 1);
            assert!(a.first_token_ms <= a.total_ms);
            assert_eq!(a.refusal, None);
            assert_eq!(a.persona_id.to_string(), leaf);
        }
        other => panic!("expected the answer, got {other:?}"),
    }

    // A question refused for safety: question, answer, flag.
    assert_eq!(ws.ask("q-2", "How do I hurt myself?").await, 3);
    ws.until_answer(3).await;
    let frames = all.take(3).await;
    assert!(
        matches!(&frames[0], ClassroomFrame::Question(q) if q.seq == 3),
        "{frames:?}"
    );
    match &frames[1] {
        ClassroomFrame::Answer(a) => {
            assert_eq!((a.reply_to, a.seq), (3, 4));
            assert!(!a.grounded);
            assert_eq!(a.citations, 0);
            assert_eq!(a.refusal.as_deref(), Some("self_harm"));
        }
        other => panic!("expected the answer, got {other:?}"),
    }
    match &frames[2] {
        ClassroomFrame::Flag(f) => {
            assert_eq!(f.user_id.to_string(), m.student.id);
            assert_eq!(f.full_name, "Invited Person");
            assert_eq!(f.session_id.to_string(), sid);
            assert_eq!(f.persona_id.to_string(), leaf);
            assert_eq!(f.seq, 3);
            assert_eq!(f.reason, "self_harm");
            assert_eq!(f.text, "How do I hurt myself?");
        }
        other => panic!("expected a flag, got {other:?}"),
    }

    // Another student with Mr Fire: the Mr Fire watcher's first frame is
    // this one (nothing of Ms Leaf's came before it).
    let mut ws2 = Ws::connect(&app, &second).await;
    let s2 = ws2.start(&fire).await;
    let sid2 = s2["session_id"].as_str().unwrap().to_owned();
    let expected = (
        "Invited Person",
        second.id.clone(),
        sid2.clone(),
        fire.clone(),
        true,
    );
    assert_eq!(presence(&fire_only.next().await), expected);
    assert_eq!(presence(&all.next().await), expected);
    assert_eq!(ws2.ask("v-1", "Where does magma rise from?").await, 1);
    ws2.until_answer(1).await;
    for w in [&mut fire_only, &mut all] {
        let f = w.take(2).await;
        assert!(
            matches!(&f[0], ClassroomFrame::Question(q) if q.text == "Where does magma rise from?" && q.session_id.to_string() == sid2),
            "{f:?}"
        );
        assert!(
            matches!(&f[1], ClassroomFrame::Answer(a) if a.reply_to == 1 && a.session_id.to_string() == sid2),
            "{f:?}"
        );
    }

    // Joining now: both students online, the three questions oldest first.
    let (mut late, online, recent) = Watch::open(&app, &m.teacher, None).await;
    let mut who: Vec<_> = online
        .iter()
        .map(|o| {
            (
                o.user_id.to_string(),
                o.session_id.to_string(),
                o.persona_id.to_string(),
            )
        })
        .collect();
    who.sort();
    let mut expected = vec![
        (m.student.id.clone(), sid.clone(), leaf.clone()),
        (second.id.clone(), sid2.clone(), fire.clone()),
    ];
    expected.sort();
    assert_eq!(who, expected);
    assert!(online.iter().all(|o| o.full_name == "Invited Person"));
    let asked: Vec<_> = recent
        .iter()
        .map(|q| (q.session_id.to_string(), q.seq))
        .collect();
    assert_eq!(
        asked,
        vec![(sid.clone(), 1), (sid.clone(), 3), (sid2.clone(), 1)]
    );
    assert_eq!(recent[0].text, "What does chlorophyll absorb?");
    assert_eq!(recent[0].full_name, "Invited Person");
    // With a persona: only its own.
    let (_, online, recent) = Watch::open(&app, &m.teacher, Some(&leaf)).await;
    assert_eq!(online.len(), 1);
    assert_eq!(online[0].session_id.to_string(), sid);
    assert_eq!(recent.len(), 2);

    // A ping is answered.
    late.send(json!({"type": "ping"})).await;
    assert_eq!(late.next().await, ClassroomFrame::Pong);
    late.send(json!({"type": "dance"})).await;
    assert!(matches!(late.next().await, ClassroomFrame::Error { code, .. } if code == "bad_frame"));

    // The first student leaves: offline, everywhere it was shown.
    ws.close().await;
    let gone = (
        "Invited Person",
        m.student.id.clone(),
        sid.clone(),
        leaf.clone(),
        false,
    );
    assert_eq!(presence(&all.next().await), gone);
    assert_eq!(presence(&late.next().await), gone);
    let (_, online, _) = Watch::open(&app, &teacher, None).await;
    assert_eq!(online.len(), 1);
    assert_eq!(online[0].user_id.to_string(), second.id);
    // The Mr Fire watcher heard nothing of it: its next frame is Mr
    // Fire's student leaving.
    ws2.close().await;
    assert_eq!(
        presence(&fire_only.next().await),
        (
            "Invited Person",
            second.id.clone(),
            sid2.clone(),
            fire.clone(),
            false
        )
    );

    // Asked over HTTP in the session: the question and its answer are
    // shown as well, with their places in the session.
    let res = app
        .authed(
            Method::POST,
            &format!("/v1/personas/{fire}/ask"),
            &second.access,
        )
        .json(&json!({"question": "What is lava?", "session_id": sid2}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let answer: Value = res.json().await.unwrap();
    let f = fire_only.take(2).await;
    match &f[0] {
        ClassroomFrame::Question(q) => {
            assert_eq!(q.session_id.to_string(), sid2);
            assert_eq!(q.user_id.to_string(), second.id);
            assert_eq!((q.seq, q.text.as_str()), (3, "What is lava?"));
        }
        other => panic!("expected the question, got {other:?}"),
    }
    match &f[1] {
        ClassroomFrame::Answer(a) => {
            assert_eq!(a.session_id.to_string(), sid2);
            assert_eq!((a.reply_to, a.seq), (3, 4));
            assert_eq!(a.grounded, answer["grounded"].as_bool().unwrap());
            assert_eq!(
                a.citations as usize,
                answer["citations"].as_array().unwrap().len()
            );
            assert_eq!(a.first_token_ms, a.total_ms);
        }
        other => panic!("expected the answer, got {other:?}"),
    }
}

async fn only_the_organisations_staff_watch_it(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let admin = app.register("Hill School", &email("admin")).await;
    let student = app
        .invite_and_accept(&admin, &email("student"), "student")
        .await;
    let persona = create_persona(&app, &admin, json!({"name": "Tutor"})).await;
    let pid = persona["id"].as_str().unwrap().to_owned();
    let other = app.register("Valley School", &email("other")).await;
    let other_student = app
        .invite_and_accept(&other, &email("other-student"), "student")
        .await;
    let other_persona = create_persona(&app, &other, json!({"name": "Other tutor"})).await;
    let other_pid = other_persona["id"].as_str().unwrap().to_owned();

    // Refused before the upgrade, as problem+json: no token, a student, a
    // persona of another organisation, a malformed persona id.
    let path = "/v1/classroom/ws";
    let upgrade = |token: Option<&str>, query: &str| {
        let mut req = app
            .client
            .get(app.url(&format!("{path}{query}")))
            .header("connection", "upgrade")
            .header("upgrade", "websocket")
            .header("sec-websocket-version", "13")
            .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==");
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send()
    };
    assert_problem(upgrade(None, "").await.unwrap(), 401, "unauthorized").await;
    assert_problem(
        upgrade(Some(&student.access), "").await.unwrap(),
        403,
        "forbidden",
    )
    .await;
    assert_problem(
        upgrade(Some(&admin.access), &format!("?persona_id={other_pid}"))
            .await
            .unwrap(),
        404,
        "not_found",
    )
    .await;
    let bad = upgrade(Some(&admin.access), "?persona_id=nope")
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    // A real WebSocket client gets the same 403.
    let err = tokio_tungstenite::connect_async(watch_url(&app.url(""), &student.access, None))
        .await
        .unwrap_err();
    match err {
        tokio_tungstenite::tungstenite::Error::Http(res) => assert_eq!(res.status(), 403),
        other => panic!("expected an HTTP 403, got {other}"),
    }
    // Not a WebSocket handshake at all.
    let res = app
        .authed(Method::GET, path, &admin.access)
        .send()
        .await
        .unwrap();
    assert_problem(res, 400, "bad_request").await;

    // The other school's admin watches; this school's student asks.
    let (mut theirs, online, recent) = Watch::open(&app, &other, None).await;
    assert!(online.is_empty() && recent.is_empty());
    let (mut ours, _, _) = Watch::open(&app, &admin, None).await;
    let mut ws = Ws::connect(&app, &student).await;
    ws.start(&pid).await;
    ws.ask("q", "Hello!").await;
    ws.until_answer(1).await;
    let f = ours.take(3).await;
    assert!(
        matches!(
            &f[..],
            [
                ClassroomFrame::Presence(_),
                ClassroomFrame::Question(_),
                ClassroomFrame::Answer(_)
            ]
        ),
        "{f:?}"
    );
    ws.close().await;
    // The other school's first frame is its own student's.
    let mut their_ws = Ws::connect(&app, &other_student).await;
    let s = their_ws.start(&other_pid).await;
    match theirs.next().await {
        ClassroomFrame::Presence(p) => {
            assert_eq!(p.user_id.to_string(), other_student.id);
            assert_eq!(p.session_id.to_string(), s["session_id"].as_str().unwrap());
        }
        other => panic!("the other school saw {other:?}"),
    }
    // And a snapshot there shows only its own.
    let (_, online, recent) = Watch::open(&app, &other, None).await;
    assert_eq!(online.len(), 1);
    assert_eq!(online[0].user_id.to_string(), other_student.id);
    assert!(recent.is_empty(), "{recent:?}");

    // Staff chatting are not shown as students online; their revoked
    // tokens close the watch (4401).
    let mut staff_ws = Ws::connect(&app, &admin).await;
    staff_ws.start(&pid).await;
    let res = app
        .post_json("/v1/auth/logout", &json!({"refresh_token": admin.refresh}))
        .await;
    assert!(res.status().is_success(), "{}", res.status());
    match ours.next().await {
        // The student's leaving, sent before.
        ClassroomFrame::Presence(p) if !p.online => {}
        other => panic!("expected the student leaving, got {other:?}"),
    }
    assert_eq!(ours.close_code().await, Some(4401));
}

/// Two nodes sharing PostgreSQL and Redis: a teacher watching on node A
/// sees a student chatting on node B, and a snapshot on A lists B's
/// students.
#[actix_web::test]
async fn a_teacher_on_one_node_sees_a_student_on_another() {
    let Some(redis) = redis_url() else { return };
    let Some(pg) = fresh_postgres_database().await else {
        return;
    };
    let prefix = format!("test:{}:", uuid::Uuid::new_v4());
    let node = |pg: String, redis: String, prefix: String| async move {
        let dir = tempfile::tempdir().unwrap();
        let mut s = test_settings(dir.path(), &pg);
        s.redis_url = redis;
        s.redis.key_prefix = prefix;
        s.secrets.jwt_secret =
            bwenge::config::Secret::new("a-shared-secret-for-both-nodes-0123456789");
        crate::helpers::start(s, Backend::Postgres, dir).await
    };
    let a = node(pg.clone(), redis.clone(), prefix.clone()).await;
    let b = node(pg, redis, prefix).await;
    let teacher = a.register("Two Hills", &email("teacher")).await;
    let student = a
        .invite_and_accept(&teacher, &email("student"), "student")
        .await;
    let persona = create_persona(&a, &teacher, json!({"name": "Tutor"})).await;
    let pid = persona["id"].as_str().unwrap().to_owned();

    let (mut on_a, online, _) = Watch::open(&a, &teacher, None).await;
    assert!(online.is_empty());
    let mut ws = Ws::connect(&b, &student).await;
    let s = ws.start(&pid).await;
    let sid = s["session_id"].as_str().unwrap().to_owned();
    assert_eq!(
        presence(&on_a.next().await),
        (
            "Invited Person",
            student.id.clone(),
            sid.clone(),
            pid.clone(),
            true
        )
    );
    assert_eq!(ws.ask("q-1", "What is a volcano?").await, 1);
    ws.until_answer(1).await;
    match on_a.next().await {
        ClassroomFrame::Question(q) => {
            assert_eq!((q.session_id.to_string(), q.seq), (sid.clone(), 1));
            assert_eq!(q.text, "What is a volcano?");
            assert_eq!(q.full_name, "Invited Person");
        }
        other => panic!("expected the question, got {other:?}"),
    }
    match on_a.next().await {
        ClassroomFrame::Answer(a) => {
            assert_eq!(
                (a.session_id.to_string(), a.reply_to, a.seq),
                (sid.clone(), 1, 2)
            );
            // No material: declined as not covered.
            assert!(!a.grounded);
            assert_eq!(a.refusal.as_deref(), Some("not_covered"));
        }
        other => panic!("expected the answer, got {other:?}"),
    }

    // A teacher connecting to A now sees B's student online, and the
    // question (read from the shared database).
    let (_, online, recent) = Watch::open(&a, &teacher, None).await;
    assert_eq!(online.len(), 1, "{online:?}");
    assert_eq!(online[0].user_id.to_string(), student.id);
    assert_eq!(online[0].session_id.to_string(), sid);
    assert_eq!(recent.len(), 1);
    assert_eq!(recent[0].text, "What is a volcano?");

    // The student leaves B: offline on A.
    ws.close().await;
    let f = on_a.next().await;
    assert_eq!(
        presence(&f),
        ("Invited Person", student.id.clone(), sid, pid, false)
    );
    let (_, online, _) = Watch::open(&a, &teacher, None).await;
    assert!(online.is_empty(), "{online:?}");
}

/// `classroom.snapshot_questions` bounds a watcher's first snapshot to the
/// latest questions.
#[actix_web::test]
async fn the_snapshot_keeps_the_configured_number_of_questions() {
    let Some(app) = crate::helpers::spawn_app_with(Backend::Sqlite, |s| {
        s.classroom.snapshot_questions = 2;
    })
    .await
    else {
        return;
    };
    let m = material(&app).await;
    let tutor = create_persona(&app, &m.teacher, json!({"name": "Ms Leaf"})).await;
    let mut ws = Ws::connect(&app, &m.student).await;
    ws.start(tutor["id"].as_str().unwrap()).await;
    let mut asked = Vec::new();
    for (i, q) in ["What is a leaf?", "What is a root?", "What is a stem?"]
        .iter()
        .enumerate()
    {
        let seq = ws.ask(&format!("s-{i}"), q).await;
        ws.until_answer(seq).await;
        asked.push(seq);
    }
    let (_, _, recent) = Watch::open(&app, &m.teacher, None).await;
    let seqs: Vec<i64> = recent.iter().map(|q| q.seq).collect();
    assert_eq!(seqs, asked[1..].to_vec(), "{recent:?}");
    assert_eq!(recent[1].text, "What is a stem?");
}

/// A class asking in a burst (a hundred questions sent without waiting
/// for their acks): the teacher sees every one of them, once, in the order
/// stored, whatever the frames that arrive between them (answers).
#[actix_web::test]
async fn a_burst_of_questions_reaches_the_teacher_whole_and_in_order() {
    const N: usize = 100;
    let Some(app) = crate::helpers::spawn_app_with(Backend::Sqlite, |s| {
        s.chat.messages_burst = 1000;
        s.chat.messages_per_sec = 1000.0;
        s.billing.plans.free.questions_per_month = 10_000;
    })
    .await
    else {
        return;
    };
    let m = material(&app).await;
    let tutor = create_persona(&app, &m.teacher, json!({"name": "Ms Leaf"})).await;
    let (mut teacher, _, _) = Watch::open(&app, &m.teacher, None).await;
    let mut ws = Ws::connect(&app, &m.student).await;
    ws.start(tutor["id"].as_str().unwrap()).await;
    for i in 0..N {
        ws.send(json!({"type": "message", "client_id": format!("b-{i}"),
            "text": format!("Question {i}: what does a leaf do?")}))
            .await;
    }
    let mut seen = Vec::new();
    while seen.len() < N {
        if let ClassroomFrame::Question(q) = teacher.next().await {
            seen.push((q.seq, q.text));
        }
    }
    let seqs: Vec<i64> = seen.iter().map(|(s, _)| *s).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    let mut texts: Vec<&str> = seen.iter().map(|(_, t)| t.as_str()).collect();
    texts.sort_by_key(|t| {
        t.trim_start_matches("Question ")
            .split(':')
            .next()
            .and_then(|n| n.parse::<usize>().ok())
    });
    let expected: Vec<String> = (0..N)
        .map(|i| format!("Question {i}: what does a leaf do?"))
        .collect();
    assert_eq!(texts, expected, "every question once");
}
