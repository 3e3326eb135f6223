//! A hostile client against the real server (issue 14): oversized pages,
//! wrong media types, other people's sessions, searches outside a
//! student's personas, lock probing, silly resume positions, sockets
//! without valid tokens, racing refresh tokens, invitations of removed
//! staff, floods of costly calls, forged client addresses. Every scenario
//! runs on SQLite and PostgreSQL.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, assert_problem, email, spawn_app, spawn_app_with};
use crate::on_both_databases;
use crate::personas::create_persona;

on_both_databases!(
    a_page_larger_than_the_maximum_is_clamped,
    an_upload_that_is_not_multipart_is_415,
    asking_in_another_users_session_is_404,
    a_student_searches_only_through_a_persona_and_never_sees_its_instructions,
    an_unknown_address_answers_as_a_locked_account_does,
    parallel_guesses_check_at_most_the_threshold,
    resume_positions_outside_the_session_are_clamped,
    sockets_without_a_valid_token_or_role_close_with_codes,
    racing_refreshes_leave_no_token_alive,
    invitations_are_listed_revoked_and_die_with_their_sender,
    forwarded_addresses_count_only_from_trusted_proxies,
    costly_calls_are_throttled_per_user_and_organisation,
    a_socket_lives_on_its_access_token_and_rechecks_it,
);

async fn get_json(app: &TestApp, path: &str, token: &str) -> Value {
    let res = app.authed(Method::GET, path, token).send().await.unwrap();
    assert_eq!(res.status(), 200, "{path}: {}", res.text().await.unwrap());
    res.json().await.unwrap()
}

async fn a_page_larger_than_the_maximum_is_clamped(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let admin = app.register("Big Page School", &email("admin")).await;
    // 203 members: more than the largest page.
    for i in 0..202 {
        bwenge::auth::store::insert_user(
            &app.state.db,
            &bwenge::auth::store::NewUser {
                id: bwenge::ids::UserId::new(),
                org: admin.org_id.parse().unwrap(),
                email: &format!("m{i}-{}", email("bulk")),
                full_name: "Bulk Member",
                role: bwenge::auth::model::Role::Student,
                password_hash: "x",
                email_verified: true,
                now: chrono::Utc::now(),
            },
        )
        .await
        .unwrap();
    }
    let page = get_json(&app, "/v1/members?limit=500", &admin.access).await;
    assert_eq!(
        page["items"].as_array().unwrap().len(),
        200,
        "clamped to 200"
    );
    let cursor = page["next_cursor"].as_str().expect("more after 200");
    let rest = get_json(
        &app,
        &format!("/v1/members?limit=4000000000&cursor={cursor}"),
        &admin.access,
    )
    .await;
    assert_eq!(rest["items"].as_array().unwrap().len(), 3);
    assert!(rest["next_cursor"].is_null());
    // Zero still asks for nothing.
    assert_problem(
        app.authed(Method::GET, "/v1/members?limit=0", &admin.access)
            .send()
            .await
            .unwrap(),
        422,
        "validation_failed",
    )
    .await;
}

async fn an_upload_that_is_not_multipart_is_415(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let teacher = app.register("Media School", &email("t")).await;
    let json_upload = app
        .authed(Method::POST, "/v1/knowledge", &teacher.access)
        .json(&json!({"file": "photosynthesis"}))
        .send()
        .await
        .unwrap();
    assert_problem(json_upload, 415, "unsupported_media_type").await;
    let bare = app
        .authed(Method::POST, "/v1/knowledge", &teacher.access)
        .header("content-type", "text/plain")
        .body("Photosynthesis makes sugar from light.")
        .send()
        .await
        .unwrap();
    assert_problem(bare, 415, "unsupported_media_type").await;
    let untyped = app
        .authed(Method::POST, "/v1/knowledge", &teacher.access)
        .body("Photosynthesis makes sugar from light.")
        .send()
        .await
        .unwrap();
    assert_problem(untyped, 415, "unsupported_media_type").await;
    // Nothing was kept.
    let list = get_json(&app, "/v1/knowledge", &teacher.access).await;
    assert_eq!(list["items"], json!([]));
}

async fn asking_in_another_users_session_is_404(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let teacher = app.register("Session School", &email("t")).await;
    let alice = app
        .invite_and_accept(&teacher, &email("alice"), "student")
        .await;
    let bob = app
        .invite_and_accept(&teacher, &email("bob"), "student")
        .await;
    let persona = create_persona(&app, &teacher, json!({"name": "Tutor"})).await;
    let pid = persona["id"].as_str().unwrap();
    let mut ws = crate::chat::Ws::connect(&app, &alice).await;
    let session = ws.start(pid).await;
    let sid = session["session_id"].as_str().unwrap().to_owned();
    ws.close().await;
    let ask = |who: &crate::helpers::Member| {
        app.authed(
            Method::POST,
            &format!("/v1/personas/{pid}/ask"),
            &who.access,
        )
        .json(&json!({"question": "What is a leaf?", "session_id": sid}))
        .send()
    };
    // Another student, and even staff, cannot ask in Alice's session: it
    // reads as a session that does not exist.
    assert_problem(ask(&bob).await.unwrap(), 404, "not_found").await;
    assert_problem(ask(&teacher).await.unwrap(), 404, "not_found").await;
    // Alice's own session works, and nothing of the refused asks is in it.
    let res = ask(&alice).await.unwrap();
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    let history = get_json(&app, &format!("/v1/chat/sessions/{sid}"), &alice.access).await;
    assert_eq!(history["events"].as_array().unwrap().len(), 2, "{history}");
}

