//! Payments: checkout by MTN MoMo, Airtel Money or Stripe, and the one
//! way a payment becomes `succeeded`: the provider says so, through its
//! own status look-up (mobile money: a callback only triggers that look-up)
//! or a Stripe event whose signature holds. The amount and currency the
//! provider reports must be the payment's, else it is flagged and not
//! applied. Applying is a conditional UPDATE (pending → succeeded) in one
//! transaction with the plan change, so it happens once, whatever the
//! callbacks, polls and nodes.

use std::time::Duration;

use bwenge_payments::airtel::{AirtelClient, AirtelConfig};
use bwenge_payments::momo::{MomoClient, MomoConfig};
use bwenge_payments::stripe::{
    CheckoutRequest, StripeClient, StripeConfig, StripeEvent, StripeEventKind,
};
use bwenge_payments::{ProviderError, ProviderPayment, ProviderStatus};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::json;

use super::error::BillingError;
use super::model::{Method, PaymentStatus, PlanId, one_month_after};
use super::service::{BillingService, Result};
use super::store::{self, Applied, PaymentRow};
use crate::audit::{self, Entry, action};
use crate::auth::AuthUser;
use crate::config::BillingSettings;
use crate::ids::{OrgId, PaymentId};
use crate::mail::{self, Mail};
use crate::pagination::{Cursor, List, Page, page_of};
use crate::validation::Invalid;

/// The clients of the enabled providers.
pub struct Providers {
    pub momo: Option<MomoClient>,
    pub airtel: Option<AirtelClient>,
    pub stripe: Option<StripeClient>,
}

impl Providers {
    pub fn from_settings(s: &BillingSettings) -> Self {
        let base = s.public_base_url.trim_end_matches('/');
        let momo = s.mtn_momo.enabled.then(|| {
            let timeout = Duration::from_secs(s.mtn_momo.timeout_secs);
            MomoClient::new(
                MomoConfig {
                    base_url: s.mtn_momo.base_url.clone(),
                    subscription_key: s.mtn_momo.subscription_key.expose().to_owned(),
                    api_user: s.mtn_momo.api_user.clone(),
                    api_key: s.mtn_momo.api_key.expose().to_owned(),
                    target_environment: s.mtn_momo.target_environment.clone(),
                    callback_url: Some(format!("{base}/v1/webhooks/mtn-momo")),
                },
                bwenge_payments::http_client(timeout),
            )
            .with_timeout(timeout)
        });
        let airtel = s.airtel_money.enabled.then(|| {
            let timeout = Duration::from_secs(s.airtel_money.timeout_secs);
            AirtelClient::new(
                AirtelConfig {
                    base_url: s.airtel_money.base_url.clone(),
                    client_id: s.airtel_money.client_id.clone(),
                    client_secret: s.airtel_money.client_secret.expose().to_owned(),
                    country: s.airtel_money.country.clone(),
                    currency: s.airtel_money.currency.clone(),
                },
                bwenge_payments::http_client(timeout),
            )
            .with_timeout(timeout)
        });
        let stripe = s.stripe.enabled.then(|| {
            let timeout = Duration::from_secs(s.stripe.timeout_secs);
            let mut secrets = vec![s.stripe.webhook_secret.expose().to_owned()];
            secrets.extend(
                s.stripe
                    .previous_webhook_secrets
                    .iter()
                    .map(|x| x.expose().to_owned()),
            );
            StripeClient::new(
                StripeConfig {
                    base_url: s.stripe.base_url.clone(),
                    secret_key: s.stripe.secret_key.expose().to_owned(),
                    webhook_secrets: secrets,
                },
                bwenge_payments::http_client(timeout),
            )
            .with_timeout(timeout)
        });
        Self {
            momo,
            airtel,
            stripe,
        }
    }
}

