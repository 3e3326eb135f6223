use std::time::Duration;

use bwenge_payments::ProviderError;
use bwenge_payments::fake::{FakeOptions, FakeProviders, Provider, Signing};
use bwenge_payments::stripe::{
    CheckoutRequest, StripeClient, StripeConfig, StripeEvent, StripeEventKind, WebhookError,
    verify_webhook,
};
use serde_json::json;

use crate::receiver::{Received, Receiver};
use crate::{WAIT, http, silent_server};

fn request(key: &str) -> CheckoutRequest {
    CheckoutRequest {
        price_id: "price_basic_usd".into(),
        organisation_id: "org-1".into(),
        payment_id: "pay-1".into(),
        plan: "basic".into(),
        success_url: "https://bwenge.example/billing/done?session={CHECKOUT_SESSION_ID}".into(),
        cancel_url: "https://bwenge.example/billing".into(),
        customer_email: Some("admin@school.example".into()),
        idempotency_key: key.into(),
    }
}

fn verify(fake: &FakeProviders, r: &Received) -> Result<StripeEvent, WebhookError> {
    verify_webhook(
        &r.body,
        r.header("stripe-signature").unwrap_or_default(),
        &fake.options().stripe_webhook_secrets,
        chrono::Utc::now().timestamp(),
        300,
    )
}

async fn started() -> (FakeProviders, Receiver, StripeClient) {
    let fake = FakeProviders::start(FakeOptions::default()).unwrap();
    let receiver = Receiver::start();
    fake.set_stripe_webhook_url(Some(format!("{}/v1/webhooks/stripe", receiver.url)));
    let stripe = StripeClient::new(fake.stripe_config(), http());
    (fake, receiver, stripe)
}

#[tokio::test]
async fn checkout_sessions_are_form_encoded_with_an_idempotency_key() {
    let (fake, _rx, stripe) = started().await;
    let session = stripe
        .create_checkout_session(&request("idem-1"))
        .await
        .unwrap();
    assert!(session.id.starts_with("cs_test_"));
    assert_eq!(
        session.url,
        format!("{}/checkout/{}", fake.stripe_url(), session.id)
    );
    let req = &fake.requests_to(Provider::Stripe, "POST", "/v1/checkout/sessions")[0];
    assert_eq!(req.header("idempotency-key"), Some("idem-1"));
    assert_eq!(
        req.header("authorization"),
        Some("Bearer sk_test_fake_bwenge")
    );
    assert!(
        req.header("content-type")
            .unwrap()
            .starts_with("application/x-www-form-urlencoded")
    );
    for (k, v) in [
        ("mode", "subscription"),
        ("line_items[0][price]", "price_basic_usd"),
        ("line_items[0][quantity]", "1"),
        ("client_reference_id", "org-1"),
        ("metadata[payment_id]", "pay-1"),
        ("metadata[plan]", "basic"),
        ("metadata[organisation_id]", "org-1"),
        ("subscription_data[metadata][payment_id]", "pay-1"),
        ("subscription_data[metadata][plan]", "basic"),
        ("subscription_data[metadata][organisation_id]", "org-1"),
        ("customer_email", "admin@school.example"),
    ] {
        assert_eq!(req.form_value(k).as_deref(), Some(v), "{k}");
    }
    // The hosted page shows the price.
    let page = http().get(&session.url).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(
        html.contains("30.00 USD") && html.contains("basic"),
        "{html}"
    );

    // The same key and parameters give the same session; other parameters are refused.
    let again = stripe
        .create_checkout_session(&request("idem-1"))
        .await
        .unwrap();
    assert_eq!(again, session);
    let other = CheckoutRequest {
        plan: "pro".into(),
        ..request("idem-1")
    };
    assert!(matches!(
        stripe.create_checkout_session(&other).await,
        Err(ProviderError::Rejected { status: 400, .. })
    ));
    let fresh = stripe
        .create_checkout_session(&request("idem-2"))
        .await
        .unwrap();
    assert_ne!(fresh.id, session.id);
}

