//! Billing's SQL, the same on SQLite and PostgreSQL. Every query names its
//! organisation. Allowances hold under concurrency, across nodes, because
//! each reservation is one conditional `UPDATE` on a counter row
//! (`… SET used = used + n WHERE … AND used + n <= limit`): the database
//! serialises writers on the row, and a refused reservation changes
//! nothing.
//!
//! Reconciliation reads the tables of knowledge, avatars and identity
//! (read-only): the counters are billing's, the facts are theirs.

use chrono::{DateTime, Utc};

use super::model::{Method, PlanId, SubscriptionStatus, UsageKind};
use crate::db::{Db, StoreError};
use crate::ids::OrgId;
use crate::{on_db, on_db_write};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SubscriptionRow {
    pub organization_id: OrgId,
    pub plan: PlanId,
    pub status: SubscriptionStatus,
    pub current_period_start: DateTime<Utc>,
    pub current_period_end: Option<DateTime<Utc>>,
    pub cancel_at_period_end: bool,
    pub method: Option<Method>,
    pub payer_phone: Option<String>,
    pub stripe_customer_id: Option<String>,
    pub stripe_subscription_id: Option<String>,
    pub past_due_since: Option<DateTime<Utc>>,
    pub renewal_requested_for: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
}

pub(crate) const SUBSCRIPTION_COLUMNS: &str = "organization_id, plan, status, current_period_start, \
     current_period_end, cancel_at_period_end, method, payer_phone, stripe_customer_id, \
     stripe_subscription_id, past_due_since, renewal_requested_for, updated_at";

/// Puts `org` on `free` unless it has a subscription already.
pub async fn ensure_subscription(
    db: &Db,
    org: OrgId,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    on_db_write!(db, |pool| sqlx::query(
        "INSERT INTO subscriptions (organization_id, plan, status, current_period_start, \
         current_period_end, cancel_at_period_end, created_at, updated_at) \
         VALUES ($1, 'free', 'active', $2, NULL, FALSE, $2, $2) \
         ON CONFLICT (organization_id) DO NOTHING"
    )
    .bind(org)
    .bind(now)
    .execute(pool)
    .await
    .map(|_| ())?);
    Ok(())
}

pub async fn subscription(db: &Db, org: OrgId) -> Result<Option<SubscriptionRow>, StoreError> {
    let sql =
        format!("SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE organization_id = $1");
    Ok(on_db!(db, |pool| sqlx::query_as(&sql)
        .bind(org)
        .fetch_optional(pool)
        .await?))
}

/// Marks the subscription to end with its period (`true`) or not.
pub async fn set_cancel_at_period_end(
    db: &Db,
    org: OrgId,
    cancel: bool,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let n = on_db_write!(db, |pool| sqlx::query(
        "UPDATE subscriptions SET cancel_at_period_end = $2, updated_at = $3 \
         WHERE organization_id = $1"
    )
    .bind(org)
    .bind(cancel)
    .bind(now)
    .execute(pool)
    .await?
    .rows_affected());
    Ok(n == 1)
}

/// How a question reservation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Take {
    /// Counted now.
    Counted,
    /// Its key was counted before (a repeated chat `client_id`).
    Repeat,
    /// The allowance is used up; nothing changed.
    Refused,
}

/// Counts one question of `org` in `period`, once per `key`, unless the
/// month's allowance (`limit`, `None`: unlimited) is used up. The key and
/// the count are written in one transaction: a refused question leaves no
/// key behind, and a key is never counted twice, whatever the nodes.
pub async fn take_question(
    db: &Db,
    org: OrgId,
    period: &str,
    key: Option<&str>,
    limit: Option<i64>,
    now: DateTime<Utc>,
) -> Result<Take, StoreError> {
    let take = on_db_write!(db, |pool| {
        let mut tx = pool.begin().await?;
        sqlx::query(
            "INSERT INTO usage_counters (organization_id, kind, period, used, updated_at) \
             VALUES ($1, 'questions', $2, 0, $3) \
             ON CONFLICT (organization_id, kind, period) DO NOTHING",
        )
        .bind(org)
        .bind(period)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let fresh = match key {
            None => true,
            Some(key) => {
                sqlx::query(
                    "INSERT INTO question_charges (organization_id, charge_key, period, at) \
                     VALUES ($1, $2, $3, $4) ON CONFLICT (organization_id, charge_key) DO NOTHING",
                )
                .bind(org)
                .bind(key)
                .bind(period)
                .bind(now)
                .execute(&mut *tx)
                .await?
                .rows_affected()
                    == 1
            }
        };
        if !fresh {
            tx.commit().await?;
            Take::Repeat
        } else {
            let n = sqlx::query(
                "UPDATE usage_counters SET used = used + 1, updated_at = $3 \
                 WHERE organization_id = $1 AND kind = 'questions' AND period = $2 \
                 AND ($4 < 0 OR used < $4)",
            )
            .bind(org)
            .bind(period)
            .bind(now)
            .bind(limit.unwrap_or(-1))
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if n == 1 {
                tx.commit().await?;
                Take::Counted
            } else {
                tx.rollback().await?;
                Take::Refused
            }
        }
    });
    Ok(take)
}

/// Gives back one question of `period` (one that was counted but not
/// answered).
pub async fn give_back_question(
    db: &Db,
    org: OrgId,
    period: &str,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    on_db_write!(db, |pool| sqlx::query(
        "UPDATE usage_counters SET used = used - 1, updated_at = $3 \
         WHERE organization_id = $1 AND kind = 'questions' AND period = $2 AND used > 0"
    )
    .bind(org)
    .bind(period)
    .bind(now)
    .execute(pool)
    .await
    .map(|_| ())?);
    Ok(())
}

