//! Members, invitations, roles, the audit log, seeding.

use reqwest::Method;
use serde_json::json;

use crate::helpers::{Backend, PASSWORD, assert_problem, email, spawn_app};
use crate::on_both_databases;

on_both_databases!(
    invitations_respect_roles_and_are_single_use,
    members_roles_and_removal,
    audit_is_paginated_and_admin_only,
);

async fn invitations_respect_roles_and_are_single_use(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let admin = app.register("School", &email("admin")).await;
    let teacher = app
        .invite_and_accept(&admin, &email("teacher"), "teacher")
        .await;
    assert_eq!(teacher.org_id, admin.org_id);
    let me: serde_json::Value = app
        .authed(Method::GET, "/v1/auth/me", &teacher.access)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["role"], "teacher");
    assert_eq!(me["email_verified"], true);

    // Teachers invite students only.
    let student = app
        .invite_and_accept(&teacher, &email("student"), "student")
        .await;
    for role in ["teacher", "admin"] {
        let res = app
            .authed(Method::POST, "/v1/invitations", &teacher.access)
            .json(&json!({"email": email("x"), "role": role}))
            .send()
            .await
            .unwrap();
        assert_problem(res, 403, "forbidden").await;
    }
    // Students invite nobody.
    let res = app
        .authed(Method::POST, "/v1/invitations", &student.access)
        .json(&json!({"email": email("x"), "role": "student"}))
        .send()
        .await
        .unwrap();
    assert_problem(res, 403, "forbidden").await;
    // A registered address is refused at invite time.
    let res = app
        .authed(Method::POST, "/v1/invitations", &admin.access)
        .json(&json!({"email": teacher.email, "role": "student"}))
        .send()
        .await
        .unwrap();
    assert_problem(res, 409, "email_taken").await;
    // Bad role.
    let res = app
        .authed(Method::POST, "/v1/invitations", &admin.access)
        .json(&json!({"email": email("x"), "role": "owner"}))
        .send()
        .await
        .unwrap();
    let p = assert_problem(res, 422, "validation_failed").await;
    assert_eq!(p["field"], "role");

    // The answer carries no token; the mail does. Single use.
    let addr = email("once");
    let res = app
        .authed(Method::POST, "/v1/invitations", &admin.access)
        .json(&json!({"email": addr, "role": "student"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["email"], addr);
    assert_eq!(body["role"], "student");
    assert!(body["id"].is_string() && body["expires_at"].is_string());
    let token = app.mail_token(&addr, 0).await;
    assert!(!body.to_string().contains(&token));
    let accept = json!({"token": token, "full_name": "Sam Student", "password": PASSWORD});
    assert_eq!(
        app.post_json("/v1/invitations/accept", &accept)
            .await
            .status(),
        201
    );
    assert_problem(
        app.post_json("/v1/invitations/accept", &accept).await,
        400,
        "invalid_token",
    )
    .await;
    assert_eq!(app.login(&addr, PASSWORD).await.status(), 200);
}

async fn members_roles_and_removal(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let admin = app.register("School", &email("admin")).await;
    let teacher = app
        .invite_and_accept(&admin, &email("teacher"), "teacher")
        .await;
    let student = app
        .invite_and_accept(&admin, &email("student"), "student")
        .await;

    // Listing: admins and teachers; students are refused.
    let list: serde_json::Value = app
        .authed(Method::GET, "/v1/members", &teacher.access)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["items"].as_array().unwrap().len(), 3);
    assert!(list["next_cursor"].is_null());
    let page: serde_json::Value = app
        .authed(Method::GET, "/v1/members?limit=2", &admin.access)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page["items"].as_array().unwrap().len(), 2);
    let cursor = page["next_cursor"].as_str().unwrap();
    let rest: serde_json::Value = app
        .authed(
            Method::GET,
            &format!("/v1/members?limit=2&cursor={cursor}"),
            &admin.access,
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(rest["items"].as_array().unwrap().len(), 1);
    assert_ne!(rest["items"][0]["id"], page["items"][0]["id"]);
    // Above the maximum is clamped, not refused (issue 14).
    let all: serde_json::Value = app
        .authed(Method::GET, "/v1/members?limit=500", &admin.access)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(all["items"].as_array().unwrap().len(), 3);
    assert!(all["next_cursor"].is_null());
    assert_problem(
        app.authed(Method::GET, "/v1/members", &student.access)
            .send()
            .await
            .unwrap(),
        403,
        "forbidden",
    )
    .await;

    // Only admins change roles; the member's old token stops at once.
    let path = format!("/v1/members/{}", student.id);
    assert_problem(
        app.authed(Method::PATCH, &path, &teacher.access)
            .json(&json!({"role": "teacher"}))
            .send()
            .await
            .unwrap(),
        403,
        "forbidden",
    )
    .await;
    let res = app
        .authed(Method::PATCH, &path, &admin.access)
        .json(&json!({"role": "teacher"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let user: serde_json::Value = res.json().await.unwrap();
    assert_eq!(user["role"], "teacher");
    assert_problem(
        app.authed(Method::GET, "/v1/auth/me", &student.access)
            .send()
            .await
            .unwrap(),
        401,
        "unauthorized",
    )
    .await;
    // Refreshing gives a token with the new role.
    let res = app
        .post_json(
            "/v1/auth/refresh",
            &json!({"refresh_token": student.refresh}),
        )
        .await;
    assert_eq!(res.status(), 200);

    // The last admin can be neither demoted nor removed.
    let admin_path = format!("/v1/members/{}", admin.id);
    assert_problem(
        app.authed(Method::PATCH, &admin_path, &admin.access)
            .json(&json!({"role": "teacher"}))
            .send()
            .await
            .unwrap(),
        409,
        "last_admin",
    )
    .await;
    assert_problem(
        app.authed(Method::DELETE, &admin_path, &admin.access)
            .send()
            .await
            .unwrap(),
        409,
        "last_admin",
    )
    .await;
    // With a second admin, the first may step down.
    let teacher_path = format!("/v1/members/{}", teacher.id);
    assert_eq!(
        app.authed(Method::PATCH, &teacher_path, &admin.access)
            .json(&json!({"role": "admin"}))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    // Removal: 204, their tokens stop working, gone from the list.
    assert_eq!(
        app.authed(Method::DELETE, &path, &admin.access)
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    assert_problem(
        app.post_json(
            "/v1/auth/refresh",
            &json!({"refresh_token": student.refresh}),
        )
        .await,
        401,
        "unauthorized",
    )
    .await;
    assert_problem(
        app.authed(Method::DELETE, &path, &admin.access)
            .send()
            .await
            .unwrap(),
        404,
        "not_found",
    )
    .await;
    assert_problem(
        app.login(&student.email, PASSWORD).await,
        401,
        "invalid_credentials",
    )
    .await;
    // A path id that is not a UUID cannot name a member.
    assert_problem(
        app.authed(Method::DELETE, "/v1/members/not-a-uuid", &admin.access)
            .send()
            .await
            .unwrap(),
        404,
        "not_found",
    )
    .await;
}

async fn audit_is_paginated_and_admin_only(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let admin = app.register("School", &email("admin")).await;
    let teacher = app
        .invite_and_accept(&admin, &email("teacher"), "teacher")
        .await;
    for _ in 0..3 {
        app.login(&admin.email, PASSWORD).await;
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/audit?limit=2&cursor={c}"),
            None => "/v1/audit?limit=2".into(),
        };
        let page: serde_json::Value = app
            .authed(Method::GET, &path, &admin.access)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let items = page["items"].as_array().unwrap();
        assert!(items.len() <= 2);
        for i in items {
            for key in ["id", "action", "at", "detail"] {
                assert!(!i[key].is_null(), "{key} in {i}");
            }
            seen.push(i.clone());
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    let ids: std::collections::HashSet<_> = seen
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), seen.len(), "pages overlap");
    assert!(seen.len() >= 6, "{}", seen.len());
    // Newest first.
    let times: Vec<&str> = seen.iter().map(|i| i["at"].as_str().unwrap()).collect();
    let mut sorted = times.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(times, sorted);
    assert_problem(
        app.authed(Method::GET, "/v1/audit", &teacher.access)
            .send()
            .await
            .unwrap(),
        403,
        "forbidden",
    )
    .await;
    assert_problem(app.get("/v1/audit").await, 401, "unauthorized").await;
}

#[test]
fn seed_is_idempotent_and_its_admin_can_sign_in() {
    let dir = tempfile::tempdir().unwrap();
    let run = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_bwenge"))
            .env_clear()
            .env("BWENGE_DATA_DIR", dir.path())
            .env("BWENGE_LOG__LEVEL", "warn")
            .current_dir(dir.path())
            .args([
                "seed",
                "--admin-email",
                "Head@School.example",
                "--admin-password",
                PASSWORD,
                "--org-name",
                "Seed School",
            ])
            .output()
            .unwrap()
    };
    let first = run();
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert!(String::from_utf8_lossy(&first.stdout).contains("created"));
    let second = run();
    assert!(second.status.success());
    assert!(
        String::from_utf8_lossy(&second.stdout).contains("nothing changed"),
        "{}",
        String::from_utf8_lossy(&second.stdout)
    );

    actix_web::rt::System::new().block_on(async {
        let url = format!("sqlite://{}", dir.path().join("bwenge.db").display());
        let settings = crate::helpers::test_settings(dir.path(), &url);
        let app =
            crate::helpers::start(settings, Backend::Sqlite, tempfile::tempdir().unwrap()).await;
        let res = app.login("head@school.example", PASSWORD).await;
        assert_eq!(res.status(), 200);
        let body: serde_json::Value = res.json().await.unwrap();
        assert_eq!(body["user"]["role"], "admin");
    });
}
