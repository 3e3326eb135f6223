//! Stripe: Checkout Sessions for subscriptions (form-encoded over reqwest,
//! with `Idempotency-Key`), subscription cancellation at period end, and
//! webhook signature verification (`Stripe-Signature`).

use std::fmt;
use std::time::Duration;

use hmac::{Hmac, Mac};
use serde::Deserialize;
use serde_json::Value;
use sha2::Sha256;
use thiserror::Error;

use crate::{DEFAULT_TIMEOUT, ProviderError, join, redact, transport_error};

type HmacSha256 = Hmac<Sha256>;

/// Stripe's default and the contract's webhook tolerance: five minutes.
pub const DEFAULT_TOLERANCE_SECS: i64 = 300;

/// Where and as whom to call Stripe. `Debug` hides the secrets.
#[derive(Clone, PartialEq, Eq)]
pub struct StripeConfig {
    /// `https://api.stripe.com`.
    pub base_url: String,
    /// `sk_live_…` / `sk_test_…` (or a restricted `rk_…` key).
    pub secret_key: String,
    /// Endpoint signing secrets `whsec_…`: several while one is rotated.
    pub webhook_secrets: Vec<String>,
}

impl fmt::Debug for StripeConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StripeConfig")
            .field("base_url", &self.base_url)
            .field("secret_key", &"[redacted]")
            .field(
                "webhook_secrets",
                &format!("[{} redacted]", self.webhook_secrets.len()),
            )
            .finish()
    }
}

/// A Checkout Session for one plan's subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckoutRequest {
    /// The Stripe Price of the plan (`price_…`), from config.
    pub price_id: String,
    /// Sent as `client_reference_id` and `metadata[organisation_id]`.
    pub organisation_id: String,
    /// Bwenge's payment id: `metadata[payment_id]`.
    pub payment_id: String,
    /// The plan id: `metadata[plan]`.
    pub plan: String,
    pub success_url: String,
    pub cancel_url: String,
    pub customer_email: Option<String>,
    /// Sent as `Idempotency-Key`: the same key gives the same session.
    pub idempotency_key: String,
}

/// The session created: send the admin to `url`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct CheckoutSession {
    pub id: String,
    pub url: String,
}

/// A subscription as Stripe reports it (the fields Bwenge uses).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StripeSubscription {
    pub id: String,
    /// `active`, `past_due`, `canceled`, `incomplete`, `trialing`, `unpaid`, …
    pub status: String,
    pub cancel_at_period_end: bool,
    /// Unix seconds (top-level `current_period_end`, or the first item's on
    /// API versions from 2025-03-31).
    pub current_period_end: Option<i64>,
}

/// The production Stripe client.
pub struct StripeClient {
    config: StripeConfig,
    http: reqwest::Client,
    timeout: Duration,
}

