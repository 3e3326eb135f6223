//! MTN Mobile Money (MoMo) Collections: `requesttopay` and its status.
//!
//! Protocol (MTN MoMo Open API, Collection product):
//! - `POST {base}/collection/token/`, Basic `api_user:api_key`,
//!   `Ocp-Apim-Subscription-Key` → `{access_token, token_type, expires_in}`;
//! - `POST {base}/collection/v1_0/requesttopay`, `Authorization: Bearer`,
//!   `X-Reference-Id` (a fresh UUID, the payment's id at MTN),
//!   `X-Target-Environment`, `X-Callback-Url`, `Ocp-Apim-Subscription-Key`,
//!   body `{amount, currency, externalId, payer:{partyIdType, partyId},
//!   payerMessage, payeeNote}` → `202 Accepted` with no body;
//! - `GET {base}/collection/v1_0/requesttopay/{referenceId}` →
//!   `{amount, currency, financialTransactionId, externalId, payer, status,
//!   reason?}` with `status` `PENDING`, `SUCCESSFUL` or `FAILED`.
//!
//! The callback MTN sends to `X-Callback-Url` carries the same body as the
//! status answer but not the reference id; [`parse_callback`] reads its
//! `externalId` so the receiver can find its payment and ask [`MomoClient::status`].

use std::fmt;
use std::time::Duration;

use base64::Engine as _;
use reqwest::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::token::TokenCache;
use crate::{
    DEFAULT_TIMEOUT, ProviderError, ProviderPayment, ProviderStatus, join, money, redact,
    transport_error,
};

/// Where and as whom to call MoMo. `Debug` hides the secrets.
#[derive(Clone, PartialEq, Eq)]
pub struct MomoConfig {
    /// `https://sandbox.momodeveloper.mtn.com` or the production URL MTN gives.
    pub base_url: String,
    /// The Collection product's `Ocp-Apim-Subscription-Key`.
    pub subscription_key: String,
    /// The API user (a UUID).
    pub api_user: String,
    pub api_key: String,
    /// `sandbox`, or e.g. `mtnrwanda` in production.
    pub target_environment: String,
    /// Sent as `X-Callback-Url` when set.
    pub callback_url: Option<String>,
}

impl fmt::Debug for MomoConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MomoConfig")
            .field("base_url", &self.base_url)
            .field("subscription_key", &"[redacted]")
            .field("api_user", &self.api_user)
            .field("api_key", &"[redacted]")
            .field("target_environment", &self.target_environment)
            .field("callback_url", &self.callback_url)
            .finish()
    }
}

/// The production MoMo Collections client.
pub struct MomoClient {
    config: MomoConfig,
    http: reqwest::Client,
    timeout: Duration,
    token: TokenCache,
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    #[serde(default)]
    expires_in: Option<Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StatusAnswer {
    #[serde(default)]
    amount: Option<Value>,
    #[serde(default)]
    currency: Option<String>,
    #[serde(default)]
    financial_transaction_id: Option<String>,
    status: String,
    #[serde(default)]
    reason: Option<Value>,
}

/// What a MoMo callback says. Only a hint: the receiver confirms with
/// [`MomoClient::status`] before changing anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MomoCallback {
    /// The `externalId` given to `request_to_pay` (Bwenge's payment id).
    pub external_id: Option<String>,
    pub financial_transaction_id: Option<String>,
    /// `PENDING`, `SUCCESSFUL`, `FAILED` as claimed by the caller.
    pub status: Option<String>,
}

/// Reads a callback body (JSON). Fails on anything that is not a JSON object.
pub fn parse_callback(body: &[u8]) -> Result<MomoCallback, ProviderError> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|_| ProviderError::Protocol("the callback is not JSON".into()))?;
    let obj = v
        .as_object()
        .ok_or_else(|| ProviderError::Protocol("the callback is not a JSON object".into()))?;
    let s = |k: &str| obj.get(k).and_then(Value::as_str).map(str::to_owned);
    Ok(MomoCallback {
        external_id: s("externalId"),
        financial_transaction_id: s("financialTransactionId"),
        status: s("status"),
    })
}

