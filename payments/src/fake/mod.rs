//! Local servers that speak MTN MoMo Collections, Airtel Money Collections
//! and Stripe (Checkout, subscriptions, signed webhooks) closely enough for
//! the production clients of this crate to run against them unchanged:
//! same paths, headers, credential checks (a wrong key is a 401), status
//! codes and bodies, callbacks and webhooks sent to the configured URLs.
//!
//! One HTTP server on `127.0.0.1:0` (or [`FakeOptions::bind`]) serves the
//! three providers under `/momo`, `/airtel` and `/stripe`. Tests script the
//! payer's side per phone number ([`PayerScript`]): success, failure with a
//! reason, a payment that stays pending, an answer after a delay (a
//! timeout), a different amount or currency reported, callbacks duplicated,
//! delayed or out of order. Every request received is recorded
//! ([`FakeProviders::requests`]) and every callback or webhook sent
//! ([`FakeProviders::deliveries`]).
//!
//! Start it inside a Tokio runtime (a test, `actix_web::rt::System`, or
//! `#[tokio::main]`); the server runs on its own worker thread and stops
//! when the [`FakeProviders`] is dropped.

mod airtel;
mod momo;
mod server;
mod stripe;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::Value;
use thiserror::Error;
use uuid::Uuid;

use crate::airtel::AirtelConfig;
use crate::momo::MomoConfig;
use crate::stripe::StripeConfig;

pub use stripe::Signing;

/// Credentials, prices and behaviour of the fakes. `Default` gives test
/// credentials, one-hour tokens and the prices of the contract.
#[derive(Debug, Clone)]
pub struct FakeOptions {
    /// Where to listen; port 0 picks a free one.
    pub bind: SocketAddr,
    pub momo_subscription_key: String,
    pub momo_api_user: String,
    pub momo_api_key: String,
    pub momo_target_environment: String,
    /// How MoMo calls `X-Callback-Url`: `POST` by default (the contract's
    /// `POST /v1/webhooks/mtn-momo`); MTN has been seen to use `PUT` too, so
    /// a receiver should accept both and tests can pick `Put`.
    pub momo_callback_method: CallbackMethod,
    pub airtel_client_id: String,
    pub airtel_client_secret: String,
    pub airtel_country: String,
    pub airtel_currency: String,
    /// Airtel's callback URL, registered in its portal (not per request).
    pub airtel_callback_url: Option<String>,
    pub stripe_secret_key: String,
    /// Stripe signs each webhook with every one of these (a `v1` each),
    /// as it does while an endpoint secret is being rotated.
    pub stripe_webhook_secrets: Vec<String>,
    /// Where Stripe sends events (the endpoint configured in its dashboard).
    pub stripe_webhook_url: Option<String>,
    /// Price id → (amount in minor units, currency), monthly.
    pub stripe_prices: Vec<(String, i64, String)>,
    /// `expires_in` of MoMo and Airtel tokens, enforced by the fakes.
    pub token_expires_in: Duration,
    /// Delay before a callback is sent once the payer has answered (every
    /// [`PayerScript`] may override it).
    pub callback_delay: Duration,
    /// How payers not scripted with [`FakeProviders::script_payer`] answer.
    pub default_script: PayerScript,
}

impl Default for FakeOptions {
    fn default() -> Self {
        FakeOptions {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            momo_subscription_key: "fake-momo-subscription-key".into(),
            momo_api_user: "5d3b4f52-6a3c-4f6e-9a43-0c8a2c7b9e10".into(),
            momo_api_key: "fake-momo-api-key".into(),
            momo_target_environment: "sandbox".into(),
            momo_callback_method: CallbackMethod::Post,
            airtel_client_id: "fake-airtel-client-id".into(),
            airtel_client_secret: "fake-airtel-client-secret".into(),
            airtel_country: "RW".into(),
            airtel_currency: "RWF".into(),
            airtel_callback_url: None,
            stripe_secret_key: "sk_test_fake_bwenge".into(),
            stripe_webhook_secrets: vec!["whsec_fake_bwenge".into()],
            stripe_webhook_url: None,
            stripe_prices: vec![
                ("price_basic_usd".into(), 3000, "usd".into()),
                ("price_pro_usd".into(), 10000, "usd".into()),
                ("price_enterprise_usd".into(), 30000, "usd".into()),
            ],
            token_expires_in: Duration::from_secs(3600),
            callback_delay: Duration::ZERO,
            default_script: PayerScript::default(),
        }
    }
}

