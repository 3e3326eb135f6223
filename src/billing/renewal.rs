//! Renewal and grace, run by the billing job on the [`Clock`]: a paid
//! mobile-money period asks the payer's phone for the next month (and mails
//! the admins) `billing.renew_days_before` days before it ends; unpaid at
//! the end, the subscription is `past_due` for `billing.grace_days`, then
//! returns to `free`, data kept (what exceeds free's allowances is
//! read-only: new questions, uploads and invitations are refused until
//! paid). A subscription cancelled at period end returns to `free` when
//! the period ends. Stripe renews through its own events.
//!
//! [`Clock`]: crate::clock::Clock

use serde_json::json;

use super::model::{Method, PlanId, SubscriptionStatus};
use super::service::{BillingService, Result};
use super::store::{self, SubscriptionChange};
use crate::audit::action;
use crate::ids::OrgId;

/// Attempts at a subscription change that lost a race before giving up.
const CHANGE_TRIES: usize = 5;

impl BillingService {
    /// One pass over the paid subscriptions whose period ends soon, ended,
    /// or that are past due. Each change is a conditional UPDATE, so nodes
    /// running it at once change each subscription once.
    pub async fn run_renewals(&self) -> Result<()> {
        let s = &self.inner.settings;
        let now = self.now();
        let soon = now + chrono::Duration::days(i64::from(s.renew_days_before));
        let grace = chrono::Duration::days(i64::from(s.grace_days));
        for sub in store::subscriptions_to_review(&self.inner.db, soon).await? {
            let org = sub.organization_id;
            match sub.status {
                SubscriptionStatus::PastDue => {
                    if sub.past_due_since.is_some_and(|t| t + grace <= now) {
                        self.downgrade(org, "the grace period ended unpaid").await?;
                    }
                }
                SubscriptionStatus::Active | SubscriptionStatus::Cancelled => {
                    let Some(end) = sub.current_period_end else {
                        continue;
                    };
                    if end <= now {
                        if sub.cancel_at_period_end {
                            self.downgrade(org, "the cancelled period ended").await?;
                        } else if sub.method != Some(Method::Stripe) {
                            self.mark_past_due(org).await?;
                        }
                    } else if !sub.cancel_at_period_end
                        && sub.method.is_some_and(Method::is_mobile_money)
                        && store::claim_renewal(&self.inner.db, org, end).await?
                    {
                        self.request_renewal(org, sub.plan, sub.method, sub.payer_phone, end)
                            .await?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Sends the renewal prompt to the payer's phone and mails the admins.
    async fn request_renewal(
        &self,
        org: OrgId,
        plan: PlanId,
        method: Option<Method>,
        phone: Option<String>,
        end: chrono::DateTime<chrono::Utc>,
    ) -> Result<()> {
        let (Some(method), Some(phone)) = (method, phone) else {
            return Ok(());
        };
        let p = self.new_payment(org, plan, method, Some(phone), true)?;
        store::insert_payment(&self.inner.db, &p).await?;
        self.send_to_provider(&p, None).await?;
        self.audit_system(
            org,
            action::BILLING_RENEWAL_REQUESTED,
            json!({"payment_id": p.id, "plan": plan.as_str(), "period_end": end}),
        )
        .await?;
        self.mail_admins(
            org,
            "Your Bwenge plan renews soon",
            &format!(
                "Your {} plan ends on {}. A payment request for {} {} was sent to the phone \
                 that paid last ({}): approve it there to keep the plan.\r\n\r\nUnpaid, the \
                 plan stays usable for {} more days, then your school returns to the free \
                 plan; nothing is deleted.\r\n",
                plan.as_str(),
                end.format("%Y-%m-%d"),
                bwenge_payments::money::to_major_string(p.amount, &p.currency),
                p.currency,
                method.as_str(),
                self.inner.settings.grace_days,
            ),
        )
        .await?;
        Ok(())
    }

    /// Unpaid at the end of the period: past due (the plan still runs).
    pub(crate) async fn mark_past_due(&self, org: OrgId) -> Result<()> {
        // Another change between the read and the write (a webhook, a
        // node): read again and retry.
        for _ in 0..CHANGE_TRIES {
            let sub = self.subscription_row(org).await?;
            if sub.status == SubscriptionStatus::PastDue || sub.plan == PlanId::Free {
                return Ok(());
            }
            if self.try_mark_past_due(org, &sub).await? {
                return Ok(());
            }
        }
        Ok(())
    }

    async fn try_mark_past_due(&self, org: OrgId, sub: &store::SubscriptionRow) -> Result<bool> {
        let now = self.now();
        let changed = store::change_subscription(
            &self.inner.db,
            org,
            sub.updated_at,
            &SubscriptionChange {
                plan: sub.plan,
                status: SubscriptionStatus::PastDue,
                current_period_start: sub.current_period_start,
                current_period_end: sub.current_period_end,
                cancel_at_period_end: sub.cancel_at_period_end,
                past_due_since: Some(now),
                clear_payer: false,
            },
            now,
        )
        .await?;
        if changed {
            self.audit_system(
                org,
                action::BILLING_PAST_DUE,
                json!({"plan": sub.plan.as_str()}),
            )
            .await?;
            self.mail_admins(
                org,
                "Your Bwenge payment is overdue",
                &format!(
                    "We could not collect the payment for your {} plan. It keeps running for \
                     {} days; then your school returns to the free plan (nothing is deleted).\r\n",
                    sub.plan.as_str(),
                    self.inner.settings.grace_days
                ),
            )
            .await?;
        }
        Ok(changed)
    }

    /// Back to free, data kept.
    pub(crate) async fn downgrade(&self, org: OrgId, why: &str) -> Result<()> {
        for _ in 0..CHANGE_TRIES {
            let sub = self.subscription_row(org).await?;
            if sub.plan == PlanId::Free {
                return Ok(());
            }
            if self.try_downgrade(org, &sub, why).await? {
                return Ok(());
            }
        }
        Ok(())
    }

    async fn try_downgrade(
        &self,
        org: OrgId,
        sub: &store::SubscriptionRow,
        why: &str,
    ) -> Result<bool> {
        let now = self.now();
        let changed = store::change_subscription(
            &self.inner.db,
            org,
            sub.updated_at,
            &SubscriptionChange {
                plan: PlanId::Free,
                status: SubscriptionStatus::Active,
                current_period_start: now,
                current_period_end: None,
                cancel_at_period_end: false,
                past_due_since: None,
                clear_payer: true,
            },
            now,
        )
        .await?;
        if changed {
            self.audit_system(
                org,
                action::BILLING_DOWNGRADED,
                json!({"from": sub.plan.as_str(), "to": "free", "reason": why}),
            )
            .await?;
            self.mail_admins(
                org,
                "Your school is on the free Bwenge plan",
                &format!(
                    "Your {} plan ended ({why}). Your school is on the free plan now; all of \
                     its material, models and members are kept. What exceeds the free \
                     allowances stays readable, but new uploads and invitations wait until a \
                     plan is paid.\r\n",
                    sub.plan.as_str()
                ),
            )
            .await?;
        }
        Ok(changed)
    }
}