/// `+250 788-123-456` → `250788123456` (MoMo's `partyId` for MSISDN).
pub fn msisdn_digits(msisdn: &str) -> String {
    msisdn.chars().filter(char::is_ascii_digit).collect()
}

impl MomoClient {
    pub fn new(config: MomoConfig, http: reqwest::Client) -> Self {
        MomoClient {
            config,
            http,
            timeout: DEFAULT_TIMEOUT,
            token: TokenCache::default(),
        }
    }

    /// Every call (token included) gives up after `timeout` with
    /// [`ProviderError::Unreachable`].
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    pub fn config(&self) -> &MomoConfig {
        &self.config
    }

    fn secrets(&self) -> [&str; 2] {
        [&self.config.subscription_key, &self.config.api_key]
    }

    async fn fetch_token(&self) -> Result<(String, Duration), ProviderError> {
        let basic = base64::engine::general_purpose::STANDARD
            .encode(format!("{}:{}", self.config.api_user, self.config.api_key));
        let resp = self
            .http
            .post(join(&self.config.base_url, "/collection/token/"))
            .timeout(self.timeout)
            .header("Authorization", format!("Basic {basic}"))
            .header("Ocp-Apim-Subscription-Key", &self.config.subscription_key)
            .body(Vec::<u8>::new())
            .send()
            .await
            .map_err(|e| transport_error(&e))?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(|e| transport_error(&e))?;
        if !status.is_success() {
            return Err(self.rejected(status, &bytes));
        }
        let answer: TokenAnswer = serde_json::from_slice(&bytes)
            .map_err(|_| ProviderError::Protocol("token answer without access_token".into()))?;
        let expires_in = expires_in_secs(answer.expires_in.as_ref()).unwrap_or(3600);
        Ok((answer.access_token, Duration::from_secs(expires_in)))
    }

    async fn bearer(&self) -> Result<String, ProviderError> {
        self.token.get(|| self.fetch_token()).await
    }

    fn rejected(&self, status: StatusCode, body: &[u8]) -> ProviderError {
        ProviderError::Rejected {
            status: status.as_u16(),
            message: redact(&error_message(body), &self.secrets()),
        }
    }

    /// Sends a payment prompt to `msisdn`'s phone for `amount` (minor units)
    /// of `currency`. `reference_id` must be fresh for every request (MTN
    /// answers 409 to a reused one); keep it to ask for the status.
    /// `external_id` comes back in the status and the callback.
    pub async fn request_to_pay(
        &self,
        reference_id: Uuid,
        external_id: &str,
        amount: i64,
        currency: &str,
        msisdn: &str,
        payer_message: &str,
    ) -> Result<(), ProviderError> {
        if amount <= 0 {
            return Err(ProviderError::Protocol(
                "the amount must be positive".into(),
            ));
        }
        let major = money::try_to_major_string(amount, currency)
            .map_err(|e| ProviderError::Protocol(e.to_string()))?;
        let body = json!({
            "amount": major,
            "currency": currency.to_ascii_uppercase(),
            "externalId": external_id,
            "payer": {"partyIdType": "MSISDN", "partyId": msisdn_digits(msisdn)},
            // MTN shows payerMessage on the payer's statement and payeeNote on ours.
            "payerMessage": truncate(payer_message, 160),
            "payeeNote": truncate(payer_message, 160),
        });
        let mut retried = false;
        loop {
            let token = self.bearer().await?;
            let mut req = self
                .http
                .post(join(&self.config.base_url, "/collection/v1_0/requesttopay"))
                .timeout(self.timeout)
                .bearer_auth(&token)
                .header("X-Reference-Id", reference_id.to_string())
                .header("X-Target-Environment", &self.config.target_environment)
                .header("Ocp-Apim-Subscription-Key", &self.config.subscription_key)
                .json(&body);
            if let Some(cb) = &self.config.callback_url {
                req = req.header("X-Callback-Url", cb);
            }
            let resp = req.send().await.map_err(|e| transport_error(&e))?;
            let status = resp.status();
            if status == StatusCode::ACCEPTED {
                return Ok(());
            }
            let bytes = resp.bytes().await.map_err(|e| transport_error(&e))?;
            if status == StatusCode::UNAUTHORIZED && !retried {
                self.token.invalidate(&token).await;
                retried = true;
                continue;
            }
            if status.is_success() {
                return Err(ProviderError::Protocol(format!(
                    "requesttopay answered {} instead of 202",
                    status.as_u16()
                )));
            }
            return Err(self.rejected(status, &bytes));
        }
    }

