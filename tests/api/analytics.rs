//! Analytics through the real server: a class asks questions (over the
//! WebSocket and over HTTP) and the overview, students, gaps and flags
//! reports show exactly that; another school sees none of it; a student
//! sees only their own page; the CSV export parses; clients cannot forge
//! server events; retention removes raw events and keeps totals; an
//! erased member leaves no trace.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::chat::Ws;
use crate::helpers::{Backend, Member, TestApp, assert_problem, email, spawn_app};
use crate::knowledge::upload_and_wait;
use crate::on_both_databases;
use crate::personas::{ask_ok, create_persona};

on_both_databases!(
    a_class_asks_and_the_reports_show_exactly_that,
    retention_keeps_totals_and_erasure_leaves_no_trace,
    a_long_questions_export_holds_every_question_once_in_order,
);

struct Class {
    teacher: Member,
    students: Vec<Member>,
    persona: String,
    session: String,
}

async fn get(app: &TestApp, who: &Member, path: &str) -> Value {
    let res = app
        .authed(Method::GET, path, &who.access)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "{path}: {}", res.text().await.unwrap());
    res.json().await.unwrap()
}

/// Waits until the background writer has stored `n` questions.
async fn wait_for_questions(app: &TestApp, who: &Member, n: i64) -> Value {
    let mut last = Value::Null;
    for _ in 0..300 {
        last = get(app, who, "/v1/analytics/overview").await;
        if last["questions"] == n {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("expected {n} questions, got {last}");
}

/// Parses RFC 4180 CSV (quoted fields, doubled quotes, CRLF records).
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    let mut row = Vec::new();
    let mut field = String::new();
    let mut chars = text.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        if quoted {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                '"' => quoted = false,
                c => field.push(c),
            }
            continue;
        }
        match c {
            '"' => quoted = true,
            ',' => row.push(std::mem::take(&mut field)),
            '\r' => {
                assert_eq!(chars.next(), Some('\n'), "records end with CRLF");
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
            }
            '\n' => panic!("a bare LF outside quotes"),
            c => field.push(c),
        }
    }
    assert!(
        field.is_empty() && row.is_empty(),
        "the last record ends with CRLF"
    );
    rows
}

