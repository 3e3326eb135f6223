//! The Stripe fake: Checkout Sessions, a hosted checkout page,
//! subscriptions, invoices and signed webhooks (API version 2024-06-20
//! shapes: `invoice.subscription`, `subscription.current_period_end`).

use std::collections::HashMap;
use std::sync::Arc;

use actix_web::HttpResponse;
use chrono::{DateTime, Months, Utc};
use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::server::{Req, json_response};
use super::{Delivery, FakeError, Provider, Shared};
use crate::money;
use crate::stripe::signature_header;

/// The API version the fake's objects follow.
pub const API_VERSION: &str = "2024-06-20";

/// How a webhook is signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signing {
    /// With every configured secret, now: what Stripe sends.
    Valid,
    /// With a secret the endpoint does not know.
    WrongSecret,
    /// Correctly, but `seconds` ago (a replay, or a very late retry).
    Stale { seconds: i64 },
    /// Correctly, `seconds` in the future.
    Future { seconds: i64 },
    /// No `Stripe-Signature` header at all.
    Unsigned,
    /// A header that is not `t=…,v1=…`.
    Malformed,
    /// Signed, then one byte of the payload changed.
    TamperedPayload,
}

/// The parameters, status and body of an answer given under an idempotency key.
type Remembered = (Vec<(String, String)>, u16, Value);

#[derive(Default)]
pub(crate) struct StripeState {
    pub(crate) webhook_url: Option<String>,
    /// Price id → (amount, lower-case currency).
    pub(crate) prices: HashMap<String, (i64, String)>,
    pub(crate) sessions: HashMap<String, Value>,
    /// Session id → (price id, quantity, subscription metadata).
    session_extra: HashMap<String, (String, i64, Map<String, Value>)>,
    pub(crate) subscriptions: HashMap<String, Value>,
    invoices: HashMap<String, Value>,
    /// (path, key) → the first answer given with that key.
    idempotency: HashMap<(String, String), Remembered>,
    pub(crate) events: Vec<Value>,
}

fn new_id(prefix: &str) -> String {
    let s = Uuid::new_v4().simple().to_string();
    format!("{prefix}_{}", &s[..24])
}

fn stripe_error(
    status: u16,
    kind: &str,
    code: Option<&str>,
    param: Option<&str>,
    message: &str,
) -> (u16, Value) {
    let mut e = json!({"type": kind, "message": message});
    if let Some(c) = code {
        e["code"] = json!(c);
    }
    if let Some(p) = param {
        e["param"] = json!(p);
    }
    (status, json!({"error": e}))
}

fn respond((status, body): (u16, Value)) -> HttpResponse {
    json_response(status, &body)
}

