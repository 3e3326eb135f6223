//! Identity storage: organisations, users, refresh tokens and one-time
//! tokens. Every query that reads a tenant's rows filters on its
//! organisation; lookups by a secret's hash are global by nature (the hash
//! identifies the row) and the row's organisation is then used.

use chrono::{DateTime, Utc};

use crate::auth::model::Role;
use crate::db::Db;
use crate::db::StoreError;
use crate::ids::{FamilyId, OrgId, TokenId, UserId};
use crate::{on_db, on_db_write};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct OrgRow {
    pub id: OrgId,
    pub name: String,
    pub plan: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct UserRow {
    pub id: UserId,
    pub organization_id: OrgId,
    pub email: String,
    pub full_name: String,
    pub role: Role,
    pub password_hash: String,
    pub email_verified: bool,
    pub token_version: i64,
    pub failed_logins: i64,
    pub locked_until: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    /// Opted in to the weekly analytics digest (staff).
    pub weekly_digest: bool,
}

const USER_COLUMNS: &str = "id, organization_id, email, full_name, role, password_hash, \
     email_verified, token_version, failed_logins, locked_until, created_at, weekly_digest";

pub struct NewUser<'a> {
    pub id: UserId,
    pub org: OrgId,
    pub email: &'a str,
    pub full_name: &'a str,
    pub role: Role,
    pub password_hash: &'a str,
    pub email_verified: bool,
    pub now: DateTime<Utc>,
}

/// The INSERT of a user, for a pool or a transaction.
macro_rules! insert_user_query {
    ($user:expr) => {
        sqlx::query(
            "INSERT INTO users (id, organization_id, email, full_name, role, password_hash, \
             email_verified, token_version, failed_logins, locked_until, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, 0, 0, NULL, $8, $8)",
        )
        .bind($user.id)
        .bind($user.org)
        .bind($user.email)
        .bind($user.full_name)
        .bind($user.role)
        .bind($user.password_hash)
        .bind($user.email_verified)
        .bind($user.now)
    };
}

