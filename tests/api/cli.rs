//! The `bwenge` binary itself: the first line, configuration errors,
//! `migrate`, `version`, secrets that survive a restart, graceful shutdown.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_bwenge");

pub fn bwenge(dir: &std::path::Path, env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(BIN);
    // A clean environment: only what the test says.
    cmd.env_clear()
        .env("BWENGE_DATA_DIR", dir)
        .env("BWENGE_LOG__LEVEL", "warn")
        .envs(env.iter().copied())
        .current_dir(dir);
    cmd
}

pub struct Server {
    pub child: Child,
    pub port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `bwenge serve --bind 127.0.0.1:0` and reads the port from the
/// first line of stdout.
pub fn serve(dir: &std::path::Path, env: &[(&str, &str)]) -> Server {
    serve_args(dir, env, &[])
}

/// [`serve`] with more command-line arguments (e.g. `--config FILE`).
pub fn serve_args(dir: &std::path::Path, env: &[(&str, &str)], args: &[&str]) -> Server {
    let mut child = bwenge(dir, env)
        .args(["serve", "--bind", "127.0.0.1:0"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let first = lines.next().expect("a first line").unwrap();
    let port = first
        .strip_prefix("listening on http://127.0.0.1:")
        .unwrap_or_else(|| panic!("unexpected first line: {first}"))
        .parse()
        .unwrap();
    // Keep draining stdout so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Server { child, port }
}

/// Runs `bwenge serve` with `env`, expects it to refuse to start (exit code
/// 2, nothing on stdout) and returns what it said on stderr.
fn serve_refused(dir: &std::path::Path, env: &[(&str, &str)]) -> String {
    let out = bwenge(dir, env)
        .args(["serve", "--bind", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn signal(child: &Child, sig: &str) {
    let status = Command::new("kill")
        .args([&format!("-{sig}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

fn wait_exit(child: &mut Child, within: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "process did not exit in time");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[actix_web::test]
async fn serve_prints_the_real_port_and_answers() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve(dir.path(), &[]);
    assert_ne!(server.port, 0);
    let base = format!("http://127.0.0.1:{}", server.port);
    let res = reqwest::get(format!("{base}/healthz")).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        reqwest::get(format!("{base}/metrics"))
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        reqwest::get(format!("{base}/v1/openapi.json"))
            .await
            .unwrap()
            .status(),
        200
    );
    // The embedded default: a SQLite file in the data directory.
    assert!(dir.path().join("bwenge.db").exists());
    // (The /__test routes are a cargo feature of test builds, whatever the
    // environment: this binary has them, a release build never does.)
}

#[test]
fn development_secrets_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    drop(serve(dir.path(), &[]));
    let first = std::fs::read_to_string(dir.path().join("secrets")).unwrap();
    drop(serve(dir.path(), &[]));
    let second = std::fs::read_to_string(dir.path().join("secrets")).unwrap();
    assert_eq!(first, second);
    assert!(first.contains("jwt_secret="));
}

#[test]
fn production_refuses_to_start_without_real_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let err = serve_refused(dir.path(), &[("BWENGE_ENV", "production")]);
    assert!(err.contains("BWENGE_SECRETS__JWT_SECRET"), "{err}");
    let err = serve_refused(
        dir.path(),
        &[
            ("BWENGE_ENV", "production"),
            ("BWENGE_SECRETS__JWT_SECRET", "changeme"),
        ],
    );
    assert!(err.contains("BWENGE_SECRETS__JWT_SECRET"), "{err}");
}

#[test]
fn an_unknown_variable_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let err = serve_refused(dir.path(), &[("BWENGE_DATABSE_URL", "sqlite://x.db")]);
    assert!(err.contains("databse_url"), "{err}");
    assert!(err.contains("BWENGE_DATABSE_URL"), "{err}");
}

#[test]
fn migrate_and_version() {
    let dir = tempfile::tempdir().unwrap();
    let out = bwenge(dir.path(), &[]).arg("migrate").output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(dir.path().join("bwenge.db").exists());
    // Idempotent.
    let out = bwenge(dir.path(), &[]).arg("migrate").output().unwrap();
    assert!(out.status.success());
    let out = bwenge(dir.path(), &[]).arg("version").output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("bwenge {}", env!("CARGO_PKG_VERSION"))
    );
}

async fn graceful_shutdown_on(sig: &str) {
    let dir = tempfile::tempdir().unwrap();
    let mut server = serve(dir.path(), &[("BWENGE_ENV", "test")]);
    let base = format!("http://127.0.0.1:{}", server.port);
    let slow = tokio::spawn({
        let url = format!("{base}/__test/sleep?ms=1500");
        async move { reqwest::get(url).await }
    });
    // Let the slow request reach its handler.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let signalled = Instant::now();
    signal(&server.child, sig);
    tokio::time::sleep(Duration::from_millis(200)).await;
    // No new connections once shutdown started.
    let refused = reqwest::Client::new()
        .get(format!("{base}/healthz"))
        .timeout(Duration::from_millis(500))
        .send()
        .await;
    assert!(refused.is_err(), "accepted a request after {sig}");
    // The in-flight request finishes.
    let res = slow.await.unwrap().expect("in-flight request completed");
    assert_eq!(res.status(), 200);
    let status = wait_exit(&mut server.child, Duration::from_secs(5));
    assert!(status.success(), "{status:?}");
    assert!(signalled.elapsed() >= Duration::from_millis(1000));
}

#[actix_web::test]
async fn sigterm_lets_in_flight_requests_finish() {
    graceful_shutdown_on("TERM").await;
}

#[actix_web::test]
async fn sigint_is_as_graceful_as_sigterm() {
    graceful_shutdown_on("INT").await;
}

#[actix_web::test]
async fn shutdown_grace_is_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = serve(
        dir.path(),
        &[
            ("BWENGE_ENV", "test"),
            ("BWENGE_HTTP__SHUTDOWN_GRACE_SECS", "1"),
        ],
    );
    let base = format!("http://127.0.0.1:{}", server.port);
    let slow = tokio::spawn(reqwest::get(format!("{base}/__test/sleep?ms=20000")));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let signalled = Instant::now();
    signal(&server.child, "TERM");
    let status = wait_exit(&mut server.child, Duration::from_secs(6));
    assert!(status.success());
    assert!(signalled.elapsed() < Duration::from_secs(5));
    // The request that outlived the grace period was cut off, not answered.
    assert!(slow.await.unwrap().is_err());
}

/// `bwenge dev-payments` prints settings that work: the production MoMo
/// client, configured from them alone, gets a payment prompt accepted,
/// and the development payer has not answered yet.
#[actix_web::test]
async fn dev_payments_prints_settings_that_work() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = bwenge(dir.path(), &[])
        .args(["dev-payments", "--bind", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut settings = std::collections::HashMap::new();
    let mut lines = BufReader::new(stdout).lines();
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let Some((k, v)) = line
            .strip_prefix("export BWENGE_BILLING__")
            .and_then(|l| l.split_once('='))
        {
            settings.insert(k.to_owned(), v.to_owned());
        }
        if line.starts_with("Stripe: ") {
            break;
        }
    }
    // Keep reading what is left, as a terminal would: the pipe stays open.
    std::thread::spawn(move || for _ in lines {});
    let get = |k: &str| {
        settings
            .get(k)
            .cloned()
            .unwrap_or_else(|| panic!("{k} not printed"))
    };
    let momo = bwenge_payments::momo::MomoClient::new(
        bwenge_payments::momo::MomoConfig {
            base_url: get("MTN_MOMO__BASE_URL"),
            subscription_key: get("MTN_MOMO__SUBSCRIPTION_KEY"),
            api_user: get("MTN_MOMO__API_USER"),
            api_key: get("MTN_MOMO__API_KEY"),
            target_environment: get("MTN_MOMO__TARGET_ENVIRONMENT"),
            callback_url: None,
        },
        bwenge_payments::http_client(Duration::from_secs(30)),
    );
    // On a loaded machine (CI runs the whole suite at once on two cores) an
    // exchange with a just-started debug process can time out or be cut; a
    // client would try again, with a fresh reference.
    let mut reference = uuid::Uuid::new_v4();
    let mut attempt = 0;
    let p = loop {
        attempt += 1;
        let outcome = match momo
            .request_to_pay(reference, "dev-1", 30000, "RWF", "+250788123456", "Bwenge")
            .await
        {
            Ok(()) => momo.status(reference).await,
            Err(e) => Err(e),
        };
        match outcome {
            Ok(p) => break p,
            Err(e) if e.is_transient() && attempt < 5 => {
                eprintln!("attempt {attempt}: {e}; trying again");
                tokio::time::sleep(Duration::from_secs(1)).await;
                reference = uuid::Uuid::new_v4();
            }
            Err(e) => panic!("attempt {attempt}: {e}"),
        }
    };
    // Any payer pays after five seconds; a loaded machine may take that long
    // to get here.
    assert!(
        matches!(
            p.status,
            bwenge_payments::ProviderStatus::Pending | bwenge_payments::ProviderStatus::Succeeded
        ),
        "{:?}",
        p.status
    );
    assert_eq!(p.amount, Some(30000));
    assert!(get("STRIPE__BASE_URL").ends_with("/stripe"));
    assert!(get("STRIPE__WEBHOOK_SECRET").starts_with("whsec_"));
    let _ = child.kill();
    let _ = child.wait();
}

/// The `nice` value of each of `pid`'s threads whose name starts with
/// `prefix` (Linux: `/proc/PID/task/TID/stat`, field 19).
#[cfg(target_os = "linux")]
fn thread_nice(pid: u32, prefix: &str) -> Vec<(String, i32)> {
    let mut out = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let dir = task.unwrap().path();
        let Ok(name) = std::fs::read_to_string(dir.join("comm")) else {
            continue;
        };
        let name = name.trim().to_owned();
        if !name.starts_with(prefix) {
            continue;
        }
        let stat = std::fs::read_to_string(dir.join("stat")).unwrap();
        // After the name's closing parenthesis: state is field 3, nice 19.
        let rest = &stat[stat.rfind(')').unwrap() + 2..];
        let nice = rest.split(' ').nth(16).unwrap().parse().unwrap();
        out.push((name, nice));
    }
    out
}

#[cfg(target_os = "linux")]
#[actix_web::test]
async fn the_answering_threads_run_at_the_configured_priority() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve(dir.path(), &[("BWENGE_CHAT__ANSWERING_NICE", "11")]);
    let pid = server.child.id();
    let base = format!("http://127.0.0.1:{}", server.port);
    let http = reqwest::Client::new();
    let post = |path: &str, token: Option<&str>, body: serde_json::Value| {
        let req = http.post(format!("{base}{path}")).json(&body);
        let req = match token {
            Some(t) => req.bearer_auth(t),
            None => req,
        };
        async move {
            let res = req.send().await.unwrap();
            assert!(res.status().is_success(), "{}", res.status());
            res.json::<serde_json::Value>().await.unwrap()
        }
    };
    // A question answered, so that the answering pool has started.
    let reg = post(
        "/v1/auth/register",
        None,
        serde_json::json!({"organization_name": "School", "full_name": "Teacher",
            "email": "teacher@example.org", "password": "a long enough passphrase"}),
    )
    .await;
    let token = reg["tokens"]["access_token"].as_str().unwrap();
    let persona = post(
        "/v1/personas",
        Some(token),
        serde_json::json!({"name": "Tutor"}),
    )
    .await;
    let id = persona["id"].as_str().unwrap();
    let answer = post(
        &format!("/v1/personas/{id}/ask"),
        Some(token),
        serde_json::json!({"question": "What is a resistor?"}),
    )
    .await;
    assert!(answer["text"].is_string(), "{answer}");
    let process = thread_nice(pid, "bwenge")
        .into_iter()
        .find(|(name, _)| name == "bwenge")
        .map(|(_, n)| n)
        .expect("the main thread");
    let want = (process + 11).min(19);
    for prefix in ["bwenge-answer", "bwenge-compute"] {
        let threads = thread_nice(pid, prefix);
        assert!(!threads.is_empty(), "no {prefix} threads");
        for (name, nice) in threads {
            assert_eq!(nice, want, "{name}");
        }
    }
    // Out of range: refused at start, naming the setting.
    let err = serve_refused(dir.path(), &[("BWENGE_CHAT__ANSWERING_NICE", "20")]);
    assert!(err.contains("chat.answering_nice"), "{err}");
}