pub(crate) async fn handle(shared: &Arc<Shared>, r: &Req) -> HttpResponse {
    let path = r.path.clone();
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    // The hosted checkout page: no API key (the customer's browser).
    match (r.method.as_str(), segs.as_slice()) {
        ("GET", ["checkout", id]) => return hosted_page(shared, id),
        ("POST", ["checkout", id, "pay"]) => return pay(shared, id).await,
        _ => {}
    }
    if let Some(resp) = check_key(shared, r) {
        return resp;
    }
    let params: Vec<(String, String)> = if r.method == "POST" && !r.body.is_empty() {
        let ct = r.header("content-type").unwrap_or_default();
        if !ct.starts_with("application/x-www-form-urlencoded") {
            return respond(stripe_error(
                400,
                "invalid_request_error",
                None,
                None,
                "Invalid request: the body must be application/x-www-form-urlencoded.",
            ));
        }
        match serde_urlencoded::from_bytes(&r.body) {
            Ok(p) => p,
            Err(_) => {
                return respond(stripe_error(
                    400,
                    "invalid_request_error",
                    None,
                    None,
                    "Invalid request body.",
                ));
            }
        }
    } else {
        Vec::new()
    };
    let idem = (r.method == "POST")
        .then(|| r.header("idempotency-key").map(str::to_owned))
        .flatten();
    if let Some(key) = &idem {
        let stored = shared
            .lock()
            .stripe
            .idempotency
            .get(&(path.clone(), key.clone()))
            .cloned();
        if let Some((old_params, status, body)) = stored {
            if old_params != params {
                return respond(stripe_error(
                    400,
                    "idempotency_error",
                    None,
                    None,
                    &format!(
                        "Keys for idempotent requests can only be used with the same parameters they were first used with. Try using a key other than '{key}' if you meant to execute a different request."
                    ),
                ));
            }
            let mut resp = json_response(status, &body);
            resp.headers_mut().insert(
                actix_web::http::header::HeaderName::from_static("idempotent-replayed"),
                actix_web::http::header::HeaderValue::from_static("true"),
            );
            return resp;
        }
    }
    let (status, body) = match (r.method.as_str(), segs.as_slice()) {
        ("POST", ["v1", "checkout", "sessions"]) => create_session(shared, &params),
        ("GET", ["v1", "checkout", "sessions", id]) => {
            match shared.lock().stripe.sessions.get(*id) {
                Some(s) => (200, s.clone()),
                None => missing("checkout.session", id),
            }
        }
        ("GET", ["v1", "subscriptions", id]) => match shared.lock().stripe.subscriptions.get(*id) {
            Some(s) => (200, s.clone()),
            None => missing("subscription", id),
        },
        ("POST", ["v1", "subscriptions", id]) => update_subscription(shared, id, &params),
        ("DELETE", ["v1", "subscriptions", id]) => {
            let id = (*id).to_owned();
            match delete_state(shared, &id) {
                Ok((sub, event)) => {
                    spawn_delivery(shared, event);
                    (200, sub)
                }
                Err(_) => missing("subscription", &id),
            }
        }
        (m, _) => stripe_error(
            404,
            "invalid_request_error",
            None,
            None,
            &format!(
                "Unrecognized request URL ({m}: {path}). Please see https://stripe.com/docs or we can help at https://support.stripe.com/."
            ),
        ),
    };
    if let Some(key) = idem
        && status < 500
    {
        shared
            .lock()
            .stripe
            .idempotency
            .insert((path, key), (params, status, body.clone()));
    }
    json_response(status, &body)
}

fn missing(kind: &str, id: &str) -> (u16, Value) {
    stripe_error(
        404,
        "invalid_request_error",
        Some("resource_missing"),
        Some("id"),
        &format!("No such {kind}: '{id}'"),
    )
}

fn check_key(shared: &Shared, r: &Req) -> Option<HttpResponse> {
    let key = r
        .bearer()
        .map(str::to_owned)
        .or_else(|| r.basic().map(|(u, _)| u));
    match key {
        Some(k) if k == shared.opts.stripe_secret_key => None,
        Some(k) => {
            let tail: String = k
                .chars()
                .rev()
                .take(4)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            let prefix: String = k.chars().take(8).collect();
            Some(respond(stripe_error(
                401,
                "invalid_request_error",
                None,
                None,
                &format!("Invalid API Key provided: {prefix}****{tail}"),
            )))
        }
        None => Some(respond(stripe_error(
            401,
            "invalid_request_error",
            None,
            None,
            "You did not provide an API key. You need to provide your API key in the Authorization header, using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY').",
        ))),
    }
}

fn param<'a>(params: &'a [(String, String)], key: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// `prefix[key]` pairs as a metadata map.
fn metadata(params: &[(String, String)], prefix: &str) -> Map<String, Value> {
    params
        .iter()
        .filter_map(|(k, v)| {
            let inner = k
                .strip_prefix(prefix)?
                .strip_prefix('[')?
                .strip_suffix(']')?;
            (!inner.contains('[')).then(|| (inner.to_owned(), json!(v)))
        })
        .collect()
}