/// `payment` of the contract.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PaymentView {
    pub id: PaymentId,
    pub plan: PlanId,
    pub method: Method,
    /// In the currency's minor unit (RWF has none; USD cents).
    pub amount: i64,
    pub currency: String,
    pub status: PaymentStatus,
    /// MoMo's `X-Reference-Id`, Airtel's transaction id, Stripe's session id.
    pub provider_reference: Option<String>,
    /// Stripe: where to send the admin to pay.
    pub checkout_url: Option<String>,
    pub failure_reason: Option<String>,
    /// A renewal of the running plan (asked for by the server).
    pub renewal: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<PaymentRow> for PaymentView {
    fn from(p: PaymentRow) -> Self {
        Self {
            id: p.id,
            plan: p.plan,
            method: p.method,
            amount: p.amount,
            currency: p.currency,
            status: p.status,
            provider_reference: p.provider_reference,
            checkout_url: p.checkout_url,
            failure_reason: p.failure_reason,
            renewal: p.renewal,
            created_at: p.created_at,
            updated_at: p.updated_at,
        }
    }
}

/// `POST /v1/subscription/checkout`, parsed.
pub struct Checkout<'a> {
    pub plan: &'a str,
    pub method: &'a str,
    pub phone: Option<&'a str>,
}

/// An E.164 number: `+`, then 8 to 15 digits, the first not 0.
pub fn parse_phone(raw: &str) -> std::result::Result<String, Invalid> {
    let p = raw.trim();
    let digits = p.strip_prefix('+').unwrap_or("");
    if digits.len() < 8
        || digits.len() > 15
        || !digits.bytes().all(|b| b.is_ascii_digit())
        || digits.starts_with('0')
    {
        return Err(Invalid::new(
            "phone",
            "phone must be an E.164 number such as +250788123456.",
        ));
    }
    Ok(p.to_owned())
}

/// The subscription changed between our read and our write.
fn lost_race() -> BillingError {
    BillingError::Conflict("The subscription changed meanwhile; try again.".into())
}

fn provider_error(e: ProviderError) -> BillingError {
    BillingError::Provider(anyhow::Error::new(e))
}

impl BillingService {
    fn providers(&self) -> &Providers {
        &self.inner.providers
    }

    /// Starts paying for `plan` (admins): mobile money prompts the payer's
    /// phone; Stripe answers with a checkout URL. Nothing changes until the
    /// provider confirms.
    pub async fn checkout(
        &self,
        caller: &AuthUser,
        ip: &str,
        c: Checkout<'_>,
    ) -> Result<PaymentView> {
        caller.require_admin()?;
        let plan: PlanId = c
            .plan
            .parse()
            .map_err(|_| Invalid::new("plan", "plan must be one of basic, pro or enterprise."))?;
        if plan == PlanId::Free {
            return Err(Invalid::new(
                "plan",
                "free is not paid for: cancel the subscription to return to it.",
            )
            .into());
        }
        let method: Method = c.method.parse().map_err(|_| {
            Invalid::new("method", "method must be mtn_momo, airtel_money or stripe.")
        })?;
        let phone = match (method.is_mobile_money(), c.phone) {
            (true, Some(p)) => Some(parse_phone(p)?),
            (true, None) => {
                return Err(Invalid::new("phone", "Mobile money needs the payer's phone.").into());
            }
            (false, _) => None,
        };
        let p = self.new_payment(caller.org_id, plan, method, phone, false)?;
        let p = PaymentRow {
            created_by: Some(caller.user_id),
            ..p
        };
        store::insert_payment(&self.inner.db, &p).await?;
        metrics::counter!(crate::metrics::PAYMENTS_TOTAL, "method" => method.as_str(), "status" => "created")
            .increment(1);
        audit::record(
            &self.inner.db,
            Entry {
                org: caller.org_id,
                action: action::BILLING_CHECKOUT,
                actor: Some(caller.user_id),
                subject: None,
                ip: Some(ip),
                detail: json!({
                    "payment_id": p.id, "plan": plan.as_str(), "method": method.as_str(),
                    "amount": p.amount, "currency": p.currency,
                }),
            },
        )
        .await?;
        self.send_to_provider(&p, Some(caller)).await?;
        self.payment_view(caller.org_id, p.id).await
    }

