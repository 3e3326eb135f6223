//! Identity through the real server: register, login, lockout, tokens,
//! refresh rotation, logout, verification, password reset.

use reqwest::Method;
use serde_json::json;

use crate::helpers::{Backend, PASSWORD, assert_problem, email, spawn_app, spawn_app_with};
use crate::on_both_databases;

on_both_databases!(
    register_creates_an_organisation_and_its_admin,
    login_refuses_wrong_and_unknown_alike_and_locks_after_five,
    refresh_rotates_and_reuse_revokes_the_family,
    logout_ends_the_session_at_once,
    email_verification_is_single_use,
    password_reset_revokes_every_session,
);

async fn register_creates_an_organisation_and_its_admin(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let addr = email("Admin").to_uppercase();
    let res = app
        .post_json(
            "/v1/auth/register",
            &json!({"organization_name": "Lycée de Kigali", "full_name": "Ada Admin",
                    "email": format!("  {addr} "), "password": PASSWORD}),
        )
        .await;
    assert_eq!(res.status(), 201);
    let body: serde_json::Value = res.json().await.unwrap();
    let user = &body["user"];
    assert_eq!(user["email"], addr.to_lowercase());
    assert_eq!(user["role"], "admin");
    assert_eq!(user["email_verified"], false);
    assert_eq!(user["organization_id"], body["organization"]["id"]);
    for key in ["id", "full_name", "created_at"] {
        assert!(user[key].is_string(), "{key}");
    }
    assert_eq!(body["organization"]["name"], "Lycée de Kigali");
    assert!(body["organization"]["plan"].is_string());
    assert_eq!(body["tokens"]["token_type"], "Bearer");
    assert_eq!(body["tokens"]["expires_in"], 900);
    assert!(!body.to_string().contains("password_hash"));

    let access = body["tokens"]["access_token"].as_str().unwrap();
    let me: serde_json::Value = app
        .authed(Method::GET, "/v1/auth/me", access)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["id"], user["id"]);

    // The same address in another case is taken.
    let res = app
        .post_json(
            "/v1/auth/register",
            &json!({"organization_name": "Other", "full_name": "Eve",
                    "email": addr.to_lowercase(), "password": PASSWORD}),
        )
        .await;
    assert_problem(res, 409, "email_taken").await;

    // Validation names the field.
    for (body, field) in [
        (
            json!({"organization_name": "O", "full_name": "N", "email": email("v"), "password": "short"}),
            "password",
        ),
        (
            json!({"organization_name": "O", "full_name": "", "email": email("v"), "password": PASSWORD}),
            "full_name",
        ),
        (
            json!({"organization_name": "O", "full_name": "N", "email": "not-an-email", "password": PASSWORD}),
            "email",
        ),
        (
            json!({"organization_name": "", "full_name": "N", "email": email("v"), "password": PASSWORD}),
            "organization_name",
        ),
        (
            json!({"organization_name": "O", "full_name": "N", "email": email("v")}),
            "password",
        ),
    ] {
        let res = app.post_json("/v1/auth/register", &body).await;
        let problem = assert_problem(res, 422, "validation_failed").await;
        assert_eq!(problem["field"], field, "{problem}");
    }
    let same = email("same");
    let res = app
        .post_json(
            "/v1/auth/register",
            &json!({"organization_name": "O", "full_name": "N", "email": same, "password": same}),
        )
        .await;
    let problem = assert_problem(res, 422, "validation_failed").await;
    assert_eq!(problem["field"], "password");
}

