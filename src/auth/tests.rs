//! The identity service built alone (a real SQLite store, the real hasher
//! and mail files), with a clock that follows tokio's: lockouts, one-time
//! links and access tokens expire when the test advances time.

use std::sync::Arc;
use std::time::Duration;

use super::AuthError;
use super::password::Hasher;
use super::service::{AuthDeps, AuthService, Registration};
use super::tokens::TokenKeys;
use crate::clock::Clock;
use crate::infra::ratelimit::InProcessRateLimiter;
use crate::mail::FileMailer;
use crate::testkit::{self, RecordedRevocations};

struct Fixture {
    auth: AuthService,
    revoked: Arc<RecordedRevocations>,
    dir: tempfile::TempDir,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (settings, db) = testkit::sqlite(dir.path()).await;
    let revoked = RecordedRevocations::new();
    let auth = AuthService::new(AuthDeps {
        db,
        settings: settings.auth.clone(),
        link_base_url: "http://school.test".into(),
        keys: TokenKeys::new("a-test-secret-of-some-length-0123456789", 900),
        hasher: Hasher::new(2, Duration::from_secs(5)),
        limiter: Arc::new(InProcessRateLimiter::new()),
        mailer: Arc::new(FileMailer::new(
            dir.path().join("mail"),
            "Bwenge <noreply@school.test>".parse().expect("a mailbox"),
        )),
        revocations: revoked.clone(),
        clock: Clock::following_tokio(),
        sign_ins: std::sync::Arc::new(crate::auth::NoSignIns),
    });
    Fixture { auth, revoked, dir }
}

/// Moves the service's clock (and tokio's) forward without sleeping.
async fn advance(by: Duration) {
    tokio::time::pause();
    tokio::time::advance(by).await;
    tokio::time::resume();
}

const PASSWORD: &str = "correct horse battery staple";

async fn register(auth: &AuthService, email: &str) {
    auth.register(
        "127.0.0.1",
        Registration {
            organization_name: "Lycée de Kigali".into(),
            full_name: "Ada Teacher".into(),
            email: email.into(),
            password: PASSWORD.into(),
        },
    )
    .await
    .expect("registration succeeds");
}

#[actix_web::test]
async fn a_lock_holds_until_its_time_is_up_then_lets_the_right_password_in() {
    let f = fixture().await;
    register(&f.auth, "ada@school.test").await;
    // Distinct addresses: the per-IP limit is not what is tested here.
    for i in 0..5 {
        let err = f
            .auth
            .login(
                &format!("10.0.0.{i}"),
                "ada@school.test",
                "wrong password!!",
            )
            .await
            .expect_err("a wrong password fails");
        assert!(matches!(err, AuthError::InvalidCredentials), "{err:?}");
    }
    let err = f
        .auth
        .login("10.0.1.1", "ada@school.test", PASSWORD)
        .await
        .expect_err("the account is locked");
    let AuthError::Locked { retry_after } = err else {
        panic!("expected a lock, got {err:?}");
    };
    assert!(
        retry_after > Duration::from_secs(14 * 60),
        "{retry_after:?}"
    );

    advance(Duration::from_secs(14 * 60)).await;
    assert!(matches!(
        f.auth.login("10.0.1.2", "ada@school.test", PASSWORD).await,
        Err(AuthError::Locked { .. })
    ));
    advance(Duration::from_secs(61)).await;
    let (user, _) = f
        .auth
        .login("10.0.1.3", "ada@school.test", PASSWORD)
        .await
        .expect("the lock has expired");
    assert_eq!(user.email, "ada@school.test");
}

#[actix_web::test]
async fn an_access_token_stops_working_when_it_expires() {
    let f = fixture().await;
    register(&f.auth, "ada@school.test").await;
    let (_, tokens) = f
        .auth
        .login("127.0.0.1", "ada@school.test", PASSWORD)
        .await
        .expect("sign-in");
    assert!(
        f.auth
            .authenticate(&tokens.access_token)
            .await
            .expect("the database answers")
            .is_some()
    );
    advance(Duration::from_secs(899)).await;
    assert!(
        f.auth
            .authenticate(&tokens.access_token)
            .await
            .expect("the database answers")
            .is_some(),
        "still valid just before its 15 minutes are up"
    );
    advance(Duration::from_secs(10)).await;
    assert!(
        f.auth
            .authenticate(&tokens.access_token)
            .await
            .expect("the database answers")
            .is_none(),
        "expired"
    );
}