/// Creates an organisation and its first user in one transaction.
pub async fn create_org_with_user(
    db: &Db,
    org: &OrgRow,
    user: &NewUser<'_>,
) -> Result<(), StoreError> {
    on_db_write!(db, |pool| {
        let mut tx = pool.begin().await?;
        sqlx::query(
            "INSERT INTO organizations (id, name, plan, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(org.id)
        .bind(&org.name)
        .bind(&org.plan)
        .bind(org.created_at)
        .execute(&mut *tx)
        .await?;
        insert_user_query!(user).execute(&mut *tx).await?;
        // Every organisation starts on billing's free plan.
        sqlx::query(
            "INSERT INTO subscriptions (organization_id, plan, status, current_period_start, \
             current_period_end, cancel_at_period_end, created_at, updated_at) \
             VALUES ($1, 'free', 'active', $2, NULL, FALSE, $2, $2)",
        )
        .bind(org.id)
        .bind(org.created_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
    });
    Ok(())
}

pub async fn insert_user(db: &Db, user: &NewUser<'_>) -> Result<(), StoreError> {
    on_db!(db, |pool| insert_user_query!(user)
        .execute(pool)
        .await
        .map(|_| ())?);
    Ok(())
}

pub async fn org(db: &Db, id: OrgId) -> Result<Option<OrgRow>, StoreError> {
    Ok(on_db!(db, |pool| sqlx::query_as(
        "SELECT id, name, plan, created_at FROM organizations WHERE id = $1"
    )
    .bind(id)
    .fetch_optional(pool)
    .await?))
}

pub async fn user_by_email(db: &Db, email: &str) -> Result<Option<UserRow>, StoreError> {
    let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE email = $1");
    Ok(on_db!(db, |pool| sqlx::query_as(&sql)
        .bind(email)
        .fetch_optional(pool)
        .await?))
}

/// A user of `org` (none for a user of another organisation).
pub async fn user_in_org(db: &Db, org: OrgId, id: UserId) -> Result<Option<UserRow>, StoreError> {
    let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1 AND organization_id = $2");
    Ok(on_db!(db, |pool| sqlx::query_as(&sql)
        .bind(id)
        .bind(org)
        .fetch_optional(pool)
        .await?))
}

#[derive(Debug, sqlx::FromRow)]
pub struct AuthState {
    pub organization_id: OrgId,
    pub role: Role,
    pub token_version: i64,
}

/// What a token is checked against on every request.
pub async fn auth_state(db: &Db, id: UserId) -> Result<Option<AuthState>, StoreError> {
    Ok(on_db!(db, |pool| sqlx::query_as(
        "SELECT organization_id, role, token_version FROM users WHERE id = $1"
    )
    .bind(id)
    .fetch_optional(pool)
    .await?))
}

/// Takes a sign-in attempt for the account *before* its password is
/// checked, so that parallel guesses cannot outrun the lock: the attempt is
/// counted as failed up front, and refused (`None`) when the account is
/// locked or already has `threshold` attempts counted. A lock whose time is
/// up is lifted here and the count starts again. Returns the count with
/// this attempt.
pub async fn reserve_login_attempt(
    db: &Db,
    id: UserId,
    threshold: u32,
    now: DateTime<Utc>,
) -> Result<Option<i64>, StoreError> {
    let row: Option<(i64,)> = on_db_write!(db, |pool| sqlx::query_as(
        "UPDATE users SET \
         failed_logins = CASE WHEN locked_until IS NOT NULL AND locked_until <= $3 \
                              THEN 1 ELSE failed_logins + 1 END, \
         locked_until = CASE WHEN locked_until IS NOT NULL AND locked_until <= $3 \
                             THEN NULL ELSE locked_until END \
         WHERE id = $1 AND ( \
             (locked_until IS NOT NULL AND locked_until <= $3) \
             OR (locked_until IS NULL AND failed_logins < $2)) \
         RETURNING failed_logins"
    )
    .bind(id)
    .bind(i64::from(threshold))
    .bind(now)
    .fetch_optional(pool)
    .await?);
    Ok(row.map(|(n,)| n))
}

/// Settles a reserved attempt whose password was wrong: the count stays,
/// and the account locks once it reaches `threshold`. Returns the lock.
pub async fn settle_failed_login(
    db: &Db,
    id: UserId,
    threshold: u32,
    lock_until: DateTime<Utc>,
) -> Result<Option<DateTime<Utc>>, StoreError> {
    let row: (Option<DateTime<Utc>>,) = on_db_write!(db, |pool| sqlx::query_as(
        "UPDATE users SET \
         locked_until = CASE WHEN failed_logins >= $2 AND locked_until IS NULL THEN $3 \
                             ELSE locked_until END \
         WHERE id = $1 RETURNING locked_until"
    )
    .bind(id)
    .bind(i64::from(threshold))
    .bind(lock_until)
    .fetch_one(pool)
    .await?);
    Ok(row.0)
}

/// Settles a reserved attempt whose password was right: the count is
/// cleared, unless the account was locked meanwhile by the attempts that
/// failed (`false`: the sign-in is refused).
pub async fn settle_good_login(
    db: &Db,
    id: UserId,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let row: Option<(UserId,)> = on_db_write!(db, |pool| sqlx::query_as(
        "UPDATE users SET failed_logins = 0, locked_until = NULL \
         WHERE id = $1 AND (locked_until IS NULL OR locked_until <= $2) RETURNING id"
    )
    .bind(id)
    .bind(now)
    .fetch_optional(pool)
    .await?);
    Ok(row.is_some())
}

/// [`reserve_login_attempt`] for an address with no account: the same
/// count and lock, kept under the address's hash, so that probing an
/// unknown address answers as probing a real one would. Returns the count
/// with this attempt and, when refused, the lock in force.
pub async fn reserve_ghost_attempt(
    db: &Db,
    email_hash: &str,
    threshold: u32,
    now: DateTime<Utc>,
) -> Result<Result<i64, Option<DateTime<Utc>>>, StoreError> {
    let row: Option<(i64,)> = on_db_write!(db, |pool| {
        let mut tx = pool.begin().await?;
        sqlx::query(
            "INSERT INTO login_ghosts (email_hash, failed_logins, locked_until, updated_at) \
             VALUES ($1, 0, NULL, $2) ON CONFLICT (email_hash) DO NOTHING",
        )
        .bind(email_hash)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let row = sqlx::query_as(
            "UPDATE login_ghosts SET \
             failed_logins = CASE WHEN locked_until IS NOT NULL AND locked_until <= $3 \
                                  THEN 1 ELSE failed_logins + 1 END, \
             locked_until = CASE WHEN locked_until IS NOT NULL AND locked_until <= $3 \
                                 THEN NULL ELSE locked_until END, \
             updated_at = $3 \
             WHERE email_hash = $1 AND ( \
                 (locked_until IS NOT NULL AND locked_until <= $3) \
                 OR (locked_until IS NULL AND failed_logins < $2)) \
             RETURNING failed_logins",
        )
        .bind(email_hash)
        .bind(i64::from(threshold))
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        tx.commit().await?;
        row
    });
    if let Some((n,)) = row {
        return Ok(Ok(n));
    }
    let lock: Option<(Option<DateTime<Utc>>,)> = on_db!(db, |pool| sqlx::query_as(
        "SELECT locked_until FROM login_ghosts WHERE email_hash = $1"
    )
    .bind(email_hash)
    .fetch_optional(pool)
    .await?);
    Ok(Err(lock.and_then(|(l,)| l)))
}

/// [`settle_failed_login`] for an address with no account (every attempt
/// fails). Also forgets addresses untouched for 30 days.
pub async fn settle_failed_ghost(
    db: &Db,
    email_hash: &str,
    threshold: u32,
    lock_until: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    on_db_write!(db, |pool| {
        sqlx::query(
            "UPDATE login_ghosts SET \
             locked_until = CASE WHEN failed_logins >= $2 AND locked_until IS NULL THEN $3 \
                                 ELSE locked_until END \
             WHERE email_hash = $1",
        )
        .bind(email_hash)
        .bind(i64::from(threshold))
        .bind(lock_until)
        .execute(pool)
        .await?;
        sqlx::query("DELETE FROM login_ghosts WHERE updated_at < $1")
            .bind(now - chrono::Duration::days(30))
            .execute(pool)
            .await
            .map(|_| ())?
    });
    Ok(())
}

/// Revokes every access token of the user at once.
pub async fn bump_token_version(db: &Db, id: UserId) -> Result<(), StoreError> {
    on_db_write!(db, |pool| sqlx::query(
        "UPDATE users SET token_version = token_version + 1, updated_at = $2 WHERE id = $1"
    )
    .bind(id)
    .bind(Utc::now())
    .execute(pool)
    .await
    .map(|_| ())?);
    Ok(())
}

pub async fn set_password(db: &Db, id: UserId, hash: &str) -> Result<(), StoreError> {
    on_db_write!(db, |pool| sqlx::query(
        "UPDATE users SET password_hash = $2, token_version = token_version + 1, \
         failed_logins = 0, locked_until = NULL, email_verified = TRUE, updated_at = $3 \
         WHERE id = $1"
    )
    .bind(id)
    .bind(hash)
    .bind(Utc::now())
    .execute(pool)
    .await
    .map(|_| ())?);
    Ok(())
}

pub async fn set_email_verified(db: &Db, id: UserId) -> Result<(), StoreError> {
    on_db_write!(db, |pool| sqlx::query(
        "UPDATE users SET email_verified = TRUE, updated_at = $2 WHERE id = $1"
    )
    .bind(id)
    .bind(Utc::now())
    .execute(pool)
    .await
    .map(|_| ())?);
    Ok(())
}

// ---- refresh tokens ------------------------------------------------------

#[derive(Debug, sqlx::FromRow)]
pub struct RefreshRow {
    pub id: TokenId,
    pub organization_id: OrgId,
    pub user_id: UserId,
    pub family_id: FamilyId,
    pub used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub expires_at: DateTime<Utc>,
}

/// The INSERT of a refresh token, for a pool or a transaction.
macro_rules! insert_refresh_query {
    ($org:expr, $user:expr, $family:expr, $hash:expr, $expires:expr, $now:expr) => {
        sqlx::query(
            "INSERT INTO refresh_tokens (id, organization_id, user_id, family_id, token_hash, \
             used_at, revoked_at, expires_at, created_at) \
             VALUES ($1, $2, $3, $4, $5, NULL, NULL, $6, $7)",
        )
        .bind(TokenId::new())
        .bind($org)
        .bind($user)
        .bind($family)
        .bind($hash)
        .bind($expires)
        .bind($now)
    };
}

/// Starts a refresh-token family (a sign-in) with its first token.
pub async fn insert_refresh(
    db: &Db,
    org: OrgId,
    user: UserId,
    family: FamilyId,
    hash: &str,
    expires_at: DateTime<Utc>,
) -> Result<(), StoreError> {
    let now = Utc::now();
    on_db_write!(db, |pool| {
        let mut tx = pool.begin().await?;
        sqlx::query(
            "INSERT INTO refresh_families (id, organization_id, user_id, revoked_at, created_at) \
             VALUES ($1, $2, $3, NULL, $4) ON CONFLICT (id) DO NOTHING",
        )
        .bind(family)
        .bind(org)
        .bind(user)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        insert_refresh_query!(org, user, family, hash, expires_at, now)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
    });
    Ok(())
}

/// How a rotation ended.
pub enum Rotation {
    /// The old token is used, the new one stored; the user as they are now
    /// (their token version goes into the new access token).
    Rotated(Box<UserRow>),
    /// Another request used (or revoked) the old token first: reuse.
    Lost,
    /// The family is revoked (or the user is gone): nothing changed.
    Dead,
}

/// Rotates `old` (of `family`) to a new token, in one transaction that
/// first takes the family's row and refuses a revoked family. A revocation
/// ([`revoke_family_for_reuse`]) takes the same row, so the two never
/// interleave: a rotation racing a revocation either finished before it
/// (and its new token is revoked with the family, its user's token version
/// bumped after it was read) or finds the family revoked.
pub async fn rotate_refresh(
    db: &Db,
    old: TokenId,
    family: FamilyId,
    org: OrgId,
    user: UserId,
    new_hash: &str,
    expires_at: DateTime<Utc>,
) -> Result<Rotation, StoreError> {
    let now = Utc::now();
    let sql_user =
        format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1 AND organization_id = $2");
    Ok(on_db_write!(db, |pool| {
        let mut tx = pool.begin().await?;
        let live: Option<(FamilyId,)> = sqlx::query_as(
            "UPDATE refresh_families SET revoked_at = NULL \
             WHERE id = $1 AND revoked_at IS NULL RETURNING id",
        )
        .bind(family)
        .fetch_optional(&mut *tx)
        .await?;
        if live.is_none() {
            Rotation::Dead
        } else {
            let claimed = sqlx::query(
                "UPDATE refresh_tokens SET used_at = $2 \
                 WHERE id = $1 AND used_at IS NULL AND revoked_at IS NULL",
            )
            .bind(old)
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if claimed != 1 {
                Rotation::Lost
            } else {
                let row: Option<UserRow> = sqlx::query_as(&sql_user)
                    .bind(user)
                    .bind(org)
                    .fetch_optional(&mut *tx)
                    .await?;
                match row {
                    None => Rotation::Dead,
                    Some(row) => {
                        insert_refresh_query!(org, user, family, new_hash, expires_at, now)
                            .execute(&mut *tx)
                            .await?;
                        tx.commit().await?;
                        Rotation::Rotated(Box::new(row))
                    }
                }
            }
        }
    }))
}

/// A used refresh token came back: its family is revoked (every token of
/// it, including one a racing rotation may have just stored: see
/// [`rotate_refresh`]) and the user's token version bumped (their access
/// tokens stop working), in one transaction.
pub async fn revoke_family_for_reuse(
    db: &Db,
    family: FamilyId,
    user: UserId,
) -> Result<(), StoreError> {
    let now = Utc::now();
    on_db_write!(db, |pool| {
        let mut tx = pool.begin().await?;
        sqlx::query("UPDATE refresh_families SET revoked_at = $2 WHERE id = $1")
            .bind(family)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "UPDATE refresh_tokens SET revoked_at = $2 WHERE family_id = $1 AND revoked_at IS NULL",
        )
        .bind(family)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE users SET token_version = token_version + 1, updated_at = $2 WHERE id = $1",
        )
        .bind(user)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
    });
    Ok(())
}

