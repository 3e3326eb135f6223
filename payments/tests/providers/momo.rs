use std::time::Duration;

use bwenge_payments::fake::{FakeOptions, FakeProviders, Outcome, PayerScript, Provider};
use bwenge_payments::momo::{MomoClient, MomoConfig};
use bwenge_payments::{ProviderError, ProviderStatus};
use serde_json::json;
use uuid::Uuid;

use crate::receiver::Receiver;
use crate::{WAIT, closed_port_url, http, silent_server};

const PHONE: &str = "+250788123456";

fn client(fake: &FakeProviders, callback: Option<String>) -> MomoClient {
    MomoClient::new(fake.momo_config(callback), http())
}

#[tokio::test]
async fn one_token_serves_many_calls() {
    let fake = FakeProviders::start(FakeOptions::default()).unwrap();
    let momo = client(&fake, None);
    for _ in 0..5 {
        let r = Uuid::new_v4();
        momo.request_to_pay(r, "pay-1", 30000, "RWF", PHONE, "Bwenge basic")
            .await
            .unwrap();
        momo.status(r).await.unwrap();
    }
    assert_eq!(fake.token_requests(Provider::Momo), 1);
    let token = &fake.requests_to(Provider::Momo, "POST", "/collection/token/")[0];
    let o = fake.options();
    assert_eq!(
        token.header("ocp-apim-subscription-key"),
        Some(o.momo_subscription_key.as_str())
    );
    use base64::Engine as _;
    let basic = base64::engine::general_purpose::STANDARD
        .encode(format!("{}:{}", o.momo_api_user, o.momo_api_key));
    assert_eq!(
        token.header("authorization"),
        Some(format!("Basic {basic}").as_str())
    );
}

