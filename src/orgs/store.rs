//! Member queries, always within one organisation.

use chrono::Utc;

use crate::auth::model::Role;
use crate::auth::store::UserRow;
use crate::db::Db;
use crate::db::StoreError;
use crate::ids::{OrgId, TokenId, UserId};
use crate::pagination::Page;
use crate::{on_db, on_db_write};

/// Oldest first, `limit + 1` rows.
pub async fn list_members(db: &Db, org: OrgId, page: Page) -> Result<Vec<UserRow>, StoreError> {
    let (t, id) = match page.after {
        Some(c) => (Some(c.t), Some(UserId(c.id))),
        None => (None, None),
    };
    Ok(on_db!(db, |pool| {
        sqlx::query_as(
        "SELECT id, organization_id, email, full_name, role, password_hash, email_verified, \
         token_version, failed_logins, locked_until, created_at, weekly_digest FROM users \
         WHERE organization_id = $1 AND ($2 IS NULL OR created_at > $2 OR (created_at = $2 AND id > $3)) \
         ORDER BY created_at, id LIMIT $4"
    )
    .bind(org)
    .bind(t)
    .bind(id)
    .bind(i64::from(page.limit) + 1)
    .fetch_all(pool)
    .await?
    }))
}

pub async fn count_admins(db: &Db, org: OrgId) -> Result<i64, StoreError> {
    Ok(on_db!(db, |pool| sqlx::query_scalar(
        "SELECT COUNT(*) FROM users WHERE organization_id = $1 AND role = 'admin'"
    )
    .bind(org)
    .fetch_one(pool)
    .await?))
}

/// Changes a role and revokes the member's access tokens (their next token
/// carries the new role).
pub async fn set_role(db: &Db, org: OrgId, id: UserId, role: Role) -> Result<bool, StoreError> {
    let n = on_db_write!(db, |pool| sqlx::query(
        "UPDATE users SET role = $3, token_version = token_version + 1, updated_at = $4 \
         WHERE id = $1 AND organization_id = $2"
    )
    .bind(id)
    .bind(org)
    .bind(role)
    .bind(Utc::now())
    .execute(pool)
    .await?
    .rows_affected());
    Ok(n == 1)
}

/// Removes a member; their tokens go with them (cascade).
pub async fn delete_member(db: &Db, org: OrgId, id: UserId) -> Result<bool, StoreError> {
    let n = on_db_write!(db, |pool| sqlx::query(
        "DELETE FROM users WHERE id = $1 AND organization_id = $2"
    )
    .bind(id)
    .bind(org)
    .execute(pool)
    .await?
    .rows_affected());
    Ok(n == 1)
}

/// An invitation not yet accepted.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct InvitationRow {
    pub id: TokenId,
    pub email: String,
    pub role: Option<Role>,
    pub created_by: Option<UserId>,
    pub expires_at: chrono::DateTime<Utc>,
    pub created_at: chrono::DateTime<Utc>,
}

/// Live invitations (unused, unexpired) of `org`, oldest first, `limit + 1`
/// rows.
pub async fn list_invitations(
    db: &Db,
    org: OrgId,
    now: chrono::DateTime<Utc>,
    page: Page,
) -> Result<Vec<InvitationRow>, StoreError> {
    let (t, id) = match page.after {
        Some(c) => (Some(c.t), Some(TokenId(c.id))),
        None => (None, None),
    };
    Ok(on_db!(db, |pool| {
        sqlx::query_as(
            "SELECT id, email, role, created_by, expires_at, created_at FROM one_time_tokens \
             WHERE organization_id = $1 AND kind = 'invitation' AND used_at IS NULL \
             AND expires_at > $2 \
             AND ($3 IS NULL OR created_at > $3 OR (created_at = $3 AND id > $4)) \
             ORDER BY created_at, id LIMIT $5",
        )
        .bind(org)
        .bind(now)
        .bind(t)
        .bind(id)
        .bind(i64::from(page.limit) + 1)
        .fetch_all(pool)
        .await?
    }))
}

/// One live invitation of `org`.
pub async fn invitation(
    db: &Db,
    org: OrgId,
    id: TokenId,
    now: chrono::DateTime<Utc>,
) -> Result<Option<InvitationRow>, StoreError> {
    Ok(on_db!(db, |pool| {
        sqlx::query_as(
            "SELECT id, email, role, created_by, expires_at, created_at FROM one_time_tokens \
             WHERE id = $1 AND organization_id = $2 AND kind = 'invitation' \
             AND used_at IS NULL AND expires_at > $3",
        )
        .bind(id)
        .bind(org)
        .bind(now)
        .fetch_optional(pool)
        .await?
    }))
}

/// Deletes an invitation of `org` not yet accepted; `false` when there is
/// none (or it was just accepted).
pub async fn delete_invitation(db: &Db, org: OrgId, id: TokenId) -> Result<bool, StoreError> {
    let n = on_db_write!(db, |pool| sqlx::query(
        "DELETE FROM one_time_tokens WHERE id = $1 AND organization_id = $2 \
         AND kind = 'invitation' AND used_at IS NULL"
    )
    .bind(id)
    .bind(org)
    .execute(pool)
    .await?
    .rows_affected());
    Ok(n == 1)
}

/// Ends the unaccepted invitations `sender` sent for a role in `roles`
/// (all of them when the sender is removed; those above a demoted
/// sender's new reach). Returns how many.
pub async fn kill_invitations_by(
    db: &Db,
    org: OrgId,
    sender: UserId,
    roles: &[Role],
) -> Result<u64, StoreError> {
    if roles.is_empty() {
        return Ok(0);
    }
    let list = crate::db::placeholders(4, roles.len());
    let sql = format!(
        "DELETE FROM one_time_tokens WHERE organization_id = $1 AND created_by = $2 \
         AND kind = 'invitation' AND used_at IS NULL AND expires_at > $3 AND role IN ({list})"
    );
    let now = Utc::now();
    let n = on_db_write!(db, |pool| {
        let mut q = sqlx::query(&sql).bind(org).bind(sender).bind(now);
        for r in roles {
            q = q.bind(*r);
        }
        q.execute(pool).await?.rows_affected()
    });
    Ok(n)
}
