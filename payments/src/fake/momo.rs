//! The MTN MoMo Collections fake.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::HttpResponse;
use serde_json::{Value, json};
use uuid::Uuid;

use super::server::{Req, json_response};
use super::{
    CallbackMethod, Delivery, FakeError, FakePayment, Outcome, PayerScript, Provider, Shared,
};
use crate::money;

pub(crate) struct MomoPayment {
    reference: Uuid,
    external_id: String,
    party_id: String,
    amount: i64,
    currency: String,
    payer_message: String,
    payee_note: String,
    callback_url: Option<String>,
    created: Instant,
    script: PayerScript,
    settled: Option<Outcome>,
    financial_transaction_id: String,
}

impl MomoPayment {
    fn outcome(&self) -> Outcome {
        if let Some(o) = &self.settled {
            return o.clone();
        }
        if self.created.elapsed() < self.script.approve_after {
            return Outcome::StayPending;
        }
        self.script.outcome.clone()
    }

    fn status_code(&self) -> &'static str {
        match self.outcome() {
            Outcome::Succeed => "SUCCESSFUL",
            Outcome::Fail { .. } => "FAILED",
            Outcome::StayPending | Outcome::Ambiguous => "PENDING",
        }
    }

    /// The body of `GET /requesttopay/{id}` and of the callback.
    fn body(&self, pending_anyway: bool) -> Value {
        let amount = self.script.report_amount.unwrap_or(self.amount);
        let currency = self
            .script
            .report_currency
            .clone()
            .unwrap_or_else(|| self.currency.clone());
        let outcome = if pending_anyway {
            Outcome::StayPending
        } else {
            self.outcome()
        };
        let mut b = json!({
            "amount": money::to_major_string(amount, &currency),
            "currency": currency,
            "externalId": self.external_id,
            "payer": {"partyIdType": "MSISDN", "partyId": self.party_id},
            "payerMessage": self.payer_message,
            "payeeNote": self.payee_note,
        });
        match outcome {
            Outcome::Succeed => {
                b["status"] = json!("SUCCESSFUL");
                b["financialTransactionId"] = json!(self.financial_transaction_id);
            }
            Outcome::Fail { reason } => {
                b["status"] = json!("FAILED");
                b["reason"] = json!(reason);
            }
            Outcome::StayPending | Outcome::Ambiguous => b["status"] = json!("PENDING"),
        }
        b
    }

    pub(crate) fn view(&self) -> FakePayment {
        FakePayment {
            provider: Provider::Momo,
            id: self.reference.to_string(),
            external_id: self.external_id.clone(),
            msisdn: self.party_id.clone(),
            amount: self.amount,
            currency: self.currency.clone(),
            status: self.status_code().to_owned(),
            callback_url: self.callback_url.clone(),
        }
    }
}

fn error(status: u16, code: &str, message: &str) -> HttpResponse {
    json_response(status, &json!({"code": code, "message": message}))
}

fn gateway_401(message: &str) -> HttpResponse {
    json_response(401, &json!({"statusCode": 401, "message": message}))
}

pub(crate) async fn handle(shared: &Arc<Shared>, r: &Req) -> HttpResponse {
    // The API gateway checks the product's subscription key first.
    match r.header("ocp-apim-subscription-key") {
        None => {
            return gateway_401(
                "Access denied due to missing subscription key. Make sure to include subscription key when making requests to an API.",
            );
        }
        Some(k) if k != shared.opts.momo_subscription_key => {
            return gateway_401(
                "Access denied due to invalid subscription key. Make sure to provide a valid key for an active subscription.",
            );
        }
        Some(_) => {}
    }
    let path = r.path.as_str();
    match (r.method.as_str(), path) {
        ("POST", "/collection/token/" | "/collection/token") => token(shared, r),
        ("POST", "/collection/v1_0/requesttopay") => request_to_pay(shared, r).await,
        ("GET", p) if p.starts_with("/collection/v1_0/requesttopay/") => {
            let id = &p["/collection/v1_0/requesttopay/".len()..];
            status(shared, r, id).await
        }
        _ => json_response(
            404,
            &json!({"statusCode": 404, "message": "Resource not found"}),
        ),
    }
}

fn token(shared: &Arc<Shared>, r: &Req) -> HttpResponse {
    let o = &shared.opts;
    match r.basic() {
        Some((u, p)) if u == o.momo_api_user && p == o.momo_api_key => {}
        _ => return json_response(401, &json!({"error": "login_failed"})),
    }
    let token = format!("momo.{}", Uuid::new_v4().simple());
    let mut inner = shared.lock();
    inner
        .momo_tokens
        .insert(token.clone(), Instant::now() + o.token_expires_in);
    *inner.token_requests.entry(Provider::Momo).or_default() += 1;
    json_response(
        200,
        &json!({"access_token": token, "token_type": "access_token", "expires_in": o.token_expires_in.as_secs()}),
    )
}

fn authorised(shared: &Shared, r: &Req) -> Option<HttpResponse> {
    let ok = r.bearer().is_some_and(|t| {
        shared
            .lock()
            .momo_tokens
            .get(t)
            .is_some_and(|exp| Instant::now() < *exp)
    });
    if !ok {
        return Some(gateway_401(
            "Access denied due to invalid or expired access token.",
        ));
    }
    match r.header("x-target-environment") {
        Some(env) if env == shared.opts.momo_target_environment => None,
        _ => Some(error(
            403,
            "NOT_ALLOWED_TARGET_ENVIRONMENT",
            "Access to target environment is forbidden.",
        )),
    }
}