    /// The payment `reference_id` as MTN reports it now.
    pub async fn status(&self, reference_id: Uuid) -> Result<ProviderPayment, ProviderError> {
        let url = join(
            &self.config.base_url,
            &format!("/collection/v1_0/requesttopay/{reference_id}"),
        );
        let mut retried = false;
        loop {
            let token = self.bearer().await?;
            let resp = self
                .http
                .get(&url)
                .timeout(self.timeout)
                .bearer_auth(&token)
                .header("X-Target-Environment", &self.config.target_environment)
                .header("Ocp-Apim-Subscription-Key", &self.config.subscription_key)
                .send()
                .await
                .map_err(|e| transport_error(&e))?;
            let status = resp.status();
            let bytes = resp.bytes().await.map_err(|e| transport_error(&e))?;
            if status == StatusCode::UNAUTHORIZED && !retried {
                self.token.invalidate(&token).await;
                retried = true;
                continue;
            }
            if status == StatusCode::NOT_FOUND {
                return Err(ProviderError::NotFound);
            }
            if status != StatusCode::OK {
                return Err(self.rejected(status, &bytes));
            }
            return parse_status(&bytes);
        }
    }
}

fn truncate(s: &str, max_chars: usize) -> String {
    s.chars().take(max_chars).collect()
}

