//! Payment providers for Bwenge: production clients (reqwest) for MTN MoMo
//! Collections, Airtel Money Collections and Stripe Checkout with signed
//! webhooks, and [`fake`] servers that speak each protocol locally so that
//! tests and development run without provider accounts.
//!
//! Every amount is an integer in the currency's minor unit ([`money`]);
//! conversion to the providers' decimal strings is exact.
//!
//! Changes against the brief of issue #19 (documented here as asked):
//! - [`ProviderPayment::amount`] and [`ProviderPayment::currency`] are
//!   `Option`s: Airtel's status enquiry (`GET /standard/v1/payments/{id}`)
//!   does not report the amount or currency, and inventing them would let a
//!   mismatch pass unseen. MoMo always reports both (`Some`). A caller checks
//!   `Some(x) != expected` as a mismatch and treats `None` as "not reported
//!   by this provider" (Airtel charges the amount of the request, in the
//!   account's single currency).
//! - Clients take a per-request timeout (`with_timeout`, default 20 s) on
//!   top of whatever the given `reqwest::Client` has; configs keep exactly
//!   the fields of the brief.
//!
//! Added beyond the brief: [`http_client`], [`ProviderError::is_transient`],
//! [`momo::parse_callback`] and [`airtel::parse_callback`] (the id to look
//! up from a callback), [`airtel::national_number`],
//! [`stripe::StripeClient::retrieve_subscription`] and
//! [`stripe::StripeClient::cancel_at_period_end`] (cancelling keeps the
//! plan to the end of the period), [`stripe::signature_header`] (what
//! Stripe sends, for tests), [`stripe::StripeEvent::kind`].

pub mod airtel;
pub mod fake;
pub mod momo;
pub mod money;
pub mod stripe;
mod token;

use std::time::Duration;

use thiserror::Error;

/// A payment as the provider reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderPayment {
    pub status: ProviderStatus,
    /// Minor units, when the provider reports it (MoMo: always; Airtel: never).
    pub amount: Option<i64>,
    /// Upper-case ISO 4217 code, when the provider reports it.
    pub currency: Option<String>,
    /// The provider's own transaction id (MoMo `financialTransactionId`,
    /// Airtel `airtel_money_id`); empty while the provider has none.
    pub provider_reference: String,
}

/// Where a payment stands at the provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProviderStatus {
    Pending,
    Succeeded,
    Failed { reason: String },
}

impl ProviderStatus {
    /// Succeeded or failed: the provider will not change its answer.
    pub fn is_final(&self) -> bool {
        !matches!(self, ProviderStatus::Pending)
    }
}

/// A provider call that did not give an answer to act on. Messages never
/// hold credentials or tokens.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ProviderError {
    /// No answer: connection refused, reset, DNS, or the timeout elapsed.
    /// The payment may or may not exist at the provider: ask again later.
    #[error("payment provider unreachable: {0}")]
    Unreachable(String),
    /// The provider answered and refused (wrong credentials: 401; bad
    /// request: 400; duplicate reference: 409; its own failure: 5xx).
    #[error("payment provider refused the request ({status}): {message}")]
    Rejected { status: u16, message: String },
    /// The answer does not follow the provider's protocol.
    #[error("unexpected answer from the payment provider: {0}")]
    Protocol(String),
    /// The provider does not know this payment.
    #[error("the payment provider does not know this payment")]
    NotFound,
}

impl ProviderError {
    /// Worth trying again later (no answer, or the provider's own 5xx/429).
    pub fn is_transient(&self) -> bool {
        match self {
            ProviderError::Unreachable(_) => true,
            ProviderError::Rejected { status, .. } => *status >= 500 || *status == 429,
            ProviderError::Protocol(_) | ProviderError::NotFound => false,
        }
    }
}

/// The per-request timeout of the clients unless `with_timeout` says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(20);

/// A reqwest client suitable for the providers: rustls, connect timeout,
/// overall timeout, no redirects (a provider answering with a redirect is a
/// protocol error, not something to follow with credentials).
pub fn http_client(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("bwenge-payments/", env!("CARGO_PKG_VERSION")))
        .build()
        .unwrap_or_else(|_| reqwest::Client::new())
}

/// A reqwest failure without the URL (which may carry ids) or anything else
/// from the request.
pub(crate) fn transport_error(e: &reqwest::Error) -> ProviderError {
    if e.is_timeout() {
        ProviderError::Unreachable("timed out".into())
    } else if e.is_connect() {
        ProviderError::Unreachable("connection failed".into())
    } else if e.is_decode() {
        ProviderError::Protocol("the body could not be read".into())
    } else if e.is_body() || e.is_request() {
        ProviderError::Unreachable("the exchange was interrupted".into())
    } else {
        ProviderError::Unreachable("transport error".into())
    }
}

/// A provider's error text, shortened, with every given secret removed.
pub(crate) fn redact(message: &str, secrets: &[&str]) -> String {
    let mut out: String = message.chars().take(300).collect();
    for s in secrets {
        if s.len() >= 4 {
            out = out.replace(s, "[redacted]");
        }
    }
    out
}

/// Joins a base URL and a path with exactly one slash between them.
pub(crate) fn join(base: &str, path: &str) -> String {
    format!(
        "{}/{}",
        base.trim_end_matches('/'),
        path.trim_start_matches('/')
    )
}
