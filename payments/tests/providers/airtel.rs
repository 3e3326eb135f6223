use std::time::Duration;

use bwenge_payments::airtel::{AirtelClient, AirtelConfig};
use bwenge_payments::fake::{FakeOptions, FakeProviders, Outcome, PayerScript, Provider};
use bwenge_payments::{ProviderError, ProviderStatus};
use serde_json::json;

use crate::receiver::Receiver;
use crate::{WAIT, http, silent_server};

const PHONE: &str = "+250733123456";

fn client(fake: &FakeProviders) -> AirtelClient {
    AirtelClient::new(fake.airtel_config(), http())
}

#[tokio::test]
async fn one_token_for_many_calls_and_the_protocol_headers() {
    let fake = FakeProviders::start(FakeOptions::default()).unwrap();
    let airtel = client(&fake);
    for i in 0..4 {
        let id = format!("pay-{i}");
        airtel
            .request_payment(&id, 30000, PHONE, "Bwenge basic")
            .await
            .unwrap();
        airtel.status(&id).await.unwrap();
    }
    assert_eq!(fake.token_requests(Provider::Airtel), 1);
    let token = &fake.requests_to(Provider::Airtel, "POST", "/auth/oauth2/token")[0];
    assert_eq!(
        token.json().unwrap(),
        json!({"client_id": "fake-airtel-client-id", "client_secret": "fake-airtel-client-secret", "grant_type": "client_credentials"})
    );
    let pay = &fake.requests_to(Provider::Airtel, "POST", "/merchant/v1/payments/")[0];
    assert_eq!(pay.header("x-country"), Some("RW"));
    assert_eq!(pay.header("x-currency"), Some("RWF"));
    assert!(pay.header("authorization").unwrap().starts_with("Bearer "));
    assert_eq!(
        pay.json().unwrap(),
        json!({"reference": "Bwenge basic",
               "subscriber": {"country": "RW", "currency": "RWF", "msisdn": "733123456"},
               "transaction": {"amount": 30000, "country": "RW", "currency": "RWF", "id": "pay-0"}})
    );
    let status = &fake.requests_to(Provider::Airtel, "GET", "/standard/v1/payments/pay-0")[0];
    assert_eq!(status.header("x-country"), Some("RW"));
    assert_eq!(status.header("x-currency"), Some("RWF"));
}

#[tokio::test]
async fn a_revoked_token_is_refreshed_once() {
    let fake = FakeProviders::start(FakeOptions::default()).unwrap();
    let airtel = client(&fake);
    airtel.request_payment("t1", 100, PHONE, "r").await.unwrap();
    fake.expire_tokens();
    assert_eq!(
        airtel.status("t1").await.unwrap().status,
        ProviderStatus::Succeeded
    );
    assert_eq!(fake.token_requests(Provider::Airtel), 2);
}

#[tokio::test]
async fn transaction_statuses_map() {
    let fake = FakeProviders::start(FakeOptions::default()).unwrap();
    fake.script_payer("733000001", PayerScript::fail("Insufficient funds"));
    fake.script_payer("733000002", PayerScript::stay_pending());
    let airtel = client(&fake);
    airtel
        .request_payment("ok", 30000, PHONE, "r")
        .await
        .unwrap();
    airtel
        .request_payment("no", 30000, "0733000001", "r")
        .await
        .unwrap();
    airtel
        .request_payment("wait", 30000, "250733000002", "r")
        .await
        .unwrap();
    let ok = airtel.status("ok").await.unwrap();
    assert_eq!(ok.status, ProviderStatus::Succeeded);
    assert!(ok.provider_reference.starts_with("MP"));
    assert_eq!(
        (ok.amount, ok.currency),
        (None, None),
        "Airtel's enquiry carries no amount"
    );
    assert_eq!(
        airtel.status("no").await.unwrap().status,
        ProviderStatus::Failed {
            reason: "Insufficient funds".into()
        }
    );
    assert_eq!(
        airtel.status("wait").await.unwrap().status,
        ProviderStatus::Pending
    );
    assert_eq!(fake.airtel_payment("wait").unwrap().status, "TIP");
    fake.settle_airtel("wait", Outcome::Ambiguous).unwrap();
    assert_eq!(fake.airtel_payment("wait").unwrap().status, "TA");
    assert_eq!(
        airtel.status("wait").await.unwrap().status,
        ProviderStatus::Pending
    );
    fake.settle_airtel("wait", Outcome::Succeed).unwrap();
    assert_eq!(
        airtel.status("wait").await.unwrap().status,
        ProviderStatus::Succeeded
    );
    assert_eq!(airtel.status("nobody").await, Err(ProviderError::NotFound));
    assert!(matches!(
        airtel.request_payment("ok", 30000, PHONE, "r").await,
        Err(ProviderError::Rejected { status: 400, .. })
    ));
}