impl FakeOptions {
    /// For `bwenge dev-payments`: listens on `bind`, calls back the Bwenge
    /// server at `server_url` (Stripe webhooks, Airtel callbacks), and payers
    /// approve after five seconds so that a pending payment can be seen
    /// (see [`FakeProviders::start_development`] for the scripted numbers).
    pub fn development(bind: SocketAddr, server_url: &str) -> FakeOptions {
        let server = server_url.trim_end_matches('/');
        FakeOptions {
            bind,
            airtel_callback_url: Some(format!("{server}/v1/webhooks/airtel-money")),
            stripe_webhook_url: Some(format!("{server}/v1/webhooks/stripe")),
            callback_delay: Duration::from_secs(1),
            default_script: PayerScript::succeed().approving_after(Duration::from_secs(5)),
            ..FakeOptions::default()
        }
    }
}

/// The HTTP method of MoMo callbacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallbackMethod {
    Put,
    Post,
}

/// Which fake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Provider {
    Momo,
    Airtel,
    Stripe,
}

/// How the payer answers the prompt on the phone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Approves: MoMo `SUCCESSFUL`, Airtel `TS`.
    Succeed,
    /// Declines or fails: MoMo `FAILED` with `reason`, Airtel `TF` with `message`.
    Fail { reason: String },
    /// Never answers: MoMo `PENDING`, Airtel `TIP`, no callback.
    StayPending,
    /// Airtel cannot tell (`TA`, "ambiguous"; MoMo shows `PENDING`), no
    /// callback: the payment must be asked about again later.
    Ambiguous,
}

impl Outcome {
    /// Whether the payer's answer is final (and called back).
    pub fn is_final(&self) -> bool {
        matches!(self, Outcome::Succeed | Outcome::Fail { .. })
    }
}

/// What happens to the payments of one phone number. Default: succeeds at
/// once, one callback after [`FakeOptions::callback_delay`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayerScript {
    pub outcome: Outcome,
    /// The payment stays pending this long before `outcome` shows.
    pub approve_after: Duration,
    /// Every answer of the provider about this payer (the request and the
    /// status lookups) waits this long: longer than the client's timeout
    /// is a provider that times out.
    pub response_delay: Duration,
    /// The provider refuses the request itself with this HTTP status and message.
    pub reject_request: Option<(u16, String)>,
    /// The amount (minor units) MoMo's status reports instead of the one requested.
    pub report_amount: Option<i64>,
    /// The currency MoMo's status reports instead of the one requested.
    pub report_currency: Option<String>,
    /// How many identical callbacks are sent once the outcome is final (0: none).
    pub callbacks: u32,
    /// Overrides [`FakeOptions::callback_delay`].
    pub callback_delay: Option<Duration>,
    /// After the final callbacks, a stale "pending" one arrives (out of order).
    pub stale_pending_callback: bool,
}

impl Default for PayerScript {
    fn default() -> Self {
        PayerScript {
            outcome: Outcome::Succeed,
            approve_after: Duration::ZERO,
            response_delay: Duration::ZERO,
            reject_request: None,
            report_amount: None,
            report_currency: None,
            callbacks: 1,
            callback_delay: None,
            stale_pending_callback: false,
        }
    }
}

impl PayerScript {
    pub fn succeed() -> Self {
        Self::default()
    }

    pub fn fail(reason: &str) -> Self {
        PayerScript {
            outcome: Outcome::Fail {
                reason: reason.into(),
            },
            ..Self::default()
        }
    }

    pub fn stay_pending() -> Self {
        PayerScript {
            outcome: Outcome::StayPending,
            ..Self::default()
        }
    }

    /// The provider answers after `delay` (use more than the client's timeout).
    pub fn answering_after(mut self, delay: Duration) -> Self {
        self.response_delay = delay;
        self
    }

    pub fn approving_after(mut self, delay: Duration) -> Self {
        self.approve_after = delay;
        self
    }

    pub fn rejecting(mut self, status: u16, message: &str) -> Self {
        self.reject_request = Some((status, message.into()));
        self
    }

    /// MoMo reports this amount and currency instead of the requested ones.
    pub fn reporting(mut self, amount: i64, currency: &str) -> Self {
        self.report_amount = Some(amount);
        self.report_currency = Some(currency.into());
        self
    }