    /// A pending payment row for `plan` by `method`, priced from the plan.
    pub(crate) fn new_payment(
        &self,
        org: OrgId,
        plan: PlanId,
        method: Method,
        phone: Option<String>,
        renewal: bool,
    ) -> Result<PaymentRow> {
        let s = &self.inner.settings;
        let (enabled, currency) = match method {
            Method::MtnMomo => (self.providers().momo.is_some(), &s.mtn_momo.currency),
            Method::AirtelMoney => (self.providers().airtel.is_some(), &s.airtel_money.currency),
            Method::Stripe => (self.providers().stripe.is_some(), &s.stripe.currency),
        };
        if !enabled {
            return Err(BillingError::MethodUnavailable(format!(
                "{} is not enabled on this server.",
                method.as_str()
            )));
        }
        let plan_row = self.inner.plans.get(plan);
        if method == Method::Stripe && plan_row.stripe_price_id.is_empty() {
            return Err(BillingError::MethodUnavailable(format!(
                "The {} plan is not sold through Stripe on this server.",
                plan.as_str()
            )));
        }
        let amount = plan_row.price(currency).ok_or_else(|| {
            BillingError::MethodUnavailable(format!(
                "The {} plan has no price in {currency}.",
                plan.as_str()
            ))
        })?;
        let now = self.now();
        let expiry = chrono::Duration::minutes(s.payment_expiry_minutes as i64);
        Ok(PaymentRow {
            id: PaymentId::new(),
            organization_id: org,
            plan,
            method,
            amount,
            currency: currency.to_ascii_uppercase(),
            status: PaymentStatus::Pending,
            provider_reference: None,
            checkout_url: None,
            failure_reason: None,
            phone,
            created_by: None,
            renewal,
            attempts: 0,
            next_check_at: Some(now + chrono::Duration::seconds(s.poll_initial_secs as i64)),
            expires_at: now
                + if method == Method::Stripe {
                    chrono::Duration::hours(24)
                } else {
                    expiry
                },
            created_at: now,
            updated_at: now,
        })
    }

    /// Asks the provider to collect `p`. A provider that does not answer
    /// leaves the payment pending (the request may have reached it: the
    /// poller asks); one that refuses fails it.
    pub(crate) async fn send_to_provider(
        &self,
        p: &PaymentRow,
        caller: Option<&AuthUser>,
    ) -> Result<()> {
        let now = self.now();
        let refused = |e: &ProviderError| !e.is_transient();
        match p.method {
            Method::MtnMomo => {
                let Some(momo) = &self.providers().momo else {
                    return Ok(());
                };
                let reference = uuid::Uuid::new_v4();
                store::set_reference(&self.inner.db, p.id, &reference.to_string(), None, now)
                    .await?;
                let sent = momo
                    .request_to_pay(
                        reference,
                        &p.id.to_string(),
                        p.amount,
                        &p.currency,
                        p.phone.as_deref().unwrap_or_default(),
                        &format!("Bwenge {} plan", p.plan.as_str()),
                    )
                    .await;
                if let Err(e) = sent {
                    tracing::warn!(error = %e, payment = %p.id, "MoMo request to pay failed");
                    if refused(&e) {
                        self.fail(
                            p,
                            PaymentStatus::Failed,
                            &format!("MTN MoMo refused the request: {e}"),
                        )
                        .await?;
                    }
                }
            }
            Method::AirtelMoney => {
                let Some(airtel) = &self.providers().airtel else {
                    return Ok(());
                };
                let reference = p.id.0.simple().to_string();
                store::set_reference(&self.inner.db, p.id, &reference, None, now).await?;
                let sent = airtel
                    .request_payment(
                        &reference,
                        p.amount,
                        p.phone.as_deref().unwrap_or_default(),
                        &format!("Bwenge {}", p.plan.as_str()),
                    )
                    .await;
                if let Err(e) = sent {
                    tracing::warn!(error = %e, payment = %p.id, "Airtel payment request failed");
                    if refused(&e) {
                        self.fail(
                            p,
                            PaymentStatus::Failed,
                            &format!("Airtel Money refused the request: {e}"),
                        )
                        .await?;
                    }
                }
            }
            Method::Stripe => {
                let Some(stripe) = &self.providers().stripe else {
                    return Ok(());
                };
                let base = self.inner.settings.public_base_url.trim_end_matches('/');
                let email = match caller {
                    Some(c) => store::admin_emails(&self.inner.db, c.org_id)
                        .await?
                        .into_iter()
                        .next(),
                    None => None,
                };
                let session = stripe
                    .create_checkout_session(&CheckoutRequest {
                        price_id: self.inner.plans.get(p.plan).stripe_price_id.clone(),
                        organisation_id: p.organization_id.to_string(),
                        payment_id: p.id.to_string(),
                        plan: p.plan.as_str().to_owned(),
                        success_url: format!("{base}/?checkout=success&payment={}", p.id),
                        cancel_url: format!("{base}/?checkout=cancelled&payment={}", p.id),
                        customer_email: email,
                        idempotency_key: format!("checkout-{}", p.id),
                    })
                    .await;
                match session {
                    Ok(s) => {
                        store::set_reference(&self.inner.db, p.id, &s.id, Some(&s.url), now)
                            .await?;
                    }
                    Err(e) => {
                        self.fail(
                            p,
                            PaymentStatus::Failed,
                            "Stripe did not create a checkout session.",
                        )
                        .await?;
                        return Err(provider_error(e));
                    }
                }
            }
        }
        Ok(())
    }

