//! What the unit tests of the domain services build them from: the test
//! configuration and a migrated SQLite database in a temporary directory.
//! The services run on the real store, not on fakes.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use parking_lot::Mutex;

use crate::auth::model::Role;
use crate::auth::{AuthUser, Revocations};
use crate::config::{LoadOptions, Settings};
use crate::db::Db;
use crate::ids::{OrgId, UserId};

/// The test settings, with the data directory (and so the SQLite file)
/// under `dir`.
pub fn settings(dir: &Path) -> Settings {
    let env: HashMap<String, String> = [
        ("BWENGE_ENV", "test"),
        (
            "BWENGE_DATABASE_URL",
            &format!("sqlite://{}/bwenge.db", dir.display()),
        ),
        ("BWENGE_DATA_DIR", &dir.display().to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let (settings, _) = Settings::load(&LoadOptions {
        env,
        ..LoadOptions::default()
    })
    .expect("the test configuration loads");
    settings
}

/// A migrated SQLite database in `dir`.
pub async fn sqlite(dir: &Path) -> (Settings, Db) {
    let settings = settings(dir);
    let db = Db::connect(&settings)
        .await
        .expect("a SQLite file in a temporary directory opens");
    db.migrate().await.expect("migrations apply");
    (settings, db)
}

/// Billing on `db`, with the test settings' plans and a file mailer in
/// `settings.data_dir`.
pub fn billing(settings: &Settings, db: &Db) -> crate::billing::BillingService {
    let mailer = crate::mail::from_settings(&settings.mail, &settings.data_dir)
        .expect("the file mailer of the test settings");
    crate::billing::BillingService::new(crate::billing::BillingDeps {
        db: db.clone(),
        settings: settings.billing.clone(),
        clock: crate::clock::Clock::system(),
        mailer,
    })
}

/// Billing's allowances as the other domains' ports see them.
pub fn quotas(settings: &Settings, db: &Db) -> Arc<crate::adapters::BillingQuotas> {
    Arc::new(crate::adapters::BillingQuotas {
        billing: billing(settings, db),
    })
}

/// Remembers whose tokens were revoked.
#[derive(Default)]
pub struct RecordedRevocations(pub Mutex<Vec<UserId>>);

#[async_trait::async_trait]
impl Revocations for RecordedRevocations {
    async fn revoked(&self, user: UserId) {
        self.0.lock().push(user);
    }
}

impl RecordedRevocations {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }
}

/// An organisation with one member of `role` (the row the stores expect).
pub async fn member(db: &Db, role: Role) -> AuthUser {
    let org = crate::auth::store::OrgRow {
        id: OrgId::new(),
        name: "School".into(),
        plan: "free".into(),
        created_at: chrono::Utc::now(),
    };
    let user = UserId::new();
    crate::auth::store::create_org_with_user(
        db,
        &org,
        &crate::auth::store::NewUser {
            id: user,
            org: org.id,
            email: &format!("{user}@school.test"),
            full_name: "Member",
            role,
            password_hash: "x",
            email_verified: true,
            now: chrono::Utc::now(),
        },
    )
    .await
    .expect("an organisation and its member");
    AuthUser {
        user_id: user,
        org_id: org.id,
        role,
    }
}