fn known_param(k: &str) -> bool {
    const PLAIN: [&str; 7] = [
        "mode",
        "success_url",
        "cancel_url",
        "client_reference_id",
        "customer_email",
        "customer",
        "allow_promotion_codes",
    ];
    if PLAIN.contains(&k) || k.starts_with("metadata[") || k.starts_with("expand[") {
        return true;
    }
    if let Some(rest) = k.strip_prefix("subscription_data[") {
        return rest.starts_with("metadata]") || rest.starts_with("description]");
    }
    if let Some(rest) = k.strip_prefix("line_items[") {
        return rest.ends_with("][price]") || rest.ends_with("][quantity]");
    }
    false
}

fn invalid(param: &str, message: &str) -> (u16, Value) {
    stripe_error(
        400,
        "invalid_request_error",
        Some("parameter_invalid"),
        Some(param),
        message,
    )
}

fn create_session(shared: &Arc<Shared>, params: &[(String, String)]) -> (u16, Value) {
    if let Some((k, _)) = params.iter().find(|(k, _)| !known_param(k)) {
        return stripe_error(
            400,
            "invalid_request_error",
            Some("parameter_unknown"),
            Some(k),
            &format!("Received unknown parameter: {k}"),
        );
    }
    for required in ["mode", "success_url", "line_items[0][price]"] {
        if param(params, required).is_none_or(str::is_empty) {
            return stripe_error(
                400,
                "invalid_request_error",
                Some("parameter_missing"),
                Some(required),
                &format!("Missing required param: {required}."),
            );
        }
    }
    let mode = param(params, "mode").unwrap_or_default();
    if mode != "subscription" && mode != "payment" && mode != "setup" {
        return invalid(
            "mode",
            "Invalid mode: must be one of payment, setup, or subscription",
        );
    }
    for url_key in ["success_url", "cancel_url"] {
        if let Some(u) = param(params, url_key)
            && !(u.starts_with("http://") || u.starts_with("https://"))
        {
            return stripe_error(
                400,
                "invalid_request_error",
                Some("url_invalid"),
                Some(url_key),
                "Not a valid URL",
            );
        }
    }
    let price_id = param(params, "line_items[0][price]")
        .unwrap_or_default()
        .to_owned();
    let quantity: i64 = match param(params, "line_items[0][quantity]").map(str::parse) {
        None => 1,
        Some(Ok(q)) if q >= 1 => q,
        Some(_) => return invalid("line_items[0][quantity]", "Invalid integer"),
    };
    let now = Utc::now().timestamp();
    let id = format!("cs_test_{}", Uuid::new_v4().simple());
    let mut inner = shared.lock();
    let Some((unit, currency)) = inner.stripe.prices.get(&price_id).cloned() else {
        return stripe_error(
            400,
            "invalid_request_error",
            Some("resource_missing"),
            Some("line_items[0][price]"),
            &format!("No such price: '{price_id}'"),
        );
    };
    let session = json!({
        "id": id,
        "object": "checkout.session",
        "mode": mode,
        "status": "open",
        "payment_status": "unpaid",
        "url": format!("{}/stripe/checkout/{id}", shared.base_url),
        "client_reference_id": param(params, "client_reference_id"),
        "customer": param(params, "customer"),
        "customer_email": param(params, "customer_email"),
        "subscription": null,
        "invoice": null,
        "amount_subtotal": unit * quantity,
        "amount_total": unit * quantity,
        "currency": currency,
        "metadata": metadata(params, "metadata"),
        "success_url": param(params, "success_url"),
        "cancel_url": param(params, "cancel_url"),
        "created": now,
        "expires_at": now + 24 * 3600,
        "livemode": false,
    });
    inner.stripe.sessions.insert(id.clone(), session.clone());
    inner.stripe.session_extra.insert(
        id,
        (
            price_id,
            quantity,
            metadata(params, "subscription_data[metadata]"),
        ),
    );
    (200, session)
}

