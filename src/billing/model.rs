//! Billing's types: plans (from `[billing.plans]`), subscription status,
//! payment methods and statuses, usage kinds. Money is an integer in the
//! currency's minor unit, never a float.

use serde::Serialize;

use crate::config::{BillingSettings, PlanSettings};

/// The four plan ids; fixed whatever the configuration says of prices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PlanId {
    Free,
    Basic,
    Pro,
    Enterprise,
}

impl PlanId {
    pub const ALL: [PlanId; 4] = [PlanId::Free, PlanId::Basic, PlanId::Pro, PlanId::Enterprise];

    pub fn as_str(self) -> &'static str {
        match self {
            PlanId::Free => "free",
            PlanId::Basic => "basic",
            PlanId::Pro => "pro",
            PlanId::Enterprise => "enterprise",
        }
    }
}

impl std::str::FromStr for PlanId {
    type Err = anyhow::Error;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        Ok(match raw {
            "free" => PlanId::Free,
            "basic" => PlanId::Basic,
            "pro" => PlanId::Pro,
            "enterprise" => PlanId::Enterprise,
            other => anyhow::bail!("unknown plan {other:?}"),
        })
    }
}

crate::sql_text_enum!(PlanId);

/// A price: an amount in the currency's minor unit (ISO 4217).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Price {
    /// ISO 4217 code: `RWF`, `USD`.
    pub currency: String,
    /// In the minor unit (RWF has none; USD cents).
    pub amount: i64,
}

/// A plan's allowances; `null` is unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Quotas {
    pub questions_per_month: Option<i64>,
    pub storage_bytes: Option<i64>,
    pub members: Option<i64>,
}

/// A plan as `GET /v1/plans` shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Plan {
    pub id: PlanId,
    pub name: String,
    pub prices: Vec<Price>,
    pub quotas: Quotas,
    /// The Stripe Price sold for it (empty: none).
    #[serde(skip)]
    pub stripe_price_id: String,
}

impl Plan {
    pub fn price(&self, currency: &str) -> Option<i64> {
        self.prices
            .iter()
            .find(|p| p.currency.eq_ignore_ascii_case(currency))
            .map(|p| p.amount)
    }

    pub fn limit(&self, kind: UsageKind) -> Option<i64> {
        match kind {
            UsageKind::Questions => self.quotas.questions_per_month,
            UsageKind::StorageBytes => self.quotas.storage_bytes,
            UsageKind::Members => self.quotas.members,
        }
    }
}

fn allowance(n: i64) -> Option<i64> {
    (n >= 0).then_some(n)
}

fn plan_of(id: PlanId, p: &PlanSettings) -> Plan {
    Plan {
        id,
        name: p.name.clone(),
        prices: vec![
            Price {
                currency: "RWF".into(),
                amount: p.price_rwf,
            },
            Price {
                currency: "USD".into(),
                amount: p.price_usd,
            },
        ],
        quotas: Quotas {
            questions_per_month: allowance(p.questions_per_month),
            storage_bytes: allowance(p.storage_bytes),
            members: allowance(p.members),
        },
        stripe_price_id: p.stripe_price_id.trim().to_owned(),
    }
}

/// The plan table, read once from the settings.
#[derive(Debug, Clone)]
pub struct Plans(Vec<Plan>);

impl Plans {
    pub fn from_settings(s: &BillingSettings) -> Self {
        Self(vec![
            plan_of(PlanId::Free, &s.plans.free),
            plan_of(PlanId::Basic, &s.plans.basic),
            plan_of(PlanId::Pro, &s.plans.pro),
            plan_of(PlanId::Enterprise, &s.plans.enterprise),
        ])
    }

    pub fn all(&self) -> &[Plan] {
        &self.0
    }

    pub fn get(&self, id: PlanId) -> &Plan {
        // Built from all four ids, in order.
        &self.0[id as usize]
    }

