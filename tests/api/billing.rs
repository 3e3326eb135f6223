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
        // One user asks all 200: the per-user rate limit must not be what
        // refuses them.
        s.chat.messages_burst = 1000;
        s.chat.messages_per_sec = 1000.0;
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
        settings.chat.messages_burst = 1000;
        settings.chat.messages_per_sec = 1000.0;
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

// -- Payments against the fake providers ------------------------------------

use bwenge_payments::fake::{FakeOptions, FakeProviders, Outcome, PayerScript, Provider, Signing};
use std::time::Duration;

on_both_databases!(
    an_admin_upgrades_by_momo_only_once_mtn_confirms,
    an_admin_upgrades_by_airtel_money,
    an_admin_upgrades_by_stripe_and_replays_change_nothing,
    a_wrong_amount_or_a_silent_provider_changes_nothing,
    teachers_students_and_other_schools_cannot_touch_payments,
);

/// The app wired to the fakes (its public URL known before it starts, so
/// MoMo's `X-Callback-Url` reaches it).
pub(crate) async fn app_with_fakes(backend: Backend) -> Option<(TestApp, FakeProviders)> {
    let fakes = FakeProviders::start(FakeOptions::default()).unwrap();
    let port = free_port();
    let wire = wired_to(&fakes, port);
    let app = spawn_app_with(backend, wire).await?;
    fakes.set_airtel_callback_url(Some(app.url("/v1/webhooks/airtel-money")));
    fakes.set_stripe_webhook_url(Some(app.url("/v1/webhooks/stripe")));
    Some((app, fakes))
}