/// A refresh token by its hash; `revoked_at` is the token's or its
/// family's (a family without a row counts as revoked).
pub async fn refresh_by_hash(db: &Db, hash: &str) -> Result<Option<RefreshRow>, StoreError> {
    Ok(on_db!(db, |pool| sqlx::query_as(
        "SELECT t.id, t.organization_id, t.user_id, t.family_id, t.used_at, \
         CASE WHEN f.id IS NULL THEN t.created_at ELSE COALESCE(t.revoked_at, f.revoked_at) END \
         AS revoked_at, t.expires_at \
         FROM refresh_tokens t LEFT JOIN refresh_families f ON f.id = t.family_id \
         WHERE t.token_hash = $1"
    )
    .bind(hash)
    .fetch_optional(pool)
    .await?))
}

pub async fn revoke_family(db: &Db, family: FamilyId) -> Result<(), StoreError> {
    let now = Utc::now();
    on_db_write!(db, |pool| {
        let mut tx = pool.begin().await?;
        sqlx::query(
            "UPDATE refresh_families SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL",
        )
        .bind(family)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE refresh_tokens SET revoked_at = $2 WHERE family_id = $1 AND revoked_at IS NULL",
        )
        .bind(family)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
    });
    Ok(())
}

pub async fn revoke_all_refresh(db: &Db, user: UserId) -> Result<(), StoreError> {
    let now = Utc::now();
    on_db_write!(db, |pool| {
        let mut tx = pool.begin().await?;
        sqlx::query(
            "UPDATE refresh_families SET revoked_at = $2 WHERE user_id = $1 AND revoked_at IS NULL",
        )
        .bind(user)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE refresh_tokens SET revoked_at = $2 WHERE user_id = $1 AND revoked_at IS NULL",
        )
        .bind(user)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
    });
    Ok(())
}