#[tokio::test]
async fn wrong_key_unknown_price_and_hanging_api_are_errors() {
    let (fake, _rx, _) = started().await;
    let bad = StripeClient::new(
        StripeConfig {
            secret_key: "sk_test_wrong_key_9999".into(),
            ..fake.stripe_config()
        },
        http(),
    );
    let err = bad
        .create_checkout_session(&request("k"))
        .await
        .unwrap_err();
    match &err {
        ProviderError::Rejected {
            status: 401,
            message,
        } => {
            assert!(!message.contains("sk_test_wrong_key_9999"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    let stripe = StripeClient::new(fake.stripe_config(), http());
    let unknown = CheckoutRequest {
        price_id: "price_nope".into(),
        ..request("k2")
    };
    match stripe.create_checkout_session(&unknown).await.unwrap_err() {
        ProviderError::Rejected {
            status: 400,
            message,
        } => assert!(message.contains("resource_missing")),
        other => panic!("{other:?}"),
    }
    let (_hold, url) = silent_server();
    let hung = StripeClient::new(
        StripeConfig {
            base_url: url,
            ..fake.stripe_config()
        },
        http(),
    )
    .with_timeout(Duration::from_millis(300));
    assert!(matches!(
        hung.create_checkout_session(&request("k3")).await,
        Err(ProviderError::Unreachable(_))
    ));
    assert_eq!(
        stripe.retrieve_subscription("sub_missing").await,
        Err(ProviderError::NotFound)
    );
}

#[tokio::test]
async fn paying_sends_signed_completed_then_paid_events() {
    let (fake, rx, stripe) = started().await;
    let session = stripe.create_checkout_session(&request("k")).await.unwrap();
    // The admin pays on the hosted page and is sent back to success_url.
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let paid = no_redirects
        .post(format!("{}/pay", session.url))
        .send()
        .await
        .unwrap();
    assert_eq!(paid.status(), 303);
    assert_eq!(
        paid.headers()["location"],
        format!("https://bwenge.example/billing/done?session={}", session.id).as_str()
    );
    let got = rx.wait_for(2, WAIT).await;
    assert_eq!(got.len(), 2);
    let completed = verify(&fake, &got[0]).unwrap();
    assert_eq!(completed.kind(), StripeEventKind::CheckoutSessionCompleted);
    assert_eq!(completed.object_id(), Some(session.id.as_str()));
    assert_eq!(completed.client_reference_id(), Some("org-1"));
    assert_eq!(completed.payment_id(), Some("pay-1"));
    assert_eq!(completed.plan(), Some("basic"));
    assert_eq!(completed.amount(), Some(3000));
    assert_eq!(completed.currency().as_deref(), Some("USD"));
    assert_eq!(completed.payment_status(), Some("paid"));
    let sub_id = completed.subscription_id().unwrap().to_owned();
    let invoice = verify(&fake, &got[1]).unwrap();
    assert_eq!(invoice.kind(), StripeEventKind::InvoicePaid);
    assert_eq!(invoice.subscription_id(), Some(sub_id.as_str()));
    assert_eq!(invoice.customer_id(), completed.customer_id());
    assert_eq!(invoice.amount(), Some(3000));
    assert_eq!(invoice.plan(), Some("basic"));
    assert_eq!(invoice.organisation_id(), Some("org-1"));
    let (start, end) = (
        invoice.period_start().unwrap(),
        invoice.period_end().unwrap(),
    );
    assert!(
        (28 * 86_400..=31 * 86_400).contains(&(end - start)),
        "a month: {start}..{end}"
    );
    let sub = stripe.retrieve_subscription(&sub_id).await.unwrap();
    assert_eq!(
        (sub.status.as_str(), sub.current_period_end),
        ("active", Some(end))
    );
    // A session is paid once.
    assert!(fake.complete_checkout(&session.id).await.is_err());
}

#[tokio::test]
async fn bad_signatures_are_refused_and_replays_keep_their_id() {
    let (fake, rx, stripe) = started().await;
    let session = stripe.create_checkout_session(&request("k")).await.unwrap();
    fake.complete_checkout(&session.id).await.unwrap();
    let object = json!({"id": "in_x", "object": "invoice", "amount_paid": 3000, "currency": "usd"});
    let cases = [
        (Signing::WrongSecret, WebhookError::NoValidSignature),
        (
            Signing::Stale { seconds: 301 },
            WebhookError::OutsideTolerance,
        ),
        (
            Signing::Future { seconds: 301 },
            WebhookError::OutsideTolerance,
        ),
        (Signing::Unsigned, WebhookError::MalformedHeader),
        (Signing::Malformed, WebhookError::MalformedHeader),
        (Signing::TamperedPayload, WebhookError::NoValidSignature),
    ];
    for (signing, _) in &cases {
        fake.send_stripe_event("invoice.paid", object.clone(), signing.clone())
            .await
            .unwrap();
    }
    let got = rx.wait_for(2 + cases.len(), WAIT).await;
    for (i, (signing, expected)) in cases.iter().enumerate() {
        assert_eq!(
            verify(&fake, &got[2 + i]).unwrap_err(),
            *expected,
            "{signing:?}"
        );
    }
    // Stripe's retry of the first event: valid again, same id.
    let first_id = verify(&fake, &got[0]).unwrap().id;
    fake.resend_stripe_event(&first_id, Signing::Valid)
        .await
        .unwrap();
    let got = rx.wait_for(9, WAIT).await;
    assert_eq!(verify(&fake, &got[8]).unwrap().id, first_id);
    assert_eq!(got[8].body, got[0].body);
}

#[tokio::test]
async fn rotated_secrets_sign_with_every_v1() {
    let fake = FakeProviders::start(FakeOptions {
        stripe_webhook_secrets: vec!["whsec_old".into(), "whsec_new".into()],
        ..FakeOptions::default()
    })
    .unwrap();
    let rx = Receiver::start();
    fake.set_stripe_webhook_url(Some(rx.url.clone()));
    fake.send_stripe_event("invoice.paid", json!({"object": "invoice"}), Signing::Valid)
        .await
        .unwrap();
    let got = rx.wait_for(1, WAIT).await;
    let header = got[0].header("stripe-signature").unwrap();
    assert_eq!(header.matches("v1=").count(), 2);
    let now = chrono::Utc::now().timestamp();
    for secrets in [vec!["whsec_new".to_owned()], vec!["whsec_old".to_owned()]] {
        assert!(verify_webhook(&got[0].body, header, &secrets, now, 300).is_ok());
    }
    assert_eq!(
        verify_webhook(&got[0].body, header, &["whsec_other".to_owned()], now, 300).unwrap_err(),
        WebhookError::NoValidSignature
    );
}

#[tokio::test]
async fn renewals_failures_and_cancellation_send_their_events() {
    let (fake, rx, stripe) = started().await;
    let session = stripe.create_checkout_session(&request("k")).await.unwrap();
    fake.complete_checkout(&session.id).await.unwrap();
    let sub_id = fake.stripe_session(&session.id).unwrap()["subscription"]
        .as_str()
        .unwrap()
        .to_owned();
    let first_end = fake.stripe_subscription(&sub_id).unwrap()["current_period_end"]
        .as_i64()
        .unwrap();

    fake.renew_subscription(&sub_id).await.unwrap();
    fake.fail_renewal(&sub_id).await.unwrap();
    // Cancelling through the API: the plan runs to the end of the period.
    let cancelled = stripe
        .cancel_at_period_end(&sub_id, "cancel-1")
        .await
        .unwrap();
    assert!(cancelled.cancel_at_period_end);
    let cancel_req = fake.requests_to(
        Provider::Stripe,
        "POST",
        &format!("/v1/subscriptions/{sub_id}"),
    );
    assert_eq!(cancel_req[0].header("idempotency-key"), Some("cancel-1"));
    assert_eq!(
        cancel_req[0].form_value("cancel_at_period_end").as_deref(),
        Some("true")
    );
    let got = rx.wait_for(7, WAIT).await;
    fake.delete_subscription(&sub_id).await.unwrap();
    let got_all = rx.wait_for(8, WAIT).await;
    assert_eq!(got.len(), 7);
    let events: Vec<StripeEvent> = got_all.iter().map(|r| verify(&fake, r).unwrap()).collect();
    let kinds: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "checkout.session.completed",
            "invoice.paid",
            "customer.subscription.updated",
            "invoice.paid",
            "invoice.payment_failed",
            "customer.subscription.updated",
            "customer.subscription.updated",
            "customer.subscription.deleted",
        ]
    );
    // Renewal: the next period starts where the first ended.
    assert_eq!(events[2].period_start(), Some(first_end));
    assert_eq!(events[3].period_start(), Some(first_end));
    assert_eq!(events[3].subscription_id(), Some(sub_id.as_str()));
    // Failure: amount due, subscription past due.
    assert_eq!(events[4].amount(), Some(3000));
    assert_eq!(events[4].amount_paid(), Some(0));
    assert_eq!(events[5].subscription_status(), Some("past_due"));
    assert_eq!(events[6].cancel_at_period_end(), Some(true));
    assert_eq!(events[7].subscription_status(), Some("canceled"));
    assert_eq!(events[7].plan(), Some("basic"));
    assert_eq!(events[7].organisation_id(), Some("org-1"));
}

#[tokio::test]
async fn the_api_speaks_stripe_to_any_client() {
    let (fake, rx, stripe) = started().await;
    let api = fake.stripe_url();
    let raw = http();
    // Basic auth with the key as user name works as well as Bearer.
    let form = [
        ("mode", "subscription"),
        ("line_items[0][price]", "price_pro_usd"),
        ("success_url", "https://bwenge.example/ok"),
    ];
    let first = raw
        .post(format!("{api}/v1/checkout/sessions"))
        .basic_auth("sk_test_fake_bwenge", None::<&str>)
        .header("Idempotency-Key", "raw-1")
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), 200);
    assert!(first.headers().get("idempotent-replayed").is_none());
    let session: serde_json::Value = first.json().await.unwrap();
    assert_eq!(session["amount_total"], 10000);
    assert_eq!(session["currency"], "usd");
    let replay = raw
        .post(format!("{api}/v1/checkout/sessions"))
        .bearer_auth("sk_test_fake_bwenge")
        .header("Idempotency-Key", "raw-1")
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
    assert_eq!(
        replay.json::<serde_json::Value>().await.unwrap()["id"],
        session["id"]
    );
    // Unknown parameters and JSON bodies are refused.
    let unknown = raw
        .post(format!("{api}/v1/checkout/sessions"))
        .bearer_auth("sk_test_fake_bwenge")
        .form(&[
            ("mode", "subscription"),
            ("line_items[0][price]", "price_pro_usd"),
            ("success_url", "https://x.example"),
            ("colour", "blue"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 400);
    assert_eq!(
        unknown.json::<serde_json::Value>().await.unwrap()["error"]["code"],
        "parameter_unknown"
    );
    let json_body = raw
        .post(format!("{api}/v1/checkout/sessions"))
        .bearer_auth("sk_test_fake_bwenge")
        .json(&serde_json::json!({"mode": "subscription"}))
        .send()
        .await
        .unwrap();
    assert_eq!(json_body.status(), 400);
    let no_key = raw
        .get(format!("{api}/v1/checkout/sessions/x"))
        .send()
        .await
        .unwrap();
    assert_eq!(no_key.status(), 401);
    // Reading the session back.
    let id = session["id"].as_str().unwrap();
    let read: serde_json::Value = raw
        .get(format!("{api}/v1/checkout/sessions/{id}"))
        .bearer_auth("sk_test_fake_bwenge")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(read["status"], "open");

    // Pay, then cancel the subscription at once with DELETE: deleted event.
    fake.complete_checkout(id).await.unwrap();
    let page = raw
        .get(session["url"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("is complete"), "{page}");
    let sub_id = fake.stripe_session(id).unwrap()["subscription"]
        .as_str()
        .unwrap()
        .to_owned();
    let deleted = raw
        .delete(format!("{api}/v1/subscriptions/{sub_id}"))
        .bearer_auth("sk_test_fake_bwenge")
        .send()
        .await
        .unwrap();
    assert_eq!(
        deleted.json::<serde_json::Value>().await.unwrap()["status"],
        "canceled"
    );
    let got = rx.wait_for(3, WAIT).await;
    assert_eq!(
        verify(&fake, &got[2]).unwrap().kind(),
        StripeEventKind::SubscriptionDeleted
    );
    let after = stripe.retrieve_subscription(&sub_id).await.unwrap();
    assert_eq!(after.status, "canceled");
}

#[tokio::test]
async fn an_abandoned_checkout_expires() {
    let (fake, rx, stripe) = started().await;
    let session = stripe.create_checkout_session(&request("k")).await.unwrap();
    fake.expire_checkout(&session.id).await.unwrap();
    let got = rx.wait_for(1, WAIT).await;
    let e = verify(&fake, &got[0]).unwrap();
    assert_eq!(e.event_type, "checkout.session.expired");
    assert_eq!(e.payment_id(), Some("pay-1"));
    assert_eq!(
        fake.complete_checkout(&session.id).await.unwrap_err(),
        bwenge_payments::fake::FakeError::SessionNotOpen
    );
}