impl StripeClient {
    pub fn new(config: StripeConfig, http: reqwest::Client) -> Self {
        StripeClient {
            config,
            http,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// Every call gives up after `timeout` with [`ProviderError::Unreachable`].
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    pub fn config(&self) -> &StripeConfig {
        &self.config
    }

    /// `POST /v1/checkout/sessions` with `mode=subscription`.
    pub async fn create_checkout_session(
        &self,
        req: &CheckoutRequest,
    ) -> Result<CheckoutSession, ProviderError> {
        let mut form: Vec<(&str, &str)> = vec![
            ("mode", "subscription"),
            ("line_items[0][price]", &req.price_id),
            ("line_items[0][quantity]", "1"),
            ("client_reference_id", &req.organisation_id),
            ("success_url", &req.success_url),
            ("cancel_url", &req.cancel_url),
            ("metadata[payment_id]", &req.payment_id),
            ("metadata[plan]", &req.plan),
            ("metadata[organisation_id]", &req.organisation_id),
            ("subscription_data[metadata][payment_id]", &req.payment_id),
            ("subscription_data[metadata][plan]", &req.plan),
            (
                "subscription_data[metadata][organisation_id]",
                &req.organisation_id,
            ),
        ];
        if let Some(email) = &req.customer_email {
            form.push(("customer_email", email));
        }
        let v = self
            .send(
                reqwest::Method::POST,
                "/v1/checkout/sessions",
                Some(&form),
                Some(&req.idempotency_key),
            )
            .await?;
        serde_json::from_value(v)
            .map_err(|_| ProviderError::Protocol("a checkout session without id or url".into()))
    }

    /// `GET /v1/subscriptions/{id}`.
    pub async fn retrieve_subscription(
        &self,
        subscription_id: &str,
    ) -> Result<StripeSubscription, ProviderError> {
        let path = format!("/v1/subscriptions/{}", id_segment(subscription_id)?);
        let v = self.send(reqwest::Method::GET, &path, None, None).await?;
        parse_subscription(&v)
    }

    /// `POST /v1/subscriptions/{id}` with `cancel_at_period_end=true`: the
    /// plan runs until the period ends, then Stripe deletes the
    /// subscription (`customer.subscription.deleted`).
    pub async fn cancel_at_period_end(
        &self,
        subscription_id: &str,
        idempotency_key: &str,
    ) -> Result<StripeSubscription, ProviderError> {
        let path = format!("/v1/subscriptions/{}", id_segment(subscription_id)?);
        let form = [("cancel_at_period_end", "true")];
        let v = self
            .send(
                reqwest::Method::POST,
                &path,
                Some(&form),
                Some(idempotency_key),
            )
            .await?;
        parse_subscription(&v)
    }

    /// [`verify_webhook`] with the configured secrets and Stripe's five-minute tolerance.
    pub fn verify(
        &self,
        payload: &[u8],
        signature_header: &str,
        now_unix: i64,
    ) -> Result<StripeEvent, WebhookError> {
        verify_webhook(
            payload,
            signature_header,
            &self.config.webhook_secrets,
            now_unix,
            DEFAULT_TOLERANCE_SECS,
        )
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        form: Option<&[(&str, &str)]>,
        idempotency_key: Option<&str>,
    ) -> Result<Value, ProviderError> {
        let mut req = self
            .http
            .request(method, join(&self.config.base_url, path))
            .timeout(self.timeout)
            .bearer_auth(&self.config.secret_key);
        if let Some(form) = form {
            req = req.form(form);
        }
        if let Some(key) = idempotency_key {
            req = req.header("Idempotency-Key", key);
        }
        let resp = req.send().await.map_err(|e| transport_error(&e))?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(|e| transport_error(&e))?;
        if status.as_u16() == 404 {
            return Err(ProviderError::NotFound);
        }
        if !status.is_success() {
            return Err(ProviderError::Rejected {
                status: status.as_u16(),
                message: redact(&stripe_error(&bytes), &[&self.config.secret_key]),
            });
        }
        serde_json::from_slice(&bytes)
            .map_err(|_| ProviderError::Protocol("an answer that is not JSON".into()))
    }
}

fn id_segment(id: &str) -> Result<&str, ProviderError> {
    if !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        Ok(id)
    } else {
        Err(ProviderError::Protocol("not a Stripe id".into()))
    }
}

/// `{error:{type, code, message}}` as one line.
fn stripe_error(body: &[u8]) -> String {
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return "an answer that is not JSON".into();
    };
    let e = v.get("error");
    let s = |k: &str| e.and_then(|e| e.get(k)).and_then(Value::as_str);
    match (s("code").or(s("type")), s("message")) {
        (Some(c), Some(m)) => format!("{c}: {m}"),
        (None, Some(m)) => m.to_owned(),
        (Some(c), None) => c.to_owned(),
        (None, None) => "no details".into(),
    }
}

fn parse_subscription(v: &Value) -> Result<StripeSubscription, ProviderError> {
    let id = v
        .get("id")
        .and_then(Value::as_str)
        .ok_or_else(|| ProviderError::Protocol("a subscription without id".into()))?;
    Ok(StripeSubscription {
        id: id.to_owned(),
        status: v
            .get("status")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        cancel_at_period_end: v
            .get("cancel_at_period_end")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        current_period_end: subscription_period_end(v),
    })
}

