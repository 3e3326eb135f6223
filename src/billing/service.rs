//! Billing's use cases: [`BillingService`]. Plans and subscriptions, the
//! allowances other domains reserve against (through their own ports,
//! implemented in `crate::adapters`), and the reconciliation of the
//! counters with the data.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::json;

use super::error::BillingError;
use super::model::{
    Method, Plan, PlanId, Plans, SubscriptionStatus, UsageKind, month_of, next_month_start,
};
use super::store::{self, SubscriptionRow, Take};
use crate::audit::{self, Entry, action};
use crate::auth::AuthUser;
use crate::clock::Clock;
use crate::config::BillingSettings;
use crate::db::Db;
use crate::ids::OrgId;
use crate::mail::Mailer;

pub type Result<T, E = BillingError> = std::result::Result<T, E>;

/// What [`BillingService`] is built from.
pub struct BillingDeps {
    pub db: Db,
    pub settings: BillingSettings,
    pub clock: Clock,
    pub mailer: Arc<dyn Mailer>,
}

pub(crate) struct Inner {
    pub(crate) db: Db,
    pub(crate) settings: BillingSettings,
    pub(crate) plans: Plans,
    pub(crate) limits: store::QuestionLimits,
    pub(crate) clock: Clock,
    pub(crate) mailer: Arc<dyn Mailer>,
    pub(crate) providers: super::payments::Providers,
}

/// Plans, subscriptions, allowances and payments; cheap to clone.
#[derive(Clone)]
pub struct BillingService {
    pub(crate) inner: Arc<Inner>,
}

/// One allowance and its use.
#[derive(Debug, Clone, Copy, Serialize, utoipa::ToSchema)]
pub struct Usage {
    pub used: i64,
    /// `null`: unlimited.
    pub limit: Option<i64>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct UsageView {
    /// This calendar month's questions (UTC).
    pub questions: Usage,
    pub storage_bytes: Usage,
    /// Active members plus pending invitations.
    pub members: Usage,
}

/// `GET /v1/subscription`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SubscriptionView {
    pub plan: PlanId,
    /// The plan's display name.
    pub plan_name: String,
    pub status: SubscriptionStatus,
    pub current_period_start: DateTime<Utc>,
    /// `null` on `free`, which never ends.
    pub current_period_end: Option<DateTime<Utc>>,
    pub cancel_at_period_end: bool,
    /// How the current period was paid (`null` on `free`).
    pub method: Option<Method>,
    /// When the question allowance starts again.
    pub questions_reset_at: DateTime<Utc>,
    pub usage: UsageView,
}

impl BillingService {
    pub fn new(d: BillingDeps) -> Self {
        let plans = Plans::from_settings(&d.settings);
        let providers = super::payments::Providers::from_settings(&d.settings);
        Self {
            inner: Arc::new(Inner {
                db: d.db,
                settings: d.settings,
                limits: store::QuestionLimits::new(&plans),
                plans,
                clock: d.clock,
                mailer: d.mailer,
                providers,
            }),
        }
    }

    pub fn plans(&self) -> &Plans {
        &self.inner.plans
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.inner.clock.now()
    }

    /// The organisation's subscription (`free` if it had none).
    pub async fn subscription_row(&self, org: OrgId) -> Result<SubscriptionRow> {
        if let Some(row) = store::subscription(&self.inner.db, org).await? {
            return Ok(row);
        }
        store::ensure_subscription(&self.inner.db, org, self.now()).await?;
        store::subscription(&self.inner.db, org)
            .await?
            .ok_or_else(|| anyhow::anyhow!("a subscription just ensured is missing").into())
    }

    /// The plan whose allowances apply to `org` now.
    pub async fn plan_of(&self, org: OrgId) -> Result<&Plan> {
        let row = self.subscription_row(org).await?;
        Ok(self.inner.plans.get(row.plan))
    }

    /// The caller's subscription with its usage (admins and teachers).
    pub async fn subscription(&self, caller: &AuthUser) -> Result<SubscriptionView> {
        caller.require_staff()?;
        self.view(caller.org_id).await
    }

