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
async fn a_plan_change_moves_the_question_allowance_at_the_next_question() {
    let dir = tempfile::tempdir().unwrap();
    let (mut settings, db) = testkit::sqlite(dir.path()).await;
    settings.billing.plans.free.questions_per_month = 2;
    settings.billing.plans.basic.questions_per_month = 3;
    settings.billing.plans.pro.questions_per_month = 0;
    let billing = testkit::billing(&settings, &db);
    let admin = testkit::member(&db, Role::Admin).await;
    let org = admin.org_id;
    // No subscription row (an organisation from before billing): the
    // free plan's allowance.
    crate::on_db_write!(&db, |pool| sqlx::query(
        "DELETE FROM subscriptions WHERE organization_id = $1"
    )
    .bind(org)
    .execute(pool)
    .await
    .map(|_| ())
    .unwrap());
    assert!(store::subscription(&db, org).await.unwrap().is_none());
    billing.take_question(org, Some("a")).await.unwrap();
    billing.take_question(org, None).await.unwrap();
    let refused = billing.take_question(org, Some("b")).await.unwrap_err();
    let BillingError::QuotaExceeded(detail) = refused else {
        panic!("expected a quota refusal, got {refused:?}");
    };
    assert!(detail.contains("free plan (2 questions"), "{detail}");
    // Moves the organisation to `plan` outright (as a renewal or Stripe's
    // event would), from the row as it stands.
    let move_to = async |plan| {
        let seen = store::subscription(&db, org).await.unwrap().unwrap();
        let change = store::SubscriptionChange {
            plan,
            status: crate::billing::model::SubscriptionStatus::Active,
            current_period_start: chrono::Utc::now(),
            current_period_end: None,
            cancel_at_period_end: false,
            past_due_since: None,
            clear_payer: false,
        };
        let now = chrono::Utc::now();
        assert!(
            store::change_subscription(&db, org, seen.updated_at, &change, now)
                .await
                .unwrap()
        );
    };
    // Upgraded: the next question counts against basic's 3.
    move_to(PlanId::Basic).await;
    billing.take_question(org, Some("b")).await.unwrap();
    assert!(billing.take_question(org, Some("c")).await.is_err());
    // A plan with no questions refuses the first, and keeps no key.
    move_to(PlanId::Pro).await;
    let view = billing.view(org).await.unwrap();
    assert_eq!(view.usage.questions.used, 3);
    assert!(billing.take_question(org, Some("c")).await.is_err());
    assert_eq!(billing.view(org).await.unwrap().usage.questions.used, 3);
    // Unlimited: counted past every allowance, the refused key at last.
    move_to(PlanId::Enterprise).await;
    billing.take_question(org, Some("c")).await.unwrap();
    billing.take_question(org, Some("c")).await.unwrap();
    assert_eq!(billing.view(org).await.unwrap().usage.questions.used, 4);
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

/// Renewal, grace and the return to free on a clock that tests move: a
/// mobile-money plan asks the payer's phone (and mails the admins) three
/// days before its end, once; unpaid it is past due at the end, and back
/// on free seven days later, its data kept.
#[actix_web::test]
async fn an_unpaid_mobile_money_plan_is_renewed_then_past_due_then_free() {
    use bwenge_payments::fake::{FakeOptions, FakeProviders, PayerScript, Provider};
    use std::time::Duration;

    use crate::billing::model::{PaymentStatus, SubscriptionStatus};
    use crate::billing::payments::Checkout;

    let fakes = FakeProviders::start(FakeOptions::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (mut settings, db) = testkit::sqlite(dir.path()).await;
    let momo = fakes.momo_config(None);
    let b = &mut settings.billing;
    b.mtn_momo.enabled = true;
    b.mtn_momo.base_url = momo.base_url;
    b.mtn_momo.subscription_key = crate::config::Secret::new(momo.subscription_key);
    b.mtn_momo.api_user = momo.api_user;
    b.mtn_momo.api_key = crate::config::Secret::new(momo.api_key);
    let mailer = crate::mail::from_settings(&settings.mail, &settings.data_dir).unwrap();
    let clock = crate::clock::Clock::following_tokio();
    let billing = crate::billing::BillingService::new(crate::billing::BillingDeps {
        db: db.clone(),
        settings: settings.billing.clone(),
        clock,
        mailer,
    });
    let admin = testkit::member(&db, Role::Admin).await;
    let org = admin.org_id;
    let phone = "+250788200001";
    let p = billing
        .checkout(
            &admin,
            "127.0.0.1",
            Checkout {
                plan: "basic",
                method: "mtn_momo",
                phone: Some(phone),
            },
        )
        .await
        .unwrap();
    assert_eq!(
        billing.payment(&admin, p.id).await.unwrap().status,
        PaymentStatus::Succeeded
    );
    let sub = billing.subscription_row(org).await.unwrap();
    assert_eq!(sub.plan, PlanId::Basic);
    let end = sub.current_period_end.unwrap();
    // The paid plan's room is used: 200 MiB of storage (free allows 100).
    billing.reserve_storage(org, 200 << 20).await.unwrap();
    // From now on the payer does not answer.
    fakes.script_payer(phone, PayerScript::stay_pending());
    let requests = || {
        fakes
            .requests_to(Provider::Momo, "POST", "/collection/v1_0/requesttopay")
            .len()
    };
    assert_eq!(requests(), 1);

    async fn move_to(clock: &crate::clock::Clock, at: chrono::DateTime<chrono::Utc>) {
        let by = (at - clock.now()).to_std().unwrap_or_default();
        tokio::time::pause();
        tokio::time::advance(by).await;
        tokio::time::resume();
    }

    // Four days before the end: nothing yet.
    move_to(&clock, end - chrono::Duration::days(4)).await;
    billing.run_renewals().await.unwrap();
    assert_eq!(requests(), 1);
    // Three days before: one request to the phone, one mail; once.
    move_to(
        &clock,
        end - chrono::Duration::days(3) + chrono::Duration::minutes(1),
    )
    .await;
    billing.run_renewals().await.unwrap();
    billing.run_renewals().await.unwrap();
    assert_eq!(requests(), 2);
    let renewal = store::list_payments(
        &db,
        org,
        crate::pagination::Page {
            limit: 10,
            after: None,
        },
    )
    .await
    .unwrap();
    assert!(renewal[0].renewal && renewal[0].status == PaymentStatus::Pending);
    let mut mailed = false;
    for _ in 0..100 {
        let mails: Vec<String> = std::fs::read_dir(dir.path().join("mail"))
            .map(|rd| {
                rd.filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok())
                    .collect()
            })
            .unwrap_or_default();
        if mails.iter().any(|m| m.contains("renews soon")) {
            mailed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(mailed, "the admins were told of the renewal");
    // The end passes unpaid: past due, the plan still runs.
    move_to(&clock, end + chrono::Duration::minutes(1)).await;
    billing.run_renewals().await.unwrap();
    let sub = billing.subscription_row(org).await.unwrap();
    assert_eq!(sub.status, SubscriptionStatus::PastDue);
    assert_eq!(sub.plan, PlanId::Basic);
    // Six days of grace: still basic. Seven: free, nothing deleted.
    move_to(&clock, end + chrono::Duration::days(6)).await;
    billing.run_renewals().await.unwrap();
    assert_eq!(
        billing.subscription_row(org).await.unwrap().plan,
        PlanId::Basic
    );
    move_to(
        &clock,
        end + chrono::Duration::days(7) + chrono::Duration::minutes(2),
    )
    .await;
    billing.run_renewals().await.unwrap();
    let sub = billing.subscription_row(org).await.unwrap();
    assert_eq!(sub.plan, PlanId::Free);
    assert_eq!(sub.status, SubscriptionStatus::Active);
    assert!(sub.current_period_end.is_none());
    assert_eq!(billing.view(org).await.unwrap().usage.members.used, 1);
    // Over free's storage allowance: kept, but nothing new until paid.
    assert_eq!(
        billing.view(org).await.unwrap().usage.storage_bytes.used,
        200 << 20
    );
    assert!(matches!(
        billing.reserve_storage(org, 1).await,
        Err(BillingError::QuotaExceeded(_))
    ));
}