fn update_subscription(
    shared: &Arc<Shared>,
    id: &str,
    params: &[(String, String)],
) -> (u16, Value) {
    if let Some((k, _)) = params.iter().find(|(k, _)| {
        k != "cancel_at_period_end" && !k.starts_with("metadata[") && !k.starts_with("expand[")
    }) {
        return stripe_error(
            400,
            "invalid_request_error",
            Some("parameter_unknown"),
            Some(k),
            &format!("Received unknown parameter: {k}"),
        );
    }
    let cancel = match param(params, "cancel_at_period_end") {
        None => None,
        Some("true") => Some(true),
        Some("false") => Some(false),
        Some(_) => return invalid("cancel_at_period_end", "Invalid boolean"),
    };
    let extra = metadata(params, "metadata");
    let result = {
        let mut inner = shared.lock();
        let Some(sub) = inner.stripe.subscriptions.get_mut(id) else {
            return missing("subscription", id);
        };
        if sub["status"] == "canceled" {
            return stripe_error(
                400,
                "invalid_request_error",
                None,
                None,
                "A canceled subscription can only update its cancellation_details and metadata.",
            );
        }
        let mut previous = Map::new();
        if let Some(c) = cancel
            && sub["cancel_at_period_end"] != json!(c)
        {
            previous.insert(
                "cancel_at_period_end".into(),
                sub["cancel_at_period_end"].clone(),
            );
            sub["cancel_at_period_end"] = json!(c);
            sub["cancel_at"] = if c {
                sub["current_period_end"].clone()
            } else {
                Value::Null
            };
            sub["canceled_at"] = if c {
                json!(Utc::now().timestamp())
            } else {
                Value::Null
            };
        }
        if !extra.is_empty() {
            previous.insert("metadata".into(), sub["metadata"].clone());
            if let Some(m) = sub["metadata"].as_object_mut() {
                m.extend(extra);
            }
        }
        (sub.clone(), previous)
    };
    let (sub, previous) = result;
    if !previous.is_empty() {
        let event = record_event(
            shared,
            "customer.subscription.updated",
            sub.clone(),
            Some(Value::Object(previous)),
        );
        spawn_delivery(shared, event);
    }
    (200, sub)
}

/// Creates an event, keeps it, and returns it.
fn record_event(
    shared: &Shared,
    event_type: &str,
    object: Value,
    previous: Option<Value>,
) -> Value {
    let mut data = json!({"object": object});
    if let Some(p) = previous {
        data["previous_attributes"] = p;
    }
    let event = json!({
        "id": new_id("evt"),
        "object": "event",
        "api_version": API_VERSION,
        "created": Utc::now().timestamp(),
        "data": data,
        "livemode": false,
        "pending_webhooks": 1,
        "request": {"id": null, "idempotency_key": null},
        "type": event_type,
    });
    shared.lock().stripe.events.push(event.clone());
    event
}

/// Sends `event` to the webhook URL, signed as asked. `None` without a URL.
async fn deliver(shared: &Shared, event: &Value, signing: &Signing) -> Option<Delivery> {
    let url = shared.lock().stripe.webhook_url.clone()?;
    let payload = event.to_string();
    let now = Utc::now().timestamp();
    let secrets = &shared.opts.stripe_webhook_secrets;
    let sign_all = |t: i64, body: &str| {
        let mut h = format!("t={t}");
        for s in secrets {
            let one = signature_header(body.as_bytes(), s, t);
            if let Some((_, v1)) = one.split_once(",v1=") {
                h.push_str(",v1=");
                h.push_str(v1);
            }
        }
        h
    };
    let (header, body) = match signing {
        Signing::Valid => (Some(sign_all(now, &payload)), payload),
        Signing::WrongSecret => (
            Some(signature_header(
                payload.as_bytes(),
                "whsec_not_the_endpoint_secret",
                now,
            )),
            payload,
        ),
        Signing::Stale { seconds } => (Some(sign_all(now - seconds, &payload)), payload),
        Signing::Future { seconds } => (Some(sign_all(now + seconds, &payload)), payload),
        Signing::Unsigned => (None, payload),
        Signing::Malformed => (Some("v1;garbage".to_owned()), payload),
        Signing::TamperedPayload => {
            let header = sign_all(now, &payload);
            // Change one digit of an amount (or the last character).
            let tampered = payload.replacen("\"amount_paid\":", "\"amount_paid\":1", 1);
            let tampered = if tampered == payload {
                payload.replacen("\"livemode\":false", "\"livemode\":true ", 1)
            } else {
                tampered
            };
            (Some(header), tampered)
        }
    };
    let mut headers = vec![(
        "User-Agent".to_owned(),
        "Stripe/1.0 (+https://stripe.com/docs/webhooks)".to_owned(),
    )];
    if let Some(h) = header {
        headers.push(("Stripe-Signature".to_owned(), h));
    }
    Some(
        shared
            .deliver(Provider::Stripe, reqwest::Method::POST, &url, headers, body)
            .await,
    )
}