    pub async fn view(&self, org: OrgId) -> Result<SubscriptionView> {
        let row = self.subscription_row(org).await?;
        let plan = self.inner.plans.get(row.plan);
        let now = self.now();
        let db = &self.inner.db;
        let questions = store::counter(db, org, UsageKind::Questions, &month_of(now))
            .await?
            .unwrap_or(0);
        let storage = store::used(db, org, UsageKind::StorageBytes, now).await?;
        let members = store::used(db, org, UsageKind::Members, now).await?;
        Ok(SubscriptionView {
            plan: row.plan,
            plan_name: plan.name.clone(),
            status: row.status,
            current_period_start: row.current_period_start,
            current_period_end: row.current_period_end,
            cancel_at_period_end: row.cancel_at_period_end,
            method: row.method,
            questions_reset_at: next_month_start(now),
            usage: UsageView {
                questions: Usage {
                    used: questions,
                    limit: plan.quotas.questions_per_month,
                },
                storage_bytes: Usage {
                    used: storage,
                    limit: plan.quotas.storage_bytes,
                },
                members: Usage {
                    used: members,
                    limit: plan.quotas.members,
                },
            },
        })
    }

    /// Cancels at the end of the period (admins): the plan runs until then,
    /// and no renewal is asked for.
    pub async fn cancel(&self, caller: &AuthUser, ip: &str) -> Result<SubscriptionView> {
        caller.require_admin()?;
        let row = self.subscription_row(caller.org_id).await?;
        if row.plan == PlanId::Free {
            return Err(BillingError::Conflict(
                "The free plan has nothing to cancel.".into(),
            ));
        }
        if !row.cancel_at_period_end {
            // Stripe must stop charging too: told first, so a refusal
            // leaves both sides as they were.
            self.cancel_at_provider(&row).await?;
            store::set_cancel_at_period_end(&self.inner.db, caller.org_id, true, self.now())
                .await?;
            audit::record(
                &self.inner.db,
                Entry {
                    org: caller.org_id,
                    action: action::BILLING_CANCEL_SCHEDULED,
                    actor: Some(caller.user_id),
                    subject: None,
                    ip: Some(ip),
                    detail: json!({
                        "plan": row.plan.as_str(),
                        "ends_at": row.current_period_end,
                    }),
                },
            )
            .await?;
        }
        self.view(caller.org_id).await
    }

    // -- Allowances --------------------------------------------------------

    /// Counts one question of `org`, once per `key` (a chat message's
    /// session and `client_id`; `None`: always a new question). Refused
    /// with [`BillingError::QuotaExceeded`] past the month's allowance.
    pub async fn take_question(&self, org: OrgId, key: Option<&str>) -> Result<()> {
        let now = self.now();
        let limits = &self.inner.limits;
        match store::take_question(&self.inner.db, limits, org, &month_of(now), key, now).await? {
            Take::Counted | Take::Repeat => Ok(()),
            Take::Refused => {
                metrics::counter!(crate::metrics::QUOTA_REFUSALS, "allowance" => "questions")
                    .increment(1);
                // The plan is read only to say why: counting read it already.
                let plan = self.plan_of(org).await?;
                Err(BillingError::QuotaExceeded(format!(
                    "The questions allowance of the {} plan ({} questions a month) is used up \
                     for {}; it resets at {}. An admin can upgrade the plan for more.",
                    plan.id.as_str(),
                    plan.quotas.questions_per_month.unwrap_or_default(),
                    now.format("%B %Y"),
                    next_month_start(now).to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                )))
            }
        }
    }

    /// Gives back a question counted this month that was not answered.
    pub async fn give_back_question(&self, org: OrgId) -> Result<()> {
        let now = self.now();
        store::give_back_question(&self.inner.db, org, &month_of(now), now).await?;
        Ok(())
    }

    /// Reserves `bytes` of storage for an upload (material or a 3D model
    /// version), or refuses past the allowance.
    pub async fn reserve_storage(&self, org: OrgId, bytes: u64) -> Result<()> {
        let plan = self.plan_of(org).await?;
        let now = self.now();
        let bytes = i64::try_from(bytes).unwrap_or(i64::MAX);
        let limit = plan.quotas.storage_bytes;
        if store::reserve(
            &self.inner.db,
            org,
            UsageKind::StorageBytes,
            bytes,
            limit,
            now,
        )
        .await?
        {
            return Ok(());
        }
        metrics::counter!(crate::metrics::QUOTA_REFUSALS, "allowance" => "storage_bytes")
            .increment(1);
        let used = store::used(&self.inner.db, org, UsageKind::StorageBytes, now).await?;
        Err(BillingError::QuotaExceeded(format!(
            "This upload ({}) would pass the storage allowance of the {} plan ({}, {} in use). \
             Storage does not reset: it frees up as material or models are deleted, or an admin \
             can upgrade the plan.",
            human_bytes(bytes),
            plan.id.as_str(),
            human_bytes(limit.unwrap_or_default()),
            human_bytes(used),
        )))
    }

