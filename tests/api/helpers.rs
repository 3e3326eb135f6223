//! `spawn_app` and friends: one fresh database and data directory per test.

use std::collections::HashMap;

use actix_web::dev::ServerHandle;
use actix_web::web;
use bwenge::Application;
use bwenge::config::{LoadOptions, Settings};
use bwenge::state::AppState;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Whether missing services must fail the run.
pub fn services_required() -> bool {
    std::env::var("BWENGE_TEST_REQUIRE_SERVICES").is_ok_and(|v| v == "1")
}

/// The variable's value, or `None` (skip) — or a panic when services are
/// required.
pub fn service_url(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(v) if !v.trim().is_empty() => Some(v),
        _ if services_required() => {
            panic!("{var} is not set but BWENGE_TEST_REQUIRE_SERVICES=1")
        }
        _ => {
            eprintln!("skipping: {var} is not set");
            None
        }
    }
}

pub fn redis_url() -> Option<String> {
    service_url("BWENGE_TEST_REDIS_URL")
}

/// Creates a fresh PostgreSQL database and returns its URL.
pub async fn fresh_postgres_database() -> Option<String> {
    use sqlx::Connection;
    let base = service_url("BWENGE_TEST_DATABASE_URL")?;
    let name = format!("bwenge_test_{}", uuid::Uuid::new_v4().simple());
    let mut conn = sqlx::PgConnection::connect(&base)
        .await
        .expect("BWENGE_TEST_DATABASE_URL must reach a PostgreSQL server");
    sqlx::query(&format!("CREATE DATABASE \"{name}\""))
        .execute(&mut conn)
        .await
        .unwrap();
    let (head, _) = base.rsplit_once('/').unwrap();
    Some(format!("{head}/{name}"))
}

/// Settings for a test: `test` environment, port 0, a temporary data dir.
pub fn test_settings(dir: &std::path::Path, database_url: &str) -> Settings {
    let env: HashMap<String, String> = [
        ("BWENGE_ENV", "test"),
        ("BWENGE_BIND", "127.0.0.1:0"),
        ("BWENGE_DATABASE_URL", database_url),
        ("BWENGE_DATA_DIR", dir.to_str().unwrap()),
        ("BWENGE_HTTP__WORKERS", "2"),
        // The test binary is not `bwenge`: PDFs go to the real one.
        (
            "BWENGE_KNOWLEDGE__PDF_EXTRACTOR",
            env!("CARGO_BIN_EXE_bwenge"),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let (settings, _) = Settings::load(&LoadOptions {
        env,
        ..LoadOptions::default()
    })
    .unwrap();
    settings
}

#[allow(dead_code)] // `backend` and `dir` are for later scenarios and keep the dir alive
pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub state: web::Data<AppState>,
    pub handle: ServerHandle,
    pub backend: Backend,
    pub dir: tempfile::TempDir,
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(self.url(path)).send().await.unwrap()
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        let handle = self.handle.clone();
        actix_web::rt::spawn(async move { handle.stop(false).await });
    }
}

/// Starts the app on `backend`; `None` when that backend is not available
/// (skipped).
pub async fn spawn_app(backend: Backend) -> Option<TestApp> {
    spawn_app_with(backend, |_| {}).await
}

pub async fn spawn_app_with(
    backend: Backend,
    tweak: impl FnOnce(&mut Settings),
) -> Option<TestApp> {
    let dir = tempfile::tempdir().unwrap();
    let database_url = match backend {
        Backend::Sqlite => format!("sqlite://{}", dir.path().join("test.db").display()),
        Backend::Postgres => fresh_postgres_database().await?,
    };
    let mut settings = test_settings(dir.path(), &database_url);
    tweak(&mut settings);
    Some(start(settings, backend, dir).await)
}

pub async fn start(settings: Settings, backend: Backend, dir: tempfile::TempDir) -> TestApp {
    bwenge::telemetry::init(&settings);
    let app = Application::build(settings).await.unwrap();
    let address = format!("http://127.0.0.1:{}", app.port());
    let state = app.state();
    let handle = app.handle();
    actix_web::rt::spawn(app.run_until_stopped());
    TestApp {
        address,
        // A request the server never answers fails the test within a
        // minute instead of hanging the suite.
        client: reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(60))
            .build()
            .unwrap(),
        state,
        handle,
        backend,
        dir,
    }
}

/// Declares `async fn name(backend: Backend)` scenarios as one test per
/// database: `name::sqlite` and `name::postgres`.
#[macro_export]
macro_rules! on_both_databases {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                use $crate::helpers::Backend;
                #[actix_web::test]
                async fn sqlite() {
                    super::$name(Backend::Sqlite).await;
                }
                #[actix_web::test]
                async fn postgres() {
                    super::$name(Backend::Postgres).await;
                }
            }
        )*
    };
}

