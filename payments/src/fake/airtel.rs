//! The Airtel Money Collections fake.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::HttpResponse;
use serde_json::{Value, json};
use uuid::Uuid;

use super::server::{Req, json_response};
use super::{Delivery, FakeError, FakePayment, Outcome, PayerScript, Provider, Shared};
use crate::money;

pub(crate) struct AirtelPayment {
    id: String,
    reference: String,
    msisdn: String,
    amount: i64,
    currency: String,
    created: Instant,
    script: PayerScript,
    settled: Option<Outcome>,
    airtel_money_id: String,
}

impl AirtelPayment {
    fn outcome(&self) -> Outcome {
        if let Some(o) = &self.settled {
            return o.clone();
        }
        if self.created.elapsed() < self.script.approve_after {
            return Outcome::StayPending;
        }
        self.script.outcome.clone()
    }

    /// `(status code, message, airtel_money_id)` now.
    fn state(&self, pending_anyway: bool) -> (&'static str, String, String) {
        let outcome = if pending_anyway {
            Outcome::StayPending
        } else {
            self.outcome()
        };
        match outcome {
            Outcome::Succeed => ("TS", "success".into(), self.airtel_money_id.clone()),
            Outcome::Fail { reason } => ("TF", reason, String::new()),
            Outcome::StayPending => ("TIP", "Transaction in progress".into(), String::new()),
            Outcome::Ambiguous => ("TA", "Transaction ambiguous".into(), String::new()),
        }
    }

    fn callback_body(&self, pending_anyway: bool) -> Value {
        let (code, message, money_id) = self.state(pending_anyway);
        json!({"transaction": {"id": self.id, "message": message, "status_code": code, "airtel_money_id": money_id}})
    }

    pub(crate) fn view(&self) -> FakePayment {
        FakePayment {
            provider: Provider::Airtel,
            id: self.id.clone(),
            external_id: self.reference.clone(),
            msisdn: self.msisdn.clone(),
            amount: self.amount,
            currency: self.currency.clone(),
            status: self.state(false).0.to_owned(),
            callback_url: None,
        }
    }
}

fn status_block(
    code: u16,
    message: &str,
    result_code: &str,
    response_code: &str,
    success: bool,
) -> Value {
    json!({"code": code.to_string(), "message": message, "result_code": result_code, "response_code": response_code, "success": success})
}

fn refuse(http: u16, message: &str) -> HttpResponse {
    json_response(
        http,
        &json!({"status": status_block(http, message, "ESB000001", "DP00800001000", false)}),
    )
}

pub(crate) async fn handle(shared: &Arc<Shared>, r: &Req) -> HttpResponse {
    match (r.method.as_str(), r.path.as_str()) {
        ("POST", "/auth/oauth2/token") => token(shared, r),
        ("POST", "/merchant/v1/payments/" | "/merchant/v1/payments") => payment(shared, r).await,
        ("GET", p) if p.starts_with("/standard/v1/payments/") => {
            let id = p["/standard/v1/payments/".len()..].to_owned();
            enquiry(shared, r, &id).await
        }
        _ => json_response(
            404,
            &json!({"message": "no Route matched with those values"}),
        ),
    }
}

fn token(shared: &Arc<Shared>, r: &Req) -> HttpResponse {
    let o = &shared.opts;
    let body: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
    let s = |k: &str| body.get(k).and_then(Value::as_str);
    if s("grant_type") != Some("client_credentials") {
        return json_response(
            400,
            &json!({"error": "unsupported_grant_type", "error_description": "Unsupported grant type"}),
        );
    }
    if s("client_id") != Some(o.airtel_client_id.as_str())
        || s("client_secret") != Some(o.airtel_client_secret.as_str())
    {
        return json_response(
            401,
            &json!({"error": "invalid_client", "error_description": "Invalid client authentication"}),
        );
    }
    let token = format!("airtel{}", Uuid::new_v4().simple());
    let mut inner = shared.lock();
    inner
        .airtel_tokens
        .insert(token.clone(), Instant::now() + o.token_expires_in);
    *inner.token_requests.entry(Provider::Airtel).or_default() += 1;
    // Airtel writes expires_in as a string.
    json_response(
        200,
        &json!({"access_token": token, "expires_in": o.token_expires_in.as_secs().to_string(), "token_type": "bearer"}),
    )
}

fn authorised(shared: &Shared, r: &Req) -> Option<HttpResponse> {
    let ok = r.bearer().is_some_and(|t| {
        shared
            .lock()
            .airtel_tokens
            .get(t)
            .is_some_and(|exp| Instant::now() < *exp)
    });
    if !ok {
        return Some(json_response(
            401,
            &json!({"error": "invalid_token", "error_description": "The access token is invalid or has expired"}),
        ));
    }
    let o = &shared.opts;
    if r.header("x-country") != Some(o.airtel_country.as_str())
        || r.header("x-currency") != Some(o.airtel_currency.as_str())
    {
        return Some(refuse(
            400,
            "Invalid X-Country or X-Currency for this merchant",
        ));
    }
    None
}

/// `amount` is a JSON number in major units; read exactly from its text.
fn amount_minor(v: &Value, currency: &str) -> Option<i64> {
    let n = v.as_number()?;
    let text = n.to_string();
    money::parse_major(&text, currency).ok()
}