/// Delivers in the background (Stripe sends events after answering the API call).
fn spawn_delivery(shared: &Arc<Shared>, event: Value) {
    let Ok(rt) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let shared = shared.clone();
    rt.spawn(async move {
        deliver(&shared, &event, &Signing::Valid).await;
    });
}

async fn deliver_all(shared: &Shared, events: &[Value]) -> Vec<Delivery> {
    let mut out = Vec::new();
    for e in events {
        match deliver(shared, e, &Signing::Valid).await {
            Some(d) => out.push(d),
            None => {
                tracing::warn!(
                    "fake Stripe: no webhook URL configured; event {} not sent",
                    e["id"]
                );
            }
        }
    }
    out
}

fn month_after(t: i64) -> i64 {
    DateTime::<Utc>::from_timestamp(t, 0)
        .and_then(|d| d.checked_add_months(Months::new(1)))
        .map_or(t + 30 * 86_400, |d| d.timestamp())
}

#[allow(clippy::too_many_arguments)]
fn invoice(
    sub: &Value,
    amount: i64,
    currency: &str,
    price_id: &str,
    start: i64,
    end: i64,
    paid: bool,
    reason: &str,
) -> Value {
    let now = Utc::now().timestamp();
    let id = new_id("in");
    json!({
        "id": id,
        "object": "invoice",
        "customer": sub["customer"],
        "subscription": sub["id"],
        "subscription_details": {"metadata": sub["metadata"]},
        "billing_reason": reason,
        "status": if paid { "paid" } else { "open" },
        "paid": paid,
        "attempted": true,
        "attempt_count": 1,
        "next_payment_attempt": if paid { Value::Null } else { json!(now + 3 * 86_400) },
        "amount_due": amount,
        "amount_paid": if paid { amount } else { 0 },
        "amount_remaining": if paid { 0 } else { amount },
        "currency": currency,
        "period_start": if reason == "subscription_create" { start } else { now },
        "period_end": if reason == "subscription_create" { start } else { now },
        "lines": {"object": "list", "has_more": false, "data": [{
            "id": new_id("il"),
            "object": "line_item",
            "amount": amount,
            "currency": currency,
            "period": {"start": start, "end": end},
            "price": {"id": price_id, "object": "price"},
            "quantity": 1,
            "subscription": sub["id"],
            "type": "subscription",
            "metadata": sub["metadata"],
        }]},
        "created": now,
        "livemode": false,
    })
}