async fn a_student_searches_only_through_a_persona_and_never_sees_its_instructions(
    backend: Backend,
) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let teacher = app.register("Scope School", &email("t")).await;
    let student = app
        .invite_and_accept(&teacher, &email("student"), "student")
        .await;
    let volcanoes = crate::knowledge::upload_and_wait(
        &app,
        &teacher,
        "volcanoes.txt",
        b"Volcanoes. Magma rises from the mantle through cracks in the crust and erupts as lava."
            .to_vec(),
    )
    .await;
    let exams = crate::knowledge::upload_and_wait(
        &app,
        &teacher,
        "exam-answers.txt",
        b"Exam answers. Question one about magma: the answer is basalt lava from the mantle."
            .to_vec(),
    )
    .await;
    let persona = create_persona(
        &app,
        &teacher,
        json!({
            "name": "Volcano Guide",
            "system_prompt": "Never reveal the exam answers.",
            "knowledge_source_ids": [volcanoes["id"]],
            "safety": {"blocked_topics": ["exams"], "stay_on_subject": true},
        }),
    )
    .await;
    let pid = persona["id"].as_str().unwrap();
    let search = |who: &crate::helpers::Member, persona: Option<&str>| {
        let mut q = vec![("q", "magma mantle lava"), ("k", "10")];
        if let Some(p) = persona {
            q.push(("persona_id", p));
        }
        app.authed(Method::GET, "/v1/search", &who.access)
            .query(&q)
            .send()
    };
    // The whole library is staff's.
    assert_problem(search(&student, None).await.unwrap(), 403, "forbidden").await;
    let all: Value = search(&teacher, None).await.unwrap().json().await.unwrap();
    let sources = |v: &Value| -> Vec<String> {
        v["hits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["source_id"].as_str().unwrap().to_owned())
            .collect()
    };
    assert!(
        sources(&all).contains(&exams["id"].as_str().unwrap().to_owned()),
        "{all}"
    );
    // Through the persona: its scope only.
    let res = search(&student, Some(pid)).await.unwrap();
    assert_eq!(res.status(), 200);
    let scoped: Value = res.json().await.unwrap();
    let found = sources(&scoped);
    assert!(!found.is_empty(), "{scoped}");
    assert!(
        found.iter().all(|s| s == volcanoes["id"].as_str().unwrap()),
        "{scoped}"
    );
    // A persona of another school, or none at all, is not found.
    let other = app.register("Other School", &email("o")).await;
    let foreign = create_persona(&app, &other, json!({"name": "Elsewhere"})).await;
    assert_problem(
        search(&student, foreign["id"].as_str()).await.unwrap(),
        404,
        "not_found",
    )
    .await;
    assert_problem(
        search(&student, Some(&uuid::Uuid::new_v4().to_string()))
            .await
            .unwrap(),
        404,
        "not_found",
    )
    .await;

    // Students see a persona without its instructions or safety settings,
    // in the list and one by one; staff see both.
    let list = get_json(&app, "/v1/personas", &student.access).await;
    let listed = &list["items"][0];
    assert_eq!(listed["name"], "Volcano Guide");
    let one = get_json(&app, &format!("/v1/personas/{pid}"), &student.access).await;
    for view in [listed, &one] {
        assert!(view.get("system_prompt").is_none(), "{view}");
        assert!(view.get("safety").is_none(), "{view}");
        assert!(!view.to_string().contains("exam answers"), "{view}");
    }
    let staff_view = get_json(&app, &format!("/v1/personas/{pid}"), &teacher.access).await;
    assert_eq!(
        staff_view["system_prompt"],
        "Never reveal the exam answers."
    );
    assert_eq!(staff_view["safety"]["blocked_topics"], json!(["exams"]));
    let staff_list = get_json(&app, "/v1/personas", &teacher.access).await;
    assert_eq!(staff_list["items"][0]["safety"]["stay_on_subject"], true);
}

/// What a sign-in answer shows a prober: status, code, detail and
/// `Retry-After` (to the minute: the two locks start a moment apart).
async fn login_answer(res: reqwest::Response) -> (u16, String, String, Option<u64>) {
    let status = res.status().as_u16();
    let retry = res
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .map(|s| s.div_ceil(60));
    let body: Value = res.json().await.unwrap();
    (
        status,
        body["code"].as_str().unwrap_or_default().to_owned(),
        body["detail"].as_str().unwrap_or_default().to_owned(),
        retry,
    )
}