// ---- one-time tokens -----------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OneTimeKind {
    VerifyEmail,
    PasswordReset,
    Invitation,
}

impl OneTimeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::VerifyEmail => "verify_email",
            Self::PasswordReset => "password_reset",
            Self::Invitation => "invitation",
        }
    }
}

#[derive(Debug, sqlx::FromRow)]
pub struct OneTimeRow {
    pub id: TokenId,
    pub organization_id: OrgId,
    pub user_id: Option<UserId>,
    pub email: String,
    pub role: Option<Role>,
    pub created_by: Option<UserId>,
    pub expires_at: DateTime<Utc>,
    pub used_at: Option<DateTime<Utc>>,
}

pub struct NewOneTime<'a> {
    pub id: TokenId,
    pub org: OrgId,
    pub user: Option<UserId>,
    pub kind: OneTimeKind,
    pub hash: &'a str,
    pub email: &'a str,
    pub role: Option<Role>,
    pub created_by: Option<UserId>,
    pub expires_at: DateTime<Utc>,
}

pub async fn insert_one_time(db: &Db, t: &NewOneTime<'_>) -> Result<(), StoreError> {
    on_db_write!(db, |pool| sqlx::query(
        "INSERT INTO one_time_tokens (id, organization_id, user_id, kind, token_hash, email, role, \
         created_by, expires_at, used_at, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, NULL, $10)"
    )
    .bind(t.id)
    .bind(t.org)
    .bind(t.user)
    .bind(t.kind.as_str())
    .bind(t.hash)
    .bind(t.email)
    .bind(t.role)
    .bind(t.created_by)
    .bind(t.expires_at)
    .bind(Utc::now())
    .execute(pool)
    .await
    .map(|_| ())?);
    Ok(())
}