    pub fn with_callbacks(mut self, count: u32) -> Self {
        self.callbacks = count;
        self
    }

    pub fn with_callback_delay(mut self, delay: Duration) -> Self {
        self.callback_delay = Some(delay);
        self
    }

    /// A stale pending callback after the final one(s).
    pub fn out_of_order(mut self) -> Self {
        self.stale_pending_callback = true;
        self
    }
}

/// One request a fake received.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    pub provider: Provider,
    pub method: String,
    /// Path below the provider's prefix, e.g. `/collection/v1_0/requesttopay`.
    pub path: String,
    pub query: String,
    /// Lower-case names.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RecordedRequest {
    /// The first value of a header (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }

    /// A form-encoded body as pairs, in order.
    pub fn form(&self) -> Vec<(String, String)> {
        serde_urlencoded::from_bytes(&self.body).unwrap_or_default()
    }

    /// The value of one form field.
    pub fn form_value(&self, key: &str) -> Option<String> {
        self.form()
            .into_iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
    }
}

/// A callback or webhook a fake sent (or tried to).
#[derive(Debug, Clone)]
pub struct Delivery {
    pub provider: Provider,
    pub method: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
    /// The receiver's HTTP status; `None` when it could not be reached.
    pub status: Option<u16>,
    pub error: Option<String>,
}

impl Delivery {
    pub fn json(&self) -> Option<Value> {
        serde_json::from_str(&self.body).ok()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A payment as a fake mobile-money provider holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakePayment {
    pub provider: Provider,
    /// MoMo `X-Reference-Id` or Airtel `transaction.id`.
    pub id: String,
    /// MoMo `externalId` or Airtel `reference`.
    pub external_id: String,
    pub msisdn: String,
    pub amount: i64,
    pub currency: String,
    /// `PENDING`/`SUCCESSFUL`/`FAILED` (MoMo) or `TIP`/`TS`/`TF` (Airtel), now.
    pub status: String,
    pub callback_url: Option<String>,
}

/// A helper refused: the named object does not exist or is in the wrong state.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FakeError {
    #[error("no such payment")]
    UnknownPayment,
    #[error("no such checkout session")]
    UnknownSession,
    #[error("no such subscription")]
    UnknownSubscription,
    #[error("no such event")]
    UnknownEvent,
    #[error("the checkout session is not open")]
    SessionNotOpen,
    #[error("no URL to deliver to (set it with set_*_url)")]
    NoUrl,
}

pub(crate) struct Shared {
    pub(crate) opts: FakeOptions,
    pub(crate) base_url: String,
    pub(crate) http: reqwest::Client,
    pub(crate) inner: Mutex<Inner>,
}

#[derive(Default)]
pub(crate) struct Inner {
    pub(crate) requests: Vec<RecordedRequest>,
    pub(crate) deliveries: Vec<Delivery>,
    pub(crate) scripts: HashMap<String, PayerScript>,
    pub(crate) unavailable: HashSet<Provider>,
    pub(crate) momo_tokens: HashMap<String, Instant>,
    pub(crate) airtel_tokens: HashMap<String, Instant>,
    pub(crate) token_requests: HashMap<Provider, usize>,
    pub(crate) momo: HashMap<Uuid, momo::MomoPayment>,
    pub(crate) airtel: HashMap<String, airtel::AirtelPayment>,
    pub(crate) airtel_callback_url: Option<String>,
    pub(crate) stripe: stripe::StripeState,
}

impl Shared {
    pub(crate) fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn script_for(&self, msisdn: &str) -> PayerScript {
        let key = phone_key(msisdn);
        let mut s = self
            .lock()
            .scripts
            .get(&key)
            .cloned()
            .unwrap_or_else(|| self.opts.default_script.clone());
        if s.callback_delay.is_none() {
            s.callback_delay = Some(self.opts.callback_delay);
        }
        s
    }

    pub(crate) fn record_delivery(&self, d: Delivery) {
        self.lock().deliveries.push(d);
    }