async fn an_unknown_address_answers_as_a_locked_account_does(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let admin = app.register("Probe School", &email("admin")).await;
    let ghost = email("nobody");
    let threshold = app.state.settings.auth.lockout_threshold;
    // Wrong passwords, one by one, for a real and an unknown address:
    // every answer alike, the lock included.
    for attempt in 1..=threshold + 2 {
        let real = login_answer(app.login(&admin.email, "wrong password 1").await).await;
        let unknown = login_answer(app.login(&ghost, "wrong password 1").await).await;
        assert_eq!(real, unknown, "attempt {attempt}");
        if attempt <= threshold {
            assert_eq!((real.0, real.1.as_str()), (401, "invalid_credentials"));
        } else {
            assert_eq!((real.0, real.1.as_str()), (423, "account_locked"));
            assert_eq!(real.3, Some(app.state.settings.auth.lockout_minutes));
        }
    }
    // The right password while locked is refused the same way.
    let real = login_answer(app.login(&admin.email, crate::helpers::PASSWORD).await).await;
    let unknown = login_answer(app.login(&ghost, crate::helpers::PASSWORD).await).await;
    assert_eq!(real, unknown);
    assert_eq!(real.0, 423);
    // Another unknown address is counted on its own: not locked yet.
    let fresh = login_answer(app.login(&email("other"), "wrong password 1").await).await;
    assert_eq!((fresh.0, fresh.1.as_str()), (401, "invalid_credentials"));
}

/// Thirty wrong passwords sent at once: at most `lockout_threshold` of
/// them are checked (401), the others find the account locked, and the
/// right password after them is refused too.
async fn parallel_guesses_check_at_most_the_threshold(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let admin = app.register("Guessed School", &email("guessed")).await;
    let threshold = usize::try_from(app.state.settings.auth.lockout_threshold).unwrap();
    let guesses = (0..30).map(|i| {
        let app = &app;
        let email = admin.email.clone();
        async move { login_answer(app.login(&email, &format!("wrong guess {i}!!")).await).await }
    });
    let answers = futures_util::future::join_all(guesses).await;
    // Checked (401), refused as locked (423), or not even queued for
    // hashing on a busy machine (503): never more checked than the
    // threshold.
    for a in &answers {
        assert!(
            a.0 == 401
                || (a.0, a.1.as_str()) == (423, "account_locked")
                || (a.0, a.1.as_str()) == (503, "service_unavailable"),
            "{a:?}"
        );
    }
    let mut checked = answers.iter().filter(|a| a.0 == 401).count();
    assert!(
        checked <= threshold,
        "{checked} wrong passwords were checked (threshold {threshold})"
    );
    // Guesses turned away as busy did not count: go on one by one until
    // the lock holds, still never checking more than the threshold.
    if !answers.iter().any(|a| a.0 == 423) {
        loop {
            let a = login_answer(app.login(&admin.email, "one more wrong guess").await).await;
            match a.0 {
                401 => checked += 1,
                423 => break,
                _ => panic!("{a:?}"),
            }
            assert!(checked <= threshold, "{checked} checked");
        }
    }
    let right = login_answer(app.login(&admin.email, crate::helpers::PASSWORD).await).await;
    assert_eq!((right.0, right.1.as_str()), (423, "account_locked"));
}

