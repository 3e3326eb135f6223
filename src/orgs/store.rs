//! Member queries, always within one organisation.

use chrono::Utc;

use crate::auth::model::Role;
use crate::auth::store::UserRow;
use crate::db::Db;
use crate::db::StoreError;
use crate::ids::{OrgId, UserId};
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