    pub async fn release_storage(&self, org: OrgId, bytes: u64) -> Result<()> {
        let bytes = i64::try_from(bytes).unwrap_or(i64::MAX);
        store::release(
            &self.inner.db,
            org,
            UsageKind::StorageBytes,
            bytes,
            self.now(),
        )
        .await?;
        Ok(())
    }

    /// Reserves a member seat (an invitation), or refuses past the
    /// allowance (active members plus pending invitations).
    pub async fn reserve_member(&self, org: OrgId) -> Result<()> {
        let plan = self.plan_of(org).await?;
        let now = self.now();
        let limit = plan.quotas.members;
        let db = &self.inner.db;
        if store::reserve(db, org, UsageKind::Members, 1, limit, now).await? {
            return Ok(());
        }
        // Expired invitations free their seat: count again from the data
        // once before refusing.
        store::reconcile(db, org, UsageKind::Members, now).await?;
        if store::reserve(db, org, UsageKind::Members, 1, limit, now).await? {
            return Ok(());
        }
        metrics::counter!(crate::metrics::QUOTA_REFUSALS, "allowance" => "members").increment(1);
        Err(BillingError::QuotaExceeded(format!(
            "The members allowance of the {} plan ({} members, pending invitations included) \
             is used up. It does not reset: a seat frees up when a member is removed or an \
             invitation expires, or an admin can upgrade the plan.",
            plan.id.as_str(),
            limit.unwrap_or_default(),
        )))
    }

    pub async fn release_member(&self, org: OrgId) -> Result<()> {
        store::release(&self.inner.db, org, UsageKind::Members, 1, self.now()).await?;
        Ok(())
    }

    /// Starts the background work of this node: pending payments looked
    /// up as they fall due (every `billing.poll_initial_secs`), and
    /// reconciliation, renewals and grace now and every
    /// `billing.job_interval_secs`. It keeps no state of its own (the
    /// database drives it), so a restarted node simply starts again.
    pub fn start_jobs(&self) {
        let poller = self.clone();
        tokio::spawn(async move {
            let every = std::time::Duration::from_secs(poller.inner.settings.poll_initial_secs);
            loop {
                tokio::time::sleep(every).await;
                if let Err(e) = poller.poll_due().await {
                    tracing::warn!(error = ?e, "polling payments failed; it runs again later");
                }
            }
        });
        let me = self.clone();
        tokio::spawn(async move {
            let every = std::time::Duration::from_secs(me.inner.settings.job_interval_secs);
            loop {
                if let Err(e) = me.run_jobs_once().await {
                    tracing::warn!(error = ?e, "a billing job failed; it runs again later");
                }
                tokio::time::sleep(every).await;
            }
        });
    }

    /// One round of the background work.
    pub async fn run_jobs_once(&self) -> Result<()> {
        self.reconcile_all().await?;
        self.run_renewals().await?;
        self.poll_due().await?;
        Ok(())
    }

    /// Sets every organisation's storage and member counters to what the
    /// data says. Stateless, so a restart simply runs it again.
    pub async fn reconcile_all(&self) -> Result<usize> {
        let orgs = store::organisations(&self.inner.db).await?;
        let now = self.now();
        for org in &orgs {
            for kind in [UsageKind::StorageBytes, UsageKind::Members] {
                store::reconcile(&self.inner.db, *org, kind, now).await?;
            }
        }
        Ok(orgs.len())
    }
}

/// `1.5 MiB`: bytes for people.
pub fn human_bytes(n: i64) -> String {
    const UNITS: [&str; 5] = ["bytes", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} bytes")
    } else if (value - value.round()).abs() < 0.05 {
        format!("{:.0} {}", value.round(), UNITS[unit])
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}