pub(crate) async fn complete_checkout(
    shared: &Arc<Shared>,
    session_id: &str,
) -> Result<Vec<Delivery>, FakeError> {
    let events = {
        let mut inner = shared.lock();
        let st = &mut inner.stripe;
        let session = st
            .sessions
            .get(session_id)
            .ok_or(FakeError::UnknownSession)?;
        if session["status"] != "open" {
            return Err(FakeError::SessionNotOpen);
        }
        let (price_id, quantity, sub_meta) = st
            .session_extra
            .get(session_id)
            .cloned()
            .ok_or(FakeError::UnknownSession)?;
        let (unit, currency) = st
            .prices
            .get(&price_id)
            .cloned()
            .unwrap_or((0, "usd".into()));
        let amount = unit * quantity;
        let now = Utc::now().timestamp();
        let end = month_after(now);
        let customer = session["customer"]
            .as_str()
            .map_or_else(|| new_id("cus"), str::to_owned);
        let sub_id = new_id("sub");
        let mut sub = json!({
            "id": sub_id,
            "object": "subscription",
            "customer": customer,
            "status": "active",
            "cancel_at_period_end": false,
            "cancel_at": null,
            "canceled_at": null,
            "ended_at": null,
            "current_period_start": now,
            "current_period_end": end,
            "created": now,
            "metadata": sub_meta,
            "items": {"object": "list", "data": [{
                "id": new_id("si"),
                "object": "subscription_item",
                "price": {"id": price_id, "object": "price", "unit_amount": unit, "currency": currency,
                          "recurring": {"interval": "month", "interval_count": 1}},
                "quantity": quantity,
            }]},
            "livemode": false,
        });
        let inv = invoice(
            &sub,
            amount,
            &currency,
            &price_id,
            now,
            end,
            true,
            "subscription_create",
        );
        sub["latest_invoice"] = inv["id"].clone();
        let Some(session) = st.sessions.get_mut(session_id) else {
            return Err(FakeError::UnknownSession);
        };
        session["status"] = json!("complete");
        session["payment_status"] = json!("paid");
        session["customer"] = json!(customer);
        session["subscription"] = json!(sub_id);
        session["invoice"] = inv["id"].clone();
        let session = session.clone();
        st.subscriptions.insert(sub_id, sub);
        if let Some(id) = inv["id"].as_str() {
            st.invoices.insert(id.to_owned(), inv.clone());
        }
        drop(inner);
        vec![
            record_event(shared, "checkout.session.completed", session, None),
            record_event(shared, "invoice.paid", inv, None),
        ]
    };
    Ok(deliver_all(shared, &events).await)
}

pub(crate) async fn expire_checkout(
    shared: &Arc<Shared>,
    session_id: &str,
) -> Result<Delivery, FakeError> {
    let session = {
        let mut inner = shared.lock();
        let s = inner
            .stripe
            .sessions
            .get_mut(session_id)
            .ok_or(FakeError::UnknownSession)?;
        if s["status"] != "open" {
            return Err(FakeError::SessionNotOpen);
        }
        s["status"] = json!("expired");
        s["url"] = Value::Null;
        s.clone()
    };
    let event = record_event(shared, "checkout.session.expired", session, None);
    deliver(shared, &event, &Signing::Valid)
        .await
        .ok_or(FakeError::NoUrl)
}

fn sub_price(sub: &Value) -> (String, i64, String) {
    let price = &sub["items"]["data"][0]["price"];
    (
        price["id"].as_str().unwrap_or_default().to_owned(),
        price["unit_amount"].as_i64().unwrap_or(0)
            * sub["items"]["data"][0]["quantity"].as_i64().unwrap_or(1),
        price["currency"].as_str().unwrap_or("usd").to_owned(),
    )
}