async fn payment(shared: &Arc<Shared>, r: &Req) -> HttpResponse {
    if let Some(resp) = authorised(shared, r) {
        return resp;
    }
    let o = &shared.opts;
    let Ok(body) = serde_json::from_slice::<Value>(&r.body) else {
        return refuse(400, "Malformed request body");
    };
    let p = |ptr: &str| body.pointer(ptr).and_then(Value::as_str).map(str::to_owned);
    let (Some(id), Some(msisdn)) = (p("/transaction/id"), p("/subscriber/msisdn")) else {
        return refuse(400, "transaction.id and subscriber.msisdn are required");
    };
    if p("/transaction/country").as_deref() != Some(o.airtel_country.as_str())
        || p("/transaction/currency").as_deref() != Some(o.airtel_currency.as_str())
    {
        return refuse(
            400,
            "transaction country or currency does not match the merchant",
        );
    }
    // The national number: digits only, no country code, no trunk zero.
    if msisdn.len() < 8
        || msisdn.len() > 10
        || msisdn.starts_with('0')
        || !msisdn.bytes().all(|b| b.is_ascii_digit())
    {
        return refuse(400, "Invalid MSISDN");
    }
    let Some(amount) = body
        .pointer("/transaction/amount")
        .and_then(|a| amount_minor(a, &o.airtel_currency))
        .filter(|a| *a > 0)
    else {
        return refuse(400, "Invalid amount");
    };
    let script = shared.script_for(&msisdn);
    if !script.response_delay.is_zero() {
        tokio::time::sleep(script.response_delay).await;
    }
    if let Some((status, message)) = &script.reject_request {
        return refuse(*status, message);
    }
    {
        let mut inner = shared.lock();
        if inner.airtel.contains_key(&id) {
            return refuse(400, "Duplicate transaction id");
        }
        let n = inner.airtel.len() as u64;
        inner.airtel.insert(
            id.clone(),
            AirtelPayment {
                id: id.clone(),
                reference: p("/reference").unwrap_or_default(),
                msisdn,
                amount,
                currency: o.airtel_currency.clone(),
                created: Instant::now(),
                script: script.clone(),
                settled: None,
                airtel_money_id: format!("MP{}", 210_000_000_000u64 + n * 104_729),
            },
        );
    }
    if script.outcome.is_final() {
        schedule_callbacks(shared, id.clone(), script.approve_after);
    }
    json_response(
        200,
        &json!({"data": {"transaction": {"id": id, "status": "Success."}},
                "status": status_block(200, "Success.", "ESB000010", "DP00800001006", true)}),
    )
}

async fn enquiry(shared: &Arc<Shared>, r: &Req, id: &str) -> HttpResponse {
    if let Some(resp) = authorised(shared, r) {
        return resp;
    }
    let id = percent_decode(id);
    let not_found = || {
        json_response(
            404,
            &json!({"status": status_block(404, "Transaction not found", "ESB000008", "DP00800001011", false)}),
        )
    };
    let delay = match shared.lock().airtel.get(&id) {
        Some(p) => p.script.response_delay,
        None => return not_found(),
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let inner = shared.lock();
    let Some(p) = inner.airtel.get(&id) else {
        return not_found();
    };
    let (code, message, money_id) = p.state(false);
    json_response(
        200,
        &json!({"data": {"transaction": {"airtel_money_id": money_id, "id": p.id, "message": message, "status": code}},
                "status": status_block(200, "SUCCESS", "ESB000010", "DP00800001001", true)}),
    )
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(hex) = std::str::from_utf8(&bytes[i + 1..i + 3])
            && let Ok(b) = u8::from_str_radix(hex, 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn schedule_callbacks(shared: &Arc<Shared>, id: String, wait: Duration) {
    let Ok(rt) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let shared = shared.clone();
    rt.spawn(async move {
        let (count, delay, stale) = match shared.lock().airtel.get(&id) {
            Some(p) => (
                p.script.callbacks,
                p.script
                    .callback_delay
                    .unwrap_or(shared.opts.callback_delay),
                p.script.stale_pending_callback,
            ),
            None => return,
        };
        tokio::time::sleep(wait + delay).await;
        for i in 0..count + u32::from(stale) {
            let body = match shared.lock().airtel.get(&id) {
                Some(p) => p.callback_body(i >= count).to_string(),
                None => return,
            };
            if send(&shared, body).await.is_none() {
                return;
            }
        }
    });
}

async fn send(shared: &Shared, body: String) -> Option<Delivery> {
    let url = shared.lock().airtel_callback_url.clone()?;
    Some(
        shared
            .deliver(
                Provider::Airtel,
                reqwest::Method::POST,
                &url,
                Vec::new(),
                body,
            )
            .await,
    )
}

pub(crate) fn settle(shared: &Arc<Shared>, id: &str, outcome: Outcome) -> Result<(), FakeError> {
    {
        let mut inner = shared.lock();
        let p = inner.airtel.get_mut(id).ok_or(FakeError::UnknownPayment)?;
        p.settled = Some(outcome.clone());
    }
    if outcome.is_final() {
        schedule_callbacks(shared, id.to_owned(), Duration::ZERO);
    }
    Ok(())
}

pub(crate) async fn resend_callback(shared: &Shared, id: &str) -> Result<Delivery, FakeError> {
    let body = {
        let inner = shared.lock();
        let p = inner.airtel.get(id).ok_or(FakeError::UnknownPayment)?;
        p.callback_body(false).to_string()
    };
    send(shared, body).await.ok_or(FakeError::NoUrl)
}

pub(crate) async fn forge_callback(
    shared: &Shared,
    id: &str,
    status_code: &str,
) -> Result<Delivery, FakeError> {
    let body = json!({"transaction": {"id": id, "message": "success", "status_code": status_code, "airtel_money_id": "MP000000000000"}});
    send(shared, body.to_string()).await.ok_or(FakeError::NoUrl)
}