#[tokio::test]
async fn concurrent_first_calls_share_one_token_request() {
    let fake = FakeProviders::start(FakeOptions::default()).unwrap();
    let momo = std::sync::Arc::new(client(&fake, None));
    let mut tasks = Vec::new();
    for i in 0..10 {
        let momo = momo.clone();
        tasks.push(tokio::spawn(async move {
            momo.request_to_pay(Uuid::new_v4(), &format!("p{i}"), 100, "RWF", PHONE, "x")
                .await
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(fake.token_requests(Provider::Momo), 1);
    assert_eq!(
        fake.requests_to(Provider::Momo, "POST", "/collection/v1_0/requesttopay")
            .len(),
        10
    );
}

#[tokio::test]
async fn an_expired_token_is_replaced() {
    let fake = FakeProviders::start(FakeOptions {
        token_expires_in: Duration::from_secs(1),
        ..FakeOptions::default()
    })
    .unwrap();
    let momo = client(&fake, None);
    let r = Uuid::new_v4();
    momo.request_to_pay(r, "p", 100, "RWF", PHONE, "x")
        .await
        .unwrap();
    // The token lives one second (used 0.9 s): wait it out.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    momo.status(r).await.unwrap();
    assert_eq!(fake.token_requests(Provider::Momo), 2);
}

#[tokio::test]
async fn a_revoked_token_is_refreshed_once_on_401() {
    let fake = FakeProviders::start(FakeOptions::default()).unwrap();
    let momo = client(&fake, None);
    let r = Uuid::new_v4();
    momo.request_to_pay(r, "p", 100, "RWF", PHONE, "x")
        .await
        .unwrap();
    fake.expire_tokens();
    let p = momo.status(r).await.unwrap();
    assert_eq!(p.status, ProviderStatus::Succeeded);
    assert_eq!(fake.token_requests(Provider::Momo), 2);
    let lookups = fake.requests_to(
        Provider::Momo,
        "GET",
        &format!("/collection/v1_0/requesttopay/{r}"),
    );
    assert_eq!(lookups.len(), 2, "refused once, then answered");
}

#[tokio::test]
async fn request_to_pay_sends_momo_headers_and_body() {
    let fake = FakeProviders::start(FakeOptions::default()).unwrap();
    let momo = client(
        &fake,
        Some("https://bwenge.example/v1/webhooks/mtn-momo".into()),
    );
    let r = Uuid::new_v4();
    momo.request_to_pay(r, "payment-42", 30000, "RWF", PHONE, "Bwenge: plan basic")
        .await
        .unwrap();
    let req = &fake.requests_to(Provider::Momo, "POST", "/collection/v1_0/requesttopay")[0];
    assert_eq!(req.header("x-reference-id"), Some(r.to_string().as_str()));
    assert_eq!(req.header("x-target-environment"), Some("sandbox"));
    assert_eq!(
        req.header("x-callback-url"),
        Some("https://bwenge.example/v1/webhooks/mtn-momo")
    );
    assert_eq!(
        req.header("ocp-apim-subscription-key"),
        Some(fake.options().momo_subscription_key.as_str())
    );
    assert!(req.header("authorization").unwrap().starts_with("Bearer "));
    assert_eq!(
        req.json().unwrap(),
        json!({"amount": "30000", "currency": "RWF", "externalId": "payment-42",
               "payer": {"partyIdType": "MSISDN", "partyId": "250788123456"},
               "payerMessage": "Bwenge: plan basic", "payeeNote": "Bwenge: plan basic"})
    );
    // Without a callback URL, no X-Callback-Url.
    let quiet = client(&fake, None);
    quiet
        .request_to_pay(Uuid::new_v4(), "p", 1, "RWF", PHONE, "x")
        .await
        .unwrap();
    let last = fake.requests_to(Provider::Momo, "POST", "/collection/v1_0/requesttopay");
    assert_eq!(last[1].header("x-callback-url"), None);
}

#[tokio::test]
async fn statuses_map_for_each_payer_outcome() {
    let fake = FakeProviders::start(FakeOptions::default()).unwrap();
    fake.script_payer("250788000001", PayerScript::fail("APPROVAL_REJECTED"));
    fake.script_payer("250788000002", PayerScript::stay_pending());
    let momo = client(&fake, None);
    let ok = Uuid::new_v4();
    let no = Uuid::new_v4();
    let wait = Uuid::new_v4();
    momo.request_to_pay(ok, "a", 30000, "RWF", PHONE, "x")
        .await
        .unwrap();
    momo.request_to_pay(no, "b", 30000, "RWF", "+250788000001", "x")
        .await
        .unwrap();
    momo.request_to_pay(wait, "c", 30000, "RWF", "250788000002", "x")
        .await
        .unwrap();

    let p = momo.status(ok).await.unwrap();
    assert_eq!(p.status, ProviderStatus::Succeeded);
    assert_eq!(
        (p.amount, p.currency.as_deref()),
        (Some(30000), Some("RWF"))
    );
    assert!(!p.provider_reference.is_empty());
    assert_eq!(
        momo.status(no).await.unwrap().status,
        ProviderStatus::Failed {
            reason: "APPROVAL_REJECTED".into()
        }
    );
    let pending = momo.status(wait).await.unwrap();
    assert_eq!(pending.status, ProviderStatus::Pending);
    assert_eq!(pending.provider_reference, "");
    // The payer approves later.
    fake.settle_momo(wait, Outcome::Succeed).unwrap();
    assert_eq!(
        momo.status(wait).await.unwrap().status,
        ProviderStatus::Succeeded
    );
}

#[tokio::test]
async fn usd_amounts_round_trip_in_cents() {
    let fake = FakeProviders::start(FakeOptions::default()).unwrap();
    let momo = client(&fake, None);
    let r = Uuid::new_v4();
    momo.request_to_pay(r, "p", 3050, "USD", PHONE, "x")
        .await
        .unwrap();
    let req = &fake.requests_to(Provider::Momo, "POST", "/collection/v1_0/requesttopay")[0];
    assert_eq!(req.json().unwrap()["amount"], "30.50");
    assert_eq!(fake.momo_payment(r).unwrap().amount, 3050);
    let p = momo.status(r).await.unwrap();
    assert_eq!((p.amount, p.currency.as_deref()), (Some(3050), Some("USD")));
}

#[tokio::test]
async fn a_different_amount_or_currency_reported_is_visible() {
    let fake = FakeProviders::start(FakeOptions::default()).unwrap();
    fake.script_payer(PHONE, PayerScript::succeed().reporting(100, "UGX"));
    let momo = client(&fake, None);
    let r = Uuid::new_v4();
    momo.request_to_pay(r, "p", 30000, "RWF", PHONE, "x")
        .await
        .unwrap();
    let p = momo.status(r).await.unwrap();
    assert_eq!(p.status, ProviderStatus::Succeeded);
    assert_eq!((p.amount, p.currency.as_deref()), (Some(100), Some("UGX")));
}

#[tokio::test]
async fn wrong_credentials_are_refused_without_leaking_them() {
    let fake = FakeProviders::start(FakeOptions::default()).unwrap();
    let good = fake.momo_config(None);
    for config in [
        MomoConfig {
            api_key: "wrong-api-key-123".into(),
            ..good.clone()
        },
        MomoConfig {
            subscription_key: "wrong-subscription-key".into(),
            ..good.clone()
        },
    ] {
        let momo = MomoClient::new(config, http());
        let err = momo
            .request_to_pay(Uuid::new_v4(), "p", 100, "RWF", PHONE, "x")
            .await
            .unwrap_err();
        match &err {
            ProviderError::Rejected {
                status: 401,
                message,
            } => {
                assert!(!message.contains("wrong-"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        assert!(!err.to_string().contains("wrong-"));
    }
    assert!(
        fake.requests_to(Provider::Momo, "POST", "/collection/v1_0/requesttopay")
            .is_empty()
    );
    // A wrong target environment is refused too.
    let momo = MomoClient::new(
        MomoConfig {
            target_environment: "mtnrwanda".into(),
            ..good
        },
        http(),
    );
    assert!(matches!(
        momo.request_to_pay(Uuid::new_v4(), "p", 100, "RWF", PHONE, "x")
            .await,
        Err(ProviderError::Rejected { status: 403, .. })
    ));
}

#[tokio::test]
async fn a_slow_or_absent_provider_is_unreachable() {
    let fake = FakeProviders::start(FakeOptions::default()).unwrap();
    fake.script_payer(
        PHONE,
        PayerScript::succeed().answering_after(Duration::from_secs(5)),
    );
    let momo = client(&fake, None).with_timeout(Duration::from_millis(300));
    let r = Uuid::new_v4();
    let err = momo
        .request_to_pay(r, "p", 100, "RWF", PHONE, "x")
        .await
        .unwrap_err();
    assert!(matches!(err, ProviderError::Unreachable(_)), "{err:?}");
    assert!(err.is_transient());

    let (_hold, url) = silent_server();
    let hung = MomoClient::new(
        MomoConfig {
            base_url: url,
            ..fake.momo_config(None)
        },
        http(),
    )
    .with_timeout(Duration::from_millis(300));
    assert!(matches!(
        hung.status(r).await,
        Err(ProviderError::Unreachable(_))
    ));

    let closed = MomoClient::new(
        MomoConfig {
            base_url: closed_port_url(),
            ..fake.momo_config(None)
        },
        http(),
    );
    assert!(matches!(
        closed.status(r).await,
        Err(ProviderError::Unreachable(_))
    ));

    fake.set_unavailable(Provider::Momo, true);
    let down = client(&fake, None);
    let err = down.status(r).await.unwrap_err();
    assert!(matches!(err, ProviderError::Rejected { status: 503, .. }) && err.is_transient());
}

#[tokio::test]
async fn duplicates_unknown_references_and_bad_amounts_are_refused() {
    let fake = FakeProviders::start(FakeOptions::default()).unwrap();
    let momo = client(&fake, None);
    let r = Uuid::new_v4();
    momo.request_to_pay(r, "p", 100, "RWF", PHONE, "x")
        .await
        .unwrap();
    assert!(matches!(
        momo.request_to_pay(r, "p", 100, "RWF", PHONE, "x").await,
        Err(ProviderError::Rejected { status: 409, .. })
    ));
    assert_eq!(
        momo.status(Uuid::new_v4()).await,
        Err(ProviderError::NotFound)
    );
    assert!(matches!(
        momo.request_to_pay(Uuid::new_v4(), "p", 0, "RWF", PHONE, "x")
            .await,
        Err(ProviderError::Protocol(_))
    ));
    assert!(matches!(
        momo.request_to_pay(Uuid::new_v4(), "p", 100, "XYZ", PHONE, "x")
            .await,
        Err(ProviderError::Protocol(_))
    ));
    fake.script_payer(
        "250788000009",
        PayerScript::succeed().rejecting(500, "INTERNAL_PROCESSING_ERROR"),
    );
    assert!(matches!(
        momo.request_to_pay(Uuid::new_v4(), "p", 100, "RWF", "250788000009", "x")
            .await,
        Err(ProviderError::Rejected { status: 500, .. })
    ));
}

#[tokio::test]
async fn callbacks_arrive_duplicated_and_out_of_order() {
    let fake = FakeProviders::start(FakeOptions::default()).unwrap();
    let receiver = Receiver::start();
    fake.script_payer(
        PHONE,
        PayerScript::succeed().with_callbacks(2).out_of_order(),
    );
    let momo = client(
        &fake,
        Some(format!("{}/v1/webhooks/mtn-momo", receiver.url)),
    );
    let r = Uuid::new_v4();
    momo.request_to_pay(r, "payment-7", 30000, "RWF", PHONE, "x")
        .await
        .unwrap();
    let got = receiver.wait_for(3, WAIT).await;
    assert_eq!(got.len(), 3);
    assert!(
        got.iter()
            .all(|c| c.method == "POST" && c.path == "/v1/webhooks/mtn-momo")
    );
    let statuses: Vec<String> = got
        .iter()
        .map(|c| c.json()["status"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(statuses, ["SUCCESSFUL", "SUCCESSFUL", "PENDING"]);
    let cb = bwenge_payments::momo::parse_callback(&got[0].body).unwrap();
    assert_eq!(cb.external_id.as_deref(), Some("payment-7"));
    assert_eq!(got[0].json()["amount"], "30000");
    let sent = fake.wait_for_deliveries(3, WAIT).await;
    assert!(
        sent.iter()
            .all(|d| d.status == Some(200) && d.provider == Provider::Momo)
    );
    // A pending payer gets no callback until settled; a failure is called back.
    fake.script_payer("250788000003", PayerScript::stay_pending());
    let w = Uuid::new_v4();
    momo.request_to_pay(w, "payment-8", 100, "RWF", "250788000003", "x")
        .await
        .unwrap();
    fake.settle_momo(
        w,
        Outcome::Fail {
            reason: "EXPIRED".into(),
        },
    )
    .unwrap();
    let got = receiver.wait_for(4, WAIT).await;
    assert_eq!(got[3].json()["status"], "FAILED");
    assert_eq!(got[3].json()["reason"], "EXPIRED");
    assert_eq!(got[3].json()["externalId"], "payment-8");
}

#[tokio::test]
async fn a_forged_callback_does_not_change_what_the_provider_says() {
    let fake = FakeProviders::start(FakeOptions {
        momo_callback_method: bwenge_payments::fake::CallbackMethod::Put,
        ..FakeOptions::default()
    })
    .unwrap();
    let receiver = Receiver::start();
    fake.script_payer(PHONE, PayerScript::stay_pending());
    let url = format!("{}/v1/webhooks/mtn-momo", receiver.url);
    let momo = client(&fake, Some(url.clone()));
    let r = Uuid::new_v4();
    momo.request_to_pay(r, "payment-9", 30000, "RWF", PHONE, "x")
        .await
        .unwrap();
    let d = fake
        .forge_momo_callback(&url, json!({"externalId": "payment-9", "status": "SUCCESSFUL", "amount": "30000", "currency": "RWF", "financialTransactionId": "666"}))
        .await;
    assert_eq!(d.status, Some(200));
    let got = receiver.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].method, "PUT");
    assert_eq!(got[0].json()["status"], "SUCCESSFUL");
    // The lookup the receiver must do still says pending.
    assert_eq!(
        momo.status(r).await.unwrap().status,
        ProviderStatus::Pending
    );
    // A resent (duplicate) callback carries the real status.
    fake.resend_momo_callback(r).await.unwrap();
    assert_eq!(receiver.received()[1].json()["status"], "PENDING");
}

#[tokio::test]
async fn the_fake_refuses_what_mtn_refuses() {
    let fake = FakeProviders::start(FakeOptions::default()).unwrap();
    let momo = client(&fake, None);
    // A valid token, obtained through the client.
    momo.request_to_pay(Uuid::new_v4(), "p", 1, "RWF", PHONE, "x")
        .await
        .unwrap();
    let token = fake.requests_to(Provider::Momo, "POST", "/collection/v1_0/requesttopay")[0]
        .header("authorization")
        .unwrap()
        .to_owned();
    let o = fake.options().clone();
    let send = |reference: &str, body: serde_json::Value| {
        http()
            .post(format!("{}/collection/v1_0/requesttopay", fake.momo_url()))
            .header("Authorization", &token)
            .header("X-Reference-Id", reference)
            .header("X-Target-Environment", &o.momo_target_environment)
            .header("Ocp-Apim-Subscription-Key", &o.momo_subscription_key)
            .json(&body)
            .send()
    };
    let good = json!({"amount": "100", "currency": "RWF", "externalId": "e",
                      "payer": {"partyIdType": "MSISDN", "partyId": "250788123456"},
                      "payerMessage": "m", "payeeNote": "n"});
    let fresh = || Uuid::new_v4().to_string();
    let cases = [
        (
            "not-a-uuid".to_owned(),
            good.clone(),
            "INVALID_REFERENCE_ID",
        ),
        (
            fresh(),
            json!({"amount": 100, "currency": "RWF", "externalId": "e", "payer": {"partyIdType": "MSISDN", "partyId": "250788123456"}}),
            "ERROR_BAD_REQUEST",
        ),
        (
            fresh(),
            json!({"amount": "100.5", "currency": "RWF", "externalId": "e", "payer": {"partyIdType": "MSISDN", "partyId": "250788123456"}}),
            "ERROR_BAD_REQUEST",
        ),
        (
            fresh(),
            json!({"amount": "100", "currency": "rwf", "externalId": "e", "payer": {"partyIdType": "MSISDN", "partyId": "250788123456"}}),
            "INVALID_CURRENCY",
        ),
        (
            fresh(),
            json!({"amount": "100", "currency": "RWF", "externalId": "e", "payer": {"partyIdType": "EMAIL", "partyId": "a@b.c"}}),
            "PAYER_NOT_FOUND",
        ),
        (
            fresh(),
            json!({"amount": "100", "currency": "RWF", "payer": {"partyIdType": "MSISDN", "partyId": "250788123456"}}),
            "ERROR_BAD_REQUEST",
        ),
    ];
    for (reference, body, code) in cases {
        let resp = send(&reference, body.clone()).await.unwrap();
        assert_eq!(resp.status(), 400, "{body}");
        assert_eq!(
            resp.json::<serde_json::Value>().await.unwrap()["code"],
            code,
            "{body}"
        );
    }
    assert_eq!(send(&fresh(), good).await.unwrap().status(), 202);
}