async fn request_to_pay(shared: &Arc<Shared>, r: &Req) -> HttpResponse {
    if let Some(resp) = authorised(shared, r) {
        return resp;
    }
    let Some(reference) = r
        .header("x-reference-id")
        .and_then(|v| Uuid::parse_str(v).ok())
    else {
        return error(
            400,
            "INVALID_REFERENCE_ID",
            "X-Reference-Id must be a UUID.",
        );
    };
    let Ok(body) = serde_json::from_slice::<Value>(&r.body) else {
        return error(
            400,
            "ERROR_BAD_REQUEST",
            "The request body is not valid JSON.",
        );
    };
    let s = |k: &str| body.get(k).and_then(Value::as_str).map(str::to_owned);
    let currency = s("currency").unwrap_or_default();
    if money::exponent(&currency).is_none() || currency != currency.to_ascii_uppercase() {
        return error(400, "INVALID_CURRENCY", "Currency not supported.");
    }
    let amount = match body.get("amount").and_then(Value::as_str) {
        Some(a) => match money::parse_major(a, &currency) {
            Ok(v) if v > 0 => v,
            _ => return error(400, "ERROR_BAD_REQUEST", "amount is not a valid amount."),
        },
        None => return error(400, "ERROR_BAD_REQUEST", "amount is required (a string)."),
    };
    let party_type = body.pointer("/payer/partyIdType").and_then(Value::as_str);
    let party_id = body
        .pointer("/payer/partyId")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    if party_type != Some("MSISDN")
        || party_id.len() < 9
        || !party_id.bytes().all(|b| b.is_ascii_digit())
    {
        return error(400, "PAYER_NOT_FOUND", "Payer not found.");
    }
    let Some(external_id) = s("externalId") else {
        return error(400, "ERROR_BAD_REQUEST", "externalId is required.");
    };
    let script = shared.script_for(&party_id);
    if !script.response_delay.is_zero() {
        tokio::time::sleep(script.response_delay).await;
    }
    if let Some((status, message)) = &script.reject_request {
        return error(*status, message, message);
    }
    let callback_url = r.header("x-callback-url").map(str::to_owned);
    {
        let mut inner = shared.lock();
        if inner.momo.contains_key(&reference) {
            return error(
                409,
                "RESOURCE_ALREADY_EXIST",
                "Duplicated reference id. Creation of resource failed.",
            );
        }
        let n = inner.momo.len() as u64;
        inner.momo.insert(
            reference,
            MomoPayment {
                reference,
                external_id,
                party_id,
                amount,
                currency,
                payer_message: s("payerMessage").unwrap_or_default(),
                payee_note: s("payeeNote").unwrap_or_default(),
                callback_url: callback_url.clone(),
                created: Instant::now(),
                script: script.clone(),
                settled: None,
                financial_transaction_id: format!("{}", 100_000_000 + n * 7919),
            },
        );
    }
    if callback_url.is_some() && script.outcome.is_final() {
        schedule_callbacks(shared, reference, script.approve_after);
    }
    HttpResponse::Accepted().finish()
}

async fn status(shared: &Arc<Shared>, r: &Req, id: &str) -> HttpResponse {
    if let Some(resp) = authorised(shared, r) {
        return resp;
    }
    let not_found = || {
        error(
            404,
            "RESOURCE_NOT_FOUND",
            "Requested resource was not found.",
        )
    };
    let Ok(reference) = Uuid::parse_str(id) else {
        return not_found();
    };
    let delay = match shared.lock().momo.get(&reference) {
        Some(p) => p.script.response_delay,
        None => return not_found(),
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    match shared.lock().momo.get(&reference) {
        Some(p) => json_response(200, &p.body(false)),
        None => not_found(),
    }
}

/// After `wait`, the payment's callbacks: as many final ones as the script
/// says, then the stale pending one if asked.
fn schedule_callbacks(shared: &Arc<Shared>, reference: Uuid, wait: Duration) {
    let Ok(rt) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let shared = shared.clone();
    rt.spawn(async move {
        let (count, delay, stale) = match shared.lock().momo.get(&reference) {
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
            let pending_anyway = i >= count;
            let (url, body) = match shared.lock().momo.get(&reference) {
                Some(p) => match &p.callback_url {
                    Some(u) => (u.clone(), p.body(pending_anyway).to_string()),
                    None => return,
                },
                None => return,
            };
            send_callback(&shared, &url, body).await;
        }
    });
}

pub(crate) async fn send_callback(shared: &Shared, url: &str, body: String) -> Delivery {
    let method = match shared.opts.momo_callback_method {
        CallbackMethod::Put => reqwest::Method::PUT,
        CallbackMethod::Post => reqwest::Method::POST,
    };
    shared
        .deliver(Provider::Momo, method, url, Vec::new(), body)
        .await
}

pub(crate) fn settle(
    shared: &Arc<Shared>,
    reference: Uuid,
    outcome: Outcome,
) -> Result<(), FakeError> {
    let has_callback = {
        let mut inner = shared.lock();
        let p = inner
            .momo
            .get_mut(&reference)
            .ok_or(FakeError::UnknownPayment)?;
        p.settled = Some(outcome.clone());
        p.callback_url.is_some()
    };
    if has_callback && outcome.is_final() {
        schedule_callbacks(shared, reference, Duration::ZERO);
    }
    Ok(())
}

pub(crate) async fn resend_callback(
    shared: &Shared,
    reference: Uuid,
) -> Result<Delivery, FakeError> {
    let (url, body) = {
        let inner = shared.lock();
        let p = inner
            .momo
            .get(&reference)
            .ok_or(FakeError::UnknownPayment)?;
        (
            p.callback_url.clone().ok_or(FakeError::NoUrl)?,
            p.body(false).to_string(),
        )
    };
    Ok(send_callback(shared, &url, body).await)
}
