//! Airtel Money Collections (Airtel Africa Open API).
//!
//! - `POST {base}/auth/oauth2/token` with JSON `{client_id, client_secret,
//!   grant_type: "client_credentials"}` → `{access_token, expires_in,
//!   token_type}` (`expires_in` is a string in Airtel's answers);
//! - `POST {base}/merchant/v1/payments/` (USSD push), `X-Country`,
//!   `X-Currency`, bearer, body `{reference, subscriber:{country, currency,
//!   msisdn}, transaction:{amount, country, currency, id}}` → `{data:
//!   {transaction:{id, status}}, status:{code, message, result_code,
//!   response_code, success}}`;
//! - `GET {base}/standard/v1/payments/{id}` → `{data:{transaction:
//!   {airtel_money_id, id, message, status}}, status:{…}}` with `status`
//!   `TS` (success), `TF` (failed), `TIP` (in progress), `TA` (ambiguous),
//!   `TE` (expired). The enquiry reports neither amount nor currency.
//!
//! The callback Airtel posts to the URL registered in its portal is
//! `{transaction:{id, message, status_code, airtel_money_id}}`: a hint only,
//! read with [`parse_callback`] and confirmed with [`AirtelClient::status`].

use std::fmt;
use std::time::Duration;

use reqwest::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::momo::{error_message, expires_in_secs};
use crate::token::TokenCache;
use crate::{
    DEFAULT_TIMEOUT, ProviderError, ProviderPayment, ProviderStatus, join, money, redact,
    transport_error,
};

/// Where and as whom to call Airtel. `Debug` hides the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct AirtelConfig {
    /// `https://openapiuat.airtel.africa` (staging) or `https://openapi.airtel.africa`.
    pub base_url: String,
    pub client_id: String,
    pub client_secret: String,
    /// ISO 3166 alpha-2 of the merchant account (`RW`, `UG`, …).
    pub country: String,
    /// The account's single currency (`RWF`, `UGX`, …).
    pub currency: String,
}

impl fmt::Debug for AirtelConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AirtelConfig")
            .field("base_url", &self.base_url)
            .field("client_id", &self.client_id)
            .field("client_secret", &"[redacted]")
            .field("country", &self.country)
            .field("currency", &self.currency)
            .finish()
    }
}

/// The production Airtel Money Collections client.
pub struct AirtelClient {
    config: AirtelConfig,
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

/// What an Airtel callback says. Only a hint: confirm with [`AirtelClient::status`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AirtelCallback {
    /// The `transaction_id` given to `request_payment`.
    pub transaction_id: String,
    /// `TS`, `TF`, … as claimed by the caller.
    pub status_code: Option<String>,
    pub airtel_money_id: Option<String>,
    pub message: Option<String>,
}

/// Reads a callback body `{transaction:{id, status_code, airtel_money_id, message}}`.
pub fn parse_callback(body: &[u8]) -> Result<AirtelCallback, ProviderError> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|_| ProviderError::Protocol("the callback is not JSON".into()))?;
    let t = v
        .get("transaction")
        .ok_or_else(|| ProviderError::Protocol("the callback has no transaction".into()))?;
    let s = |k: &str| t.get(k).and_then(Value::as_str).map(str::to_owned);
    Ok(AirtelCallback {
        transaction_id: s("id")
            .ok_or_else(|| ProviderError::Protocol("the callback has no transaction id".into()))?,
        status_code: s("status_code"),
        airtel_money_id: s("airtel_money_id"),
        message: s("message"),
    })
}

/// International calling code of the countries Airtel Money serves.
fn calling_code(country: &str) -> Option<&'static str> {
    Some(match country.to_ascii_uppercase().as_str() {
        "RW" => "250",
        "UG" => "256",
        "KE" => "254",
        "TZ" => "255",
        "ZM" => "260",
        "MW" => "265",
        "CD" => "243",
        "CG" => "242",
        "GA" => "241",
        "NE" => "227",
        "TD" => "235",
        "MG" => "261",
        "SC" => "248",
        "NG" => "234",
        _ => return None,
    })
}

/// Airtel's `msisdn`: the national number without country code or trunk
/// zero. `+250 788 123 456`, `250788123456` and `0788123456` are all
/// `788123456` for `RW`.
pub fn national_number(msisdn: &str, country: &str) -> String {
    let digits: String = msisdn.chars().filter(char::is_ascii_digit).collect();
    if let Some(code) = calling_code(country)
        && let Some(rest) = digits.strip_prefix(code)
        && rest.len() >= 8
    {
        return rest.trim_start_matches('0').to_owned();
    }
    digits.trim_start_matches('0').to_owned()
}