    async fn payment_view(&self, org: OrgId, id: PaymentId) -> Result<PaymentView> {
        store::payment(&self.inner.db, org, id)
            .await?
            .map(PaymentView::from)
            .ok_or(BillingError::NotFound)
    }

    /// The organisation's payments, newest first (admins).
    pub async fn payments(&self, caller: &AuthUser, page: Page) -> Result<List<PaymentView>> {
        caller.require_admin()?;
        let rows = store::list_payments(&self.inner.db, caller.org_id, page).await?;
        Ok(page_of(
            rows,
            page.limit,
            |r| Cursor {
                t: r.created_at,
                id: r.id.0,
            },
            PaymentView::from,
        ))
    }

    /// One payment (admins); a pending one is first looked up at the
    /// provider.
    pub async fn payment(&self, caller: &AuthUser, id: PaymentId) -> Result<PaymentView> {
        caller.require_admin()?;
        let row = store::payment(&self.inner.db, caller.org_id, id)
            .await?
            .ok_or(BillingError::NotFound)?;
        if row.status == PaymentStatus::Pending {
            self.refresh(&row).await?;
        }
        self.payment_view(caller.org_id, id).await
    }

    /// Asks the provider where a pending mobile-money payment stands and
    /// acts on its answer. A provider that does not answer changes nothing.
    pub async fn refresh(&self, p: &PaymentRow) -> Result<()> {
        let Some(reference) = p.provider_reference.as_deref() else {
            return Ok(());
        };
        let answer = match p.method {
            Method::MtnMomo => match (&self.providers().momo, reference.parse::<uuid::Uuid>()) {
                (Some(momo), Ok(r)) => momo.status(r).await,
                _ => return Ok(()),
            },
            Method::AirtelMoney => match &self.providers().airtel {
                Some(airtel) => airtel.status(reference).await,
                None => return Ok(()),
            },
            // Stripe's word comes by its signed events.
            Method::Stripe => {
                if self.now() > p.expires_at {
                    self.fail(
                        p,
                        PaymentStatus::Expired,
                        "The checkout was not completed in time.",
                    )
                    .await?;
                }
                return Ok(());
            }
        };
        match answer {
            Ok(reported) => self.settle(p, &reported).await,
            Err(ProviderError::NotFound) => {
                if self.now() > p.expires_at {
                    self.fail(
                        p,
                        PaymentStatus::Expired,
                        "The provider never received the request.",
                    )
                    .await?;
                }
                Ok(())
            }
            Err(e) => {
                tracing::warn!(error = %e, payment = %p.id, "status look-up failed");
                if self.now() > p.expires_at {
                    self.fail(
                        p,
                        PaymentStatus::Expired,
                        "The provider did not confirm the payment in time.",
                    )
                    .await?;
                }
                Ok(())
            }
        }
    }