fn subscription_period_end(v: &Value) -> Option<i64> {
    v.get("current_period_end")
        .and_then(Value::as_i64)
        .or_else(|| {
            v.pointer("/items/data/0/current_period_end")
                .and_then(Value::as_i64)
        })
}

// ---------------------------------------------------------------- webhooks

/// Why a webhook was refused. None of them says which secret was tried.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum WebhookError {
    /// No `t=` or no `v1=`, a `t` that is not a number, or not `k=v` pairs.
    #[error("malformed Stripe-Signature header")]
    MalformedHeader,
    /// No `v1` signature matches any configured secret.
    #[error("no valid signature")]
    NoValidSignature,
    /// The signed timestamp is further than the tolerance from now (replay).
    #[error("timestamp outside the tolerance")]
    OutsideTolerance,
    /// Signed, but not a Stripe event.
    #[error("the payload is not a Stripe event")]
    InvalidPayload,
    /// No signing secret configured: nothing can be verified.
    #[error("no webhook secret configured")]
    NotConfigured,
}

/// The five event types Bwenge handles, and the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StripeEventKind {
    CheckoutSessionCompleted,
    InvoicePaid,
    InvoicePaymentFailed,
    SubscriptionUpdated,
    SubscriptionDeleted,
    Other,
}

/// A verified Stripe event.
#[derive(Debug, Clone, PartialEq)]
pub struct StripeEvent {
    /// `evt_…`: store it to apply each event once.
    pub id: String,
    /// JSON `type`, e.g. `invoice.paid`.
    pub event_type: String,
    /// Unix seconds.
    pub created: i64,
    /// `data.object`: the session, invoice or subscription.
    pub data_object: Value,
    /// `data.previous_attributes` of `*.updated` events (else `Null`).
    pub previous_attributes: Value,
    pub livemode: bool,
}

#[derive(Deserialize)]
struct RawEvent {
    id: String,
    #[serde(rename = "type")]
    event_type: String,
    created: i64,
    data: RawData,
    #[serde(default)]
    livemode: bool,
}

#[derive(Deserialize)]
struct RawData {
    object: Value,
    #[serde(default)]
    previous_attributes: Value,
}

/// The `Stripe-Signature` value Stripe would send for `payload` signed with
/// `secret` at `timestamp`.
pub fn signature_header(payload: &[u8], secret: &str, timestamp: i64) -> String {
    format!("t={timestamp},v1={}", sign(payload, secret, timestamp))
}

/// Hex HMAC-SHA256 of `"{timestamp}.{payload}"` with `secret` as key.
pub fn sign(payload: &[u8], secret: &str, timestamp: i64) -> String {
    mac(payload, secret, timestamp)
        .map(|m| hex::encode(m.finalize().into_bytes()))
        .unwrap_or_default()
}

/// HMAC takes keys of any length, so this is always `Some`.
fn mac(payload: &[u8], secret: &str, timestamp: i64) -> Option<HmacSha256> {
    let mut m = HmacSha256::new_from_slice(secret.as_bytes()).ok()?;
    m.update(timestamp.to_string().as_bytes());
    m.update(b".");
    m.update(payload);
    Some(m)
}