async fn login_refuses_wrong_and_unknown_alike_and_locks_after_five(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let admin = app.register("School", &email("lock")).await;
    let ok = app.login(&admin.email.to_uppercase(), PASSWORD).await;
    assert_eq!(ok.status(), 200);
    let body: serde_json::Value = ok.json().await.unwrap();
    assert_eq!(body["user"]["id"], admin.id.as_str());
    assert!(body["tokens"]["refresh_token"].is_string());

    let unknown = assert_problem(
        app.login(&email("nobody"), PASSWORD).await,
        401,
        "invalid_credentials",
    )
    .await;
    let wrong = assert_problem(
        app.login(&admin.email, "wrong password!!").await,
        401,
        "invalid_credentials",
    )
    .await;
    assert_eq!(unknown["detail"], wrong["detail"]);
    assert_eq!(unknown["title"], wrong["title"]);

    // A success resets the count: four more failures do not lock.
    assert_eq!(app.login(&admin.email, PASSWORD).await.status(), 200);
    for _ in 0..4 {
        assert_problem(
            app.login(&admin.email, "wrong password!!").await,
            401,
            "invalid_credentials",
        )
        .await;
    }
    assert_eq!(app.login(&admin.email, PASSWORD).await.status(), 200);

    // Five in a row lock the account, even for the right password.
    for _ in 0..5 {
        assert_problem(
            app.login(&admin.email, "wrong password!!").await,
            401,
            "invalid_credentials",
        )
        .await;
    }
    let res = app.login(&admin.email, PASSWORD).await;
    let retry: u64 = res.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry > 800 && retry <= 900, "{retry}");
    assert_problem(res, 423, "account_locked").await;

    let audit: serde_json::Value = app
        .authed(Method::GET, "/v1/audit?limit=200", &admin.access)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let actions: Vec<&str> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["action"].as_str().unwrap())
        .collect();
    for a in [
        "auth.register",
        "auth.login_succeeded",
        "auth.login_failed",
        "auth.account_locked",
    ] {
        assert!(actions.contains(&a), "{a} missing from {actions:?}");
    }
    let failed = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["action"] == "auth.login_failed")
        .unwrap();
    assert_eq!(failed["subject_id"], admin.id.as_str());
    assert_eq!(failed["ip"], "127.0.0.1");
    assert!(failed["at"].is_string());
}