    /// Acts on what the provider reported about `p`.
    async fn settle(&self, p: &PaymentRow, reported: &ProviderPayment) -> Result<()> {
        match &reported.status {
            ProviderStatus::Pending => {
                if self.now() > p.expires_at {
                    self.fail(
                        p,
                        PaymentStatus::Expired,
                        "The payer did not approve the payment in time.",
                    )
                    .await?;
                }
                Ok(())
            }
            ProviderStatus::Failed { reason } => {
                self.fail(
                    p,
                    PaymentStatus::Failed,
                    &format!("The provider reports the payment failed: {reason}"),
                )
                .await
            }
            ProviderStatus::Succeeded => {
                let amount_ok = reported.amount.is_none_or(|a| a == p.amount);
                let currency_ok = reported
                    .currency
                    .as_deref()
                    .is_none_or(|c| c.eq_ignore_ascii_case(&p.currency));
                if !(amount_ok && currency_ok) {
                    return self
                        .flag(p, reported.amount, reported.currency.as_deref())
                        .await;
                }
                self.apply(p, None, None).await.map(|_| ())
            }
        }
    }

    /// The provider reported another amount or currency: not applied.
    async fn flag(
        &self,
        p: &PaymentRow,
        amount: Option<i64>,
        currency: Option<&str>,
    ) -> Result<()> {
        let reason = format!(
            "The provider reported {} {} where {} {} was asked: not applied; contact support.",
            amount.map_or("an unknown amount".to_owned(), |a| a.to_string()),
            currency.unwrap_or("(no currency)"),
            p.amount,
            p.currency
        );
        if store::finish_unpaid(
            &self.inner.db,
            p.id,
            PaymentStatus::Failed,
            &reason,
            self.now(),
        )
        .await?
        {
            tracing::error!(payment = %p.id, %reason, "payment flagged");
            metrics::counter!(crate::metrics::PAYMENTS_TOTAL, "method" => p.method.as_str(), "status" => "flagged")
                .increment(1);
            audit::record(
                &self.inner.db,
                Entry {
                    org: p.organization_id,
                    action: action::BILLING_PAYMENT_FLAGGED,
                    actor: None,
                    subject: None,
                    ip: None,
                    detail: json!({"payment_id": p.id, "reason": reason}),
                },
            )
            .await?;
        }
        Ok(())
    }

    /// Ends a pending payment unpaid (once).
    async fn fail(&self, p: &PaymentRow, status: PaymentStatus, reason: &str) -> Result<()> {
        if store::finish_unpaid(&self.inner.db, p.id, status, reason, self.now()).await? {
            metrics::counter!(crate::metrics::PAYMENTS_TOTAL, "method" => p.method.as_str(), "status" => status.as_str())
                .increment(1);
            audit::record(
                &self.inner.db,
                Entry {
                    org: p.organization_id,
                    action: action::BILLING_PAYMENT_FAILED,
                    actor: None,
                    subject: None,
                    ip: None,
                    detail: json!({"payment_id": p.id, "status": status.as_str(), "reason": reason}),
                },
            )
            .await?;
        }
        Ok(())
    }