/// Verifies `Stripe-Signature` (`t=…,v1=…[,v1=…][,v0=…]`) over `payload`
/// as Stripe's libraries do: HMAC-SHA256 of `"{t}.{payload}"`, compared in
/// constant time against every `v1` with every secret (rotation), and the
/// timestamp within `tolerance_secs` of `now_unix` in either direction.
/// Then parses the event.
pub fn verify_webhook(
    payload: &[u8],
    signature_header: &str,
    secrets: &[String],
    now_unix: i64,
    tolerance_secs: i64,
) -> Result<StripeEvent, WebhookError> {
    let mut timestamp: Option<i64> = None;
    let mut signatures: Vec<Vec<u8>> = Vec::new();
    let mut v1_seen = false;
    for item in signature_header.split(',') {
        let (k, v) = item
            .trim()
            .split_once('=')
            .ok_or(WebhookError::MalformedHeader)?;
        match k {
            "t" => {
                if timestamp.is_some() {
                    return Err(WebhookError::MalformedHeader);
                }
                timestamp = Some(v.parse().map_err(|_| WebhookError::MalformedHeader)?);
            }
            "v1" => {
                v1_seen = true;
                // A value that is not hex cannot match: skipped.
                if let Ok(bytes) = hex::decode(v)
                    && bytes.len() == 32
                {
                    signatures.push(bytes);
                }
            }
            _ => {} // v0 (test mode) and future schemes are ignored
        }
    }
    let t = timestamp.ok_or(WebhookError::MalformedHeader)?;
    if !v1_seen {
        return Err(WebhookError::MalformedHeader);
    }
    let secrets: Vec<&String> = secrets.iter().filter(|s| !s.is_empty()).collect();
    if secrets.is_empty() {
        return Err(WebhookError::NotConfigured);
    }
    let valid = secrets.iter().any(|secret| {
        signatures.iter().any(|sig| {
            // verify_slice compares in constant time.
            mac(payload, secret, t).is_some_and(|m| m.verify_slice(sig).is_ok())
        })
    });
    if !valid {
        return Err(WebhookError::NoValidSignature);
    }
    if now_unix.saturating_sub(t).abs() > tolerance_secs {
        return Err(WebhookError::OutsideTolerance);
    }
    let raw: RawEvent =
        serde_json::from_slice(payload).map_err(|_| WebhookError::InvalidPayload)?;
    Ok(StripeEvent {
        id: raw.id,
        event_type: raw.event_type,
        created: raw.created,
        data_object: raw.data.object,
        previous_attributes: raw.data.previous_attributes,
        livemode: raw.livemode,
    })
}

impl StripeEvent {
    pub fn kind(&self) -> StripeEventKind {
        match self.event_type.as_str() {
            "checkout.session.completed" => StripeEventKind::CheckoutSessionCompleted,
            "invoice.paid" => StripeEventKind::InvoicePaid,
            "invoice.payment_failed" => StripeEventKind::InvoicePaymentFailed,
            "customer.subscription.updated" => StripeEventKind::SubscriptionUpdated,
            "customer.subscription.deleted" => StripeEventKind::SubscriptionDeleted,
            _ => StripeEventKind::Other,
        }
    }

    fn str_at(&self, pointer: &str) -> Option<&str> {
        self.data_object.pointer(pointer).and_then(Value::as_str)
    }

    /// `checkout.session`, `invoice`, `subscription`, …
    pub fn object_type(&self) -> Option<&str> {
        self.str_at("/object")
    }

    /// `cs_…`, `in_…`, `sub_…`.
    pub fn object_id(&self) -> Option<&str> {
        self.str_at("/id")
    }

    /// A session's `client_reference_id` (the organisation).
    pub fn client_reference_id(&self) -> Option<&str> {
        self.str_at("/client_reference_id")
    }

    /// `metadata[key]` of the object; for an invoice, of its subscription
    /// (`subscription_details.metadata`, or `parent.subscription_details.metadata`
    /// from API 2025-03-31), else of its first line.
    pub fn metadata(&self, key: &str) -> Option<&str> {
        let o = &self.data_object;
        [
            o.get("metadata"),
            o.pointer("/subscription_details/metadata"),
            o.pointer("/parent/subscription_details/metadata"),
            o.pointer("/lines/data/0/metadata"),
        ]
        .into_iter()
        .flatten()
        .find_map(|m| m.get(key).and_then(Value::as_str))
        .filter(|v| !v.is_empty())
    }

    pub fn payment_id(&self) -> Option<&str> {
        self.metadata("payment_id")
    }