/// Settings that use the fakes, for an app listening on `port`.
fn wired_to(fakes: &FakeProviders, port: u16) -> impl FnOnce(&mut bwenge::config::Settings) {
    let (momo, airtel, stripe) = (
        fakes.momo_config(None),
        fakes.airtel_config(),
        fakes.stripe_config(),
    );
    move |s| {
        s.bind = format!("127.0.0.1:{port}");
        let b = &mut s.billing;
        b.public_base_url = format!("http://127.0.0.1:{port}");
        b.poll_initial_secs = 1;
        b.poll_max_secs = 1;
        b.mtn_momo.enabled = true;
        b.mtn_momo.base_url = momo.base_url;
        b.mtn_momo.subscription_key = bwenge::config::Secret::new(momo.subscription_key);
        b.mtn_momo.api_user = momo.api_user;
        b.mtn_momo.api_key = bwenge::config::Secret::new(momo.api_key);
        b.mtn_momo.target_environment = momo.target_environment;
        b.mtn_momo.timeout_secs = 2;
        b.airtel_money.enabled = true;
        b.airtel_money.base_url = airtel.base_url;
        b.airtel_money.client_id = airtel.client_id;
        b.airtel_money.client_secret = bwenge::config::Secret::new(airtel.client_secret);
        b.airtel_money.timeout_secs = 2;
        b.stripe.enabled = true;
        b.stripe.base_url = stripe.base_url;
        b.stripe.secret_key = bwenge::config::Secret::new(stripe.secret_key);
        b.stripe.webhook_secret = bwenge::config::Secret::new(stripe.webhook_secrets[0].clone());
        b.plans.basic.stripe_price_id = "price_basic_usd".into();
        b.plans.pro.stripe_price_id = "price_pro_usd".into();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Two nodes sharing PostgreSQL see the same MoMo payment confirmed
/// (callbacks to both, reads on both, both pollers): applied once.
#[actix_web::test]
async fn two_nodes_handling_the_same_callback_apply_it_once() {
    let Some(pg) = crate::helpers::fresh_postgres_database().await else {
        return;
    };
    let fakes = FakeProviders::start(FakeOptions::default()).unwrap();
    let mut nodes = Vec::new();
    for _ in 0..2 {
        let dir = tempfile::tempdir().unwrap();
        let mut settings = crate::helpers::test_settings(dir.path(), &pg);
        settings.secrets.jwt_secret =
            bwenge::config::Secret::new("a-shared-secret-for-both-nodes-0123456789");
        wired_to(&fakes, free_port())(&mut settings);
        nodes.push(crate::helpers::start(settings, Backend::Postgres, dir).await);
    }
    let (a, b) = (&nodes[0], &nodes[1]);
    let admin = a.register("Hill School", &email("admin")).await;
    let phone = "+250788300001";
    fakes.script_payer(phone, PayerScript::stay_pending());
    let res = checkout(
        a,
        &admin,
        json!({"plan": "basic", "method": "mtn_momo", "phone": phone}),
    )
    .await;
    assert_eq!(res.status(), 201);
    let p: Value = res.json().await.unwrap();
    let id = p["id"].as_str().unwrap().to_owned();
    let reference: uuid::Uuid = p["provider_reference"].as_str().unwrap().parse().unwrap();
    fakes.settle_momo(reference, Outcome::Succeed).unwrap();
    let callback = json!({"externalId": id, "status": "SUCCESSFUL"});
    let mut calls = Vec::new();
    for _ in 0..10 {
        for node in [a, b] {
            let url = node.url("/v1/webhooks/mtn-momo");
            let body = callback.clone();
            let fakes = &fakes;
            calls.push(async move { fakes.forge_momo_callback(&url, body).await.status });
        }
    }
    for status in join_all(calls).await {
        assert_eq!(status, Some(200));
    }
    assert_eq!(payment(a, &admin, &id).await["status"], "succeeded");
    assert_eq!(payment(b, &admin, &id).await["status"], "succeeded");
    assert_eq!(subscription(b, &admin).await["plan"], "basic");
    let log = audit(b, &admin).await;
    assert_eq!(audit_count(&log, "billing.payment_succeeded"), 1, "{log}");
    assert_eq!(audit_count(&log, "billing.plan_changed"), 1, "{log}");
}

async fn checkout(app: &TestApp, who: &Member, body: Value) -> reqwest::Response {
    app.authed(Method::POST, "/v1/subscription/checkout", &who.access)
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn payment(app: &TestApp, who: &Member, id: &str) -> Value {
    let res = app
        .authed(Method::GET, &format!("/v1/payments/{id}"), &who.access)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

/// Reads the payment until it is no longer pending (the poller and the
/// callbacks settle it in the background).
async fn settled(app: &TestApp, who: &Member, id: &str) -> Value {
    for _ in 0..300 {
        let p = payment(app, who, id).await;
        if p["status"] != "pending" {
            return p;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("payment {id} still pending");
}

fn audit_count(entries: &Value, action: &str) -> usize {
    entries["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == action)
        .count()
}

async fn audit(app: &TestApp, admin: &Member) -> Value {
    app.authed(Method::GET, "/v1/audit?limit=200", &admin.access)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn an_admin_upgrades_by_momo_only_once_mtn_confirms(backend: Backend) {
    let Some((app, fakes)) = app_with_fakes(backend).await else {
        return;
    };
    let admin = app.register("Hill School", &email("admin")).await;
    let phone = "+250788100001";
    fakes.script_payer(phone, PayerScript::stay_pending().with_callbacks(2));
    let res = checkout(
        &app,
        &admin,
        json!({"plan": "basic", "method": "mtn_momo", "phone": phone}),
    )
    .await;
    assert_eq!(res.status(), 201, "{}", res.text().await.unwrap());
    let p: Value = res.json().await.unwrap();
    assert_eq!(p["status"], "pending");
    assert_eq!(p["amount"], 30000);
    assert_eq!(p["currency"], "RWF");
    let id = p["id"].as_str().unwrap().to_owned();
    let reference: uuid::Uuid = p["provider_reference"].as_str().unwrap().parse().unwrap();
    // MTN got the request for the payment, for its amount, to the phone.
    let at_mtn = fakes.momo_payment(reference).unwrap();
    assert_eq!(at_mtn.external_id, id);
    assert_eq!(at_mtn.amount, 30000);

    // A client claiming success changes nothing: MTN still says pending.
    let res = app
        .post_json(
            "/v1/webhooks/mtn-momo",
            &json!({"externalId": id, "status": "SUCCESSFUL", "financialTransactionId": "123"}),
        )
        .await;
    assert_eq!(res.status(), 200);
    let forged = fakes
        .forge_momo_callback(
            &app.url("/v1/webhooks/mtn-momo"),
            json!({"externalId": id, "status": "SUCCESSFUL"}),
        )
        .await;
    assert_eq!(forged.status, Some(200));
    assert_eq!(payment(&app, &admin, &id).await["status"], "pending");
    assert_eq!(subscription(&app, &admin).await["plan"], "free");

    // The payer approves: MTN calls back (twice), Bwenge asks MTN, applies once.
    fakes.settle_momo(reference, Outcome::Succeed).unwrap();
    let p = settled(&app, &admin, &id).await;
    assert_eq!(p["status"], "succeeded", "{p}");
    fakes.wait_for_deliveries(2, Duration::from_secs(10)).await;
    fakes.resend_momo_callback(reference).await.unwrap();
    let sub = subscription(&app, &admin).await;
    assert_eq!(sub["plan"], "basic");
    assert_eq!(sub["status"], "active");
    assert_eq!(sub["method"], "mtn_momo");
    assert_eq!(sub["usage"]["questions"]["limit"], 1000);
    let start: chrono::DateTime<chrono::Utc> = sub["current_period_start"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let end: chrono::DateTime<chrono::Utc> =
        sub["current_period_end"].as_str().unwrap().parse().unwrap();
    assert!((28..=31).contains(&(end - start).num_days()), "{sub}");
    let log = audit(&app, &admin).await;
    assert_eq!(audit_count(&log, "billing.payment_succeeded"), 1, "{log}");
    assert_eq!(audit_count(&log, "billing.plan_changed"), 1);
    // A receipt reached the admin.
    let mut receipts = Vec::new();
    for _ in 0..100 {
        receipts = app.mails_to(&admin.email);
        if receipts.iter().any(|m| m.contains("Receipt")) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let receipt = receipts
        .iter()
        .find(|m| m.contains("Receipt"))
        .expect("a receipt");
    assert!(receipt.contains("30000 RWF"), "{receipt}");
    let list: Value = app
        .authed(Method::GET, "/v1/payments", &admin.access)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
}

async fn an_admin_upgrades_by_airtel_money(backend: Backend) {
    let Some((app, fakes)) = app_with_fakes(backend).await else {
        return;
    };
    let admin = app.register("Hill School", &email("admin")).await;
    let phone = "+250730100002";
    fakes.script_payer(
        phone,
        PayerScript::succeed()
            .approving_after(Duration::from_millis(300))
            .with_callbacks(3)
            .out_of_order(),
    );
    let res = checkout(
        &app,
        &admin,
        json!({"plan": "pro", "method": "airtel_money", "phone": phone}),
    )
    .await;
    assert_eq!(res.status(), 201, "{}", res.text().await.unwrap());
    let p: Value = res.json().await.unwrap();
    assert_eq!(p["amount"], 100000);
    let id = p["id"].as_str().unwrap().to_owned();
    let transaction = p["provider_reference"].as_str().unwrap().to_owned();
    // A forged "success" before the payer answered changes nothing.
    fakes
        .forge_airtel_callback(&transaction, "TS")
        .await
        .unwrap();
    let sub = subscription(&app, &admin).await;
    if fakes.airtel_payment(&transaction).unwrap().status == "TIP" {
        assert_eq!(sub["plan"], "free");
    }
    let p = settled(&app, &admin, &id).await;
    assert_eq!(p["status"], "succeeded", "{p}");
    // Duplicate and stale callbacks arrive: still applied once.
    fakes.wait_for_deliveries(4, Duration::from_secs(10)).await;
    let sub = subscription(&app, &admin).await;
    assert_eq!(sub["plan"], "pro");
    assert_eq!(sub["method"], "airtel_money");
    let log = audit(&app, &admin).await;
    assert_eq!(audit_count(&log, "billing.payment_succeeded"), 1, "{log}");
}

async fn an_admin_upgrades_by_stripe_and_replays_change_nothing(backend: Backend) {
    let Some((app, fakes)) = app_with_fakes(backend).await else {
        return;
    };
    let admin = app.register("Hill School", &email("admin")).await;
    let res = checkout(&app, &admin, json!({"plan": "basic", "method": "stripe"})).await;
    assert_eq!(res.status(), 201, "{}", res.text().await.unwrap());
    let p: Value = res.json().await.unwrap();
    assert_eq!(p["amount"], 3000);
    assert_eq!(p["currency"], "USD");
    assert!(
        p["checkout_url"].as_str().unwrap().starts_with("http"),
        "{p}"
    );
    let id = p["id"].as_str().unwrap().to_owned();
    let session = p["provider_reference"].as_str().unwrap().to_owned();
    // Stripe got mode=subscription, our price, the organisation and an idempotency key.
    let created = fakes.requests_to(Provider::Stripe, "POST", "/v1/checkout/sessions");
    assert_eq!(created.len(), 1);
    assert_eq!(
        created[0].form_value("mode").as_deref(),
        Some("subscription")
    );
    assert_eq!(
        created[0].form_value("client_reference_id").as_deref(),
        Some(admin.org_id.as_str())
    );
    assert!(created[0].header("idempotency-key").is_some());
    assert_eq!(subscription(&app, &admin).await["plan"], "free");

    // A forged event (wrong secret, stale, tampered, unsigned) is refused.
    let forged_session = json!({
        "id": session, "object": "checkout.session", "payment_status": "paid",
        "amount_total": 3000, "currency": "usd", "client_reference_id": admin.org_id,
        "metadata": {"payment_id": id, "plan": "basic", "organisation_id": admin.org_id},
        "customer": "cus_forged", "subscription": "sub_forged",
    });
    for signing in [
        Signing::WrongSecret,
        Signing::Stale { seconds: 600 },
        Signing::Unsigned,
        Signing::TamperedPayload,
    ] {
        let d = fakes
            .send_stripe_event(
                "checkout.session.completed",
                forged_session.clone(),
                signing,
            )
            .await
            .unwrap();
        assert_eq!(d.status, Some(400), "{d:?}");
    }
    assert_eq!(payment(&app, &admin, &id).await["status"], "pending");
    assert_eq!(subscription(&app, &admin).await["plan"], "free");

    // The admin pays on Stripe's page: the signed events apply the plan.
    let deliveries = fakes.complete_checkout(&session).await.unwrap();
    assert!(
        deliveries.iter().all(|d| d.status == Some(200)),
        "{deliveries:?}"
    );
    assert_eq!(payment(&app, &admin, &id).await["status"], "succeeded");
    let sub = subscription(&app, &admin).await;
    assert_eq!(sub["plan"], "basic");
    assert_eq!(sub["method"], "stripe");
    // Stripe's retry of the same event (same id) is applied once.
    for d in &deliveries {
        let event = d.json().unwrap()["id"].as_str().unwrap().to_owned();
        let again = fakes
            .resend_stripe_event(&event, Signing::Valid)
            .await
            .unwrap();
        assert_eq!(again.status, Some(200));
    }
    let log = audit(&app, &admin).await;
    assert_eq!(audit_count(&log, "billing.payment_succeeded"), 1, "{log}");

    // Stripe renews through its events: the period moves on, paid once.
    let stripe_sub = fakes.stripe_session(&session).unwrap()["subscription"]
        .as_str()
        .unwrap()
        .to_owned();
    let before = subscription(&app, &admin).await["current_period_end"]
        .as_str()
        .unwrap()
        .parse::<chrono::DateTime<chrono::Utc>>()
        .unwrap();
    let renewed = fakes.renew_subscription(&stripe_sub).await.unwrap();
    assert!(renewed.iter().all(|d| d.status == Some(200)), "{renewed:?}");
    let sub = subscription(&app, &admin).await;
    let after: chrono::DateTime<chrono::Utc> =
        sub["current_period_end"].as_str().unwrap().parse().unwrap();
    assert!(
        after - before > chrono::Duration::days(27),
        "{before} → {after}"
    );
    assert_eq!(sub["status"], "active");
    let log = audit(&app, &admin).await;
    assert_eq!(audit_count(&log, "billing.payment_succeeded"), 2, "{log}");
    // A failed renewal charge: past due, the plan still runs.
    fakes.fail_renewal(&stripe_sub).await.unwrap();
    let sub = subscription(&app, &admin).await;
    assert_eq!(sub["status"], "past_due");
    assert_eq!(sub["plan"], "basic");

    // Cancelling keeps the plan until the period ends; Stripe's deletion
    // at the end returns the school to free, its data kept.
    let res = app
        .authed(Method::POST, "/v1/subscription/cancel", &admin.access)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let sub: Value = res.json().await.unwrap();
    assert_eq!(sub["cancel_at_period_end"], true);
    assert_eq!(sub["plan"], "basic");
    // Stripe was told to stop at the period's end.
    assert_eq!(
        fakes.stripe_subscription(&stripe_sub).unwrap()["cancel_at_period_end"],
        true
    );
    let d = fakes.delete_subscription(&stripe_sub).await.unwrap();
    assert_eq!(d.status, Some(200));
    let sub = subscription(&app, &admin).await;
    assert_eq!(sub["plan"], "free");
    assert_eq!(sub["usage"]["members"]["used"], 1);
}

async fn a_wrong_amount_or_a_silent_provider_changes_nothing(backend: Backend) {
    let Some((app, fakes)) = app_with_fakes(backend).await else {
        return;
    };
    let admin = app.register("Hill School", &email("admin")).await;
    // MTN reports another amount: flagged, not applied.
    let cheat = "+250788100003";
    fakes.script_payer(cheat, PayerScript::succeed().reporting(100, "RWF"));
    let res = checkout(
        &app,
        &admin,
        json!({"plan": "basic", "method": "mtn_momo", "phone": cheat}),
    )
    .await;
    assert_eq!(res.status(), 201);
    let p: Value = res.json().await.unwrap();
    let p = settled(&app, &admin, p["id"].as_str().unwrap()).await;
    assert_eq!(p["status"], "failed", "{p}");
    assert!(
        p["failure_reason"].as_str().unwrap().contains("100 RWF"),
        "{p}"
    );
    assert_eq!(subscription(&app, &admin).await["plan"], "free");

    // The payer declines.
    let declines = "+250788100004";
    fakes.script_payer(declines, PayerScript::fail("APPROVAL_REJECTED"));
    let res = checkout(
        &app,
        &admin,
        json!({"plan": "basic", "method": "mtn_momo", "phone": declines}),
    )
    .await;
    let p: Value = res.json().await.unwrap();
    let p = settled(&app, &admin, p["id"].as_str().unwrap()).await;
    assert_eq!(p["status"], "failed");

    // MTN does not answer in time: the payment stays pending, nothing changes.
    let silent = "+250788100005";
    fakes.script_payer(
        silent,
        PayerScript::succeed().answering_after(Duration::from_secs(5)),
    );
    let res = checkout(
        &app,
        &admin,
        json!({"plan": "basic", "method": "mtn_momo", "phone": silent}),
    )
    .await;
    assert_eq!(res.status(), 201);
    let p: Value = res.json().await.unwrap();
    assert_eq!(
        payment(&app, &admin, p["id"].as_str().unwrap()).await["status"],
        "pending"
    );
    assert_eq!(subscription(&app, &admin).await["plan"], "free");

    // Bad input: a clear 422 naming the field, nothing written.
    for (body, field) in [
        (
            json!({"plan": "gold", "method": "mtn_momo", "phone": cheat}),
            "plan",
        ),
        (json!({"plan": "free", "method": "stripe"}), "plan"),
        (json!({"plan": "basic", "method": "cash"}), "method"),
        (json!({"plan": "basic", "method": "mtn_momo"}), "phone"),
        (
            json!({"plan": "basic", "method": "airtel_money", "phone": "0788"}),
            "phone",
        ),
    ] {
        let res = checkout(&app, &admin, body).await;
        let problem = assert_problem(res, 422, "validation_failed").await;
        assert_eq!(problem["field"], field, "{problem}");
    }
}

async fn teachers_students_and_other_schools_cannot_touch_payments(backend: Backend) {
    let Some((app, fakes)) = app_with_fakes(backend).await else {
        return;
    };
    let admin = app.register("Hill School", &email("admin")).await;
    let teacher = app
        .invite_and_accept(&admin, &email("teacher"), "teacher")
        .await;
    let student = app
        .invite_and_accept(&admin, &email("student"), "student")
        .await;
    let phone = "+250788100006";
    fakes.script_payer(phone, PayerScript::stay_pending());
    let res = checkout(
        &app,
        &admin,
        json!({"plan": "basic", "method": "mtn_momo", "phone": phone}),
    )
    .await;
    let p: Value = res.json().await.unwrap();
    let id = p["id"].as_str().unwrap().to_owned();
    for who in [&teacher, &student] {
        let res = checkout(
            &app,
            who,
            json!({"plan": "basic", "method": "mtn_momo", "phone": phone}),
        )
        .await;
        assert_problem(res, 403, "forbidden").await;
        for path in ["/v1/payments".to_owned(), format!("/v1/payments/{id}")] {
            let res = app
                .authed(Method::GET, &path, &who.access)
                .send()
                .await
                .unwrap();
            assert_problem(res, 403, "forbidden").await;
        }
    }
    let other = app.register("Other School", &email("other")).await;
    let res = app
        .authed(Method::GET, &format!("/v1/payments/{id}"), &other.access)
        .send()
        .await
        .unwrap();
    assert_problem(res, 404, "not_found").await;
    let list: Value = app
        .authed(Method::GET, "/v1/payments", &other.access)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["items"], json!([]));
    assert_eq!(subscription(&app, &admin).await["plan"], "free");
}