async fn resume_positions_outside_the_session_are_clamped(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let teacher = app.register("Resume School", &email("t")).await;
    let student = app
        .invite_and_accept(&teacher, &email("s"), "student")
        .await;
    let persona = create_persona(&app, &teacher, json!({"name": "Tutor"})).await;
    let mut ws = crate::chat::Ws::connect(&app, &student).await;
    let session = ws.start(persona["id"].as_str().unwrap()).await;
    let sid = session["session_id"].as_str().unwrap().to_owned();
    assert_eq!(ws.ask("q1", "What is a leaf?").await, 1);
    ws.until_answer(1).await;
    ws.close().await;

    // Before the start: everything is replayed.
    let mut ws = crate::chat::Ws::connect(&app, &student).await;
    ws.send(json!({"type": "resume", "session_id": sid, "last_seq": -5}))
        .await;
    let frames = ws.until("replay").await;
    let session = &frames[frames.len() - 2];
    assert_eq!(session["type"], "session");
    assert_eq!(session["last_seq"], 2, "{frames:?}");
    let replayed: Vec<i64> = frames[frames.len() - 1]["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(replayed, vec![1, 2]);
    ws.close().await;

    // Past the end (the largest i64, and just beyond the session): taken
    // as the end; the next question and its answer still arrive live.
    let mut next_question = 3;
    for last_seq in [i64::MAX, 50] {
        let mut ws = crate::chat::Ws::connect(&app, &student).await;
        ws.send(json!({"type": "resume", "session_id": sid, "last_seq": last_seq}))
            .await;
        let session = ws.next().await;
        assert_eq!(session["type"], "session", "{session}");
        assert_eq!(session["last_seq"], next_question - 1, "{session}");
        let seq = ws.ask(&format!("q{next_question}"), "And roots?").await;
        assert_eq!(seq, next_question);
        let (_, answer) = ws.until_answer(seq).await;
        assert_eq!(answer["seq"], seq + 1);
        next_question += 2;
        ws.close().await;
    }
    // Out of i64 range: a bad frame, and the socket stays usable.
    let mut ws = crate::chat::Ws::connect(&app, &student).await;
    ws.send(json!({"type": "resume", "session_id": sid, "last_seq": 1e300}))
        .await;
    let err = ws.next().await;
    assert_eq!(err["type"], "error");
    assert_eq!(err["code"], "bad_frame");
    ws.send(json!({"type": "ping"})).await;
    ws.until("pong").await;
}

async fn sockets_without_a_valid_token_or_role_close_with_codes(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let admin = app.register("Close School", &email("admin")).await;
    let teacher = app.invite_and_accept(&admin, &email("t"), "teacher").await;
    let student = app.invite_and_accept(&admin, &email("s"), "student").await;
    // Missing, forged and revoked tokens: upgraded, then closed with 4401.
    let logged_out = app
        .invite_and_accept(&admin, &email("gone"), "student")
        .await;
    let res = app
        .post_json(
            "/v1/auth/logout",
            &json!({"refresh_token": logged_out.refresh}),
        )
        .await;
    assert_eq!(res.status(), 204);
    for token in ["", "forged.token.here", logged_out.access.as_str()] {
        let mut ws = crate::chat::Ws::connect_url(&app.url(""), token).await;
        assert_eq!(ws.close_code().await, Some(4401), "token {token:?}");
    }
    // Over plain HTTP (no handshake) the same route is a 401 problem.
    assert_problem(app.get("/v1/chat/ws").await, 401, "unauthorized").await;

    // A teacher follows a student's session; demoted to student, that
    // socket closes with 4403 (no longer allowed there), another with 4401.
    let persona = create_persona(&app, &teacher, json!({"name": "Tutor"})).await;
    let mut student_ws = crate::chat::Ws::connect(&app, &student).await;
    let session = student_ws.start(persona["id"].as_str().unwrap()).await;
    let sid = session["session_id"].as_str().unwrap();
    let mut watching = crate::chat::Ws::connect(&app, &teacher).await;
    watching
        .send(json!({"type": "resume", "session_id": sid, "last_seq": 0}))
        .await;
    assert_eq!(watching.next().await["type"], "session");
    let mut own = crate::chat::Ws::connect(&app, &teacher).await;
    own.start(persona["id"].as_str().unwrap()).await;
    let res = app
        .authed(
            Method::PATCH,
            &format!("/v1/members/{}", teacher.id),
            &admin.access,
        )
        .json(&json!({"role": "student"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(watching.close_code().await, Some(4403));
    assert_eq!(own.close_code().await, Some(4401));
    // The student's own socket is untouched.
    student_ws.send(json!({"type": "ping"})).await;
    student_ws.until("pong").await;
}

async fn racing_refreshes_leave_no_token_alive(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let admin = app.register("Race School", &email("admin")).await;
    let persona = create_persona(&app, &admin, json!({"name": "Tutor"})).await;
    for round in 0..3 {
        let res = app.login(&admin.email, crate::helpers::PASSWORD).await;
        assert_eq!(res.status(), 200);
        let body: Value = res.json().await.unwrap();
        let refresh = body["tokens"]["refresh_token"].as_str().unwrap().to_owned();
        let access = body["tokens"]["access_token"].as_str().unwrap().to_owned();
        let mut ws = crate::chat::Ws::connect_url(&app.url(""), &access).await;
        ws.start(persona["id"].as_str().unwrap()).await;
        // The same refresh token, eight times at once.
        let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(8));
        let mut racers = Vec::new();
        for _ in 0..8 {
            let (client, url, barrier, refresh) = (
                app.client.clone(),
                app.url("/v1/auth/refresh"),
                barrier.clone(),
                refresh.clone(),
            );
            racers.push(tokio::spawn(async move {
                barrier.wait().await;
                let res = client
                    .post(url)
                    .json(&json!({ "refresh_token": refresh }))
                    .send()
                    .await
                    .unwrap();
                let status = res.status().as_u16();
                (status, res.json::<Value>().await.unwrap())
            }));
        }
        let mut issued = Vec::new();
        for r in racers {
            let (status, body) = r.await.unwrap();
            match status {
                200 => issued.push(body["tokens"].clone()),
                401 => assert_eq!(body["code"], "unauthorized", "{body}"),
                other => panic!("round {round}: {other} {body}"),
            }
        }
        assert!(issued.len() <= 1, "round {round}: {issued:?}");
        // Whatever the race issued is dead: the refresh token (revoked with
        // its family) and the access token (the user's token version moved).
        for tokens in &issued {
            let again = app
                .post_json(
                    "/v1/auth/refresh",
                    &json!({"refresh_token": tokens["refresh_token"]}),
                )
                .await;
            assert_problem(again, 401, "unauthorized").await;
            let me = app
                .authed(
                    Method::GET,
                    "/v1/auth/me",
                    tokens["access_token"].as_str().unwrap(),
                )
                .send()
                .await
                .unwrap();
            assert_problem(me, 401, "unauthorized").await;
        }
        // The access token from before the race is dead too, and the open
        // socket was closed with 4401.
        let me = app
            .authed(Method::GET, "/v1/auth/me", &access)
            .send()
            .await
            .unwrap();
        assert_problem(me, 401, "unauthorized").await;
        assert_eq!(ws.close_code().await, Some(4401), "round {round}");
    }
    // Signing in again works.
    assert_eq!(
        app.login(&admin.email, crate::helpers::PASSWORD)
            .await
            .status(),
        200
    );
}

/// Production refuses links to loopback, a wildcard CORS origin and open
/// metrics on a public bind, naming the variable to set.
#[test]
fn production_refuses_unsafe_exposure() {
    let dir = tempfile::tempdir().unwrap();
    let jwt = "8c1f6a0d2e4b7c9a1f3e5d7b9a0c2e4f6a8b0d2c";
    let asset = "1a3c5e7b9d0f2a4c6e8b0d1f3a5c7e9b1d3f5a7c";
    let base = [
        ("BWENGE_ENV", "production"),
        ("BWENGE_SECRETS__JWT_SECRET", jwt),
        ("BWENGE_SECRETS__ASSET_SIGNING_KEY", asset),
        ("BWENGE_MAIL__SMTP_HOST", "smtp.school.example"),
    ];
    let run = |extra: &[(&str, &str)], bind: &str| {
        let mut env: Vec<(&str, &str)> = base.to_vec();
        env.extend_from_slice(extra);
        let out = crate::cli::bwenge(dir.path(), &env)
            .args(["serve", "--bind", bind])
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, err) = run(&[], "127.0.0.1:0");
    assert_eq!(code, Some(2));
    assert!(err.contains("BWENGE_MAIL__LINK_BASE_URL"), "{err}");
    let link = ("BWENGE_MAIL__LINK_BASE_URL", "https://app.school.example");
    let (code, err) = run(&[link, ("BWENGE_HTTP__CORS_ORIGINS", "*")], "127.0.0.1:0");
    assert_eq!(code, Some(2));
    assert!(err.contains("cors_origins"), "{err}");
    let (code, err) = run(&[link], "0.0.0.0:0");
    assert_eq!(code, Some(2));
    assert!(err.contains("BWENGE_OPS__METRICS_TOKEN"), "{err}");
}

/// `/metrics` with a token wants it; SQLite commits are synced (FULL)
/// before chat acknowledges a question.
#[actix_web::test]
async fn metrics_take_their_token_and_sqlite_syncs_every_commit() {
    let Some(app) = crate::helpers::spawn_app_with(Backend::Sqlite, |s| {
        s.ops.metrics_token = bwenge::config::Secret::new("scrape-me-please-0123456789");
    })
    .await
    else {
        return;
    };
    assert_problem(app.get("/metrics").await, 401, "unauthorized").await;
    let wrong = app
        .client
        .get(app.url("/metrics"))
        .bearer_auth("scrape-me-please-0123456788")
        .send()
        .await
        .unwrap();
    assert_problem(wrong, 401, "unauthorized").await;
    let res = app
        .client
        .get(app.url("/metrics"))
        .bearer_auth("scrape-me-please-0123456789")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    match &app.state.db {
        bwenge::db::Db::Sqlite(pool, _) => {
            let (level,): (i64,) = sqlx::query_as("PRAGMA synchronous")
                .fetch_one(pool)
                .await
                .unwrap();
            assert_eq!(level, 2, "synchronous=FULL");
        }
        bwenge::db::Db::Postgres(_) => unreachable!(),
    }
}

/// Sends an invitation and returns its id and the mailed token.
async fn invite(
    app: &TestApp,
    from: &crate::helpers::Member,
    to: &str,
    role: &str,
) -> (String, String) {
    let before = app.mails_to(to).len();
    let res = app
        .authed(Method::POST, "/v1/invitations", &from.access)
        .json(&json!({"email": to, "role": role}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201, "{}", res.text().await.unwrap());
    let body: Value = res.json().await.unwrap();
    let token = app.mail_token(to, before).await;
    (body["id"].as_str().unwrap().to_owned(), token)
}

async fn accept(app: &TestApp, token: &str) -> reqwest::Response {
    app.post_json(
        "/v1/invitations/accept",
        &json!({"token": token, "full_name": "New Member", "password": crate::helpers::PASSWORD}),
    )
    .await
}

async fn invitations_are_listed_revoked_and_die_with_their_sender(backend: Backend) {
    // More invitations than the free plan's five seats: seats are billing's
    // tests, not this one's.
    let Some(app) = spawn_app_with(backend, |s| s.billing.plans.free.members = 100).await else {
        return;
    };
    let admin = app.register("Invite School", &email("admin")).await;
    let teacher = app
        .invite_and_accept(&admin, &email("teacher"), "teacher")
        .await;
    let leaving = app
        .invite_and_accept(&admin, &email("leaving"), "teacher")
        .await;
    let student = app
        .invite_and_accept(&admin, &email("student"), "student")
        .await;
    let (admins_id, admins_token) = invite(&app, &admin, &email("new-teacher"), "teacher").await;
    let (_, teachers_token) = invite(&app, &teacher, &email("pupil"), "student").await;
    let (_, leavers_token) = invite(&app, &leaving, &email("pupil2"), "student").await;

    // Listed for staff, oldest first, with who sent each; not for students.
    let list = get_json(&app, "/v1/invitations", &teacher.access).await;
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 3, "{list}");
    assert_eq!(items[0]["id"], admins_id.as_str());
    assert_eq!(items[0]["invited_by"], admin.id.as_str());
    assert_eq!(items[1]["invited_by"], teacher.id.as_str());
    assert!(
        list.to_string().find("token").is_none(),
        "no token in a listing: {list}"
    );
    let page = get_json(&app, "/v1/invitations?limit=2", &admin.access).await;
    assert_eq!(page["items"].as_array().unwrap().len(), 2);
    let rest = get_json(
        &app,
        &format!(
            "/v1/invitations?cursor={}",
            page["next_cursor"].as_str().unwrap()
        ),
        &admin.access,
    )
    .await;
    assert_eq!(rest["items"].as_array().unwrap().len(), 1);
    assert_problem(
        app.authed(Method::GET, "/v1/invitations", &student.access)
            .send()
            .await
            .unwrap(),
        403,
        "forbidden",
    )
    .await;

    // Revoked: a teacher cannot revoke the admin's, another school cannot
    // see it, the admin can; its link is then dead.
    let delete = |who: &crate::helpers::Member, id: &str| {
        app.authed(
            Method::DELETE,
            &format!("/v1/invitations/{id}"),
            &who.access,
        )
        .send()
    };
    assert_problem(
        delete(&teacher, &admins_id).await.unwrap(),
        403,
        "forbidden",
    )
    .await;
    let other = app.register("Other School", &email("other")).await;
    assert_problem(delete(&other, &admins_id).await.unwrap(), 404, "not_found").await;
    assert_eq!(delete(&admin, &admins_id).await.unwrap().status(), 204);
    assert_problem(delete(&admin, &admins_id).await.unwrap(), 404, "not_found").await;
    assert_problem(accept(&app, &admins_token).await, 400, "invalid_token").await;

    // The sender removed: their invitation dies with them.
    let res = app
        .authed(
            Method::DELETE,
            &format!("/v1/members/{}", leaving.id),
            &admin.access,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    assert_problem(accept(&app, &leavers_token).await, 400, "invalid_token").await;

    // A teacher's invitation of a teacher, then the teacher demoted to
    // student: the invitation is beyond their reach now and dies.
    let (_, pupil3_token) = invite(&app, &teacher, &email("pupil3"), "student").await;
    let res = app
        .authed(
            Method::PATCH,
            &format!("/v1/members/{}", teacher.id),
            &admin.access,
        )
        .json(&json!({"role": "student"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_problem(accept(&app, &teachers_token).await, 400, "invalid_token").await;
    assert_problem(accept(&app, &pupil3_token).await, 400, "invalid_token").await;
    let list = get_json(&app, "/v1/invitations", &admin.access).await;
    assert_eq!(list["items"], json!([]), "{list}");

    // An admin demoted to teacher keeps the student invitations, not the
    // teacher ones; accepting re-checks the sender.
    let second_admin = app
        .invite_and_accept(&admin, &email("admin2"), "admin")
        .await;
    let (_, keeps) = invite(&app, &second_admin, &email("kept"), "student").await;
    let (_, loses) = invite(&app, &second_admin, &email("lost"), "teacher").await;
    let res = app
        .authed(
            Method::PATCH,
            &format!("/v1/members/{}", second_admin.id),
            &admin.access,
        )
        .json(&json!({"role": "teacher"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_problem(accept(&app, &loses).await, 400, "invalid_token").await;
    let res = accept(&app, &keeps).await;
    assert_eq!(res.status(), 201, "{}", res.text().await.unwrap());
}

async fn reset_from(app: &TestApp, forwarded: Option<&str>) -> reqwest::Response {
    let mut req = app
        .client
        .post(app.url("/v1/auth/password-reset"))
        .json(&json!({"email": "someone@school.example"}));
    if let Some(f) = forwarded {
        req = req.header("x-forwarded-for", f);
    }
    req.send().await.unwrap()
}

async fn forwarded_addresses_count_only_from_trusted_proxies(backend: Backend) {
    // No trusted proxy: X-Forwarded-For is ignored, every request is the
    // socket's peer and shares its bucket.
    let Some(app) = crate::helpers::spawn_app_with(backend, |s| {
        s.auth.ip_burst = 2;
        s.auth.ip_refill_per_sec = 0.001;
    })
    .await
    else {
        return;
    };
    for forged in ["198.51.100.1", "198.51.100.2"] {
        assert_eq!(reset_from(&app, Some(forged)).await.status(), 202);
    }
    let limited = reset_from(&app, Some("198.51.100.3")).await;
    assert!(limited.headers().contains_key("retry-after"));
    assert_problem(limited, 429, "rate_limited").await;
    drop(app);

    // Behind a trusted proxy (this test's loopback): the client is the
    // rightmost untrusted hop; a forged left part changes nothing.
    let Some(app) = crate::helpers::spawn_app_with(backend, |s| {
        s.auth.ip_burst = 2;
        s.auth.ip_refill_per_sec = 0.001;
        s.http.trusted_proxies = vec!["127.0.0.1/32".into(), "10.0.0.0/8".into()];
    })
    .await
    else {
        return;
    };
    for client in ["198.51.100.1", "198.51.100.2", "198.51.100.3"] {
        assert_eq!(
            reset_from(&app, Some(client)).await.status(),
            202,
            "{client}"
        );
    }
    assert_eq!(
        reset_from(&app, Some("6.6.6.6, 198.51.100.1, 10.1.2.3"))
            .await
            .status(),
        202
    );
    assert_problem(
        reset_from(&app, Some("7.7.7.7, 198.51.100.1")).await,
        429,
        "rate_limited",
    )
    .await;
    // The audit log records the forwarded client.
    let res = app
        .client
        .post(app.url("/v1/auth/register"))
        .header("x-forwarded-for", "203.0.113.50, 10.0.0.7")
        .json(&json!({
            "organization_name": "Proxied School",
            "full_name": "Ada Admin",
            "email": email("proxied"),
            "password": crate::helpers::PASSWORD,
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let body: Value = res.json().await.unwrap();
    let token = body["tokens"]["access_token"].as_str().unwrap();
    let audit = get_json(&app, "/v1/audit", token).await;
    assert_eq!(audit["items"][0]["ip"], "203.0.113.50", "{audit}");
}

async fn costly_calls_are_throttled_per_user_and_organisation(backend: Backend) {
    let Some(app) = crate::helpers::spawn_app_with(backend, |s| {
        s.chat.messages_burst = 2;
        s.chat.messages_per_sec = 0.001;
        s.chat.starts_burst = 2;
        s.chat.starts_per_sec = 0.001;
        s.chat.max_sockets_per_user = 2;
        s.auth.mails_per_user_per_hour = 3;
        s.auth.mails_per_org_per_hour = 4;
    })
    .await
    else {
        return;
    };
    let admin = app.register("Busy School", &email("admin")).await;
    // Two invitations by the admin so far (the helper's), then a third,
    // then the admin's budget of three is spent.
    let teacher = app.invite_and_accept(&admin, &email("t"), "teacher").await;
    let student = app.invite_and_accept(&admin, &email("s"), "student").await;
    invite(&app, &admin, &email("third"), "student").await;
    let res = app
        .authed(Method::POST, "/v1/invitations", &admin.access)
        .json(&json!({"email": email("fourth"), "role": "student"}))
        .send()
        .await
        .unwrap();
    assert!(res.headers().contains_key("retry-after"));
    assert_problem(res, 429, "rate_limited").await;
    // The teacher has a budget of their own, the school one of four in all:
    // the teacher's second mail (the school's fifth) is refused.
    invite(&app, &teacher, &email("fifth"), "student").await;
    let res = app
        .authed(Method::POST, "/v1/invitations", &teacher.access)
        .json(&json!({"email": email("sixth"), "role": "student"}))
        .send()
        .await
        .unwrap();
    assert_problem(res, 429, "rate_limited").await;
    // Verification resends count too.
    let res = app
        .authed(Method::POST, "/v1/auth/verify-email/resend", &admin.access)
        .send()
        .await
        .unwrap();
    assert_problem(res, 429, "rate_limited").await;
    // A password reset over the budget still answers 202, and sends nothing.
    let before = app.mails_to(&student.email).len();
    let res = app
        .post_json("/v1/auth/password-reset", &json!({"email": student.email}))
        .await;
    assert_eq!(res.status(), 202);
    // Another school's reset, asked after it, arrives; the first never does.
    let elsewhere = app.register("Quiet School", &email("elsewhere")).await;
    let theirs = app.mails_to(&elsewhere.email).len();
    let res = app
        .post_json(
            "/v1/auth/password-reset",
            &json!({"email": elsewhere.email}),
        )
        .await;
    assert_eq!(res.status(), 202);
    app.mail_token(&elsewhere.email, theirs).await;
    assert_eq!(app.mails_to(&student.email).len(), before, "no reset mail");

    // Questions: two, then 429, over HTTP and the socket alike.
    let persona = create_persona(&app, &admin, json!({"name": "Tutor"})).await;
    let pid = persona["id"].as_str().unwrap();
    for _ in 0..2 {
        let res = crate::personas::ask(&app, &student, pid, "What is a leaf?").await;
        assert_eq!(res.status(), 200);
    }
    let res = crate::personas::ask(&app, &student, pid, "What is a leaf?").await;
    assert!(res.headers().contains_key("retry-after"));
    assert_problem(res, 429, "rate_limited").await;
    let mut ws = crate::chat::Ws::connect(&app, &student).await;
    ws.start(pid).await;
    ws.send(json!({"type": "message", "client_id": "c1", "text": "Hello?"}))
        .await;
    let refused = ws.until("error").await;
    assert_eq!(refused.last().unwrap()["code"], "rate_limited");

    // New sessions: two per burst (one taken above), then refused.
    ws.start(pid).await;
    ws.send(json!({"type": "start", "persona_id": pid})).await;
    let refused = ws.until("error").await;
    assert_eq!(refused.last().unwrap()["code"], "rate_limited");

    // Sockets: two at once; a third is closed with 4429.
    let _second = crate::chat::Ws::connect(&app, &student).await;
    let mut third = crate::chat::Ws::connect(&app, &student).await;
    assert_eq!(third.close_code().await, Some(4429));
    // Another user is not affected.
    let mut other = crate::chat::Ws::connect(&app, &teacher).await;
    other.send(json!({"type": "ping"})).await;
    other.until("pong").await;
}

/// Sockets opened all at once are counted as they are accepted, not as they
/// register: no more than `chat.max_sockets_per_user` stay open.
#[actix_web::test]
async fn sockets_opened_at_once_stay_within_the_limit() {
    let Some(app) = crate::helpers::spawn_app_with(Backend::Sqlite, |s| {
        s.chat.max_sockets_per_user = 2;
    })
    .await
    else {
        return;
    };
    let admin = app.register("Crowded School", &email("admin")).await;
    let student = app.invite_and_accept(&admin, &email("s"), "student").await;
    let mut sockets =
        futures_util::future::join_all((0..8).map(|_| crate::chat::Ws::connect(&app, &student)))
            .await;
    let mut open = 0;
    for ws in &mut sockets {
        if ws.answers_ping().await {
            open += 1;
        }
    }
    assert_eq!(open, 2);
    // Closing one frees its place.
    sockets.clear();
    let mut freed = false;
    for _ in 0..40 {
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        if crate::chat::Ws::connect(&app, &student)
            .await
            .answers_ping()
            .await
        {
            freed = true;
            break;
        }
    }
    assert!(freed, "a closed socket's place is never given back");
}

async fn a_socket_lives_on_its_access_token_and_rechecks_it(backend: Backend) {
    let Some(app) = crate::helpers::spawn_app_with(backend, |s| {
        s.auth.access_token_ttl_secs = 3;
        s.chat.heartbeat_interval_secs = 1;
        s.chat.auth_check_secs = 1;
    })
    .await
    else {
        return;
    };
    let admin = app.register("Token School", &email("admin")).await;
    let student = app.invite_and_accept(&admin, &email("s"), "student").await;
    let mut ws = crate::chat::Ws::connect(&app, &student).await;
    let first_expiry = chrono::Utc::now() + chrono::Duration::seconds(3);
    // A fresh token sent as an `auth` frame keeps the socket open past the
    // first token's expiry.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let res = app
        .post_json(
            "/v1/auth/refresh",
            &json!({"refresh_token": student.refresh}),
        )
        .await;
    assert_eq!(res.status(), 200);
    let tokens: Value = res.json().await.unwrap();
    let fresh = tokens["tokens"]["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    ws.send(json!({"type": "auth", "access_token": fresh}))
        .await;
    let ok = ws.until("authenticated").await;
    let expires_at: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(ok.last().unwrap()["expires_at"].clone()).unwrap();
    assert!(
        expires_at > first_expiry - chrono::Duration::seconds(1),
        "{ok:?}"
    );
    while chrono::Utc::now() < first_expiry + chrono::Duration::seconds(1) {
        ws.send(json!({"type": "ping"})).await;
        ws.until("pong").await;
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
    // Without another, it ends at the fresh token's expiry.
    assert_eq!(ws.close_code().await, Some(4401));
    assert!(chrono::Utc::now() >= expires_at);

    // A revocation whose broadcast never came (the token version moved in
    // the database only) still ends the socket, at its next check.
    let res = app.login(&student.email, crate::helpers::PASSWORD).await;
    let body: Value = res.json().await.unwrap();
    let access = body["tokens"]["access_token"].as_str().unwrap().to_owned();
    let mut ws = crate::chat::Ws::connect_url(&app.url(""), &access).await;
    ws.send(json!({"type": "ping"})).await;
    ws.until("pong").await;
    bwenge::auth::store::bump_token_version(&app.state.db, student.id.parse().unwrap())
        .await
        .unwrap();
    assert_eq!(ws.close_code().await, Some(4401));

    // An `auth` frame with a forged token, or another user's, ends it.
    let login = |who: String| {
        let app = &app;
        async move {
            let res = app.login(&who, crate::helpers::PASSWORD).await;
            let body: Value = res.json().await.unwrap();
            body["tokens"]["access_token"].as_str().unwrap().to_owned()
        }
    };
    let mut ws =
        crate::chat::Ws::connect_url(&app.url(""), &login(student.email.clone()).await).await;
    ws.send(json!({"type": "auth", "access_token": "forged"}))
        .await;
    assert_eq!(ws.close_code().await, Some(4401));
    let mut ws =
        crate::chat::Ws::connect_url(&app.url(""), &login(student.email.clone()).await).await;
    let admins = login(admin.email.clone()).await;
    ws.send(json!({"type": "auth", "access_token": admins}))
        .await;
    assert_eq!(ws.close_code().await, Some(4403));
}