    pub fn plan(&self) -> Option<&str> {
        self.metadata("plan")
    }

    /// `metadata[organisation_id]`, else `client_reference_id`.
    pub fn organisation_id(&self) -> Option<&str> {
        self.metadata("organisation_id")
            .or_else(|| self.client_reference_id())
    }

    /// The subscription: the object itself for `customer.subscription.*`,
    /// else its `subscription` (id or expanded), else
    /// `parent.subscription_details.subscription`.
    pub fn subscription_id(&self) -> Option<&str> {
        if self.object_type() == Some("subscription") {
            return self.object_id();
        }
        let o = &self.data_object;
        o.get("subscription")
            .and_then(|s| s.as_str().or_else(|| s.get("id").and_then(Value::as_str)))
            .or_else(|| self.str_at("/parent/subscription_details/subscription"))
    }

    /// `cus_…` (id or expanded object).
    pub fn customer_id(&self) -> Option<&str> {
        self.data_object
            .get("customer")
            .and_then(|c| c.as_str().or_else(|| c.get("id").and_then(Value::as_str)))
    }

    pub fn amount_total(&self) -> Option<i64> {
        self.data_object.get("amount_total").and_then(Value::as_i64)
    }

    pub fn amount_paid(&self) -> Option<i64> {
        self.data_object.get("amount_paid").and_then(Value::as_i64)
    }

    pub fn amount_due(&self) -> Option<i64> {
        self.data_object.get("amount_due").and_then(Value::as_i64)
    }

    /// The amount that matters for this event, in minor units: a session's
    /// `amount_total`, a paid invoice's `amount_paid`, a failed one's `amount_due`.
    pub fn amount(&self) -> Option<i64> {
        match self.kind() {
            StripeEventKind::InvoicePaid => self.amount_paid(),
            StripeEventKind::InvoicePaymentFailed => self.amount_due(),
            _ => self.amount_total(),
        }
    }

    /// Upper-case ISO 4217 (Stripe writes it lower-case).
    pub fn currency(&self) -> Option<String> {
        self.str_at("/currency").map(str::to_ascii_uppercase)
    }

    /// A session's `payment_status` (`paid`, `unpaid`, `no_payment_required`).
    pub fn payment_status(&self) -> Option<&str> {
        self.str_at("/payment_status")
    }

    /// A subscription's `status` (`active`, `past_due`, `canceled`, …).
    pub fn subscription_status(&self) -> Option<&str> {
        if self.object_type() == Some("subscription") {
            self.str_at("/status")
        } else {
            None
        }
    }

    pub fn cancel_at_period_end(&self) -> Option<bool> {
        self.data_object
            .get("cancel_at_period_end")
            .and_then(Value::as_bool)
    }

    /// End of the period paid for, Unix seconds: a subscription's
    /// `current_period_end` (or its first item's); an invoice's
    /// subscription line `period.end` (latest), else its `period_end`.
    pub fn period_end(&self) -> Option<i64> {
        self.period_bound("current_period_end", "end", "period_end")
    }

    /// Start of that period.
    pub fn period_start(&self) -> Option<i64> {
        self.period_bound("current_period_start", "start", "period_start")
    }

