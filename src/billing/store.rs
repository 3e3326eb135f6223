//! Billing's SQL, the same on SQLite and PostgreSQL. Every query names its
//! organisation. Allowances hold under concurrency, across nodes, because
//! each reservation is one conditional write on a counter row (`… SET used
//! = used + n WHERE … AND used + n <= limit`; a question's is an upsert
//! whose limit is its plan's, see [`QuestionLimits`]): the database
//! serialises writers on the row, and a refused reservation changes
//! nothing.
//!
//! Reconciliation reads the tables of knowledge, avatars and identity
//! (read-only): the counters are billing's, the facts are theirs.

use chrono::{DateTime, Utc};

use super::model::{Method, PaymentStatus, Plan, PlanId, Plans, SubscriptionStatus, UsageKind};
use crate::db::{Db, StoreError};
use crate::ids::{OrgId, PaymentId, UserId};
use crate::pagination::Page;
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

/// Each plan's monthly questions allowance as one SQL expression over the
/// organisation (`$1`): `-1` when unlimited, the free plan's where no
/// subscription row exists yet (as [`ensure_subscription`] would make it).
/// Built once from the configured plans (numbers only, no input), so that
/// counting a question reads the plan in the statement that counts it:
/// no read of its own, and a plan change applies to the very next question
/// on every node.
#[derive(Debug, Clone)]
pub struct QuestionLimits {
    /// The statement counting one question of `$1` in period `$2` at `$3`:
    /// creates the month's counter at 1 or adds 1 to it, unless the plan's
    /// allowance is used up (one row changed: counted; none: refused).
    count: std::sync::Arc<str>,
}

impl QuestionLimits {
    pub fn new(plans: &Plans) -> Self {
        let limit = |p: &Plan| p.quotas.questions_per_month.unwrap_or(-1);
        let arms: String = plans
            .all()
            .iter()
            .map(|p| format!(" WHEN '{}' THEN {}", p.id.as_str(), limit(p)))
            .collect();
        let free = limit(plans.get(PlanId::Free));
        let lim = format!(
            "COALESCE((SELECT CASE plan{arms} ELSE {free} END FROM subscriptions \
             WHERE organization_id = $1), {free})"
        );
        Self {
            count: std::sync::Arc::from(format!(
                "INSERT INTO usage_counters (organization_id, kind, period, used, updated_at) \
                 SELECT $1, 'questions', $2, 1, $3 WHERE {lim} <> 0 \
                 ON CONFLICT (organization_id, kind, period) DO UPDATE \
                 SET used = usage_counters.used + 1, updated_at = excluded.updated_at \
                 WHERE {lim} < 0 OR usage_counters.used < {lim}"
            )),
        }
    }
}

const CHARGE_SQL: &str = "INSERT INTO question_charges (organization_id, charge_key, period, at) \
     VALUES ($1, $2, $3, $4) ON CONFLICT (organization_id, charge_key) DO NOTHING";

/// The statements of [`take_question`] on one connection. A repeated key
/// changes nothing; a refused question's key is deleted again (`undo`:
/// SQLite, where the writer runs each group's statements one after
/// another) or left to the caller's rollback (PostgreSQL's transaction).
macro_rules! take_in {
    ($conn:expr, $count:expr, $org:expr, $period:expr, $key:expr, $now:expr, $undo:expr) => {
        async {
            if let Some(key) = $key {
                let fresh = sqlx::query(CHARGE_SQL)
                    .bind($org)
                    .bind(key)
                    .bind($period)
                    .bind($now)
                    .execute(&mut *$conn)
                    .await?
                    .rows_affected()
                    == 1;
                if !fresh {
                    return Ok::<Take, sqlx::Error>(Take::Repeat);
                }
            }
            let counted = sqlx::query($count)
                .bind($org)
                .bind($period)
                .bind($now)
                .execute(&mut *$conn)
                .await
                .map(|r| r.rows_affected());
            if let Ok(1) = counted {
                return Ok(Take::Counted);
            }
            // Refused, or the count failed: the key goes too.
            if let (true, Some(key)) = ($undo, $key) {
                sqlx::query(
                    "DELETE FROM question_charges WHERE organization_id = $1 AND charge_key = $2",
                )
                .bind($org)
                .bind(key)
                .execute(&mut *$conn)
                .await?;
            }
            counted?;
            Ok(Take::Refused)
        }
    };
}