pub(crate) fn expires_in_secs(v: Option<&Value>) -> Option<u64> {
    match v? {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// `{code, message}` (MoMo), `{statusCode, message}` (the API gateway) or
/// `{error}` (token), whichever is there.
pub(crate) fn error_message(body: &[u8]) -> String {
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return if body.is_empty() {
            "no details".into()
        } else {
            "an answer that is not JSON".into()
        };
    };
    let s = |k: &str| v.get(k).and_then(Value::as_str);
    match (s("code"), s("message"), s("error")) {
        (Some(c), Some(m), _) => format!("{c}: {m}"),
        (Some(c), None, _) => c.to_owned(),
        (None, Some(m), _) => m.to_owned(),
        (None, None, Some(e)) => e.to_owned(),
        _ => "no details".into(),
    }
}

fn parse_status(bytes: &[u8]) -> Result<ProviderPayment, ProviderError> {
    let answer: StatusAnswer = serde_json::from_slice(bytes)
        .map_err(|_| ProviderError::Protocol("status answer without status".into()))?;
    let currency = answer
        .currency
        .as_deref()
        .map(|c| c.trim().to_ascii_uppercase());
    let amount = match (&answer.amount, &currency) {
        (None, _) | (Some(Value::Null), _) => None,
        (Some(v), Some(cur)) => {
            let text = match v {
                Value::String(s) => s.clone(),
                Value::Number(n) if n.is_i64() || n.is_u64() => n.to_string(),
                _ => return Err(ProviderError::Protocol("amount is not a decimal".into())),
            };
            Some(
                money::parse_major(&text, cur)
                    .map_err(|e| ProviderError::Protocol(format!("amount: {e}")))?,
            )
        }
        (Some(_), None) => {
            return Err(ProviderError::Protocol(
                "an amount without a currency".into(),
            ));
        }
    };
    let status = match answer.status.trim().to_ascii_uppercase().as_str() {
        "SUCCESSFUL" => ProviderStatus::Succeeded,
        "PENDING" | "CREATED" | "ONGOING" => ProviderStatus::Pending,
        "FAILED" | "REJECTED" | "TIMEOUT" | "EXPIRED" => ProviderStatus::Failed {
            reason: reason_text(answer.reason.as_ref()).unwrap_or_else(|| answer.status.clone()),
        },
        _ => {
            return Err(ProviderError::Protocol(format!(
                "unknown status {:?}",
                truncate(&answer.status, 40)
            )));
        }
    };
    Ok(ProviderPayment {
        status,
        amount,
        currency,
        provider_reference: answer.financial_transaction_id.unwrap_or_default(),
    })
}

/// `reason` is a code (`"APPROVAL_REJECTED"`) in v1_0, `{code, message}` in
/// older answers.
fn reason_text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Object(o) => o
            .get("code")
            .or_else(|| o.get("message"))
            .and_then(Value::as_str)
            .map(str::to_owned),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn status_answers_map_to_provider_payments() {
        let ok = parse_status(
            br#"{"amount":"30000","currency":"RWF","financialTransactionId":"1234","externalId":"p","payer":{"partyIdType":"MSISDN","partyId":"250788123456"},"status":"SUCCESSFUL"}"#,
        )
        .unwrap();
        assert_eq!(ok.status, ProviderStatus::Succeeded);
        assert_eq!(ok.amount, Some(30000));
        assert_eq!(ok.currency.as_deref(), Some("RWF"));
        assert_eq!(ok.provider_reference, "1234");

        let usd =
            parse_status(br#"{"amount":"30.00","currency":"USD","status":"PENDING"}"#).unwrap();
        assert_eq!(
            (usd.status, usd.amount),
            (ProviderStatus::Pending, Some(3000))
        );

        let failed = parse_status(
            br#"{"amount":"1","currency":"EUR","status":"FAILED","reason":"APPROVAL_REJECTED"}"#,
        )
        .unwrap();
        assert_eq!(
            failed.status,
            ProviderStatus::Failed {
                reason: "APPROVAL_REJECTED".into()
            }
        );
        let old = parse_status(
            br#"{"status":"FAILED","reason":{"code":"PAYER_NOT_FOUND","message":"Payer not found"}}"#,
        )
        .unwrap();
        assert_eq!(
            old.status,
            ProviderStatus::Failed {
                reason: "PAYER_NOT_FOUND".into()
            }
        );
        assert_eq!(old.amount, None);
        let bare = parse_status(br#"{"status":"FAILED"}"#).unwrap();
        assert_eq!(
            bare.status,
            ProviderStatus::Failed {
                reason: "FAILED".into()
            }
        );
    }

    #[test]
    fn odd_status_answers_are_protocol_errors() {
        for body in [
            &br#"{"status":"PAID"}"#[..],
            br#"{"amount":"1.5","currency":"RWF","status":"SUCCESSFUL"}"#,
            br#"{"amount":1.5,"currency":"USD","status":"SUCCESSFUL"}"#,
            br#"{"amount":"10","status":"SUCCESSFUL"}"#,
            b"not json",
        ] {
            assert!(matches!(
                parse_status(body),
                Err(ProviderError::Protocol(_))
            ));
        }
    }

    #[test]
    fn callbacks_and_errors_are_read() {
        let cb = parse_callback(
            br#"{"externalId":"pay-1","status":"SUCCESSFUL","financialTransactionId":"9"}"#,
        )
        .unwrap();
        assert_eq!(cb.external_id.as_deref(), Some("pay-1"));
        assert!(parse_callback(b"[1]").is_err());
        assert_eq!(
            error_message(
                br#"{"code":"RESOURCE_ALREADY_EXIST","message":"Duplicated reference id."}"#
            ),
            "RESOURCE_ALREADY_EXIST: Duplicated reference id."
        );
        assert_eq!(
            error_message(br#"{"error":"login_failed"}"#),
            "login_failed"
        );
        assert_eq!(msisdn_digits("+250 788-123-456"), "250788123456");
    }

    #[test]
    fn debug_hides_secrets() {
        let c = MomoConfig {
            base_url: "http://x".into(),
            subscription_key: "sub-secret".into(),
            api_user: "user".into(),
            api_key: "key-secret".into(),
            target_environment: "sandbox".into(),
            callback_url: None,
        };
        let d = format!("{c:?}");
        assert!(!d.contains("sub-secret") && !d.contains("key-secret"));
    }
}