    fn period_bound(&self, sub_key: &str, line_key: &str, invoice_key: &str) -> Option<i64> {
        let o = &self.data_object;
        match self.object_type() {
            Some("subscription") => o.get(sub_key).and_then(Value::as_i64).or_else(|| {
                o.pointer(&format!("/items/data/0/{sub_key}"))
                    .and_then(Value::as_i64)
            }),
            Some("invoice") => {
                let lines = o.pointer("/lines/data").and_then(Value::as_array);
                let from_lines = lines.and_then(|ls| {
                    let it = ls
                        .iter()
                        .filter_map(|l| l.pointer(&format!("/period/{line_key}")))
                        .filter_map(Value::as_i64);
                    if line_key == "end" {
                        it.max()
                    } else {
                        it.min()
                    }
                });
                from_lines.or_else(|| o.get(invoice_key).and_then(Value::as_i64))
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    const NOW: i64 = 1_800_000_000;

    fn event() -> Vec<u8> {
        json!({"id":"evt_1","object":"event","type":"checkout.session.completed","created":NOW,
               "livemode":false,
               "data":{"object":{"id":"cs_1","object":"checkout.session","client_reference_id":"org-1",
                 "customer":"cus_1","subscription":"sub_1","amount_total":3000,"currency":"usd",
                 "payment_status":"paid","metadata":{"payment_id":"pay-1","plan":"basic","organisation_id":"org-1"}}}})
        .to_string()
        .into_bytes()
    }

    fn secrets(s: &[&str]) -> Vec<String> {
        s.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn a_valid_signature_gives_the_event() {
        let p = event();
        let h = signature_header(&p, "whsec_a", NOW);
        let e = verify_webhook(&p, &h, &secrets(&["whsec_a"]), NOW + 10, 300).unwrap();
        assert_eq!(e.id, "evt_1");
        assert_eq!(e.kind(), StripeEventKind::CheckoutSessionCompleted);
        assert_eq!(e.client_reference_id(), Some("org-1"));
        assert_eq!(e.payment_id(), Some("pay-1"));
        assert_eq!(e.plan(), Some("basic"));
        assert_eq!(e.subscription_id(), Some("sub_1"));
        assert_eq!(e.customer_id(), Some("cus_1"));
        assert_eq!(e.amount(), Some(3000));
        assert_eq!(e.currency().as_deref(), Some("USD"));
    }

    #[test]
    fn the_known_stripe_test_vector_verifies() {
        // Computed independently: HMAC-SHA256("whsec_test", "12345.{}").
        let p = b"{}";
        let expected = {
            let mut m = HmacSha256::new_from_slice(b"whsec_test").unwrap();
            m.update(b"12345.{}");
            hex::encode(m.finalize().into_bytes())
        };
        assert_eq!(sign(p, "whsec_test", 12345), expected);
    }

    #[test]
    fn wrong_secret_tampered_payload_and_garbage_are_refused() {
        let p = event();
        let h = signature_header(&p, "whsec_a", NOW);
        assert_eq!(
            verify_webhook(&p, &h, &secrets(&["whsec_b"]), NOW, 300),
            Err(WebhookError::NoValidSignature)
        );
        let mut tampered = p.clone();
        let pos = tampered.iter().position(|b| *b == b'3').unwrap();
        tampered[pos] = b'9';
        assert_eq!(
            verify_webhook(&tampered, &h, &secrets(&["whsec_a"]), NOW, 300),
            Err(WebhookError::NoValidSignature)
        );
        for bad in [
            "",
            "garbage",
            "t=abc,v1=00",
            "v1=00",
            &format!("t={NOW}"),
            &format!("t={NOW},v0=00"),
            &format!("t={NOW},t={NOW},v1=00"),
        ] {
            assert_eq!(
                verify_webhook(&p, bad, &secrets(&["whsec_a"]), NOW, 300),
                Err(WebhookError::MalformedHeader),
                "{bad:?}"
            );
        }
        assert_eq!(
            verify_webhook(&p, &h, &[], NOW, 300),
            Err(WebhookError::NotConfigured)
        );
    }

    #[test]
    fn rotation_and_several_v1_values() {
        let p = event();
        // The old secret's signature and the new one's side by side.
        let h = format!(
            "t={NOW},v1={},v1={},v0=deadbeef",
            sign(&p, "whsec_old", NOW),
            sign(&p, "whsec_new", NOW)
        );
        assert!(verify_webhook(&p, &h, &secrets(&["whsec_new"]), NOW, 300).is_ok());
        assert!(verify_webhook(&p, &h, &secrets(&["whsec_old"]), NOW, 300).is_ok());
        // One signature, the endpoint holding both secrets during rotation.
        let single = signature_header(&p, "whsec_new", NOW);
        assert!(
            verify_webhook(&p, &single, &secrets(&["whsec_old", "whsec_new"]), NOW, 300).is_ok()
        );
        // A non-hex v1 next to a good one does not spoil it.
        let mixed = format!("t={NOW},v1=zz,v1={}", sign(&p, "whsec_new", NOW));
        assert!(verify_webhook(&p, &mixed, &secrets(&["whsec_new"]), NOW, 300).is_ok());
    }

    #[test]
    fn stale_and_future_timestamps_are_refused() {
        let p = event();
        let secret = secrets(&["whsec_a"]);
        let old = signature_header(&p, "whsec_a", NOW - 301);
        assert_eq!(
            verify_webhook(&p, &old, &secret, NOW, 300),
            Err(WebhookError::OutsideTolerance)
        );
        let edge = signature_header(&p, "whsec_a", NOW - 300);
        assert!(verify_webhook(&p, &edge, &secret, NOW, 300).is_ok());
        let future = signature_header(&p, "whsec_a", NOW + 301);
        assert_eq!(
            verify_webhook(&p, &future, &secret, NOW, 300),
            Err(WebhookError::OutsideTolerance)
        );
    }

    #[test]
    fn a_signed_non_event_is_refused() {
        let p = br#"{"hello":"world"}"#;
        let h = signature_header(p, "whsec_a", NOW);
        assert_eq!(
            verify_webhook(p, &h, &secrets(&["whsec_a"]), NOW, 300),
            Err(WebhookError::InvalidPayload)
        );
    }

    fn ev(kind: &str, object: Value) -> StripeEvent {
        StripeEvent {
            id: "evt".into(),
            event_type: kind.into(),
            created: NOW,
            data_object: object,
            previous_attributes: Value::Null,
            livemode: false,
        }
    }

    #[test]
    fn invoice_and_subscription_helpers_read_both_api_shapes() {
        let classic = ev(
            "invoice.paid",
            json!({"id":"in_1","object":"invoice","subscription":"sub_1","customer":"cus_1",
            "amount_paid":3000,"amount_due":3000,"currency":"usd","period_end":NOW,
            "subscription_details":{"metadata":{"payment_id":"p1","plan":"basic"}},
            "lines":{"data":[{"period":{"start":NOW,"end":NOW+2_592_000}}]}}),
        );
        assert_eq!(classic.subscription_id(), Some("sub_1"));
        assert_eq!(classic.plan(), Some("basic"));
        assert_eq!(classic.amount(), Some(3000));
        assert_eq!(classic.period_end(), Some(NOW + 2_592_000));
        assert_eq!(classic.period_start(), Some(NOW));
        let basil = ev(
            "invoice.payment_failed",
            json!({"id":"in_2","object":"invoice","customer":{"id":"cus_2"},
            "amount_paid":0,"amount_due":10000,"currency":"usd",
            "parent":{"subscription_details":{"subscription":"sub_2","metadata":{"plan":"pro"}}}}),
        );
        assert_eq!(basil.subscription_id(), Some("sub_2"));
        assert_eq!(basil.customer_id(), Some("cus_2"));
        assert_eq!(basil.plan(), Some("pro"));
        assert_eq!(basil.amount(), Some(10000));
        let sub = ev(
            "customer.subscription.updated",
            json!({"id":"sub_3","object":"subscription","status":"past_due",
            "cancel_at_period_end":true,"items":{"data":[{"current_period_end":NOW}]},"metadata":{"plan":"pro"}}),
        );
        assert_eq!(sub.kind(), StripeEventKind::SubscriptionUpdated);
        assert_eq!(sub.subscription_id(), Some("sub_3"));
        assert_eq!(sub.subscription_status(), Some("past_due"));
        assert_eq!(sub.cancel_at_period_end(), Some(true));
        assert_eq!(sub.period_end(), Some(NOW));
        assert_eq!(
            ev("charge.refunded", json!({})).kind(),
            StripeEventKind::Other
        );
    }
}