pub(crate) async fn renew(shared: &Arc<Shared>, sub_id: &str) -> Result<Vec<Delivery>, FakeError> {
    let events = {
        let mut inner = shared.lock();
        let st = &mut inner.stripe;
        let sub = st
            .subscriptions
            .get_mut(sub_id)
            .ok_or(FakeError::UnknownSubscription)?;
        if sub["status"] == "canceled" {
            return Err(FakeError::UnknownSubscription);
        }
        let (price_id, amount, currency) = sub_price(sub);
        let start = sub["current_period_end"]
            .as_i64()
            .unwrap_or_else(|| Utc::now().timestamp());
        let end = month_after(start);
        let previous = json!({
            "current_period_start": sub["current_period_start"],
            "current_period_end": sub["current_period_end"],
            "status": sub["status"],
        });
        sub["current_period_start"] = json!(start);
        sub["current_period_end"] = json!(end);
        sub["status"] = json!("active");
        let inv = invoice(
            sub,
            amount,
            &currency,
            &price_id,
            start,
            end,
            true,
            "subscription_cycle",
        );
        sub["latest_invoice"] = inv["id"].clone();
        let sub = sub.clone();
        if let Some(id) = inv["id"].as_str() {
            st.invoices.insert(id.to_owned(), inv.clone());
        }
        drop(inner);
        vec![
            record_event(shared, "customer.subscription.updated", sub, Some(previous)),
            record_event(shared, "invoice.paid", inv, None),
        ]
    };
    Ok(deliver_all(shared, &events).await)
}

pub(crate) async fn fail_renewal(
    shared: &Arc<Shared>,
    sub_id: &str,
) -> Result<Vec<Delivery>, FakeError> {
    let events = {
        let mut inner = shared.lock();
        let st = &mut inner.stripe;
        let sub = st
            .subscriptions
            .get_mut(sub_id)
            .ok_or(FakeError::UnknownSubscription)?;
        if sub["status"] == "canceled" {
            return Err(FakeError::UnknownSubscription);
        }
        let (price_id, amount, currency) = sub_price(sub);
        let start = sub["current_period_end"]
            .as_i64()
            .unwrap_or_else(|| Utc::now().timestamp());
        let end = month_after(start);
        let inv = invoice(
            sub,
            amount,
            &currency,
            &price_id,
            start,
            end,
            false,
            "subscription_cycle",
        );
        let previous = json!({"status": sub["status"]});
        sub["status"] = json!("past_due");
        sub["latest_invoice"] = inv["id"].clone();
        let sub = sub.clone();
        if let Some(id) = inv["id"].as_str() {
            st.invoices.insert(id.to_owned(), inv.clone());
        }
        drop(inner);
        vec![
            record_event(shared, "invoice.payment_failed", inv, None),
            record_event(shared, "customer.subscription.updated", sub, Some(previous)),
        ]
    };
    Ok(deliver_all(shared, &events).await)
}

pub(crate) async fn set_cancel_at_period_end(
    shared: &Arc<Shared>,
    sub_id: &str,
    cancel: bool,
    send: bool,
) -> Result<Option<Delivery>, FakeError> {
    let event = {
        let mut inner = shared.lock();
        let sub = inner
            .stripe
            .subscriptions
            .get_mut(sub_id)
            .ok_or(FakeError::UnknownSubscription)?;
        if sub["status"] == "canceled" {
            return Err(FakeError::UnknownSubscription);
        }
        let previous = json!({"cancel_at_period_end": sub["cancel_at_period_end"]});
        sub["cancel_at_period_end"] = json!(cancel);
        sub["cancel_at"] = if cancel {
            sub["current_period_end"].clone()
        } else {
            Value::Null
        };
        sub["canceled_at"] = if cancel {
            json!(Utc::now().timestamp())
        } else {
            Value::Null
        };
        let sub = sub.clone();
        drop(inner);
        record_event(shared, "customer.subscription.updated", sub, Some(previous))
    };
    if !send {
        return Ok(None);
    }
    Ok(deliver(shared, &event, &Signing::Valid).await)
}

/// Marks the subscription canceled; returns it and the deleted event.
fn delete_state(shared: &Arc<Shared>, sub_id: &str) -> Result<(Value, Value), FakeError> {
    let sub = {
        let mut inner = shared.lock();
        let sub = inner
            .stripe
            .subscriptions
            .get_mut(sub_id)
            .ok_or(FakeError::UnknownSubscription)?;
        if sub["status"] == "canceled" {
            return Err(FakeError::UnknownSubscription);
        }
        let now = Utc::now().timestamp();
        sub["status"] = json!("canceled");
        sub["ended_at"] = json!(now);
        if sub["canceled_at"].is_null() {
            sub["canceled_at"] = json!(now);
        }
        sub.clone()
    };
    let event = record_event(shared, "customer.subscription.deleted", sub.clone(), None);
    Ok((sub, event))
}

