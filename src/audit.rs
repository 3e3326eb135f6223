//! The audit log: who did what to whom, from where, when. Written by the
//! identity and organisation services; read by admins at `GET /v1/audit`.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::db::Db;
use crate::db::StoreError;
use crate::ids::{AuditId, OrgId, UserId};
use crate::pagination::{Cursor, List, Page, page_of};
use crate::{on_db, on_db_write};

pub mod action {
    pub const REGISTER: &str = "auth.register";
    pub const LOGIN_SUCCEEDED: &str = "auth.login_succeeded";
    pub const LOGIN_FAILED: &str = "auth.login_failed";
    pub const ACCOUNT_LOCKED: &str = "auth.account_locked";
    pub const REFRESH_REUSED: &str = "auth.refresh_token_reused";
    pub const LOGOUT: &str = "auth.logout";
    pub const PASSWORD_RESET: &str = "auth.password_reset";
    pub const EMAIL_VERIFIED: &str = "auth.email_verified";
    pub const INVITATION_CREATED: &str = "members.invited";
    pub const INVITATION_ACCEPTED: &str = "members.invitation_accepted";
    pub const INVITATION_REVOKED: &str = "members.invitation_revoked";
    pub const ROLE_CHANGED: &str = "members.role_changed";
    pub const MEMBER_REMOVED: &str = "members.removed";
    pub const BILLING_CHECKOUT: &str = "billing.checkout_started";
    pub const BILLING_PAYMENT_SUCCEEDED: &str = "billing.payment_succeeded";
    pub const BILLING_PAYMENT_FAILED: &str = "billing.payment_failed";
    pub const BILLING_PAYMENT_FLAGGED: &str = "billing.payment_flagged";
    pub const BILLING_PLAN_CHANGED: &str = "billing.plan_changed";
    pub const BILLING_CANCEL_SCHEDULED: &str = "billing.cancel_scheduled";
    pub const BILLING_RENEWAL_REQUESTED: &str = "billing.renewal_requested";
    pub const BILLING_PAST_DUE: &str = "billing.past_due";
    pub const BILLING_DOWNGRADED: &str = "billing.downgraded";
}

pub struct Entry<'a> {
    pub org: OrgId,
    pub action: &'a str,
    pub actor: Option<UserId>,
    pub subject: Option<UserId>,
    pub ip: Option<&'a str>,
    pub detail: serde_json::Value,
}

pub async fn record(db: &Db, e: Entry<'_>) -> Result<(), StoreError> {
    let detail = e.detail.to_string();
    on_db_write!(db, |pool| sqlx::query(
        "INSERT INTO audit_log (id, organization_id, action, actor_id, subject_id, ip, detail, at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
    )
    .bind(AuditId::new())
    .bind(e.org)
    .bind(e.action)
    .bind(e.actor)
    .bind(e.subject)
    .bind(e.ip)
    .bind(&detail)
    .bind(Utc::now())
    .execute(pool)
    .await
    .map(|_| ())?);
    Ok(())
}

#[derive(sqlx::FromRow)]
struct Row {
    id: AuditId,
    action: String,
    actor_id: Option<UserId>,
    subject_id: Option<UserId>,
    ip: Option<String>,
    detail: String,
    at: DateTime<Utc>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AuditView {
    pub id: AuditId,
    pub action: String,
    pub actor_id: Option<UserId>,
    pub subject_id: Option<UserId>,
    pub ip: Option<String>,
    pub at: DateTime<Utc>,
    #[schema(value_type = Object)]
    pub detail: serde_json::Value,
}

/// Newest first.
pub async fn list(db: &Db, org: OrgId, page: Page) -> Result<List<AuditView>, StoreError> {
    let (t, id) = match page.after {
        Some(c) => (Some(c.t), Some(AuditId(c.id))),
        None => (None, None),
    };
    let rows: Vec<Row> = on_db!(db, |pool| sqlx::query_as(
        "SELECT id, action, actor_id, subject_id, ip, detail, at FROM audit_log \
         WHERE organization_id = $1 AND ($2 IS NULL OR at < $2 OR (at = $2 AND id < $3)) \
         ORDER BY at DESC, id DESC LIMIT $4"
    )
    .bind(org)
    .bind(t)
    .bind(id)
    .bind(i64::from(page.limit) + 1)
    .fetch_all(pool)
    .await?);
    Ok(page_of(
        rows,
        page.limit,
        |r| Cursor {
            t: r.at,
            id: r.id.0,
        },
        |r| AuditView {
            id: r.id,
            action: r.action,
            actor_id: r.actor_id,
            subject_id: r.subject_id,
            ip: r.ip,
            at: r.at,
            detail: serde_json::from_str(&r.detail).unwrap_or(serde_json::Value::Null),
        },
    ))
}
