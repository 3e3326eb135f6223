//! Plans, the subscription and the allowances, through the real server on
//! SQLite and PostgreSQL: the plan table is public, only staff read the
//! subscription and only admins change it, and each allowance (questions a
//! month over HTTP and the socket, storage, members) holds exactly, also
//! when many requests arrive at once.

use futures_util::future::join_all;
use reqwest::Method;
use serde_json::{Value, json};

use crate::chat::Ws;
use crate::helpers::{Backend, Member, TestApp, assert_problem, email, spawn_app, spawn_app_with};
use crate::on_both_databases;
use crate::personas::create_persona;

on_both_databases!(
    the_plans_are_public_and_those_of_the_contract,
    staff_read_the_subscription_and_only_admins_change_it,
    questions_past_the_allowance_are_refused_exactly_under_concurrency,
    the_socket_refuses_past_the_allowance_and_stays_open,
    storage_holds_for_material_and_models_and_deleting_frees_it,
    members_and_pending_invitations_hold_to_the_allowance,
);

async fn subscription(app: &TestApp, who: &Member) -> Value {
    let res = app
        .authed(Method::GET, "/v1/subscription", &who.access)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    res.json().await.unwrap()
}

async fn the_plans_are_public_and_those_of_the_contract(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let res = app.get("/v1/plans").await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    let plans = body["items"].as_array().unwrap();
    let ids: Vec<&str> = plans.iter().map(|p| p["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["free", "basic", "pro", "enterprise"]);
    let basic = &plans[1];
    assert_eq!(basic["name"], "Ibanze");
    assert_eq!(
        basic["prices"],
        json!([{"currency": "RWF", "amount": 30000}, {"currency": "USD", "amount": 3000}])
    );
    assert_eq!(
        basic["quotas"],
        json!({"questions_per_month": 1000, "storage_bytes": 1073741824_i64, "members": 25})
    );
    assert_eq!(
        plans[0]["quotas"],
        json!({"questions_per_month": 100, "storage_bytes": 104857600, "members": 5})
    );
    assert_eq!(
        plans[3]["quotas"],
        json!({"questions_per_month": null, "storage_bytes": null, "members": null})
    );
    assert_eq!(plans[2]["name"], "Nyampinga");
    assert_eq!(plans[2]["prices"][0]["amount"], 100000);
}

async fn staff_read_the_subscription_and_only_admins_change_it(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let admin = app.register("Hill School", &email("admin")).await;
    let teacher = app
        .invite_and_accept(&admin, &email("teacher"), "teacher")
        .await;
    let student = app
        .invite_and_accept(&admin, &email("student"), "student")
        .await;
    let sub = subscription(&app, &admin).await;
    assert_eq!(sub["plan"], "free");
    assert_eq!(sub["status"], "active");
    assert_eq!(sub["cancel_at_period_end"], false);
    assert!(sub["current_period_start"].is_string());
    assert_eq!(sub["usage"]["questions"], json!({"used": 0, "limit": 100}));
    assert_eq!(sub["usage"]["members"], json!({"used": 3, "limit": 5}));
    assert_eq!(sub["usage"]["storage_bytes"]["limit"], 104857600);
    assert_eq!(subscription(&app, &teacher).await["plan"], "free");

    let res = app
        .authed(Method::GET, "/v1/subscription", &student.access)
        .send()
        .await
        .unwrap();
    assert_problem(res, 403, "forbidden").await;
    for who in [&teacher, &student] {
        let res = app
            .authed(Method::POST, "/v1/subscription/cancel", &who.access)
            .send()
            .await
            .unwrap();
        assert_problem(res, 403, "forbidden").await;
    }
    // Nothing to cancel on free.
    let res = app
        .authed(Method::POST, "/v1/subscription/cancel", &admin.access)
        .send()
        .await
        .unwrap();
    assert_problem(res, 409, "conflict").await;
    let res = app
        .client
        .get(app.url("/v1/subscription"))
        .send()
        .await
        .unwrap();
    assert_problem(res, 401, "unauthorized").await;
}

/// 200 questions at once with 10 left: 10 answered, 190 refused, and the
/// counter says 10.
pub async fn questions_past_the_allowance_are_refused_exactly_under_concurrency(backend: Backend) {
    let Some(app) = spawn_app_with(backend, |s| {
        s.billing.plans.free.questions_per_month = 10;
    })
    .await
    else {
        return;
    };
    let admin = app.register("Hill School", &email("admin")).await;
    let persona = create_persona(&app, &admin, json!({"name": "Tutor"})).await;
    let persona = persona["id"].as_str().unwrap().to_owned();
    let (answered, refused) = ask_at_once(&[&app], &admin, &persona, 200).await;
    assert_eq!(answered, 10);
    assert_eq!(refused.len(), 190);
    let detail = refused[0]["detail"].as_str().unwrap();
    assert!(detail.contains("questions"), "{detail}");
    assert!(detail.contains("resets at"), "{detail}");
    let sub = subscription(&app, &admin).await;
    assert_eq!(sub["usage"]["questions"], json!({"used": 10, "limit": 10}));
}

/// Sends `n` questions at once, spread over `nodes`; returns how many were
/// answered and the refusals' bodies (each checked to be `402
/// quota_exceeded`).
pub async fn ask_at_once(
    nodes: &[&TestApp],
    who: &Member,
    persona: &str,
    n: usize,
) -> (usize, Vec<Value>) {
    let asks = (0..n).map(|i| {
        let app = nodes[i % nodes.len()];
        async move {
            app.authed(
                Method::POST,
                &format!("/v1/personas/{persona}/ask"),
                &who.access,
            )
            .json(&json!({"question": format!("What is photosynthesis, question {i}?")}))
            .send()
            .await
            .unwrap()
        }
    });
    let mut answered = 0;
    let mut refused = Vec::new();
    for res in join_all(asks).await {
        match res.status().as_u16() {
            200 => answered += 1,
            402 => refused.push(assert_problem(res, 402, "quota_exceeded").await),
            other => panic!("unexpected {other}: {}", res.text().await.unwrap()),
        }
    }
    (answered, refused)
}

async fn the_socket_refuses_past_the_allowance_and_stays_open(backend: Backend) {
    let Some(app) = spawn_app_with(backend, |s| {
        s.billing.plans.free.questions_per_month = 2;
    })
    .await
    else {
        return;
    };
    let admin = app.register("Hill School", &email("admin")).await;
    let student = app
        .invite_and_accept(&admin, &email("student"), "student")
        .await;
    let persona = create_persona(&app, &admin, json!({"name": "Tutor"})).await;
    let persona = persona["id"].as_str().unwrap().to_owned();
    let mut ws = Ws::connect(&app, &student).await;
    ws.start(&persona).await;
    let first = ws.ask("q1", "What is a volcano?").await;
    ws.ask("q2", "What is magma?").await;
    // The same client_id again (a reconnecting client): acknowledged with
    // its seq, not counted.
    assert_eq!(ws.ask("q1", "What is a volcano?").await, first);
    ws.send(json!({"type": "message", "client_id": "q3", "text": "What is lava?"}))
        .await;
    let error = loop {
        let f = ws.next().await;
        if f["type"] == "error" {
            break f;
        }
        assert!(
            !(f["type"] == "ack" && f["client_id"] == "q3"),
            "a question past the allowance was accepted: {f}"
        );
    };
    assert_eq!(error["code"], "quota_exceeded", "{error}");
    assert!(
        error["message"].as_str().unwrap().contains("resets at"),
        "{error}"
    );
    // Still open.
    ws.send(json!({"type": "ping"})).await;
    assert_eq!(ws.until("pong").await.last().unwrap()["type"], "pong");
    let sub = subscription(&app, &admin).await;
    assert_eq!(sub["usage"]["questions"]["used"], 2);
    // HTTP is refused too.
    let res = crate::personas::ask(&app, &admin, &persona, "Why?").await;
    assert_problem(res, 402, "quota_exceeded").await;
}

async fn storage_holds_for_material_and_models_and_deleting_frees_it(backend: Backend) {
    let robot = crate::avatars::robot();
    let allowance = robot.len() as i64 + 1000;
    let Some(app) = spawn_app_with(backend, move |s| {
        s.billing.plans.free.storage_bytes = allowance;
    })
    .await
    else {
        return;
    };
    let admin = app.register("Hill School", &email("admin")).await;
    let text = vec![b'a'; 1500];
    let res = crate::knowledge::upload(&app, &admin, "notes.txt", text.clone(), None).await;
    assert_eq!(res.status(), 202, "{}", res.text().await.unwrap());
    let notes: Value = res.json().await.unwrap();
    // The model does not fit beside the notes.
    let res = crate::avatars::post_model(
        &app,
        &admin,
        "/v1/models",
        Some(("robot.glb", robot.clone())),
        &[("name", "Robot")],
    )
    .await;
    let body = assert_problem(res, 402, "quota_exceeded").await;
    assert!(
        body["detail"].as_str().unwrap().contains("storage"),
        "{body}"
    );
    // Deleting the notes frees their bytes: the model fits now.
    let path = format!("/v1/knowledge/{}", notes["id"].as_str().unwrap());
    crate::knowledge::wait_done(&app, &admin, notes["id"].as_str().unwrap()).await;
    let res = app
        .authed(Method::DELETE, &path, &admin.access)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    let model = crate::avatars::upload_robot(&app, &admin, &[("name", "Robot")]).await;
    // A second version would pass the allowance.
    let res = crate::avatars::post_model(
        &app,
        &admin,
        &format!("/v1/models/{}/versions", model["id"].as_str().unwrap()),
        Some(("robot.glb", robot.clone())),
        &[],
    )
    .await;
    assert_problem(res, 402, "quota_exceeded").await;
    let res = crate::knowledge::upload(&app, &admin, "more.txt", vec![b'b'; 2000], None).await;
    assert_problem(res, 402, "quota_exceeded").await;
    let sub = subscription(&app, &admin).await;
    assert_eq!(sub["usage"]["storage_bytes"]["used"], robot.len() as i64);
    // Deleting the model frees every version's bytes.
    let res = app
        .authed(
            Method::DELETE,
            &format!("/v1/models/{}", model["id"].as_str().unwrap()),
            &admin.access,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    assert_eq!(
        subscription(&app, &admin).await["usage"]["storage_bytes"]["used"],
        0
    );
    let res = crate::knowledge::upload(&app, &admin, "more.txt", vec![b'b'; 2000], None).await;
    assert_eq!(res.status(), 202);
    // The reconciliation job recounts from the data and agrees.
    app.state.billing.run_jobs_once().await.unwrap();
    assert_eq!(
        subscription(&app, &admin).await["usage"]["storage_bytes"]["used"],
        2000
    );
}

async fn members_and_pending_invitations_hold_to_the_allowance(backend: Backend) {
    let Some(app) = spawn_app_with(backend, |s| {
        s.billing.plans.free.members = 3;
    })
    .await
    else {
        return;
    };
    let admin = app.register("Hill School", &email("admin")).await;
    let teacher = app
        .invite_and_accept(&admin, &email("teacher"), "teacher")
        .await;
    // A pending invitation holds the third seat.
    let res = app
        .authed(Method::POST, "/v1/invitations", &admin.access)
        .json(&json!({"email": email("pending"), "role": "student"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    // Ten more at once: all refused.
    let invites = (0..10).map(|i| {
        let app = &app;
        let who = if i % 2 == 0 { &admin } else { &teacher };
        async move {
            app.authed(Method::POST, "/v1/invitations", &who.access)
                .json(&json!({"email": email("extra"), "role": "student"}))
                .send()
                .await
                .unwrap()
        }
    });
    for res in join_all(invites).await {
        let body = assert_problem(res, 402, "quota_exceeded").await;
        assert!(
            body["detail"].as_str().unwrap().contains("members"),
            "{body}"
        );
    }
    assert_eq!(
        subscription(&app, &admin).await["usage"]["members"],
        json!({"used": 3, "limit": 3})
    );
    // Removing a member frees a seat.
    let res = app
        .authed(
            Method::DELETE,
            &format!("/v1/members/{}", teacher.id),
            &admin.access,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    let res = app
        .authed(Method::POST, "/v1/invitations", &admin.access)
        .json(&json!({"email": email("next"), "role": "student"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
}

/// Two nodes sharing one PostgreSQL database: 200 questions spread over
/// both with 10 left are 10 answered.
#[actix_web::test]
async fn two_nodes_hold_the_question_allowance_together() {
    let Some(pg) = crate::helpers::fresh_postgres_database().await else {
        return;
    };
    let node = |pg: String| async move {
        let dir = tempfile::tempdir().unwrap();
        let mut settings = crate::helpers::test_settings(dir.path(), &pg);
        settings.secrets.jwt_secret =
            bwenge::config::Secret::new("a-shared-secret-for-both-nodes-0123456789");
        settings.billing.plans.free.questions_per_month = 10;
        crate::helpers::start(settings, Backend::Postgres, dir).await
    };
    let a = node(pg.clone()).await;
    let b = node(pg).await;
    let admin = a.register("Hill School", &email("admin")).await;
    let persona = create_persona(&a, &admin, json!({"name": "Tutor"})).await;
    let persona = persona["id"].as_str().unwrap().to_owned();
    let (answered, refused) = ask_at_once(&[&a, &b], &admin, &persona, 200).await;
    assert_eq!(answered, 10);
    assert_eq!(refused.len(), 190);
}