#[tokio::test]
async fn two_decimal_currencies_are_sent_exactly() {
    let fake = FakeProviders::start(FakeOptions {
        airtel_country: "KE".into(),
        airtel_currency: "KES".into(),
        ..FakeOptions::default()
    })
    .unwrap();
    let airtel = client(&fake);
    airtel
        .request_payment("k1", 1050, "+254733123456", "r")
        .await
        .unwrap();
    let pay = &fake.requests_to(Provider::Airtel, "POST", "/merchant/v1/payments/")[0];
    let raw = String::from_utf8(pay.body.clone()).unwrap();
    assert!(raw.contains(r#""amount":10.50"#), "{raw}");
    assert_eq!(pay.json().unwrap()["subscriber"]["msisdn"], "733123456");
    let p = fake.airtel_payment("k1").unwrap();
    assert_eq!((p.amount, p.currency.as_str()), (1050, "KES"));
}

#[tokio::test]
async fn wrong_credentials_and_hanging_provider() {
    let fake = FakeProviders::start(FakeOptions::default()).unwrap();
    let bad = AirtelClient::new(
        AirtelConfig {
            client_secret: "not-the-secret".into(),
            ..fake.airtel_config()
        },
        http(),
    );
    let err = bad.request_payment("x", 100, PHONE, "r").await.unwrap_err();
    assert!(
        matches!(err, ProviderError::Rejected { status: 401, .. }),
        "{err:?}"
    );
    assert!(!err.to_string().contains("not-the-secret"));
    let wrong_country = AirtelClient::new(
        AirtelConfig {
            country: "UG".into(),
            ..fake.airtel_config()
        },
        http(),
    );
    assert!(matches!(
        wrong_country.request_payment("x", 100, PHONE, "r").await,
        Err(ProviderError::Rejected { status: 400, .. })
    ));

    fake.script_payer(
        PHONE,
        PayerScript::succeed().answering_after(Duration::from_secs(5)),
    );
    let slow = client(&fake).with_timeout(Duration::from_millis(300));
    assert!(matches!(
        slow.request_payment("y", 100, PHONE, "r").await,
        Err(ProviderError::Unreachable(_))
    ));
    let (_hold, url) = silent_server();
    let hung = AirtelClient::new(
        AirtelConfig {
            base_url: url,
            ..fake.airtel_config()
        },
        http(),
    )
    .with_timeout(Duration::from_millis(300));
    assert!(matches!(
        hung.status("y").await,
        Err(ProviderError::Unreachable(_))
    ));
}

#[tokio::test]
async fn callbacks_go_to_the_registered_url() {
    let fake = FakeProviders::start(FakeOptions::default()).unwrap();
    let receiver = Receiver::start();
    fake.set_airtel_callback_url(Some(format!("{}/v1/webhooks/airtel-money", receiver.url)));
    fake.script_payer(
        PHONE,
        PayerScript::succeed().with_callbacks(2).out_of_order(),
    );
    let airtel = client(&fake);
    airtel
        .request_payment("cb-1", 30000, PHONE, "r")
        .await
        .unwrap();
    let got = receiver.wait_for(3, WAIT).await;
    assert_eq!(got.len(), 3);
    assert!(
        got.iter()
            .all(|c| c.method == "POST" && c.path == "/v1/webhooks/airtel-money")
    );
    let codes: Vec<String> = got
        .iter()
        .map(|c| {
            c.json()["transaction"]["status_code"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(codes, ["TS", "TS", "TIP"]);
    let cb = bwenge_payments::airtel::parse_callback(&got[0].body).unwrap();
    assert_eq!(cb.transaction_id, "cb-1");
    assert!(cb.airtel_money_id.unwrap().starts_with("MP"));

    // Forged: claims success for a payment Airtel holds as failed.
    fake.script_payer("733000004", PayerScript::fail("Declined").with_callbacks(0));
    airtel
        .request_payment("cb-2", 100, "733000004", "r")
        .await
        .unwrap();
    let d = fake.forge_airtel_callback("cb-2", "TS").await.unwrap();
    assert_eq!(d.status, Some(200));
    assert_eq!(
        receiver.received()[3].json()["transaction"]["status_code"],
        "TS"
    );
    assert!(matches!(
        airtel.status("cb-2").await.unwrap().status,
        ProviderStatus::Failed { .. }
    ));
}