impl AirtelClient {
    pub fn new(config: AirtelConfig, http: reqwest::Client) -> Self {
        AirtelClient {
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

    pub fn config(&self) -> &AirtelConfig {
        &self.config
    }

    fn rejected(&self, status: u16, message: &str) -> ProviderError {
        ProviderError::Rejected {
            status,
            message: redact(message, &[&self.config.client_secret]),
        }
    }

    async fn fetch_token(&self) -> Result<(String, Duration), ProviderError> {
        let resp = self
            .http
            .post(join(&self.config.base_url, "/auth/oauth2/token"))
            .timeout(self.timeout)
            .header("Accept", "*/*")
            .json(&json!({
                "client_id": self.config.client_id,
                "client_secret": self.config.client_secret,
                "grant_type": "client_credentials",
            }))
            .send()
            .await
            .map_err(|e| transport_error(&e))?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(|e| transport_error(&e))?;
        if !status.is_success() {
            return Err(self.rejected(status.as_u16(), &airtel_message(&bytes)));
        }
        let answer: TokenAnswer = serde_json::from_slice(&bytes)
            .map_err(|_| ProviderError::Protocol("token answer without access_token".into()))?;
        let expires_in = expires_in_secs(answer.expires_in.as_ref()).unwrap_or(180);
        Ok((answer.access_token, Duration::from_secs(expires_in)))
    }

    async fn bearer(&self) -> Result<String, ProviderError> {
        self.token.get(|| self.fetch_token()).await
    }

    /// Sends a USSD payment prompt to `msisdn` (any form: E.164 or national)
    /// for `amount` minor units of the account's currency. `transaction_id`
    /// is ours, unique per request, and names the payment in the status
    /// enquiry and the callback; `reference` is shown to the payer.
    pub async fn request_payment(
        &self,
        transaction_id: &str,
        amount: i64,
        msisdn: &str,
        reference: &str,
    ) -> Result<(), ProviderError> {
        if amount <= 0 {
            return Err(ProviderError::Protocol(
                "the amount must be positive".into(),
            ));
        }
        let currency = self.config.currency.to_ascii_uppercase();
        let country = self.config.country.to_ascii_uppercase();
        let major = money::try_to_major_string(amount, &currency)
            .map_err(|e| ProviderError::Protocol(e.to_string()))?;
        // Airtel's amount is a JSON number in major units; it is written
        // from the exact decimal string (serde_json would go through f64).
        let js = |s: &str| serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into());
        let body = format!(
            r#"{{"reference":{},"subscriber":{{"country":{},"currency":{},"msisdn":{}}},"transaction":{{"amount":{},"country":{},"currency":{},"id":{}}}}}"#,
            js(reference),
            js(&country),
            js(&currency),
            js(&national_number(msisdn, &country)),
            major,
            js(&country),
            js(&currency),
            js(transaction_id),
        );
        let answer = self
            .call(reqwest::Method::POST, "/merchant/v1/payments/", Some(body))
            .await?;
        let status = answer.get("status");
        let success = status
            .and_then(|s| s.get("success"))
            .and_then(Value::as_bool)
            .unwrap_or(false);
        if success {
            return Ok(());
        }
        let code = status
            .and_then(|s| s.get("code"))
            .and_then(|c| {
                c.as_str()
                    .map(str::to_owned)
                    .or_else(|| Some(c.to_string()))
            })
            .and_then(|c| c.parse::<u16>().ok())
            .unwrap_or(400);
        Err(self.rejected(code, &airtel_message(answer.to_string().as_bytes())))
    }

    /// The payment `transaction_id` as Airtel reports it now (without
    /// amount or currency: Airtel's enquiry does not carry them).
    pub async fn status(&self, transaction_id: &str) -> Result<ProviderPayment, ProviderError> {
        let path = format!("/standard/v1/payments/{}", path_segment(transaction_id));
        let answer = self.call(reqwest::Method::GET, &path, None).await?;
        parse_status(&answer)
    }

    /// One authenticated call, the token refreshed once on a 401. Returns
    /// the JSON of a 2xx answer.
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<String>,
    ) -> Result<Value, ProviderError> {
        let url = join(&self.config.base_url, path);
        let mut retried = false;
        loop {
            let token = self.bearer().await?;
            let mut req = self
                .http
                .request(method.clone(), &url)
                .timeout(self.timeout)
                .bearer_auth(&token)
                .header("Accept", "*/*")
                .header("X-Country", self.config.country.to_ascii_uppercase())
                .header("X-Currency", self.config.currency.to_ascii_uppercase());
            if let Some(b) = &body {
                req = req
                    .header("Content-Type", "application/json")
                    .body(b.clone());
            }
            let resp = req.send().await.map_err(|e| transport_error(&e))?;
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
            if !status.is_success() {
                return Err(self.rejected(status.as_u16(), &airtel_message(&bytes)));
            }
            return serde_json::from_slice(&bytes)
                .map_err(|_| ProviderError::Protocol("an answer that is not JSON".into()));
        }
    }
}