/// What the data says `org` uses of `kind` (storage, members) now.
pub async fn measure(
    db: &Db,
    org: OrgId,
    kind: UsageKind,
    now: DateTime<Utc>,
) -> Result<i64, StoreError> {
    let used = match kind {
        UsageKind::StorageBytes => on_db!(db, |pool| {
            sqlx::query_scalar::<_, i64>(
            "SELECT CAST(COALESCE((SELECT SUM(size_bytes) FROM knowledge_sources \
               WHERE organization_id = $1), 0) AS BIGINT) \
             + CAST(COALESCE((SELECT SUM(v.size_bytes) FROM avatar_model_versions v \
               JOIN avatar_models m ON m.id = v.model_id WHERE m.organization_id = $1), 0) AS BIGINT)"
        )
        .bind(org)
        .fetch_one(pool)
        .await?
        }),
        UsageKind::Members => on_db!(db, |pool| sqlx::query_scalar::<_, i64>(
            "SELECT (SELECT COUNT(*) FROM users WHERE organization_id = $1) \
             + (SELECT COUNT(*) FROM one_time_tokens WHERE organization_id = $1 \
                AND kind = 'invitation' AND used_at IS NULL AND expires_at > $2)"
        )
        .bind(org)
        .bind(now)
        .fetch_one(pool)
        .await?),
        UsageKind::Questions => 0,
    };
    Ok(used)
}

/// The counter of `kind` for `org`, created from the data on first use.
async fn ensure_counter(
    db: &Db,
    org: OrgId,
    kind: UsageKind,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    if counter(db, org, kind, "").await?.is_some() {
        return Ok(());
    }
    let used = measure(db, org, kind, now).await?;
    on_db_write!(db, |pool| sqlx::query(
        "INSERT INTO usage_counters (organization_id, kind, period, used, updated_at) \
         VALUES ($1, $2, '', $3, $4) ON CONFLICT (organization_id, kind, period) DO NOTHING"
    )
    .bind(org)
    .bind(kind.as_str())
    .bind(used)
    .bind(now)
    .execute(pool)
    .await
    .map(|_| ())?);
    Ok(())
}

/// The counter's value, if it exists.
pub async fn counter(
    db: &Db,
    org: OrgId,
    kind: UsageKind,
    period: &str,
) -> Result<Option<i64>, StoreError> {
    Ok(on_db!(db, |pool| sqlx::query_scalar(
        "SELECT used FROM usage_counters WHERE organization_id = $1 AND kind = $2 AND period = $3"
    )
    .bind(org)
    .bind(kind.as_str())
    .bind(period)
    .fetch_optional(pool)
    .await?))
}

/// Adds `amount` to the (storage or members) counter unless that would
/// pass `limit` (`None`: unlimited). `false`: refused, nothing changed.
pub async fn reserve(
    db: &Db,
    org: OrgId,
    kind: UsageKind,
    amount: i64,
    limit: Option<i64>,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    ensure_counter(db, org, kind, now).await?;
    let n = on_db_write!(db, |pool| sqlx::query(
        "UPDATE usage_counters SET used = used + $3, updated_at = $4 \
         WHERE organization_id = $1 AND kind = $2 AND period = '' \
         AND ($5 < 0 OR used + $3 <= $5)"
    )
    .bind(org)
    .bind(kind.as_str())
    .bind(amount)
    .bind(now)
    .bind(limit.unwrap_or(-1))
    .execute(pool)
    .await?
    .rows_affected());
    Ok(n == 1)
}

/// Takes `amount` off the (storage or members) counter, never below 0.
pub async fn release(
    db: &Db,
    org: OrgId,
    kind: UsageKind,
    amount: i64,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    ensure_counter(db, org, kind, now).await?;
    on_db_write!(db, |pool| sqlx::query(
        "UPDATE usage_counters SET used = CASE WHEN used > $3 THEN used - $3 ELSE 0 END, \
         updated_at = $4 WHERE organization_id = $1 AND kind = $2 AND period = ''"
    )
    .bind(org)
    .bind(kind.as_str())
    .bind(amount)
    .bind(now)
    .execute(pool)
    .await
    .map(|_| ())?);
    Ok(())
}

/// The (storage or members) counter, created from the data if missing.
pub async fn used(
    db: &Db,
    org: OrgId,
    kind: UsageKind,
    now: DateTime<Utc>,
) -> Result<i64, StoreError> {
    ensure_counter(db, org, kind, now).await?;
    Ok(counter(db, org, kind, "").await?.unwrap_or(0))
}

/// Sets the (storage or members) counter to what the data says, in one
/// statement.
pub async fn reconcile(
    db: &Db,
    org: OrgId,
    kind: UsageKind,
    now: DateTime<Utc>,
) -> Result<i64, StoreError> {
    let used = measure(db, org, kind, now).await?;
    on_db_write!(db, |pool| sqlx::query(
        "INSERT INTO usage_counters (organization_id, kind, period, used, updated_at) \
         VALUES ($1, $2, '', $3, $4) \
         ON CONFLICT (organization_id, kind, period) DO UPDATE SET used = $3, updated_at = $4"
    )
    .bind(org)
    .bind(kind.as_str())
    .bind(used)
    .bind(now)
    .execute(pool)
    .await
    .map(|_| ())?);
    Ok(used)
}

/// Every organisation, for the reconciliation job.
pub async fn organisations(db: &Db) -> Result<Vec<OrgId>, StoreError> {
    Ok(on_db!(db, |pool| sqlx::query_scalar(
        "SELECT id FROM organizations ORDER BY id"
    )
    .fetch_all(pool)
    .await?))
}