/// Asserts an answer is problem+json with `code` and returns the body.
pub async fn assert_problem(res: reqwest::Response, status: u16, code: &str) -> serde_json::Value {
    assert_eq!(res.status().as_u16(), status, "status");
    let ct = res
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(
        ct.starts_with("application/problem+json"),
        "content-type {ct}"
    );
    let header_id = res
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["code"], code, "{body}");
    assert_eq!(body["status"], status, "{body}");
    assert!(
        body["title"].is_string() && body["type"].is_string() && body["detail"].is_string(),
        "{body}"
    );
    assert!(header_id.is_some(), "x-request-id header");
    assert_eq!(body["request_id"].as_str(), header_id.as_deref(), "{body}");
    body
}

/// A signed-in member, as the tests use them.
#[derive(Clone, Debug)]
pub struct Member {
    pub id: String,
    pub org_id: String,
    pub email: String,
    #[allow(dead_code)] // kept for scenarios that sign in again
    pub password: String,
    pub access: String,
    pub refresh: String,
}

pub const PASSWORD: &str = "correct horse battery staple";

impl TestApp {
    pub async fn post_json(&self, path: &str, body: &serde_json::Value) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .unwrap()
    }

    pub fn authed(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
    ) -> reqwest::RequestBuilder {
        self.client
            .request(method, self.url(path))
            .bearer_auth(token)
    }

    /// Registers a new organisation and its admin.
    pub async fn register(&self, org: &str, email: &str) -> Member {
        let res = self
            .post_json(
                "/v1/auth/register",
                &serde_json::json!({
                    "organization_name": org,
                    "full_name": "Ada Admin",
                    "email": email,
                    "password": PASSWORD,
                }),
            )
            .await;
        assert_eq!(
            res.status(),
            201,
            "{}",
            res.text().await.unwrap_or_default()
        );
        let body: serde_json::Value = res.json().await.unwrap();
        Member {
            id: body["user"]["id"].as_str().unwrap().to_owned(),
            org_id: body["organization"]["id"].as_str().unwrap().to_owned(),
            email: email.to_lowercase(),
            password: PASSWORD.to_owned(),
            access: body["tokens"]["access_token"].as_str().unwrap().to_owned(),
            refresh: body["tokens"]["refresh_token"].as_str().unwrap().to_owned(),
        }
    }

    pub async fn login(&self, email: &str, password: &str) -> reqwest::Response {
        self.post_json(
            "/v1/auth/login",
            &serde_json::json!({"email": email, "password": password}),
        )
        .await
    }

    /// Waits for the newest mail to `to` (mail is sent in the background)
    /// and returns the token of its link.
    pub async fn mail_token(&self, to: &str, after: usize) -> String {
        for _ in 0..200 {
            let mails = self.mails_to(to);
            if mails.len() > after {
                // Undo quoted-printable should a mail use it.
                let body = mails[mails.len() - 1]
                    .replace("=\r\n", "")
                    .replace("=\n", "")
                    .replace("=3D", "=");
                let start = body.find("?token=").expect("a link with a token") + 7;
                let token: String = body[start..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
                    .collect();
                return token;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        panic!("no mail to {to}");
    }

    /// Every mail file written to `to`, oldest first.
    pub fn mails_to(&self, to: &str) -> Vec<String> {
        let dir = self.dir.path().join("mail");
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .map(|rd| rd.filter_map(Result::ok).map(|e| e.path()).collect())
            .unwrap_or_default();
        files.sort();
        files
            .into_iter()
            .filter(|p| p.extension().is_some_and(|e| e == "eml"))
            .filter_map(|p| std::fs::read_to_string(p).ok())
            .filter(|m| m.lines().any(|l| l.starts_with("To:") && l.contains(to)))
            .collect()
    }

    /// Invites `email` as `role` with `inviter`'s token and accepts it.
    pub async fn invite_and_accept(&self, inviter: &Member, email: &str, role: &str) -> Member {
        let before = self.mails_to(email).len();
        let res = self
            .authed(reqwest::Method::POST, "/v1/invitations", &inviter.access)
            .json(&serde_json::json!({"email": email, "role": role}))
            .send()
            .await
            .unwrap();
        assert_eq!(
            res.status(),
            201,
            "{}",
            res.text().await.unwrap_or_default()
        );
        let token = self.mail_token(email, before).await;
        let res = self
            .post_json(
                "/v1/invitations/accept",
                &serde_json::json!({"token": token, "full_name": "Invited Person", "password": PASSWORD}),
            )
            .await;
        assert_eq!(
            res.status(),
            201,
            "{}",
            res.text().await.unwrap_or_default()
        );
        let body: serde_json::Value = res.json().await.unwrap();
        Member {
            id: body["user"]["id"].as_str().unwrap().to_owned(),
            org_id: body["user"]["organization_id"].as_str().unwrap().to_owned(),
            email: email.to_owned(),
            password: PASSWORD.to_owned(),
            access: body["tokens"]["access_token"].as_str().unwrap().to_owned(),
            refresh: body["tokens"]["refresh_token"].as_str().unwrap().to_owned(),
        }
    }
}

/// A unique email address for a test.
pub fn email(tag: &str) -> String {
    format!(
        "{tag}-{}@school.example",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    )
}