/// Percent-encodes what is not safe in a path segment.
fn path_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `status.message` (with `response_code`) of an Airtel answer, else the
/// OAuth `error_description`/`error`, else MoMo-like fields.
fn airtel_message(body: &[u8]) -> String {
    if let Ok(v) = serde_json::from_slice::<Value>(body) {
        if let Some(st) = v.get("status") {
            let msg = st.get("message").and_then(Value::as_str).unwrap_or("");
            let rc = st
                .get("response_code")
                .or_else(|| st.get("result_code"))
                .and_then(Value::as_str);
            if !msg.is_empty() || rc.is_some() {
                return match rc {
                    Some(rc) => format!("{rc}: {msg}"),
                    None => msg.to_owned(),
                };
            }
        }
        if let Some(d) = v.get("error_description").and_then(Value::as_str) {
            return d.to_owned();
        }
    }
    error_message(body)
}

fn parse_status(answer: &Value) -> Result<ProviderPayment, ProviderError> {
    let status = answer.get("status");
    let success = status
        .and_then(|s| s.get("success"))
        .and_then(Value::as_bool);
    let code = status.and_then(|s| s.get("code")).and_then(|c| {
        c.as_str()
            .map(str::to_owned)
            .or_else(|| Some(c.to_string()))
    });
    if success == Some(false) {
        if code.as_deref() == Some("404") {
            return Err(ProviderError::NotFound);
        }
        return Err(ProviderError::Rejected {
            status: code.and_then(|c| c.parse().ok()).unwrap_or(400),
            message: airtel_message(answer.to_string().as_bytes()),
        });
    }
    let t = answer
        .get("data")
        .and_then(|d| d.get("transaction"))
        .ok_or_else(|| ProviderError::Protocol("the answer has no data.transaction".into()))?;
    let s = |k: &str| t.get(k).and_then(Value::as_str);
    let code = s("status")
        .ok_or_else(|| ProviderError::Protocol("the transaction has no status".into()))?;
    let message = s("message").filter(|m| !m.is_empty());
    let status = match code.trim().to_ascii_uppercase().as_str() {
        "TS" => ProviderStatus::Succeeded,
        "TF" => ProviderStatus::Failed {
            reason: message.unwrap_or("TF").to_owned(),
        },
        "TE" => ProviderStatus::Failed {
            reason: message.map_or_else(|| "expired".to_owned(), |m| format!("expired: {m}")),
        },
        // In progress, ambiguous (Airtel resolves it later) and initiated:
        // not final, ask again.
        "TIP" | "TA" | "TI" => ProviderStatus::Pending,
        other => {
            return Err(ProviderError::Protocol(format!(
                "unknown transaction status {:?}",
                other.chars().take(20).collect::<String>()
            )));
        }
    };
    Ok(ProviderPayment {
        status,
        amount: None,
        currency: None,
        provider_reference: s("airtel_money_id").unwrap_or_default().to_owned(),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn answer(status: &str, money_id: &str) -> Value {
        json!({"data":{"transaction":{"airtel_money_id":money_id,"id":"t1","message":"Insufficient funds","status":status}},
               "status":{"code":"200","message":"SUCCESS","result_code":"ESB000010","response_code":"DP00800001001","success":true}})
    }

    #[test]
    fn transaction_statuses_map() {
        let ts = parse_status(&answer("TS", "MP1")).unwrap();
        assert_eq!(ts.status, ProviderStatus::Succeeded);
        assert_eq!((ts.provider_reference.as_str(), ts.amount), ("MP1", None));
        assert_eq!(
            parse_status(&answer("TF", "")).unwrap().status,
            ProviderStatus::Failed {
                reason: "Insufficient funds".into()
            }
        );
        assert!(matches!(
            parse_status(&answer("TE", "")).unwrap().status,
            ProviderStatus::Failed { .. }
        ));
        for p in ["TIP", "TA"] {
            assert_eq!(
                parse_status(&answer(p, "")).unwrap().status,
                ProviderStatus::Pending
            );
        }
        assert!(matches!(
            parse_status(&answer("XX", "")),
            Err(ProviderError::Protocol(_))
        ));
        let missing =
            json!({"data":{},"status":{"code":"404","message":"not found","success":false}});
        assert_eq!(parse_status(&missing), Err(ProviderError::NotFound));
    }

    #[test]
    fn national_numbers() {
        assert_eq!(national_number("+250 788 123 456", "RW"), "788123456");
        assert_eq!(national_number("250788123456", "rw"), "788123456");
        assert_eq!(national_number("0788123456", "RW"), "788123456");
        assert_eq!(national_number("788123456", "RW"), "788123456");
        assert_eq!(national_number("+256701234567", "UG"), "701234567");
    }

    #[test]
    fn callbacks_are_read() {
        let cb = parse_callback(
            br#"{"transaction":{"id":"t1","message":"ok","status_code":"TS","airtel_money_id":"MP9"}}"#,
        )
        .unwrap();
        assert_eq!(cb.transaction_id, "t1");
        assert_eq!(cb.status_code.as_deref(), Some("TS"));
        assert!(parse_callback(br#"{"transaction":{}}"#).is_err());
        assert!(parse_callback(b"nope").is_err());
    }

    #[test]
    fn path_segments_are_escaped() {
        assert_eq!(path_segment("abc-1_2.x~"), "abc-1_2.x~");
        assert_eq!(path_segment("a/b?c"), "a%2Fb%3Fc");
    }
}