    /// Sends one callback or webhook and records the outcome.
    pub(crate) async fn deliver(
        &self,
        provider: Provider,
        method: reqwest::Method,
        url: &str,
        headers: Vec<(String, String)>,
        body: String,
    ) -> Delivery {
        let mut req = self
            .http
            .request(method.clone(), url)
            .header("Content-Type", "application/json")
            .body(body.clone());
        for (k, v) in &headers {
            req = req.header(k.as_str(), v.as_str());
        }
        let (status, error) = match req.send().await {
            Ok(resp) => {
                let s = resp.status().as_u16();
                // Drain the body so the receiver's answer is complete.
                let _ = resp.bytes().await;
                (Some(s), None)
            }
            Err(e) => (None, Some(e.to_string())),
        };
        let d = Delivery {
            provider,
            method: method.to_string(),
            url: url.to_owned(),
            headers,
            body,
            status,
            error,
        };
        self.record_delivery(d.clone());
        d
    }
}

/// Phone numbers are matched on their last nine digits, so that
/// `+250788123456` (MoMo's `partyId`) and `788123456` (Airtel's national
/// `msisdn`) are the same payer.
pub(crate) fn phone_key(msisdn: &str) -> String {
    let digits: Vec<char> = msisdn.chars().filter(char::is_ascii_digit).collect();
    let start = digits.len().saturating_sub(9);
    digits[start..].iter().collect()
}

/// The running fakes. Dropping it stops the server.
pub struct FakeProviders {
    shared: Arc<Shared>,
    addr: SocketAddr,
    handle: actix_web::dev::ServerHandle,
}

impl Drop for FakeProviders {
    fn drop(&mut self) {
        // Sends the stop command now; the returned future only waits for it.
        drop(self.handle.stop(false));
    }
}

impl FakeProviders {
    /// Binds `opts.bind` and serves the three fakes. Must be called inside
    /// a Tokio runtime.
    pub fn start(opts: FakeOptions) -> std::io::Result<FakeProviders> {
        let listener = std::net::TcpListener::bind(opts.bind)?;
        let addr = listener.local_addr()?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            // No pooled connection outlives the runtime that opened it: the
            // fakes send from their worker and from the caller's runtime.
            .pool_max_idle_per_host(0)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(std::io::Error::other)?;
        let mut inner = Inner {
            airtel_callback_url: opts.airtel_callback_url.clone(),
            ..Inner::default()
        };
        inner.stripe.webhook_url = opts.stripe_webhook_url.clone();
        for (id, amount, currency) in &opts.stripe_prices {
            inner
                .stripe
                .prices
                .insert(id.clone(), (*amount, currency.to_ascii_lowercase()));
        }
        let shared = Arc::new(Shared {
            base_url: format!("http://{addr}"),
            opts,
            http,
            inner: Mutex::new(inner),
        });
        let handle = server::serve(shared.clone(), listener)?;
        Ok(FakeProviders {
            shared,
            addr,
            handle,
        })
    }