/// Counts one question of `org` in `period`, once per `key`, unless the
/// month's allowance of the organisation's plan (read in the same
/// statement, see [`QuestionLimits`]) is used up. A refused question leaves
/// no key behind, and a key is never counted twice, whatever the nodes.
///
/// On SQLite this runs in the writer's next group commit, with the chat
/// writes of the same moment, not a transaction and a sync to disk of its
/// own for every question (which capped a node at the disk's syncs per
/// second). Writes in a group run one after another on the one writing
/// connection, so the allowance holds as it does on PostgreSQL, and the
/// common case is two statements (the key, the count).
pub async fn take_question(
    db: &Db,
    limits: &QuestionLimits,
    org: OrgId,
    period: &str,
    key: Option<&str>,
    now: DateTime<Utc>,
) -> Result<Take, StoreError> {
    match db {
        Db::Sqlite(_, gate) => {
            let period = period.to_owned();
            let key = key.map(str::to_owned);
            let count = std::sync::Arc::clone(&limits.count);
            gate.in_group(move |conn| {
                Box::pin(async move {
                    take_in!(conn, &count, org, &period, key.as_deref(), now, true).await
                })
            })
            .await
        }
        Db::Postgres(pool) => {
            let mut tx = pool.begin().await?;
            let take = take_in!(tx, &limits.count, org, period, key, now, false).await?;
            if take == Take::Refused {
                tx.rollback().await?;
            } else {
                tx.commit().await?;
            }
            Ok(take)
        }
    }
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

// -- Payments ---------------------------------------------------------------

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PaymentRow {
    pub id: PaymentId,
    pub organization_id: OrgId,
    pub plan: PlanId,
    pub method: Method,
    pub amount: i64,
    pub currency: String,
    pub status: PaymentStatus,
    pub provider_reference: Option<String>,
    pub checkout_url: Option<String>,
    pub failure_reason: Option<String>,
    pub phone: Option<String>,
    pub created_by: Option<UserId>,
    pub renewal: bool,
    pub attempts: i64,
    pub next_check_at: Option<DateTime<Utc>>,
    pub expires_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const PAYMENT_COLUMNS: &str = "id, organization_id, plan, method, amount, currency, status, \
     provider_reference, checkout_url, failure_reason, phone, created_by, renewal, attempts, \
     next_check_at, expires_at, created_at, updated_at";

pub async fn insert_payment(db: &Db, p: &PaymentRow) -> Result<(), StoreError> {
    let sql = format!(
        "INSERT INTO payments ({PAYMENT_COLUMNS}) VALUES \
         ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)"
    );
    on_db_write!(db, |pool| sqlx::query(&sql)
        .bind(p.id)
        .bind(p.organization_id)
        .bind(p.plan)
        .bind(p.method)
        .bind(p.amount)
        .bind(&p.currency)
        .bind(p.status)
        .bind(&p.provider_reference)
        .bind(&p.checkout_url)
        .bind(&p.failure_reason)
        .bind(&p.phone)
        .bind(p.created_by)
        .bind(p.renewal)
        .bind(p.attempts)
        .bind(p.next_check_at)
        .bind(p.expires_at)
        .bind(p.created_at)
        .bind(p.updated_at)
        .execute(pool)
        .await
        .map(|_| ())?);
    Ok(())
}

/// A payment of `org`.
pub async fn payment(db: &Db, org: OrgId, id: PaymentId) -> Result<Option<PaymentRow>, StoreError> {
    let sql =
        format!("SELECT {PAYMENT_COLUMNS} FROM payments WHERE id = $1 AND organization_id = $2");
    Ok(on_db!(db, |pool| sqlx::query_as(&sql)
        .bind(id)
        .bind(org)
        .fetch_optional(pool)
        .await?))
}

/// A payment named by a provider's callback (which knows no organisation):
/// by our id, or by the provider's reference for `method`.
pub async fn payment_for_callback(
    db: &Db,
    method: Method,
    id: Option<PaymentId>,
    reference: Option<&str>,
) -> Result<Option<PaymentRow>, StoreError> {
    let sql = format!(
        "SELECT {PAYMENT_COLUMNS} FROM payments WHERE method = $1 \
         AND (id = $2 OR provider_reference = $3) ORDER BY created_at LIMIT 1"
    );
    Ok(on_db!(db, |pool| sqlx::query_as(&sql)
        .bind(method)
        .bind(id)
        .bind(reference)
        .fetch_optional(pool)
        .await?))
}

/// Newest first, `limit + 1` rows.
pub async fn list_payments(db: &Db, org: OrgId, page: Page) -> Result<Vec<PaymentRow>, StoreError> {
    let (t, id) = match page.after {
        Some(c) => (Some(c.t), Some(PaymentId(c.id))),
        None => (None, None),
    };
    let sql = format!(
        "SELECT {PAYMENT_COLUMNS} FROM payments WHERE organization_id = $1 \
         AND ($2 IS NULL OR created_at < $2 OR (created_at = $2 AND id < $3)) \
         ORDER BY created_at DESC, id DESC LIMIT $4"
    );
    Ok(on_db!(db, |pool| sqlx::query_as(&sql)
        .bind(org)
        .bind(t)
        .bind(id)
        .bind(i64::from(page.limit) + 1)
        .fetch_all(pool)
        .await?))
}

/// Pending mobile-money payments whose next look-up is due.
pub async fn due_payments(
    db: &Db,
    now: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<PaymentRow>, StoreError> {
    let sql = format!(
        "SELECT {PAYMENT_COLUMNS} FROM payments WHERE status = 'pending' \
         AND method IN ('mtn_momo', 'airtel_money') \
         AND (next_check_at IS NULL OR next_check_at <= $1) ORDER BY next_check_at LIMIT $2"
    );
    Ok(on_db!(db, |pool| sqlx::query_as(&sql)
        .bind(now)
        .bind(limit)
        .fetch_all(pool)
        .await?))
}

/// Records the provider's reference and the checkout URL of a pending payment.
pub async fn set_reference(
    db: &Db,
    id: PaymentId,
    reference: &str,
    checkout_url: Option<&str>,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    on_db_write!(db, |pool| sqlx::query(
        "UPDATE payments SET provider_reference = $2, checkout_url = $3, updated_at = $4 \
         WHERE id = $1"
    )
    .bind(id)
    .bind(reference)
    .bind(checkout_url)
    .bind(now)
    .execute(pool)
    .await
    .map(|_| ())?);
    Ok(())
}

/// The next look-up of a pending payment.
pub async fn schedule_check(
    db: &Db,
    id: PaymentId,
    attempts: i64,
    next: DateTime<Utc>,
) -> Result<(), StoreError> {
    on_db_write!(db, |pool| sqlx::query(
        "UPDATE payments SET attempts = $2, next_check_at = $3 WHERE id = $1 AND status = 'pending'"
    )
    .bind(id)
    .bind(attempts)
    .bind(next)
    .execute(pool)
    .await
    .map(|_| ())?);
    Ok(())
}

/// Ends a pending payment as `status` (failed, expired) with `reason`.
/// `false`: it was not pending any more (another node got there first).
pub async fn finish_unpaid(
    db: &Db,
    id: PaymentId,
    status: PaymentStatus,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let n = on_db_write!(db, |pool| {
        sqlx::query(
        "UPDATE payments SET status = $2, failure_reason = $3, updated_at = $4, next_check_at = NULL \
         WHERE id = $1 AND status = 'pending'"
    )
    .bind(id)
    .bind(status)
    .bind(reason)
    .bind(now)
    .execute(pool)
    .await?
    .rows_affected()
    });
    Ok(n == 1)
}

/// What a confirmed payment changes.
pub struct Applied<'a> {
    pub payment: &'a PaymentRow,
    pub period_start: DateTime<Utc>,
    pub period_end: DateTime<Utc>,
    pub stripe_customer_id: Option<&'a str>,
    pub stripe_subscription_id: Option<&'a str>,
    pub now: DateTime<Utc>,
}

/// Applies a confirmed payment exactly once: in one transaction the
/// payment goes from pending to succeeded (a conditional UPDATE: only one
/// caller, on any node, gets the row) and the subscription takes its plan
/// and period. `false`: already applied or no longer pending.
pub async fn apply_payment(db: &Db, a: &Applied<'_>) -> Result<bool, StoreError> {
    let p = a.payment;
    let applied = on_db_write!(db, |pool| {
        let mut tx = pool.begin().await?;
        let n = sqlx::query(
            "UPDATE payments SET status = 'succeeded', updated_at = $3, next_check_at = NULL \
             WHERE id = $1 AND organization_id = $2 AND status = 'pending'",
        )
        .bind(p.id)
        .bind(p.organization_id)
        .bind(a.now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if n == 1 {
            sqlx::query(
                "UPDATE subscriptions SET plan = $2, status = 'active', current_period_start = $3, \
                 current_period_end = $4, cancel_at_period_end = FALSE, method = $5, \
                 payer_phone = COALESCE($6, payer_phone), \
                 stripe_customer_id = COALESCE($7, stripe_customer_id), \
                 stripe_subscription_id = COALESCE($8, stripe_subscription_id), \
                 past_due_since = NULL, updated_at = $9 WHERE organization_id = $1",
            )
            .bind(p.organization_id)
            .bind(p.plan)
            .bind(a.period_start)
            .bind(a.period_end)
            .bind(p.method)
            .bind(&p.phone)
            .bind(a.stripe_customer_id)
            .bind(a.stripe_subscription_id)
            .bind(a.now)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            true
        } else {
            tx.rollback().await?;
            false
        }
    });
    Ok(applied)
}

/// Stores a Stripe event id; `false` when it was stored before.
pub async fn remember_stripe_event(
    db: &Db,
    id: &str,
    kind: &str,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let n = on_db_write!(db, |pool| sqlx::query(
        "INSERT INTO stripe_events (id, type, received_at) VALUES ($1, $2, $3) \
         ON CONFLICT (id) DO NOTHING"
    )
    .bind(id)
    .bind(kind)
    .bind(now)
    .execute(pool)
    .await?
    .rows_affected());
    Ok(n == 1)
}

/// Forgets a Stripe event whose handling failed, so Stripe's retry runs it.
pub async fn forget_stripe_event(db: &Db, id: &str) -> Result<(), StoreError> {
    on_db_write!(db, |pool| sqlx::query(
        "DELETE FROM stripe_events WHERE id = $1"
    )
    .bind(id)
    .execute(pool)
    .await
    .map(|_| ())?);
    Ok(())
}

/// The organisation whose Stripe subscription is `sub`.
pub async fn org_of_stripe_subscription(db: &Db, sub: &str) -> Result<Option<OrgId>, StoreError> {
    Ok(on_db!(db, |pool| sqlx::query_scalar(
        "SELECT organization_id FROM subscriptions WHERE stripe_subscription_id = $1"
    )
    .bind(sub)
    .fetch_optional(pool)
    .await?))
}

/// Sets a subscription's state outright (renewals, grace, Stripe's events).
pub struct SubscriptionChange {
    pub plan: PlanId,
    pub status: SubscriptionStatus,
    pub current_period_start: DateTime<Utc>,
    pub current_period_end: Option<DateTime<Utc>>,
    pub cancel_at_period_end: bool,
    pub past_due_since: Option<DateTime<Utc>>,
    /// Forget the payer and the Stripe ids (back to free).
    pub clear_payer: bool,
}

/// Applies `c` if the subscription was last changed at `seen` (its
/// `updated_at`): a conditional UPDATE, so two nodes running the same job
/// change it once. `false`: someone else changed it first.
pub async fn change_subscription(
    db: &Db,
    org: OrgId,
    seen: DateTime<Utc>,
    c: &SubscriptionChange,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let n = on_db_write!(db, |pool| sqlx::query(
        "UPDATE subscriptions SET plan = $3, status = $4, current_period_start = $5, \
         current_period_end = $6, cancel_at_period_end = $7, past_due_since = $8, \
         method = CASE WHEN $9 THEN NULL ELSE method END, \
         payer_phone = CASE WHEN $9 THEN NULL ELSE payer_phone END, \
         stripe_customer_id = CASE WHEN $9 THEN NULL ELSE stripe_customer_id END, \
         stripe_subscription_id = CASE WHEN $9 THEN NULL ELSE stripe_subscription_id END, \
         renewal_requested_for = CASE WHEN $9 THEN NULL ELSE renewal_requested_for END, \
         updated_at = $10 WHERE organization_id = $1 AND updated_at = $2"
    )
    .bind(org)
    .bind(seen)
    .bind(c.plan)
    .bind(c.status)
    .bind(c.current_period_start)
    .bind(c.current_period_end)
    .bind(c.cancel_at_period_end)
    .bind(c.past_due_since)
    .bind(c.clear_payer)
    .bind(now)
    .execute(pool)
    .await?
    .rows_affected());
    Ok(n == 1)
}

/// Claims the renewal request of the period ending at `end` (once, across
/// nodes). `true`: this caller sends it.
pub async fn claim_renewal(db: &Db, org: OrgId, end: DateTime<Utc>) -> Result<bool, StoreError> {
    let n = on_db_write!(db, |pool| sqlx::query(
        "UPDATE subscriptions SET renewal_requested_for = $2 WHERE organization_id = $1 \
         AND current_period_end = $2 \
         AND (renewal_requested_for IS NULL OR renewal_requested_for <> $2)"
    )
    .bind(org)
    .bind(end)
    .execute(pool)
    .await?
    .rows_affected());
    Ok(n == 1)
}

/// Paid subscriptions whose period ends before `until`, or that are past due.
pub async fn subscriptions_to_review(
    db: &Db,
    until: DateTime<Utc>,
) -> Result<Vec<SubscriptionRow>, StoreError> {
    let sql = format!(
        "SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE plan <> 'free' \
         AND (status = 'past_due' OR current_period_end <= $1)"
    );
    Ok(on_db!(db, |pool| sqlx::query_as(&sql)
        .bind(until)
        .fetch_all(pool)
        .await?))
}

/// The addresses of the organisation's admins (for receipts and renewals).
pub async fn admin_emails(db: &Db, org: OrgId) -> Result<Vec<String>, StoreError> {
    Ok(on_db!(db, |pool| sqlx::query_scalar(
        "SELECT email FROM users WHERE organization_id = $1 AND role = 'admin' ORDER BY created_at"
    )
    .bind(org)
    .fetch_all(pool)
    .await?))
}