async fn export(app: &TestApp, who: &Member, report: &str) -> Vec<Vec<String>> {
    let res = app
        .authed(
            Method::GET,
            &format!("/v1/analytics/export?report={report}"),
            &who.access,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    parse_csv(&res.text().await.unwrap())
}

const LAVA: &str = "What is \"lava\", and how does magma erupt?";
const GAP_A: &str = "How do rockets reach outer space?";
const GAP_B: &str = "How do rockets reach outer space so fast?";
const GAP_C: &str = "Who won the football world cup in 1998?";
const BLOCKED: &str = "Tell me about politics";
const UNSAFE: &str = "How do I make a bomb?";

/// A school with one persona on volcanoes and three students: the first
/// asks over the WebSocket (a grounded question, a gap, an unsafe one),
/// the second over HTTP (two alike gaps and a blocked topic), the third
/// nothing. Nine questions in all? No: six, counted below.
async fn class(app: &TestApp) -> Class {
    let teacher = app.register("Crater School", &email("teacher")).await;
    let volcanoes = upload_and_wait(
        app,
        &teacher,
        "volcanoes.txt",
        b"Volcanoes. Magma rises from the mantle through cracks in the crust and erupts as lava. \
          Lava is molten rock that reaches the surface. Volcanic ash can travel far."
            .to_vec(),
    )
    .await;
    let persona = create_persona(
        app,
        &teacher,
        json!({"name": "Volcano tutor", "subject": "Geology",
               "knowledge_source_ids": [volcanoes["id"]],
               "safety": {"blocked_topics": ["politics"], "stay_on_subject": false}}),
    )
    .await;
    let persona = persona["id"].as_str().unwrap().to_owned();
    let mut students = Vec::new();
    for i in 0..3 {
        students.push(
            app.invite_and_accept(&teacher, &email(&format!("student{i}")), "student")
                .await,
        );
    }
    // A sign-in is recorded too.
    let res = app.login(&students[0].email, &students[0].password).await;
    assert_eq!(res.status(), 200);

    let mut ws = Ws::connect(app, &students[0]).await;
    let session = ws.start(&persona).await["session_id"]
        .as_str()
        .unwrap()
        .to_owned();
    for (i, q) in [LAVA, GAP_C, UNSAFE].iter().enumerate() {
        let seq = ws.ask(&format!("q{i}"), q).await;
        let (_, answer) = ws.until_answer(seq).await;
        if *q == LAVA {
            assert_eq!(answer["grounded"], true, "{answer}");
        }
    }
    ws.close().await;
    for q in [GAP_A, GAP_B, BLOCKED] {
        let a = ask_ok(app, &students[1], &persona, q).await;
        assert_eq!(a["grounded"], false, "{a}");
    }
    Class {
        teacher,
        students,
        persona,
        session,
    }
}

async fn a_class_asks_and_the_reports_show_exactly_that(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let c = class(&app).await;
    let (s0, s1, s2) = (&c.students[0], &c.students[1], &c.students[2]);

    // Overview: six questions, one grounded, five declined, two students.
    let o = wait_for_questions(&app, &c.teacher, 6).await;
    assert_eq!(o["active_students"], 2, "{o}");
    assert_eq!(o["sessions"], 1, "{o}");
    assert_eq!(o["refusals"], 5, "{o}");
    let rate = o["grounded_rate"].as_f64().unwrap();
    assert!((rate - 1.0 / 6.0).abs() < 1e-9, "{o}");
    assert!(o["first_token_ms"]["p50"].is_i64(), "{o}");
    assert!(o["first_token_ms"]["p95"].as_i64() >= o["first_token_ms"]["p50"].as_i64());
    let by_day = o["by_day"].as_array().unwrap();
    assert_eq!(by_day.len(), 7);
    assert_eq!(
        by_day
            .iter()
            .map(|d| d["questions"].as_i64().unwrap())
            .sum::<i64>(),
        6
    );
    assert_eq!(by_day.last().unwrap()["active_students"], 2);
    assert_eq!(o["top_personas"][0]["persona_id"], c.persona.as_str());
    assert_eq!(o["top_personas"][0]["name"], "Volcano tutor");
    assert_eq!(o["top_personas"][0]["questions"], 6);
    assert_eq!(o["previous"]["questions"], 0, "{o}");
    // A persona filter that matches nothing.
    let none = get(
        &app,
        &c.teacher,
        &format!("/v1/analytics/overview?persona_id={}", uuid::Uuid::new_v4()),
    )
    .await;
    assert_eq!(none["questions"], 0);

    // Students: all three, with what each did.
    let list = get(&app, &c.teacher, "/v1/analytics/students?limit=2").await;
    assert_eq!(list["items"].as_array().unwrap().len(), 2);
    let cursor = list["next_cursor"].as_str().unwrap().to_owned();
    let rest = get(
        &app,
        &c.teacher,
        &format!("/v1/analytics/students?limit=2&cursor={cursor}"),
    )
    .await;
    let all: Vec<Value> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .chain(rest["items"].as_array().unwrap())
        .cloned()
        .collect();
    assert_eq!(all.len(), 3);
    let row = |m: &Member| {
        all.iter()
            .find(|r| r["user_id"] == m.id.as_str())
            .unwrap()
            .clone()
    };
    assert_eq!(row(s0)["questions"], 3);
    assert_eq!(row(s0)["sessions"], 1);
    assert_eq!(row(s0)["active_days"], 1);
    assert_eq!(row(s1)["questions"], 3);
    assert_eq!(row(s1)["sessions"], 0);
    assert_eq!(row(s2)["questions"], 0);
    assert_eq!(row(s2)["active_days"], 0);
    assert!(row(s2)["last_active_at"].is_null());
    assert_eq!(row(s2)["trend"], "insufficient_data");

    // Gaps: the two rocket questions are one gap, the football one another.
    let gaps = get(&app, &c.teacher, "/v1/analytics/gaps").await;
    let items = gaps["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{gaps}");
    assert_eq!(items[0]["count"], 2, "{gaps}");
    assert!(items[0]["label"].as_str().unwrap().contains("rockets"));
    assert_eq!(items[0]["persona_ids"], json!([c.persona]));
    assert_eq!(items[1]["count"], 1);
    assert_eq!(items[1]["label"], GAP_C);

    // Flags: the unsafe question (with its session and seq) and the
    // blocked topic, newest first.
    let flags = get(&app, &c.teacher, "/v1/analytics/flags").await;
    let items = flags["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{flags}");
    assert_eq!(items[0]["reason"], "blocked_topic");
    assert_eq!(items[0]["text"], BLOCKED);
    assert_eq!(items[0]["user_id"], s1.id.as_str());
    assert_eq!(items[1]["reason"], "safety");
    assert_eq!(items[1]["text"], UNSAFE);
    assert_eq!(items[1]["session_id"], c.session.as_str());
    assert_eq!(items[1]["seq"], 5, "question 3 of the session: seq 1, 3, 5");
    assert_eq!(items[1]["full_name"], "Invited Person");

    // A student's own page; nobody else's, and no organisation report.
    let me = get(&app, s0, &format!("/v1/analytics/students/{}", s0.id)).await;
    assert_eq!(me["questions"], 3);
    assert_eq!(me["by_persona"][0]["questions"], 3);
    let recent: Vec<&str> = me["recent_questions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["text"].as_str().unwrap())
        .collect();
    assert_eq!(recent, vec![UNSAFE, GAP_C, LAVA]);
    assert_eq!(me["recent_questions"][2]["grounded"], true);
    let res = app
        .authed(
            Method::GET,
            &format!("/v1/analytics/students/{}", s1.id),
            &s0.access,
        )
        .send()
        .await
        .unwrap();
    assert_problem(res, 403, "forbidden").await;
    for path in [
        "overview",
        "students",
        "gaps",
        "flags",
        "export?report=questions",
    ] {
        let res = app
            .authed(Method::GET, &format!("/v1/analytics/{path}"), &s0.access)
            .send()
            .await
            .unwrap();
        assert_problem(res, 403, "forbidden").await;
    }
    // The teacher reads any student's page.
    let page = get(
        &app,
        &c.teacher,
        &format!("/v1/analytics/students/{}", s1.id),
    )
    .await;
    assert_eq!(page["questions"], 3);

    // Another school sees none of it.
    let other = app.register("Other School", &email("other")).await;
    let o = get(&app, &other, "/v1/analytics/overview").await;
    assert_eq!(o["questions"], 0);
    assert_eq!(o["active_students"], 0);
    assert!(o["top_personas"].as_array().unwrap().is_empty());
    for path in ["students", "gaps", "flags"] {
        let v = get(&app, &other, &format!("/v1/analytics/{path}")).await;
        assert!(v["items"].as_array().unwrap().is_empty(), "{path}: {v}");
    }
    assert_eq!(
        export(&app, &other, "questions").await.len(),
        1,
        "the header only"
    );
    let res = app
        .authed(
            Method::GET,
            &format!("/v1/analytics/students/{}", s0.id),
            &other.access,
        )
        .send()
        .await
        .unwrap();
    assert_problem(res, 404, "not_found").await;

    // CSV: a header, one row per question, quoting intact.
    let rows = export(&app, &c.teacher, "questions").await;
    assert_eq!(rows[0][0], "at");
    assert_eq!(rows[0][6], "text");
    assert_eq!(rows.len(), 7);
    assert!(rows.iter().all(|r| r.len() == rows[0].len()));
    let lava = rows
        .iter()
        .find(|r| r[6] == LAVA)
        .expect("the quoted question");
    assert_eq!(lava[1], s0.id);
    assert_eq!(lava[7], "true");
    let students = export(&app, &c.teacher, "students").await;
    assert_eq!(students.len(), 4);
    assert_eq!(
        students[0],
        vec![
            "user_id",
            "full_name",
            "questions",
            "sessions",
            "active_days",
            "last_active_at",
            "trend"
        ]
    );
    let daily = export(&app, &c.teacher, "daily").await;
    // One day: the sign-in (outside any persona) and the persona's row.
    assert_eq!(daily.len(), 3, "{daily:?}");
    assert_eq!(daily[0][7], "logins");
    let signins = daily.iter().find(|r| r[1].is_empty()).unwrap();
    assert_eq!(signins[7], "1", "{daily:?}");
    let persona = daily.iter().find(|r| r[1] == c.persona).unwrap();
    assert_eq!(
        persona[2..],
        ["6", "1", "5", "2", "1", "0", "2"],
        "{daily:?}"
    );

    // Bad input.
    for q in [
        "from=2026-13-01",
        "to=yesterday",
        "from=2026-03-09&to=2026-03-01",
        "persona_id=nope",
    ] {
        let res = app
            .authed(
                Method::GET,
                &format!("/v1/analytics/overview?{q}"),
                &c.teacher.access,
            )
            .send()
            .await
            .unwrap();
        assert_problem(res, 422, "validation_failed").await;
    }
    let res = app
        .authed(
            Method::GET,
            "/v1/analytics/export?report=everything",
            &c.teacher.access,
        )
        .send()
        .await
        .unwrap();
    assert_problem(res, 422, "validation_failed").await;

    // Clients add only their own events of the three kinds.
    let post = |who: &Member, body: Value| {
        app.authed(Method::POST, "/v1/analytics/events", &who.access)
            .json(&body)
            .send()
    };
    let res = post(s0, json!({"type": "question", "persona_id": c.persona}))
        .await
        .unwrap();
    assert_problem(res, 422, "validation_failed").await;
    let res = post(s0, json!({"type": "login"})).await.unwrap();
    assert_problem(res, 422, "validation_failed").await;
    let res = post(
        s0,
        json!({"type": "answer_rated", "session_id": c.session, "seq": 2}),
    )
    .await
    .unwrap();
    assert_problem(res, 422, "validation_failed").await;
    // Another's session is not the caller's.
    let res = post(
        s1,
        json!({"type": "answer_rated", "session_id": c.session, "seq": 2, "rating": "up"}),
    )
    .await
    .unwrap();
    assert_problem(res, 422, "validation_failed").await;
    let res = post(
        s0,
        json!({"type": "answer_rated", "session_id": c.session, "seq": 2, "rating": "up"}),
    )
    .await
    .unwrap();
    assert_eq!(res.status(), 202);
    let res = post(
        s0,
        json!({"type": "avatar_viewed", "persona_id": c.persona}),
    )
    .await
    .unwrap();
    assert_eq!(res.status(), 202);
    app.state.analytics.recorder().flush().await;
    // Still six questions: nothing forged got in.
    let o = get(&app, &c.teacher, "/v1/analytics/overview").await;
    assert_eq!(o["questions"], 6);

    // Metrics.
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains("bwenge_analytics_events_recorded_total"),
        "metrics"
    );
    assert!(
        metrics.contains("bwenge_analytics_report_seconds"),
        "metrics"
    );
}

async fn count(app: &TestApp, sql: &str, id: &str) -> i64 {
    let id: uuid::Uuid = id.parse().unwrap();
    bwenge::on_db!(&app.state.db, |pool| sqlx::query_scalar::<_, i64>(sql)
        .bind(id)
        .fetch_one(pool)
        .await
        .unwrap())
}

async fn retention_keeps_totals_and_erasure_leaves_no_trace(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let c = class(&app).await;
    let s1 = &c.students[1];
    wait_for_questions(&app, &c.teacher, 6).await;
    app.state.analytics.recorder().flush().await;

    // Erasing a member: their events and questions go; totals stay.
    let before = count(
        &app,
        "SELECT COUNT(*) FROM analytics_events WHERE user_id = $1",
        &s1.id,
    )
    .await;
    assert!(before >= 3, "their questions were recorded");
    let res = app
        .authed(
            Method::DELETE,
            &format!("/v1/members/{}?erase=true", s1.id),
            &c.teacher.access,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    for sql in [
        "SELECT COUNT(*) FROM analytics_events WHERE user_id = $1",
        "SELECT COUNT(*) FROM analytics_daily WHERE user_id = $1",
        "SELECT COUNT(*) FROM chat_sessions WHERE user_id = $1",
    ] {
        assert_eq!(count(&app, sql, &s1.id).await, 0, "{sql}");
    }
    let o = get(&app, &c.teacher, "/v1/analytics/overview").await;
    assert_eq!(o["questions"], 6, "totals stay: {o}");
    assert_eq!(o["active_students"], 1, "without them: {o}");
    let students = get(&app, &c.teacher, "/v1/analytics/students").await;
    assert!(!students.to_string().contains(&s1.id));
    let flags = get(&app, &c.teacher, "/v1/analytics/flags").await;
    assert!(!flags.to_string().contains(BLOCKED), "{flags}");
    let gaps = get(&app, &c.teacher, "/v1/analytics/gaps").await;
    assert!(!gaps.to_string().contains("rockets"), "{gaps}");
    let rows = export(&app, &c.teacher, "questions").await;
    assert_eq!(rows.len(), 4, "the three questions of the other student");
    assert!(rows.iter().all(|r| r[1] != s1.id));

    // Retention: nothing is old yet; two days on, with one day kept, the
    // raw events are gone and the totals remain.
    let before = get(&app, &c.teacher, "/v1/analytics/overview").await;
    assert!(before["first_token_ms"]["p50"].is_i64(), "{before}");
    let now = chrono::Utc::now();
    assert_eq!(app.state.analytics.apply_retention(now).await.unwrap(), 0);
    let org = c.teacher.org_id.as_str();
    let deleted = app
        .state
        .analytics
        .apply_retention(
            now + chrono::Duration::days(
                i64::from(app.state.settings.analytics.retention_days) + 1,
            ),
        )
        .await
        .unwrap();
    assert!(deleted >= 4, "deleted {deleted}");
    assert_eq!(
        count(
            &app,
            "SELECT COUNT(*) FROM analytics_events WHERE organization_id = $1",
            org
        )
        .await,
        0
    );
    assert_eq!(export(&app, &c.teacher, "questions").await.len(), 1);
    let o = get(&app, &c.teacher, "/v1/analytics/overview").await;
    assert_eq!(o["questions"], 6, "{o}");
    // The latency histogram is a total too.
    assert_eq!(o["first_token_ms"], before["first_token_ms"], "{o}");
    let page = get(
        &app,
        &c.teacher,
        &format!("/v1/analytics/students/{}", c.students[0].id),
    )
    .await;
    assert_eq!(page["questions"], 3);
    assert!(page["recent_questions"].as_array().unwrap().is_empty());

    // The weekly digest, for staff who opt in.
    let res = app
        .authed(Method::PATCH, "/v1/auth/me", &c.students[0].access)
        .json(&json!({"weekly_digest": true}))
        .send()
        .await
        .unwrap();
    assert_problem(res, 403, "forbidden").await;
    let res = app
        .authed(Method::PATCH, "/v1/auth/me", &c.teacher.access)
        .json(&json!({"weekly_digest": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let me: Value = res.json().await.unwrap();
    assert_eq!(me["weekly_digest"], true);
    let before = app.mails_to(&c.teacher.email).len();
    let sent = app
        .state
        .analytics
        .digest_if_due(app.state.mailer.as_ref(), now + chrono::Duration::days(8))
        .await
        .unwrap();
    assert_eq!(sent, 1);
    let mails = app.mails_to(&c.teacher.email);
    assert_eq!(mails.len(), before + 1);
    let mail = mails.last().unwrap();
    assert!(
        mail.contains("multipart/alternative") && mail.contains("text/html"),
        "{mail}"
    );
    // Not twice in one week, across restarts (kept in the database).
    let again = app
        .state
        .analytics
        .digest_if_due(app.state.mailer.as_ref(), now + chrono::Duration::days(9))
        .await
        .unwrap();
    assert_eq!(again, 0);
}

/// A school's year is longer than a page of the export (1,000 rows): the
/// CSV holds each of its questions once, oldest first (questions of the
/// same millisecond in the order of their ids), every field as stored,
/// and none of another school's. The events are written as the server's
/// recorder writes them, straight to the database, as asking 2,500
/// questions over chat would take minutes.
async fn a_long_questions_export_holds_every_question_once_in_order(backend: Backend) {
    use std::sync::Arc;

    use bwenge::analytics::model::{Event, Kind};
    use bwenge::analytics::store::{Batch, StoredEvent, write_batch};
    use bwenge::ids::{OrgId, SessionId, UserId};

    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let teacher = app.register("Long Year School", &email("teacher")).await;
    let other = app.register("Other School", &email("other")).await;
    let org = OrgId(teacher.org_id.parse().unwrap());
    let user = UserId(teacher.id.parse().unwrap());
    // Whole milliseconds: PostgreSQL keeps microseconds, SQLite what it is given.
    let start = chrono::DateTime::from_timestamp_millis(chrono::Utc::now().timestamp_millis())
        .unwrap()
        - chrono::Duration::days(2);
    let awkward = "Ñyábó, \"quoted\"\nand a second line";
    let mut events = Vec::new();
    for i in 0..2_345i64 {
        // Every fifth question shares the previous one's millisecond.
        let at = start + chrono::Duration::milliseconds(i - i / 5);
        let mut e = Event::new(org, Kind::Question, at);
        e.user = (i % 7 != 0).then_some(user);
        e.session = Some(SessionId::new());
        e.seq = Some(i);
        e.text = Some(if i % 10 == 3 {
            awkward.to_owned()
        } else {
            format!("question {i}")
        });
        e.grounded = match i % 3 {
            0 => Some(true),
            1 => Some(false),
            _ => None,
        };
        e.refusal = (i % 3 == 1).then(|| "not_covered".to_owned());
        e.first_token_ms = Some(100 + i);
        e.total_ms = Some(900 + i);
        e.provider = Some("extractive".into());
        events.push(e);
    }
    let mut foreign = Event::new(OrgId(other.org_id.parse().unwrap()), Kind::Question, start);
    foreign.text = Some("another school's question".into());
    let stored: Vec<StoredEvent> = events
        .iter()
        .cloned()
        .chain([foreign])
        .map(|e| StoredEvent {
            day: e.day(),
            embedding: None,
            event: e,
        })
        .collect();
    write_batch(&app.state.db, Arc::new(Batch::new(stored, |_| false)))
        .await
        .unwrap();

    let rows = export(&app, &teacher, "questions").await;
    assert_eq!(rows.len(), 1 + events.len(), "a header and every question");
    events.sort_by_key(|e| (e.at, e.id.0));
    let millis =
        |t: chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    for (row, e) in rows[1..].iter().zip(&events) {
        let seq = e.seq.unwrap().to_string();
        assert_eq!(row[5], seq, "oldest first, ties in the order of their ids");
        let expected = [
            millis(e.at),
            e.user.map(|u| u.to_string()).unwrap_or_default(),
            if e.user.is_some() {
                "Ada Admin".into()
            } else {
                String::new()
            },
            String::new(),
            e.session.unwrap().to_string(),
            seq,
            e.text.clone().unwrap(),
            e.grounded.map(|g| g.to_string()).unwrap_or_default(),
            e.refusal.clone().unwrap_or_default(),
            e.first_token_ms.unwrap().to_string(),
            e.total_ms.unwrap().to_string(),
            "extractive".into(),
        ];
        assert_eq!(row[..], expected[..]);
    }
    assert_eq!(
        export(&app, &other, "questions").await.len(),
        2,
        "the other school's one question, apart"
    );
}
