//! The organisation service built alone on a real SQLite store.

use std::sync::Arc;
use std::time::Duration;

use super::service::{OrgError, OrgService};
use crate::auth::model::Role;
use crate::auth::password::Hasher;
use crate::auth::service::{AuthDeps, AuthService, Registration};
use crate::auth::tokens::TokenKeys;
use crate::auth::{AuthError, AuthUser};
use crate::clock::Clock;
use crate::infra::ratelimit::InProcessRateLimiter;
use crate::mail::FileMailer;
use crate::pagination::Page;
use crate::testkit::{self, RecordedRevocations};

async fn services(dir: &std::path::Path) -> (AuthService, OrgService, Arc<RecordedRevocations>) {
    let (settings, db) = testkit::sqlite(dir).await;
    let revoked = RecordedRevocations::new();
    let auth = AuthService::new(AuthDeps {
        db: db.clone(),
        settings: settings.auth.clone(),
        link_base_url: "http://school.test".into(),
        keys: TokenKeys::new("a-test-secret-of-some-length-0123456789", 900),
        hasher: Hasher::new(2, Duration::from_secs(5)),
        limiter: Arc::new(InProcessRateLimiter::new()),
        mailer: Arc::new(FileMailer::new(
            dir.join("mail"),
            "Bwenge <noreply@school.test>".parse().expect("a mailbox"),
        )),
        revocations: revoked.clone(),
        clock: Clock::system(),
        sign_ins: std::sync::Arc::new(crate::auth::NoSignIns),
    });
    let quotas = testkit::quotas(&settings, &db);
    let orgs = OrgService::new(
        db,
        auth.clone(),
        revoked.clone(),
        std::sync::Arc::new(crate::orgs::NoErasure),
        quotas,
    );
    (auth, orgs, revoked)
}

async fn admin(auth: &AuthService) -> AuthUser {
    let (user, _, _) = auth
        .register(
            "127.0.0.1",
            Registration {
                organization_name: "École de Huye".into(),
                full_name: "Grace Admin".into(),
                email: "grace@school.test".into(),
                password: "correct horse battery staple".into(),
            },
        )
        .await
        .expect("registration");
    AuthUser {
        user_id: user.id,
        org_id: user.organization_id,
        role: user.role,
    }
}

#[actix_web::test]
async fn the_last_admin_stays_and_teachers_invite_students_only() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (auth, orgs, revoked) = services(dir.path()).await;
    let grace = admin(&auth).await;

    assert!(matches!(
        orgs.change_role(&grace, "127.0.0.1", grace.user_id, Role::Teacher)
            .await,
        Err(OrgError::LastAdmin)
    ));
    assert!(matches!(
        orgs.remove_member(&grace, "127.0.0.1", grace.user_id, false)
            .await,
        Err(OrgError::LastAdmin)
    ));
    let teacher = AuthUser {
        role: Role::Teacher,
        ..grace
    };
    assert!(matches!(
        orgs.invite(&teacher, "127.0.0.1", "t2@school.test", "teacher")
            .await,
        Err(OrgError::Forbidden(_))
    ));
    let inv = orgs
        .invite(&teacher, "127.0.0.1", "pupil@school.test", "student")
        .await
        .expect("teachers invite students");
    assert_eq!(inv.role, Role::Student);
    assert!(matches!(
        orgs.invite(&grace, "127.0.0.1", "grace@school.test", "teacher")
            .await,
        Err(OrgError::Auth(AuthError::EmailTaken))
    ));
    assert!(revoked.0.lock().is_empty());
}

#[actix_web::test]
async fn a_demoted_member_is_revoked_and_members_list_their_organisation_only() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (auth, orgs, revoked) = services(dir.path()).await;
    let grace = admin(&auth).await;
    // A second school, with its own admin.
    let (other, _, _) = auth
        .register(
            "127.0.0.2",
            Registration {
                organization_name: "Other School".into(),
                full_name: "Olu Admin".into(),
                email: "olu@other.test".into(),
                password: "correct horse battery staple".into(),
            },
        )
        .await
        .expect("registration");
    assert!(matches!(
        orgs.change_role(&grace, "127.0.0.1", other.id, Role::Student)
            .await,
        Err(OrgError::NotFound)
    ));
    let page = Page {
        limit: 50,
        after: None,
    };
    let list = orgs.list_members(&grace, page).await.expect("members");
    assert_eq!(list.items.len(), 1);
    assert!(revoked.0.lock().is_empty());

    let db = testkit::sqlite(dir.path()).await.1;
    let teacher = crate::ids::UserId::new();
    crate::auth::store::insert_user(
        &db,
        &crate::auth::store::NewUser {
            id: teacher,
            org: grace.org_id,
            email: "tom@school.test",
            full_name: "Tom Teacher",
            role: Role::Teacher,
            password_hash: "x",
            email_verified: true,
            now: chrono::Utc::now(),
        },
    )
    .await
    .expect("a teacher");
    let row = orgs
        .change_role(&grace, "127.0.0.1", teacher, Role::Student)
        .await
        .expect("demoted");
    assert_eq!(row.role, Role::Student);
    assert_eq!(*revoked.0.lock(), vec![teacher], "their sockets are told");
    assert_eq!(
        orgs.list_members(&grace, page)
            .await
            .expect("members")
            .items
            .len(),
        2
    );
}
