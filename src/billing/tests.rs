//! The billing service built alone on a real SQLite store.
#![allow(clippy::unwrap_used)]

use crate::auth::model::Role;
use crate::billing::BillingError;
use crate::billing::model::{PlanId, UsageKind};
use crate::billing::store;
use crate::testkit;

#[tokio::test]
async fn a_new_organisation_is_on_free_with_the_contracts_allowances() {
    let dir = tempfile::tempdir().unwrap();
    let (settings, db) = testkit::sqlite(dir.path()).await;
    let billing = testkit::billing(&settings, &db);
    let admin = testkit::member(&db, Role::Admin).await;
    let view = billing.subscription(&admin).await.unwrap();
    assert_eq!(view.plan, PlanId::Free);
    assert_eq!(view.usage.questions.limit, Some(100));
    assert_eq!(view.usage.storage_bytes.limit, Some(100 * 1024 * 1024));
    assert_eq!(view.usage.members.limit, Some(5));
    assert_eq!(view.usage.members.used, 1, "the admin is a member");
    assert!(view.current_period_end.is_none());
    let student = testkit::member(&db, Role::Student).await;
    assert!(matches!(
        billing.subscription(&student).await,
        Err(BillingError::Forbidden(_))
    ));
    let enterprise = billing.plans().get(PlanId::Enterprise);
    assert_eq!(enterprise.quotas.questions_per_month, None);
    assert_eq!(enterprise.price("RWF"), Some(300_000));
    assert_eq!(enterprise.price("USD"), Some(30_000));
}

#[tokio::test]
async fn questions_stop_at_the_allowance_and_a_repeated_key_counts_once() {
    let dir = tempfile::tempdir().unwrap();
    let (settings, db) = testkit::sqlite(dir.path()).await;
    let billing = testkit::billing(&settings, &db);
    let admin = testkit::member(&db, Role::Admin).await;
    let org = admin.org_id;
    for i in 0..100 {
        billing
            .take_question(org, Some(&format!("k{i}")))
            .await
            .unwrap();
    }
    // A key already counted passes without counting.
    billing.take_question(org, Some("k7")).await.unwrap();
    let refused = billing.take_question(org, Some("k100")).await.unwrap_err();
    let BillingError::QuotaExceeded(detail) = refused else {
        panic!("expected a quota refusal, got {refused:?}");
    };
    assert!(detail.contains("100 questions"), "{detail}");
    assert!(detail.contains("resets at"), "{detail}");
    // The refused key left nothing behind: it counts once room is made.
    billing.give_back_question(org).await.unwrap();
    billing.take_question(org, Some("k100")).await.unwrap();
    let view = billing.view(org).await.unwrap();
    assert_eq!(view.usage.questions.used, 100);
    // Another organisation has its own allowance.
    let other = testkit::member(&db, Role::Admin).await;
    billing.take_question(other.org_id, None).await.unwrap();
}

#[tokio::test]
async fn storage_is_reserved_up_to_the_allowance_and_freed_and_reconciled() {
    let dir = tempfile::tempdir().unwrap();
    let (settings, db) = testkit::sqlite(dir.path()).await;
    let billing = testkit::billing(&settings, &db);
    let admin = testkit::member(&db, Role::Admin).await;
    let org = admin.org_id;
    let limit = 100 * 1024 * 1024;
    billing.reserve_storage(org, limit - 10).await.unwrap();
    assert!(matches!(
        billing.reserve_storage(org, 11).await,
        Err(BillingError::QuotaExceeded(_))
    ));
    billing.reserve_storage(org, 10).await.unwrap();
    billing.release_storage(org, limit).await.unwrap();
    assert_eq!(
        store::counter(&db, org, UsageKind::StorageBytes, "")
            .await
            .unwrap(),
        Some(0)
    );
    // Reconciliation sets the counter from the data (no files here).
    billing.reserve_storage(org, 5000).await.unwrap();
    billing.reconcile_all().await.unwrap();
    assert_eq!(billing.view(org).await.unwrap().usage.storage_bytes.used, 0);
}

#[tokio::test]
async fn members_count_pending_seats_up_to_the_allowance() {
    let dir = tempfile::tempdir().unwrap();
    let (settings, db) = testkit::sqlite(dir.path()).await;
    let billing = testkit::billing(&settings, &db);
    let admin = testkit::member(&db, Role::Admin).await;
    // The admin holds one seat of five; without invitations in the data the
    // refusal path reconciles to 1 first, so reserve through the counter.
    for _ in 0..4 {
        billing.reserve_member(admin.org_id).await.unwrap();
    }
    assert_eq!(
        billing.view(admin.org_id).await.unwrap().usage.members.used,
        5
    );
    // The four seats have no invitation behind them: before refusing, the
    // count is taken again from the data, which frees them.
    billing.reserve_member(admin.org_id).await.unwrap();
    assert_eq!(
        billing.view(admin.org_id).await.unwrap().usage.members.used,
        2
    );
}