    /// The fakes for `bwenge dev-payments` ([`FakeOptions::development`]),
    /// with `+250780000001`/`+250730000001` declining and
    /// `+250780000002`/`+250730000002` never answering.
    pub fn start_development(bind: SocketAddr, server_url: &str) -> std::io::Result<FakeProviders> {
        let fake = FakeProviders::start(FakeOptions::development(bind, server_url))?;
        let slow = Duration::from_secs(5);
        for n in ["780000001", "730000001"] {
            fake.script_payer(
                n,
                PayerScript::fail("NOT_ENOUGH_FUNDS").approving_after(slow),
            );
        }
        for n in ["780000002", "730000002"] {
            fake.script_payer(n, PayerScript::stay_pending());
        }
        Ok(fake)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:{port}`.
    pub fn base_url(&self) -> String {
        self.shared.base_url.clone()
    }

    /// The MoMo base URL (`MomoConfig::base_url`).
    pub fn momo_url(&self) -> String {
        format!("{}/momo", self.shared.base_url)
    }

    /// The Airtel base URL (`AirtelConfig::base_url`).
    pub fn airtel_url(&self) -> String {
        format!("{}/airtel", self.shared.base_url)
    }

    /// The Stripe API base URL (`StripeConfig::base_url`).
    pub fn stripe_url(&self) -> String {
        format!("{}/stripe", self.shared.base_url)
    }

    pub fn options(&self) -> &FakeOptions {
        &self.shared.opts
    }

    /// A client config with the fake's URL and credentials.
    pub fn momo_config(&self, callback_url: Option<String>) -> MomoConfig {
        let o = &self.shared.opts;
        MomoConfig {
            base_url: self.momo_url(),
            subscription_key: o.momo_subscription_key.clone(),
            api_user: o.momo_api_user.clone(),
            api_key: o.momo_api_key.clone(),
            target_environment: o.momo_target_environment.clone(),
            callback_url,
        }
    }

    pub fn airtel_config(&self) -> AirtelConfig {
        let o = &self.shared.opts;
        AirtelConfig {
            base_url: self.airtel_url(),
            client_id: o.airtel_client_id.clone(),
            client_secret: o.airtel_client_secret.clone(),
            country: o.airtel_country.clone(),
            currency: o.airtel_currency.clone(),
        }
    }

    pub fn stripe_config(&self) -> StripeConfig {
        let o = &self.shared.opts;
        StripeConfig {
            base_url: self.stripe_url(),
            secret_key: o.stripe_secret_key.clone(),
            webhook_secrets: o.stripe_webhook_secrets.clone(),
        }
    }

    /// What to set for Bwenge to use these fakes (`BWENGE_*` variables, the
    /// names of the server's `[billing]` settings), and how to use them.
    pub fn dev_instructions(&self) -> String {
        let o = &self.shared.opts;
        let inner = self.shared.lock();
        let mut prices: Vec<_> = inner.stripe.prices.keys().cloned().collect();
        prices.sort();
        let price_for = |plan: &str| {
            prices
                .iter()
                .find(|p| p.contains(plan))
                .cloned()
                .unwrap_or_default()
        };
        let mut out = format!(
            "Fake payment providers on {base} (MTN MoMo, Airtel Money, Stripe: no accounts, no money).\n\
             Webhooks and callbacks go to: Stripe {stripe_hook}, Airtel {airtel_hook}.\n\
             Set for the Bwenge server:\n\n",
            base = self.shared.base_url,
            stripe_hook = inner.stripe.webhook_url.as_deref().unwrap_or("(none)"),
            airtel_hook = inner.airtel_callback_url.as_deref().unwrap_or("(none)"),
        );
        let vars = [
            ("BILLING__MTN_MOMO__ENABLED", "true".to_owned()),
            ("BILLING__MTN_MOMO__BASE_URL", self.momo_url()),
            (
                "BILLING__MTN_MOMO__SUBSCRIPTION_KEY",
                o.momo_subscription_key.clone(),
            ),
            ("BILLING__MTN_MOMO__API_USER", o.momo_api_user.clone()),
            ("BILLING__MTN_MOMO__API_KEY", o.momo_api_key.clone()),
            (
                "BILLING__MTN_MOMO__TARGET_ENVIRONMENT",
                o.momo_target_environment.clone(),
            ),
            ("BILLING__AIRTEL_MONEY__ENABLED", "true".to_owned()),
            ("BILLING__AIRTEL_MONEY__BASE_URL", self.airtel_url()),
            (
                "BILLING__AIRTEL_MONEY__CLIENT_ID",
                o.airtel_client_id.clone(),
            ),
            (
                "BILLING__AIRTEL_MONEY__CLIENT_SECRET",
                o.airtel_client_secret.clone(),
            ),
            ("BILLING__AIRTEL_MONEY__COUNTRY", o.airtel_country.clone()),
            ("BILLING__AIRTEL_MONEY__CURRENCY", o.airtel_currency.clone()),
            ("BILLING__STRIPE__ENABLED", "true".to_owned()),
            ("BILLING__STRIPE__BASE_URL", self.stripe_url()),
            ("BILLING__STRIPE__SECRET_KEY", o.stripe_secret_key.clone()),
            (
                "BILLING__STRIPE__WEBHOOK_SECRET",
                o.stripe_webhook_secrets
                    .first()
                    .cloned()
                    .unwrap_or_default(),
            ),
            ("BILLING__PLANS__BASIC__STRIPE_PRICE_ID", price_for("basic")),
            ("BILLING__PLANS__PRO__STRIPE_PRICE_ID", price_for("pro")),
            (
                "BILLING__PLANS__ENTERPRISE__STRIPE_PRICE_ID",
                price_for("enterprise"),
            ),
        ];
        for (k, v) in vars {
            out.push_str(&format!("export BWENGE_{k}={v}\n"));
        }
        out.push_str(
            "\nMobile money: any phone number pays after 5 s; +250780000001 and +250730000001 \
             decline (NOT_ENOUGH_FUNDS), +250780000002 and +250730000002 never answer.\n\
             Stripe: open the checkout_url and press Pay.\n",
        );
        out
    }

    /// Airtel's callback URL (registered in its portal in real life).
    pub fn set_airtel_callback_url(&self, url: Option<String>) {
        self.shared.lock().airtel_callback_url = url;
    }

    /// Stripe's webhook endpoint.
    pub fn set_stripe_webhook_url(&self, url: Option<String>) {
        self.shared.lock().stripe.webhook_url = url;
    }

    /// How the payer at `msisdn` (any form; matched on its last nine
    /// digits) answers from now on.
    pub fn script_payer(&self, msisdn: &str, script: PayerScript) {
        self.shared.lock().scripts.insert(phone_key(msisdn), script);
    }

    /// The provider answers every request with `503` while `down`.
    pub fn set_unavailable(&self, provider: Provider, down: bool) {
        let mut inner = self.shared.lock();
        if down {
            inner.unavailable.insert(provider);
        } else {
            inner.unavailable.remove(&provider);
        }
    }

    /// Revokes every MoMo and Airtel token: the next call with one is a 401.
    pub fn expire_tokens(&self) {
        let mut inner = self.shared.lock();
        inner.momo_tokens.clear();
        inner.airtel_tokens.clear();
    }

    /// Tokens issued so far by `provider` (MoMo or Airtel).
    pub fn token_requests(&self, provider: Provider) -> usize {
        self.shared
            .lock()
            .token_requests
            .get(&provider)
            .copied()
            .unwrap_or(0)
    }

    /// Every request received, oldest first.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.lock().requests.clone()
    }

    /// The requests to `provider` whose method and path are these.
    pub fn requests_to(
        &self,
        provider: Provider,
        method: &str,
        path: &str,
    ) -> Vec<RecordedRequest> {
        self.shared
            .lock()
            .requests
            .iter()
            .filter(|r| r.provider == provider && r.method == method && r.path == path)
            .cloned()
            .collect()
    }

    /// Every callback and webhook sent, in the order they completed.
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.shared.lock().deliveries.clone()
    }

    /// Waits (up to `limit`) until at least `count` deliveries were made,
    /// and returns them all.
    pub async fn wait_for_deliveries(&self, count: usize, limit: Duration) -> Vec<Delivery> {
        let start = Instant::now();
        loop {
            let all = self.deliveries();
            if all.len() >= count || start.elapsed() >= limit {
                return all;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// A MoMo payment by its `X-Reference-Id`.
    pub fn momo_payment(&self, reference_id: Uuid) -> Option<FakePayment> {
        let inner = self.shared.lock();
        inner.momo.get(&reference_id).map(momo::MomoPayment::view)
    }

    /// An Airtel payment by its transaction id.
    pub fn airtel_payment(&self, transaction_id: &str) -> Option<FakePayment> {
        let inner = self.shared.lock();
        inner
            .airtel
            .get(transaction_id)
            .map(airtel::AirtelPayment::view)
    }

    /// The payer answers a MoMo payment now (for a payer scripted to stay
    /// pending); callbacks follow as the payer's script says.
    pub fn settle_momo(&self, reference_id: Uuid, outcome: Outcome) -> Result<(), FakeError> {
        momo::settle(&self.shared, reference_id, outcome)
    }

    /// The payer answers an Airtel payment now; callbacks follow.
    pub fn settle_airtel(&self, transaction_id: &str, outcome: Outcome) -> Result<(), FakeError> {
        airtel::settle(&self.shared, transaction_id, outcome)
    }

    /// Sends MoMo's callback for this payment again, with its current
    /// status, to its `X-Callback-Url` (a duplicate).
    pub async fn resend_momo_callback(&self, reference_id: Uuid) -> Result<Delivery, FakeError> {
        momo::resend_callback(&self.shared, reference_id).await
    }

    /// Sends Airtel's callback for this payment again, with its current status.
    pub async fn resend_airtel_callback(
        &self,
        transaction_id: &str,
    ) -> Result<Delivery, FakeError> {
        airtel::resend_callback(&self.shared, transaction_id).await
    }

    /// A forged MoMo callback: `body` sent to `url` as MTN would send it
    /// (same method, same headers), whatever the payment's real status.
    pub async fn forge_momo_callback(&self, url: &str, body: Value) -> Delivery {
        momo::send_callback(&self.shared, url, body.to_string()).await
    }

    /// A forged Airtel callback `{transaction:{id, status_code, airtel_money_id, message}}`
    /// to the configured callback URL.
    pub async fn forge_airtel_callback(
        &self,
        transaction_id: &str,
        status_code: &str,
    ) -> Result<Delivery, FakeError> {
        airtel::forge_callback(&self.shared, transaction_id, status_code).await
    }

    // ------------------------------------------------------------- Stripe

    /// Adds a price (minor units, monthly) to the fake's catalogue.
    pub fn add_stripe_price(&self, price_id: &str, amount: i64, currency: &str) {
        self.shared
            .lock()
            .stripe
            .prices
            .insert(price_id.into(), (amount, currency.to_ascii_lowercase()));
    }

    /// A checkout session as the fake holds it (the Stripe object).
    pub fn stripe_session(&self, session_id: &str) -> Option<Value> {
        self.shared.lock().stripe.sessions.get(session_id).cloned()
    }

    /// A subscription as the fake holds it (the Stripe object).
    pub fn stripe_subscription(&self, subscription_id: &str) -> Option<Value> {
        self.shared
            .lock()
            .stripe
            .subscriptions
            .get(subscription_id)
            .cloned()
    }

    /// The customer pays on the hosted page: the session completes, a
    /// customer, a subscription (a month from now) and a paid invoice are
    /// created, and `checkout.session.completed` then `invoice.paid` are
    /// sent, signed, to the webhook URL. Same as `POST /stripe/checkout/{id}/pay`.
    pub async fn complete_checkout(&self, session_id: &str) -> Result<Vec<Delivery>, FakeError> {
        stripe::complete_checkout(&self.shared, session_id).await
    }

    /// The customer leaves the hosted page: the session expires
    /// (`checkout.session.expired` is sent).
    pub async fn expire_checkout(&self, session_id: &str) -> Result<Delivery, FakeError> {
        stripe::expire_checkout(&self.shared, session_id).await
    }

    /// The next period is paid: `customer.subscription.updated` (new
    /// period) then `invoice.paid`.
    pub async fn renew_subscription(
        &self,
        subscription_id: &str,
    ) -> Result<Vec<Delivery>, FakeError> {
        stripe::renew(&self.shared, subscription_id).await
    }

    /// The renewal charge fails: `invoice.payment_failed`, then
    /// `customer.subscription.updated` with `status: past_due`.
    pub async fn fail_renewal(&self, subscription_id: &str) -> Result<Vec<Delivery>, FakeError> {
        stripe::fail_renewal(&self.shared, subscription_id).await
    }

    /// Sets `cancel_at_period_end` (as the customer portal or the API
    /// would): `customer.subscription.updated`.
    pub async fn set_cancel_at_period_end(
        &self,
        subscription_id: &str,
        cancel: bool,
    ) -> Result<Delivery, FakeError> {
        stripe::set_cancel_at_period_end(&self.shared, subscription_id, cancel, true)
            .await
            .and_then(|d| d.ok_or(FakeError::NoUrl))
    }

    /// The subscription ends now (end of a cancelled period, or unpaid
    /// after retries): `customer.subscription.deleted`.
    pub async fn delete_subscription(&self, subscription_id: &str) -> Result<Delivery, FakeError> {
        stripe::delete_subscription(&self.shared, subscription_id, true)
            .await
            .and_then(|d| d.ok_or(FakeError::NoUrl))
    }

    /// Builds and sends an event of `event_type` about `object` with the
    /// given signing (valid, wrong secret, stale, …).
    pub async fn send_stripe_event(
        &self,
        event_type: &str,
        object: Value,
        signing: Signing,
    ) -> Result<Delivery, FakeError> {
        stripe::send_new_event(&self.shared, event_type, object, None, signing).await
    }

    /// Sends an already sent event again (same id, same payload) with the
    /// given signing: `Signing::Valid` is Stripe's retry; anything else an
    /// attacker's replay.
    pub async fn resend_stripe_event(
        &self,
        event_id: &str,
        signing: Signing,
    ) -> Result<Delivery, FakeError> {
        stripe::resend_event(&self.shared, event_id, signing).await
    }

    /// Every event the fake created, oldest first.
    pub fn stripe_events(&self) -> Vec<Value> {
        self.shared.lock().stripe.events.clone()
    }
}