/// The tokens of every link mailed so far.
fn mailed_tokens(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir.join("mail"))
        .expect("the mail directory")
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .filter_map(|text| {
            let at = text.find("token=")? + "token=".len();
            Some(
                text[at..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
                    .collect(),
            )
        })
        .collect()
}

/// The one token mailed since `before`.
fn new_token(dir: &std::path::Path, before: &[String]) -> String {
    let mut new: Vec<String> = mailed_tokens(dir)
        .into_iter()
        .filter(|t| !before.contains(t))
        .collect();
    assert_eq!(new.len(), 1, "one new link");
    new.remove(0)
}

async fn wait_for_mail(dir: &std::path::Path, count: usize) {
    for _ in 0..200 {
        let n = std::fs::read_dir(dir.join("mail")).map_or(0, |d| d.count());
        if n >= count {
            return;
        }
        tokio::task::yield_now().await;
        std::thread::sleep(Duration::from_millis(5));
    }
    panic!("no mail was written");
}

#[actix_web::test]
async fn a_reset_link_expires_and_a_used_one_revokes_every_session() {
    let f = fixture().await;
    register(&f.auth, "ada@school.test").await;
    wait_for_mail(f.dir.path(), 1).await; // the verification mail
    let before = mailed_tokens(f.dir.path());
    f.auth
        .request_password_reset("127.0.0.1", "ada@school.test")
        .await
        .expect("202");
    wait_for_mail(f.dir.path(), 2).await;
    let stale = new_token(f.dir.path(), &before);
    let before = mailed_tokens(f.dir.path());
    advance(Duration::from_secs(31 * 60)).await;
    assert!(matches!(
        f.auth
            .confirm_password_reset("127.0.0.1", &stale, "a brand new password")
            .await,
        Err(AuthError::InvalidLink)
    ));

    f.auth
        .request_password_reset("127.0.0.2", "ada@school.test")
        .await
        .expect("202");
    wait_for_mail(f.dir.path(), 3).await;
    let fresh = new_token(f.dir.path(), &before);
    assert_ne!(fresh, stale);
    f.auth
        .confirm_password_reset("127.0.0.2", &fresh, "a brand new password")
        .await
        .expect("the fresh link works");
    assert_eq!(f.revoked.0.lock().len(), 1, "the user's sockets are told");
    assert!(matches!(
        f.auth
            .confirm_password_reset("127.0.0.2", &fresh, "another new password")
            .await,
        Err(AuthError::InvalidLink)
    ));
    assert!(
        f.auth
            .login("127.0.0.3", "ada@school.test", "a brand new password")
            .await
            .is_ok()
    );
}

#[actix_web::test]
async fn parallel_guesses_check_at_most_the_threshold_and_a_right_password_among_them_is_refused() {
    let f = fixture().await;
    register(&f.auth, "ada@school.test").await;
    let attempts = (0..40).map(|i| {
        let auth = f.auth.clone();
        async move {
            let password = if i == 30 { PASSWORD } else { "a wrong guess!!" };
            auth.login(&format!("10.1.0.{i}"), "ada@school.test", password)
                .await
        }
    });
    let results = futures_util::future::join_all(attempts).await;
    let checked_wrong = results
        .iter()
        .filter(|r| matches!(r, Err(AuthError::InvalidCredentials)))
        .count();
    let locked = results
        .iter()
        .filter(|r| matches!(r, Err(AuthError::Locked { .. })))
        .count();
    assert!(results.iter().all(|r| r.is_err()), "no guess got in");
    assert!(
        checked_wrong <= 5,
        "{checked_wrong} wrong passwords were checked"
    );
    assert_eq!(checked_wrong + locked, 40);

    // An unknown address answers like a wrong password, never like a lock.
    assert!(matches!(
        f.auth
            .login("10.2.0.1", "nobody@school.test", PASSWORD)
            .await,
        Err(AuthError::InvalidCredentials)
    ));

    advance(Duration::from_secs(16 * 60)).await;
    assert!(
        f.auth
            .login("10.3.0.1", "ada@school.test", PASSWORD)
            .await
            .is_ok(),
        "the lock expired and the count started again"
    );
}