async fn refresh_rotates_and_reuse_revokes_the_family(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let admin = app.register("School", &email("refresh")).await;
    let refresh = |t: String| {
        let app = &app;
        async move {
            app.post_json("/v1/auth/refresh", &json!({"refresh_token": t}))
                .await
        }
    };
    let res = refresh(admin.refresh.clone()).await;
    assert_eq!(res.status(), 200);
    let body: serde_json::Value = res.json().await.unwrap();
    let second = body["tokens"]["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(second, admin.refresh);
    let access = body["tokens"]["access_token"].as_str().unwrap().to_owned();
    assert_eq!(
        app.authed(Method::GET, "/v1/auth/me", &access)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    // The old token again: refused, and its whole family with it.
    assert_problem(refresh(admin.refresh.clone()).await, 401, "unauthorized").await;
    assert_problem(refresh(second.clone()).await, 401, "unauthorized").await;
    assert_problem(refresh("garbage".into()).await, 401, "unauthorized").await;

    // Two concurrent refreshes with one token: at most one succeeds.
    let fresh = app
        .login(&admin.email, PASSWORD)
        .await
        .json::<serde_json::Value>()
        .await
        .unwrap();
    let token = fresh["tokens"]["refresh_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let (a, b) = tokio::join!(refresh(token.clone()), refresh(token.clone()));
    let wins = [a.status(), b.status()]
        .iter()
        .filter(|s| s.as_u16() == 200)
        .count();
    assert!(wins <= 1, "both concurrent refreshes succeeded");
}

async fn logout_ends_the_session_at_once(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let admin = app.register("School", &email("logout")).await;
    let res = app
        .post_json("/v1/auth/logout", &json!({"refresh_token": admin.refresh}))
        .await;
    assert_eq!(res.status(), 204);
    let res = app
        .authed(Method::GET, "/v1/auth/me", &admin.access)
        .send()
        .await
        .unwrap();
    assert_problem(res, 401, "unauthorized").await;
    let res = app
        .post_json("/v1/auth/refresh", &json!({"refresh_token": admin.refresh}))
        .await;
    assert_problem(res, 401, "unauthorized").await;
    // Unknown tokens log out quietly.
    let res = app
        .post_json("/v1/auth/logout", &json!({"refresh_token": "nope"}))
        .await;
    assert_eq!(res.status(), 204);
}

async fn email_verification_is_single_use(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let addr = email("verify");
    let admin = app.register("School", &addr).await;
    let token = app.mail_token(&addr, 0).await;
    let mail = app.mails_to(&addr).pop().unwrap();
    assert!(
        mail.contains("Subject: Confirm your email address"),
        "{mail}"
    );
    assert!(
        mail.contains(&format!("/verify-email?token={token}")),
        "{mail}"
    );

    // Resending makes a new link; the old one stops working.
    let res = app
        .authed(Method::POST, "/v1/auth/verify-email/resend", &admin.access)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
    let newer = app.mail_token(&addr, 1).await;
    assert_ne!(newer, token);
    let res = app
        .post_json("/v1/auth/verify-email", &json!({"token": token}))
        .await;
    assert_problem(res, 400, "invalid_token").await;

    let res = app
        .post_json("/v1/auth/verify-email", &json!({"token": newer}))
        .await;
    assert_eq!(res.status(), 204);
    let me: serde_json::Value = app
        .authed(Method::GET, "/v1/auth/me", &admin.access)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["email_verified"], true);
    let res = app
        .post_json("/v1/auth/verify-email", &json!({"token": newer}))
        .await;
    assert_problem(res, 400, "invalid_token").await;
    // No token ever appears in an HTTP answer: only in the mail.
    let res = app
        .authed(Method::POST, "/v1/auth/verify-email/resend", &admin.access)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
    assert!(res.text().await.unwrap().is_empty());
}

async fn password_reset_revokes_every_session(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let addr = email("reset");
    let admin = app.register("School", &addr).await;
    // Mail goes out in the background: let the welcome mail land first.
    app.mail_token(&addr, 0).await;
    let before = app.mails_to(&addr).len();

    // Unknown and known addresses get the same answer.
    let stranger = email("stranger");
    let res = app
        .post_json("/v1/auth/password-reset", &json!({"email": stranger}))
        .await;
    assert_eq!(res.status(), 202);
    let res = app
        .post_json("/v1/auth/password-reset", &json!({"email": addr}))
        .await;
    assert_eq!(res.status(), 202);
    let token = app.mail_token(&addr, before).await;
    assert!(app.mails_to(&stranger).is_empty());

    let res = app
        .post_json(
            "/v1/auth/password-reset/confirm",
            &json!({"token": token, "new_password": "short"}),
        )
        .await;
    let problem = assert_problem(res, 422, "validation_failed").await;
    assert_eq!(problem["field"], "new_password");

    let new_password = "a brand new passphrase";
    let res = app
        .post_json(
            "/v1/auth/password-reset/confirm",
            &json!({"token": token, "new_password": new_password}),
        )
        .await;
    assert_eq!(res.status(), 204);
    // Single use.
    let res = app
        .post_json(
            "/v1/auth/password-reset/confirm",
            &json!({"token": token, "new_password": "another passphrase!"}),
        )
        .await;
    assert_problem(res, 400, "invalid_token").await;
    // Every old session is over.
    assert_problem(
        app.authed(Method::GET, "/v1/auth/me", &admin.access)
            .send()
            .await
            .unwrap(),
        401,
        "unauthorized",
    )
    .await;
    assert_problem(
        app.post_json("/v1/auth/refresh", &json!({"refresh_token": admin.refresh}))
            .await,
        401,
        "unauthorized",
    )
    .await;
    assert_problem(app.login(&addr, PASSWORD).await, 401, "invalid_credentials").await;
    assert_eq!(app.login(&addr, new_password).await.status(), 200);
}

#[actix_web::test]
async fn access_tokens_are_checked_strictly() {
    use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
    let app = spawn_app(Backend::Sqlite).await.unwrap();
    let admin = app.register("School", &email("jwt")).await;
    let secret = app.state.settings.secrets.jwt_secret.expose().to_owned();
    let now = chrono::Utc::now().timestamp();
    let claims = |iat: i64, exp: i64, iss: &str, aud: &str| {
        json!({"sub": admin.id, "org": admin.org_id, "role": "admin", "iat": iat, "nbf": iat,
               "exp": exp, "iss": iss, "aud": aud, "jti": uuid::Uuid::new_v4(), "ver": 0})
    };
    let sign = |alg: Algorithm, c: &serde_json::Value, key: &str| {
        encode(
            &Header::new(alg),
            c,
            &EncodingKey::from_secret(key.as_bytes()),
        )
        .unwrap()
    };
    let good = sign(
        Algorithm::HS256,
        &claims(now, now + 600, "bwenge", "bwenge-api"),
        &secret,
    );
    let me = |t: String| {
        let app = &app;
        async move {
            app.authed(Method::GET, "/v1/auth/me", &t)
                .send()
                .await
                .unwrap()
        }
    };
    assert_eq!(me(good.clone()).await.status(), 200);

    let b64 = |v: &serde_json::Value| {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let alg_none = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT"})),
        b64(&claims(now, now + 600, "bwenge", "bwenge-api"))
    );
    let mut tampered = good.clone();
    tampered.pop();
    tampered.push(if good.ends_with('A') { 'B' } else { 'A' });
    let bad = [
        alg_none,
        sign(
            Algorithm::HS512,
            &claims(now, now + 600, "bwenge", "bwenge-api"),
            &secret,
        ),
        sign(
            Algorithm::HS256,
            &claims(now, now + 600, "bwenge", "bwenge-api"),
            "another-secret-entirely-0123456789",
        ),
        sign(
            Algorithm::HS256,
            &claims(now - 3600, now - 1800, "bwenge", "bwenge-api"),
            &secret,
        ),
        sign(
            Algorithm::HS256,
            &claims(now + 600, now + 1200, "bwenge", "bwenge-api"),
            &secret,
        ),
        sign(
            Algorithm::HS256,
            &claims(now, now + 600, "someone-else", "bwenge-api"),
            &secret,
        ),
        sign(
            Algorithm::HS256,
            &claims(now, now + 600, "bwenge", "other-api"),
            &secret,
        ),
        tampered,
        "garbage".to_owned(),
        String::new(),
    ];
    for token in bad {
        assert_problem(me(token.clone()).await, 401, "unauthorized").await;
    }
    // No header at all, and another scheme.
    assert_problem(app.get("/v1/auth/me").await, 401, "unauthorized").await;
    let res = app
        .client
        .get(app.url("/v1/auth/me"))
        .header("authorization", format!("Basic {good}"))
        .send()
        .await
        .unwrap();
    assert_problem(res, 401, "unauthorized").await;
}

#[actix_web::test]
async fn sign_in_routes_are_rate_limited_per_ip() {
    let app = spawn_app_with(Backend::Sqlite, |s| {
        s.auth.ip_burst = 3;
        s.auth.ip_refill_per_sec = 0.001;
    })
    .await
    .unwrap();
    for _ in 0..3 {
        assert_problem(
            app.login(&email("x"), PASSWORD).await,
            401,
            "invalid_credentials",
        )
        .await;
    }
    let res = app.login(&email("x"), PASSWORD).await;
    assert!(res.headers().contains_key("retry-after"));
    assert_problem(res, 429, "rate_limited").await;
}

#[actix_web::test]
async fn a_login_flood_waits_then_gets_503_not_a_hang() {
    let app = spawn_app_with(Backend::Sqlite, |s| {
        s.auth.hash_concurrency = 1;
        s.auth.hash_queue_wait_ms = 1;
    })
    .await
    .unwrap();
    let admin = app.register("School", &email("flood")).await;
    let attempts = (0..12).map(|_| app.login(&admin.email, PASSWORD));
    let results = futures_util::future::join_all(attempts).await;
    let statuses: Vec<u16> = results.iter().map(|r| r.status().as_u16()).collect();
    assert!(statuses.contains(&200), "{statuses:?}");
    let busy = results
        .into_iter()
        .find(|r| r.status() == 503)
        .expect("some 503");
    assert!(busy.headers().contains_key("retry-after"));
    assert_problem(busy, 503, "service_unavailable").await;
}