pub(crate) async fn delete_subscription(
    shared: &Arc<Shared>,
    sub_id: &str,
    send: bool,
) -> Result<Option<Delivery>, FakeError> {
    let (_, event) = delete_state(shared, sub_id)?;
    if !send {
        return Ok(None);
    }
    Ok(deliver(shared, &event, &Signing::Valid).await)
}

pub(crate) async fn send_new_event(
    shared: &Arc<Shared>,
    event_type: &str,
    object: Value,
    previous: Option<Value>,
    signing: Signing,
) -> Result<Delivery, FakeError> {
    let event = record_event(shared, event_type, object, previous);
    deliver(shared, &event, &signing)
        .await
        .ok_or(FakeError::NoUrl)
}

pub(crate) async fn resend_event(
    shared: &Arc<Shared>,
    event_id: &str,
    signing: Signing,
) -> Result<Delivery, FakeError> {
    let event = shared
        .lock()
        .stripe
        .events
        .iter()
        .find(|e| e["id"] == event_id)
        .cloned()
        .ok_or(FakeError::UnknownEvent)?;
    deliver(shared, &event, &signing)
        .await
        .ok_or(FakeError::NoUrl)
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

fn hosted_page(shared: &Arc<Shared>, id: &str) -> HttpResponse {
    let Some(session) = shared.lock().stripe.sessions.get(id).cloned() else {
        return HttpResponse::NotFound()
            .content_type("text/html; charset=utf-8")
            .body("<!doctype html><title>Not found</title><p>No such checkout session.</p>");
    };
    let s = |k: &str| session[k].as_str().unwrap_or_default().to_owned();
    let currency = s("currency");
    let amount = money::to_major_string(session["amount_total"].as_i64().unwrap_or(0), &currency);
    let plan = session["metadata"]["plan"]
        .as_str()
        .unwrap_or("subscription")
        .to_owned();
    let body = if s("status") == "open" {
        format!(
            r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Fake Stripe Checkout</title></head>
<body style="font-family:sans-serif;max-width:32rem;margin:3rem auto">
<p><strong>Fake Stripe Checkout</strong> (development only: no card, no money)</p>
<h1>{plan}</h1><p>{amount} {cur} per month</p>
<form method="post" action="/stripe/checkout/{id}/pay"><button type="submit">Pay</button></form>
<p><a href="{cancel}">Cancel</a></p></body></html>"#,
            plan = html_escape(&plan),
            amount = html_escape(&amount),
            cur = html_escape(&currency.to_ascii_uppercase()),
            id = html_escape(id),
            cancel = html_escape(&s("cancel_url")),
        )
    } else {
        format!(
            "<!doctype html><title>Checkout</title><p>This checkout session is {}.</p>",
            html_escape(&s("status"))
        )
    };
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(body)
}

async fn pay(shared: &Arc<Shared>, id: &str) -> HttpResponse {
    let success = shared
        .lock()
        .stripe
        .sessions
        .get(id)
        .and_then(|s| s["success_url"].as_str().map(str::to_owned));
    match complete_checkout(shared, id).await {
        Ok(_) => {
            let to = success
                .unwrap_or_default()
                .replace("{CHECKOUT_SESSION_ID}", id);
            HttpResponse::SeeOther()
                .insert_header(("Location", to))
                .finish()
        }
        Err(FakeError::UnknownSession) => {
            HttpResponse::NotFound().body("No such checkout session.")
        }
        Err(e) => HttpResponse::Conflict().body(e.to_string()),
    }
}