    /// Applies a confirmed payment: once; the plan changes now and the
    /// period runs a month (a renewal: from the end of the running one).
    async fn apply(
        &self,
        p: &PaymentRow,
        stripe_customer: Option<&str>,
        stripe_subscription: Option<&str>,
    ) -> Result<bool> {
        let now = self.now();
        let sub = self.subscription_row(p.organization_id).await?;
        let start = match sub.current_period_end {
            Some(end) if p.renewal && end > now && sub.plan == p.plan => end,
            _ => now,
        };
        let applied = store::apply_payment(
            &self.inner.db,
            &Applied {
                payment: p,
                period_start: start,
                period_end: one_month_after(start),
                stripe_customer_id: stripe_customer,
                stripe_subscription_id: stripe_subscription,
                now,
            },
        )
        .await?;
        if !applied {
            return Ok(false);
        }
        metrics::counter!(crate::metrics::PAYMENTS_TOTAL, "method" => p.method.as_str(), "status" => "succeeded")
            .increment(1);
        for (act, detail) in [
            (
                action::BILLING_PAYMENT_SUCCEEDED,
                json!({"payment_id": p.id, "amount": p.amount, "currency": p.currency, "method": p.method.as_str()}),
            ),
            (
                action::BILLING_PLAN_CHANGED,
                json!({"from": sub.plan.as_str(), "to": p.plan.as_str(), "period_end": one_month_after(start)}),
            ),
        ] {
            audit::record(
                &self.inner.db,
                Entry {
                    org: p.organization_id,
                    action: act,
                    actor: p.created_by,
                    subject: None,
                    ip: None,
                    detail,
                },
            )
            .await?;
        }
        self.mail_admins(
            p.organization_id,
            &format!("Receipt: Bwenge {} plan", self.inner.plans.get(p.plan).name),
            &format!(
                "Thank you. We received your payment.\r\n\r\nPayment: {}\r\nPlan: {} ({})\r\nAmount: {} {}\r\nMethod: {}\r\nPaid until: {}\r\n",
                p.id,
                self.inner.plans.get(p.plan).name,
                p.plan.as_str(),
                bwenge_payments::money::to_major_string(p.amount, &p.currency),
                p.currency,
                p.method.as_str(),
                one_month_after(start).format("%Y-%m-%d %H:%M UTC"),
            ),
        )
        .await?;
        Ok(true)
    }

    /// A Stripe subscription is told to end with its period.
    pub(crate) async fn cancel_at_provider(&self, sub: &store::SubscriptionRow) -> Result<()> {
        if let (Some(Method::Stripe), Some(id), Some(stripe)) = (
            sub.method,
            sub.stripe_subscription_id.as_deref(),
            &self.providers().stripe,
        ) {
            stripe
                .cancel_at_period_end(id, &format!("cancel-{id}"))
                .await
                .map_err(provider_error)?;
        }
        Ok(())
    }

    pub(crate) async fn mail_admins(&self, org: OrgId, subject: &str, body: &str) -> Result<()> {
        for to in store::admin_emails(&self.inner.db, org).await? {
            mail::send_in_background(
                self.inner.mailer.clone(),
                Mail {
                    to,
                    subject: subject.to_owned(),
                    body: body.to_owned(),
                    html: None,
                },
            );
        }
        Ok(())
    }

    /// Looks up every pending mobile-money payment that is due, with a
    /// doubling wait between look-ups. Driven by the rows, so a restarted
    /// node (or any node) resumes it.
    pub async fn poll_due(&self) -> Result<usize> {
        let now = self.now();
        let due = store::due_payments(&self.inner.db, now, 100).await?;
        let s = &self.inner.settings;
        for p in &due {
            self.refresh(p).await?;
            let attempts = p.attempts + 1;
            let wait = s
                .poll_initial_secs
                .saturating_mul(1u64 << attempts.clamp(0, 20))
                .min(s.poll_max_secs);
            store::schedule_check(
                &self.inner.db,
                p.id,
                attempts,
                self.now() + chrono::Duration::seconds(wait as i64),
            )
            .await?;
        }
        Ok(due.len())
    }

    // -- Callbacks and webhooks ----------------------------------------------

    /// MTN's callback: only names the payment; its status is asked of MTN.
    pub async fn momo_callback(&self, body: &[u8]) -> Result<()> {
        let cb = bwenge_payments::momo::parse_callback(body)
            .map_err(|_| BillingError::BadWebhook("The callback is not MoMo's JSON.".into()))?;
        let id = cb.external_id.as_deref().and_then(|s| s.parse().ok());
        if let Some(p) =
            store::payment_for_callback(&self.inner.db, Method::MtnMomo, id, None).await?
            && p.status == PaymentStatus::Pending
        {
            self.refresh(&p).await?;
        }
        Ok(())
    }

    /// Airtel's callback: only names the payment; its status is asked of Airtel.
    pub async fn airtel_callback(&self, body: &[u8]) -> Result<()> {
        let cb = bwenge_payments::airtel::parse_callback(body)
            .map_err(|_| BillingError::BadWebhook("The callback is not Airtel's JSON.".into()))?;
        if let Some(p) = store::payment_for_callback(
            &self.inner.db,
            Method::AirtelMoney,
            None,
            Some(&cb.transaction_id),
        )
        .await?
            && p.status == PaymentStatus::Pending
        {
            self.refresh(&p).await?;
        }
        Ok(())
    }

