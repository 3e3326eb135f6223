//! Tenant isolation, proven from the route table: for every `/v1` route with
//! an id in its path and every method, an admin of another organisation using
//! a real id of the first gets `404 not_found`; list routes never show the
//! other organisation's rows. A route without a case fails the test, so new
//! routes join it.

use reqwest::Method;
use serde_json::json;

use crate::helpers::{Backend, Member, TestApp, email, spawn_app};
use crate::on_both_databases;

on_both_databases!(another_organisation_sees_nothing);

/// Organisation A's resources, by the path parameter that names them.
struct Fixtures {
    a_admin: Member,
    a_student: Member,
    a_source: String,
    a_persona: String,
    a_session: String,
    a_model: String,
    a_payment: String,
    a_invitation: String,
}

impl Fixtures {
    async fn build(app: &TestApp) -> Self {
        let a_admin = app.register("School A", &email("a-admin")).await;
        let a_student = app
            .invite_and_accept(&a_admin, &email("a-student"), "student")
            .await;
        let source = crate::knowledge::upload_and_wait(
            app,
            &a_admin,
            "secret-plans.txt",
            b"Organisation A's confidential lesson about volcanoes and magma chambers.".to_vec(),
        )
        .await;
        let a_source = source["id"].as_str().unwrap().to_owned();
        let res = app
            .authed(Method::POST, "/v1/personas", &a_admin.access)
            .json(&json!({"name": "Volcano tutor", "knowledge_source_ids": [a_source]}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 201);
        let persona: serde_json::Value = res.json().await.unwrap();
        let a_persona = persona["id"].as_str().unwrap().to_owned();
        // Sessions are opened over WebSocket; store one directly.
        let now = chrono::Utc::now();
        let session = bwenge::chat::store::SessionRow {
            id: bwenge::ids::SessionId::new(),
            organization_id: a_admin.org_id.parse().unwrap(),
            persona_id: a_persona.parse().unwrap(),
            user_id: a_student.id.parse().unwrap(),
            last_seq: 0,
            created_at: now,
            updated_at: now,
        };
        bwenge::chat::store::create_session(&app.state.db, &session)
            .await
            .unwrap();
        let a_model = crate::avatars::upload_robot(app, &a_admin, &[("name", "Robot")]).await;
        let a_model = a_model["id"].as_str().unwrap().to_owned();
        // A payment of A's (stored directly: no provider runs here).
        let payment = bwenge::billing::store::PaymentRow {
            id: bwenge::ids::PaymentId::new(),
            organization_id: a_admin.org_id.parse().unwrap(),
            plan: bwenge::billing::model::PlanId::Basic,
            method: bwenge::billing::model::Method::MtnMomo,
            amount: 30000,
            currency: "RWF".into(),
            status: bwenge::billing::model::PaymentStatus::Failed,
            provider_reference: Some(uuid::Uuid::new_v4().to_string()),
            checkout_url: None,
            failure_reason: Some("declined".into()),
            phone: Some("+250788123456".into()),
            created_by: Some(a_admin.id.parse().unwrap()),
            renewal: false,
            attempts: 0,
            next_check_at: None,
            expires_at: now,
            created_at: now,
            updated_at: now,
        };
        bwenge::billing::store::insert_payment(&app.state.db, &payment)
            .await
            .unwrap();
        let res = app
            .authed(Method::POST, "/v1/invitations", &a_admin.access)
            .json(&json!({"email": email("a-invitee"), "role": "teacher"}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 201);
        let invitation: serde_json::Value = res.json().await.unwrap();
        let a_invitation = invitation["id"].as_str().unwrap().to_owned();
        Self {
            a_admin,
            a_student,
            a_source,
            a_persona,
            a_session: session.id.to_string(),
            a_model,
            a_payment: payment.id.to_string(),
            a_invitation,
        }
    }

    /// A real id of organisation A for `param` of `path`, and a body that
    /// would be valid for that route.
    fn case(&self, method: &Method, path: &str) -> Option<(String, serde_json::Value)> {
        let body = match (method.as_str(), path) {
            ("PATCH", "/v1/members/{user_id}") => json!({"role": "teacher"}),
            ("DELETE", "/v1/members/{user_id}") => json!({}),
            ("GET" | "DELETE", "/v1/knowledge/{id}") => json!({}),
            ("GET", "/v1/knowledge/{id}/file" | "/v1/knowledge/{id}/file-url") => json!({}),
            ("GET" | "DELETE", "/v1/personas/{id}") => json!({}),
            ("PATCH", "/v1/personas/{id}") => json!({"name": "Taken over"}),
            ("POST", "/v1/personas/{id}/ask") => json!({"question": "What is magma?"}),
            ("GET", "/v1/chat/sessions/{id}") => json!({}),
            ("GET" | "DELETE", "/v1/models/{id}") => json!({}),
            // Sent as JSON: a foreign model is refused before the body is read.
            ("POST", "/v1/models/{id}/versions") => json!({"name": "Taken over"}),
            ("GET", "/v1/personas/{id}/avatar") => json!({}),
            ("GET", "/v1/analytics/students/{user_id}") => json!({}),
            ("GET", "/v1/payments/{id}") => json!({}),
            ("DELETE", "/v1/invitations/{id}") => json!({}),
            _ => return None,
        };
        let id = if path.starts_with("/v1/personas/") {
            &self.a_persona
        } else if path.starts_with("/v1/chat/sessions/") {
            &self.a_session
        } else if path.starts_with("/v1/models/") {
            &self.a_model
        } else if path.starts_with("/v1/payments/") {
            &self.a_payment
        } else if path.starts_with("/v1/invitations/") {
            &self.a_invitation
        } else {
            &self.a_source
        };
        let real = path
            .replace("{user_id}", &self.a_student.id)
            .replace("{id}", id);
        Some((real, body))
    }
}

async fn another_organisation_sees_nothing(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let a = Fixtures::build(&app).await;
    let b_admin = app.register("School B", &email("b-admin")).await;

    let routes = bwenge::http::route_table(&app.state);
    let mut missing = Vec::new();
    let mut checked = 0;
    for r in routes
        .iter()
        .filter(|r| r.path.starts_with("/v1/") && r.path.contains('{'))
    {
        let method = Method::from_bytes(r.method.as_str().as_bytes()).unwrap();
        let Some((path, body)) = a.case(&method, r.path) else {
            missing.push(format!("{} {}", r.method, r.path));
            continue;
        };
        let res = app
            .authed(method.clone(), &path, &b_admin.access)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(
            res.status(),
            404,
            "{} {} by another organisation",
            r.method,
            r.path
        );
        let problem: serde_json::Value = res.json().await.unwrap();
        assert_eq!(problem["code"], "not_found");
        checked += 1;
    }
    assert!(
        missing.is_empty(),
        "routes with ids but no isolation case: {missing:?}"
    );
    assert!(checked >= 2);

    // Nothing was changed by those attempts.
    let me: serde_json::Value = app
        .authed(Method::GET, "/v1/auth/me", &a.a_student.access)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["role"], "student");
    // B's DELETE of A's source neither deleted it nor cancelled its
    // ingestion.
    let res = app
        .authed(
            Method::GET,
            &format!("/v1/knowledge/{}", a.a_source),
            &a.a_admin.access,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let source: serde_json::Value = res.json().await.unwrap();
    assert_ne!(source["status"], "failed", "{source}");

    // Lists show only the caller's organisation.
    for path in [
        "/v1/members",
        "/v1/invitations",
        "/v1/audit",
        "/v1/knowledge",
        "/v1/search?q=volcanoes+magma+chambers",
        "/v1/personas",
        "/v1/chat/sessions",
        "/v1/models",
        "/v1/analytics/overview",
        "/v1/analytics/students",
        "/v1/analytics/gaps",
        "/v1/analytics/flags",
        "/v1/analytics/export?report=students",
        "/v1/payments",
    ] {
        let text = app
            .authed(Method::GET, path, &b_admin.access)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        for foreign in [
            &a.a_admin.id,
            &a.a_student.id,
            &a.a_admin.org_id,
            &a.a_source,
            &a.a_persona,
            &a.a_session,
            &a.a_invitation,
            &a.a_model,
            &a.a_payment,
            &a.a_student.email,
        ] {
            assert!(
                !text.contains(foreign.as_str()),
                "{path} shows organisation A's {foreign}"
            );
        }
    }
}