pub async fn one_time_by_hash(
    db: &Db,
    kind: OneTimeKind,
    hash: &str,
) -> Result<Option<OneTimeRow>, StoreError> {
    Ok(on_db!(db, |pool| sqlx::query_as(
        "SELECT id, organization_id, user_id, email, role, created_by, expires_at, used_at \
         FROM one_time_tokens WHERE token_hash = $1 AND kind = $2"
    )
    .bind(hash)
    .bind(kind.as_str())
    .fetch_optional(pool)
    .await?))
}

/// Uses a one-time token, atomically: `false` if it was already used.
pub async fn claim_one_time(db: &Db, id: TokenId) -> Result<bool, StoreError> {
    let done = on_db_write!(db, |pool| sqlx::query(
        "UPDATE one_time_tokens SET used_at = $2 WHERE id = $1 AND used_at IS NULL"
    )
    .bind(id)
    .bind(Utc::now())
    .execute(pool)
    .await?
    .rows_affected());
    Ok(done == 1)
}

/// Unused tokens of one kind for a user stop working when a new one is sent
/// or one is used.
pub async fn expire_one_time_for_user(
    db: &Db,
    user: UserId,
    kind: OneTimeKind,
) -> Result<(), StoreError> {
    on_db_write!(db, |pool| {
        sqlx::query(
        "UPDATE one_time_tokens SET used_at = $3 WHERE user_id = $1 AND kind = $2 AND used_at IS NULL"
    )
    .bind(user)
    .bind(kind.as_str())
    .bind(Utc::now())
    .execute(pool)
    .await
    .map(|_| ())?
    });
    Ok(())
}

/// Turns the weekly digest on or off for a member.
pub async fn set_weekly_digest(
    db: &Db,
    org: OrgId,
    id: UserId,
    on: bool,
) -> Result<bool, StoreError> {
    let n = on_db_write!(db, |pool| sqlx::query(
        "UPDATE users SET weekly_digest = $1 WHERE id = $2 AND organization_id = $3"
    )
    .bind(on)
    .bind(id)
    .bind(org)
    .execute(pool)
    .await?
    .rows_affected());
    Ok(n == 1)
}