    /// A Stripe event: its signature verified (several secrets during a
    /// rotation, five minutes' tolerance), its id stored once, then handled.
    pub async fn stripe_webhook(&self, payload: &[u8], signature: &str) -> Result<()> {
        let Some(stripe) = &self.providers().stripe else {
            return Err(BillingError::NotFound);
        };
        let event = stripe
            .verify(payload, signature, self.now().timestamp())
            .map_err(|e| BillingError::BadWebhook(format!("Stripe-Signature refused: {e}.")))?;
        if !store::remember_stripe_event(&self.inner.db, &event.id, &event.event_type, self.now())
            .await?
        {
            return Ok(());
        }
        // A subscription changed by something else meanwhile: read it again.
        let mut handled = self.handle_stripe_event(&event).await;
        for _ in 0..4 {
            if !matches!(handled, Err(BillingError::Conflict(_))) {
                break;
            }
            handled = self.handle_stripe_event(&event).await;
        }
        if let Err(e) = handled {
            // Stripe retries: let the retry run it.
            store::forget_stripe_event(&self.inner.db, &event.id).await?;
            return Err(e);
        }
        Ok(())
    }

    async fn handle_stripe_event(&self, e: &StripeEvent) -> Result<()> {
        match e.kind() {
            StripeEventKind::CheckoutSessionCompleted | StripeEventKind::InvoicePaid => {
                // The first payment of a checkout: by its payment id.
                if let Some(p) = self.stripe_payment(e).await?
                    && p.status == PaymentStatus::Pending
                {
                    if e.kind() == StripeEventKind::CheckoutSessionCompleted
                        && e.payment_status() != Some("paid")
                    {
                        return Ok(());
                    }
                    let amount_ok = e.amount() == Some(p.amount);
                    let currency_ok = e
                        .currency()
                        .is_some_and(|c| c.eq_ignore_ascii_case(&p.currency));
                    if !(amount_ok && currency_ok) {
                        return self.flag(&p, e.amount(), e.currency().as_deref()).await;
                    }
                    self.apply(&p, e.customer_id(), e.subscription_id()).await?;
                    return Ok(());
                }
                // A renewal of a known subscription (the first invoice is
                // the checkout's, applied above).
                let first_invoice = e
                    .data_object
                    .get("billing_reason")
                    .and_then(serde_json::Value::as_str)
                    == Some("subscription_create");
                if e.kind() == StripeEventKind::InvoicePaid
                    && !first_invoice
                    && let Some(sub_id) = e.subscription_id()
                    && let Some(org) =
                        store::org_of_stripe_subscription(&self.inner.db, sub_id).await?
                {
                    let sub = self.subscription_row(org).await?;
                    let now = self.now();
                    let end = e
                        .period_end()
                        .and_then(|t| DateTime::from_timestamp(t, 0))
                        .filter(|end| *end > now)
                        .unwrap_or_else(|| one_month_after(now));
                    // Only a period beyond the one running (by more than a
                    // day: the checkout's own period ends about then).
                    let beyond = sub
                        .current_period_end
                        .is_none_or(|cur| end > cur + chrono::Duration::days(1));
                    if beyond {
                        let changed = store::change_subscription(
                            &self.inner.db,
                            org,
                            sub.updated_at,
                            &store::SubscriptionChange {
                                plan: sub.plan,
                                status: super::model::SubscriptionStatus::Active,
                                current_period_start: sub
                                    .current_period_end
                                    .unwrap_or(now)
                                    .min(now),
                                current_period_end: Some(end),
                                cancel_at_period_end: sub.cancel_at_period_end,
                                past_due_since: None,
                                clear_payer: false,
                            },
                            now,
                        )
                        .await?;
                        if !changed {
                            return Err(lost_race());
                        }
                        self.audit_system(org, action::BILLING_PAYMENT_SUCCEEDED, json!({
                            "method": "stripe", "event": e.id, "amount": e.amount(), "currency": e.currency(),
                            "period_end": end,
                        }))
                        .await?;
                        metrics::counter!(crate::metrics::PAYMENTS_TOTAL, "method" => "stripe", "status" => "succeeded")
                            .increment(1);
                        self.mail_admins(
                            org,
                            "Receipt: Bwenge subscription renewed",
                            &format!(
                                "Thank you. Your {} plan is renewed until {}.\r\nAmount: {} {}\r\n",
                                sub.plan.as_str(),
                                end.format("%Y-%m-%d"),
                                e.amount().map_or("?".into(), |a| {
                                    bwenge_payments::money::to_major_string(
                                        a,
                                        &e.currency().unwrap_or_default(),
                                    )
                                }),
                                e.currency().unwrap_or_default(),
                            ),
                        )
                        .await?;
                    }
                }
                Ok(())
            }
            StripeEventKind::InvoicePaymentFailed => {
                if let Some(sub_id) = e.subscription_id()
                    && let Some(org) =
                        store::org_of_stripe_subscription(&self.inner.db, sub_id).await?
                {
                    self.mark_past_due(org).await?;
                } else if let Some(p) = self.stripe_payment(e).await? {
                    self.fail(
                        &p,
                        PaymentStatus::Failed,
                        "Stripe could not charge the card.",
                    )
                    .await?;
                }
                Ok(())
            }
            StripeEventKind::SubscriptionUpdated => {
                let Some(sub_id) = e.subscription_id() else {
                    return Ok(());
                };
                let Some(org) = store::org_of_stripe_subscription(&self.inner.db, sub_id).await?
                else {
                    return Ok(());
                };
                let sub = self.subscription_row(org).await?;
                let now = self.now();
                let status = match e.subscription_status() {
                    Some("past_due" | "unpaid") => super::model::SubscriptionStatus::PastDue,
                    _ => super::model::SubscriptionStatus::Active,
                };
                let past_due_since = match status {
                    super::model::SubscriptionStatus::PastDue => sub.past_due_since.or(Some(now)),
                    _ => None,
                };
                let changed = store::change_subscription(
                    &self.inner.db,
                    org,
                    sub.updated_at,
                    &store::SubscriptionChange {
                        plan: sub.plan,
                        status,
                        // The period moves with `invoice.paid` (paid, with
                        // its receipt), not with this event.
                        current_period_start: sub.current_period_start,
                        current_period_end: sub.current_period_end,
                        cancel_at_period_end: e
                            .cancel_at_period_end()
                            .unwrap_or(sub.cancel_at_period_end),
                        past_due_since,
                        clear_payer: false,
                    },
                    now,
                )
                .await?;
                if !changed {
                    return Err(lost_race());
                }
                Ok(())
            }
            StripeEventKind::SubscriptionDeleted => {
                if let Some(sub_id) = e.subscription_id()
                    && let Some(org) =
                        store::org_of_stripe_subscription(&self.inner.db, sub_id).await?
                {
                    self.downgrade(org, "the Stripe subscription ended").await?;
                }
                Ok(())
            }
            StripeEventKind::Other => Ok(()),
        }
    }

    /// The pending (or earlier) payment a Stripe event names, checked to be
    /// of the organisation it names.
    async fn stripe_payment(&self, e: &StripeEvent) -> Result<Option<PaymentRow>> {
        let Some(id) = e.payment_id().and_then(|s| s.parse::<PaymentId>().ok()) else {
            return Ok(None);
        };
        let Some(org) = e.organisation_id().and_then(|s| s.parse::<OrgId>().ok()) else {
            return Ok(None);
        };
        Ok(store::payment(&self.inner.db, org, id)
            .await?
            .filter(|p| p.method == Method::Stripe))
    }

    pub(crate) async fn audit_system(
        &self,
        org: OrgId,
        act: &str,
        detail: serde_json::Value,
    ) -> Result<()> {
        audit::record(
            &self.inner.db,
            Entry {
                org,
                action: act,
                actor: None,
                subject: None,
                ip: None,
                detail,
            },
        )
        .await?;
        Ok(())
    }
}