    /// The plan whose Stripe Price is `price`.
    pub fn by_stripe_price(&self, price: &str) -> Option<&Plan> {
        self.0
            .iter()
            .find(|p| !p.stripe_price_id.is_empty() && p.stripe_price_id == price)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SubscriptionStatus {
    Active,
    PastDue,
    Cancelled,
}

impl SubscriptionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            SubscriptionStatus::Active => "active",
            SubscriptionStatus::PastDue => "past_due",
            SubscriptionStatus::Cancelled => "cancelled",
        }
    }
}

impl std::str::FromStr for SubscriptionStatus {
    type Err = anyhow::Error;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        Ok(match raw {
            "active" => SubscriptionStatus::Active,
            "past_due" => SubscriptionStatus::PastDue,
            "cancelled" => SubscriptionStatus::Cancelled,
            other => anyhow::bail!("unknown subscription status {other:?}"),
        })
    }
}

crate::sql_text_enum!(SubscriptionStatus);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    MtnMomo,
    AirtelMoney,
    Stripe,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::MtnMomo => "mtn_momo",
            Method::AirtelMoney => "airtel_money",
            Method::Stripe => "stripe",
        }
    }

    pub fn is_mobile_money(self) -> bool {
        matches!(self, Method::MtnMomo | Method::AirtelMoney)
    }
}

impl std::str::FromStr for Method {
    type Err = anyhow::Error;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        Ok(match raw {
            "mtn_momo" => Method::MtnMomo,
            "airtel_money" => Method::AirtelMoney,
            "stripe" => Method::Stripe,
            other => anyhow::bail!("unknown payment method {other:?}"),
        })
    }
}

crate::sql_text_enum!(Method);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PaymentStatus {
    Pending,
    Succeeded,
    Failed,
    Expired,
}

impl PaymentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            PaymentStatus::Pending => "pending",
            PaymentStatus::Succeeded => "succeeded",
            PaymentStatus::Failed => "failed",
            PaymentStatus::Expired => "expired",
        }
    }
}

impl std::str::FromStr for PaymentStatus {
    type Err = anyhow::Error;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        Ok(match raw {
            "pending" => PaymentStatus::Pending,
            "succeeded" => PaymentStatus::Succeeded,
            "failed" => PaymentStatus::Failed,
            "expired" => PaymentStatus::Expired,
            other => anyhow::bail!("unknown payment status {other:?}"),
        })
    }
}

crate::sql_text_enum!(PaymentStatus);

/// What is counted against a plan's allowances.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UsageKind {
    /// Per calendar month (UTC).
    Questions,
    StorageBytes,
    /// Active members plus pending invitations.
    Members,
}

impl UsageKind {
    pub fn as_str(self) -> &'static str {
        match self {
            UsageKind::Questions => "questions",
            UsageKind::StorageBytes => "storage_bytes",
            UsageKind::Members => "members",
        }
    }
}

/// `YYYY-MM` of `at` (UTC): the period of the question counter.
pub fn month_of(at: chrono::DateTime<chrono::Utc>) -> String {
    at.format("%Y-%m").to_string()
}

/// The first instant of the month after `at`'s (UTC): when the question
/// allowance resets.
pub fn next_month_start(at: chrono::DateTime<chrono::Utc>) -> chrono::DateTime<chrono::Utc> {
    use chrono::{Datelike, TimeZone};
    let (y, m) = if at.month() == 12 {
        (at.year() + 1, 1)
    } else {
        (at.year(), at.month() + 1)
    };
    chrono::Utc
        .with_ymd_and_hms(y, m, 1, 0, 0, 0)
        .single()
        .unwrap_or(at)
}

/// A month after `at`, the same day where it exists (else the month's last).
pub fn one_month_after(at: chrono::DateTime<chrono::Utc>) -> chrono::DateTime<chrono::Utc> {
    at.checked_add_months(chrono::Months::new(1))
        .unwrap_or(at + chrono::Duration::days(30))
}
