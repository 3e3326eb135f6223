//! The identity use cases, free of HTTP: handlers (and later the WebSocket
//! actors and the CLI) call these.

use std::time::Duration;

use chrono::Utc;
use serde::Serialize;
use serde_json::json;

use bwenge_actors::ports::{RateDecision, RateLimit};

use crate::audit::{self, Entry, action};
use crate::auth::model::{Email, FullName, Password, Role, parse_org_name};
use crate::auth::store::{self, NewOneTime, NewUser, OneTimeKind, OrgRow, UserRow};
use crate::auth::tokens::{hash_secret, new_secret};
use crate::error::{ApiError, ApiResult, ErrorCode, StoreError};
use crate::ids::{FamilyId, OrgId, TokenId, UserId};
use crate::mail::{self, Mail};
use crate::state::AppState;

pub const VERIFY_EMAIL_TTL_HOURS: i64 = 24;
pub const PASSWORD_RESET_TTL_MINUTES: i64 = 30;
pub const INVITATION_TTL_DAYS: i64 = 7;

/// The tokens handed to a client after sign-in or refresh.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Tokens {
    pub access_token: String,
    pub refresh_token: String,
    /// Always `Bearer`.
    pub token_type: &'static str,
    /// Seconds until the access token expires.
    pub expires_in: u64,
}

/// `user` as API.md defines it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UserView {
    pub id: UserId,
    pub email: String,
    pub full_name: String,
    pub role: Role,
    pub organization_id: OrgId,
    pub email_verified: bool,
    pub created_at: chrono::DateTime<Utc>,
}

impl UserView {
    pub fn from_row(row: &UserRow) -> Self {
        Self {
            id: row.id,
            email: row.email.clone(),
            full_name: row.full_name.clone(),
            role: Role::parse(&row.role).unwrap_or(Role::Student),
            organization_id: row.organization_id,
            email_verified: row.email_verified,
            created_at: row.created_at,
        }
    }
}

/// `organization` as API.md defines it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct OrgView {
    pub id: OrgId,
    pub name: String,
    pub plan: String,
    pub created_at: chrono::DateTime<Utc>,
}

impl From<OrgRow> for OrgView {
    fn from(o: OrgRow) -> Self {
        Self {
            id: o.id,
            name: o.name,
            plan: o.plan,
            created_at: o.created_at,
        }
    }
}

fn invalid_token() -> ApiError {
    ApiError::new(
        ErrorCode::InvalidToken,
        "This link is invalid, already used or expired; ask for a new one.",
    )
}

/// Per-IP limit on the sign-in routes, shared across nodes with Redis.
pub async fn check_ip_limit(state: &AppState, ip: &str, bucket: &str) -> ApiResult<()> {
    let auth = &state.settings.auth;
    let limit = RateLimit {
        capacity: auth.ip_burst,
        refill_per_sec: auth.ip_refill_per_sec,
    };
    match state
        .limiter
        .check(&format!("auth:{bucket}:{ip}"), limit, 1)
        .await
    {
        Ok(RateDecision::Allowed { .. }) => Ok(()),
        Ok(RateDecision::Limited { retry_after }) => Err(ApiError::rate_limited(retry_after)),
        Err(e) => {
            // Fail open: a limiter outage must not lock a school out.
            tracing::warn!(error = %e, "rate limiter unavailable; allowing the request");
            Ok(())
        }
    }
}

pub async fn issue_tokens(
    state: &AppState,
    user: &UserRow,
    family: Option<FamilyId>,
) -> ApiResult<Tokens> {
    let now = Utc::now();
    let role = Role::parse(&user.role)?;
    let access = state
        .auth
        .keys
        .issue(user.id, user.organization_id, role, user.token_version, now)
        .map_err(ApiError::internal)?;
    let refresh = new_secret();
    let ttl = chrono::Duration::days(state.settings.auth.refresh_token_ttl_days as i64);
    store::insert_refresh(
        &state.db,
        user.organization_id,
        user.id,
        family.unwrap_or_default(),
        &hash_secret(&refresh),
        now + ttl,
    )
    .await?;
    Ok(Tokens {
        access_token: access,
        refresh_token: refresh,
        token_type: "Bearer",
        expires_in: state.settings.auth.access_token_ttl_secs,
    })
}

/// What a one-time link is for and whom it goes to.
pub struct OneTimeLink<'a> {
    pub kind: OneTimeKind,
    pub org: OrgId,
    pub user: Option<UserId>,
    pub email: &'a str,
    pub role: Option<Role>,
    pub created_by: Option<UserId>,
    pub ttl: chrono::Duration,
}

/// Creates a one-time token and mails its link.
pub async fn send_one_time_link(
    state: &AppState,
    link: OneTimeLink<'_>,
) -> ApiResult<(TokenId, chrono::DateTime<Utc>)> {
    let OneTimeLink {
        kind,
        org,
        user,
        email,
        role,
        created_by,
        ttl,
    } = link;
    let secret = new_secret();
    let id = TokenId::new();
    let expires_at = Utc::now() + ttl;
    store::insert_one_time(
        &state.db,
        &NewOneTime {
            id,
            org,
            user,
            kind,
            hash: &hash_secret(&secret),
            email,
            role: role.map(Role::as_str),
            created_by,
            expires_at,
        },
    )
    .await?;
    let base = state.settings.mail.link_base_url.trim_end_matches('/');
    let (subject, path, text) = match kind {
        OneTimeKind::VerifyEmail => (
            "Confirm your email address",
            "verify-email",
            "Confirm your email address for Bwenge by opening this link\r\n(valid for 24 hours):",
        ),
        OneTimeKind::PasswordReset => (
            "Reset your password",
            "reset-password",
            "Someone asked to reset your Bwenge password. If it was you, open\r\n\
             this link (valid for 30 minutes); otherwise ignore this message:",
        ),
        OneTimeKind::Invitation => (
            "You are invited to Bwenge",
            "accept-invitation",
            "You have been invited to join your school on Bwenge. Open this\r\n\
             link to create your account (valid for 7 days):",
        ),
    };
    mail::send_in_background(
        state.mailer.clone(),
        Mail {
            to: email.to_owned(),
            subject: subject.to_owned(),
            // CRLF and short lines keep the message 7bit, so the link is
            // never folded by quoted-printable.
            body: format!("{text}\r\n\r\n{base}/{path}?token={secret}\r\n"),
        },
    );
    Ok((id, expires_at))
}

pub struct Registration {
    pub organization_name: String,
    pub full_name: String,
    pub email: String,
    pub password: String,
}

pub async fn register(
    state: &AppState,
    ip: &str,
    input: Registration,
) -> ApiResult<(UserRow, OrgRow, Tokens)> {
    check_ip_limit(state, ip, "register").await?;
    let org_name = parse_org_name(&input.organization_name)?;
    let name = FullName::parse(&input.full_name)?;
    let email = Email::parse(&input.email)?;
    let password = Password::parse_new(&input.password, "password", &email, Some(&name))?;
    if store::user_by_email(&state.db, email.as_str())
        .await?
        .is_some()
    {
        return Err(email_taken());
    }
    let hash = state.auth.hasher.hash(password.expose()).await?;
    let now = Utc::now();
    let org = OrgRow {
        id: OrgId::new(),
        name: org_name,
        plan: "free".into(),
        created_at: now,
    };
    let user_id = UserId::new();
    store::create_org_with_user(
        &state.db,
        &org,
        &NewUser {
            id: user_id,
            org: org.id,
            email: email.as_str(),
            full_name: name.as_str(),
            role: Role::Admin.as_str(),
            password_hash: &hash,
            email_verified: false,
            now,
        },
    )
    .await
    .map_err(conflict_is_email_taken)?;
    let user = store::user_in_org(&state.db, org.id, user_id)
        .await?
        .ok_or_else(|| ApiError::internal(anyhow::anyhow!("new user vanished")))?;
    audit::record(
        &state.db,
        Entry {
            org: org.id,
            action: action::REGISTER,
            actor: Some(user.id),
            subject: Some(user.id),
            ip: Some(ip),
            detail: json!({ "organization_name": org.name }),
        },
    )
    .await?;
    send_one_time_link(
        state,
        OneTimeLink {
            kind: OneTimeKind::VerifyEmail,
            org: org.id,
            user: Some(user.id),
            email: email.as_str(),
            role: None,
            created_by: None,
            ttl: chrono::Duration::hours(VERIFY_EMAIL_TTL_HOURS),
        },
    )
    .await?;
    let tokens = issue_tokens(state, &user, None).await?;
    Ok((user, org, tokens))
}

pub fn email_taken() -> ApiError {
    let mut e = ApiError::new(
        ErrorCode::EmailTaken,
        "An account with this email address already exists.",
    );
    e.field = Some("email".into());
    e
}

pub fn conflict_is_email_taken(e: StoreError) -> ApiError {
    match e {
        StoreError::Conflict(_) => email_taken(),
        other => other.into(),
    }
}

fn invalid_credentials() -> ApiError {
    ApiError::new(
        ErrorCode::InvalidCredentials,
        "The email or password is not right.",
    )
}

pub async fn login(
    state: &AppState,
    ip: &str,
    email: &str,
    password: &str,
) -> ApiResult<(UserRow, Tokens)> {
    check_ip_limit(state, ip, "login").await?;
    let password = Password::presented(password)?;
    let user = match Email::parse(email) {
        Ok(email) => store::user_by_email(&state.db, email.as_str()).await?,
        Err(_) => None,
    };
    let Some(user) = user else {
        // Same cost as a wrong password, same answer.
        state.auth.hasher.verify(password.expose(), None).await?;
        return Err(invalid_credentials());
    };
    let now = Utc::now();
    if let Some(until) = user.locked_until
        && until > now
    {
        return Err(locked(until - now));
    }
    let ok = state
        .auth
        .hasher
        .verify(password.expose(), Some(&user.password_hash))
        .await?;
    if !ok {
        let auth = &state.settings.auth;
        let lock_until = now + chrono::Duration::minutes(auth.lockout_minutes as i64);
        let (count, locked_until) =
            store::record_failed_login(&state.db, user.id, auth.lockout_threshold, lock_until)
                .await?;
        audit::record(
            &state.db,
            Entry {
                org: user.organization_id,
                action: action::LOGIN_FAILED,
                actor: None,
                subject: Some(user.id),
                ip: Some(ip),
                detail: json!({ "consecutive_failures": count }),
            },
        )
        .await?;
        if count == i64::from(auth.lockout_threshold) && locked_until.is_some() {
            audit::record(
                &state.db,
                Entry {
                    org: user.organization_id,
                    action: action::ACCOUNT_LOCKED,
                    actor: None,
                    subject: Some(user.id),
                    ip: Some(ip),
                    detail: json!({ "minutes": auth.lockout_minutes }),
                },
            )
            .await?;
        }
        return Err(invalid_credentials());
    }
    if user.failed_logins != 0 || user.locked_until.is_some() {
        store::clear_failed_logins(&state.db, user.id).await?;
    }
    audit::record(
        &state.db,
        Entry {
            org: user.organization_id,
            action: action::LOGIN_SUCCEEDED,
            actor: Some(user.id),
            subject: Some(user.id),
            ip: Some(ip),
            detail: json!({}),
        },
    )
    .await?;
    let tokens = issue_tokens(state, &user, None).await?;
    Ok((user, tokens))
}

fn locked(remaining: chrono::Duration) -> ApiError {
    let secs = remaining.num_seconds().max(1) as u64;
    ApiError::new(
        ErrorCode::AccountLocked,
        "Too many failed sign-ins: this account is locked for a while. Try again later or reset the password.",
    )
    .with_retry_after(Duration::from_secs(secs))
}

fn invalid_refresh() -> ApiError {
    ApiError::new(
        ErrorCode::Unauthorized,
        "The refresh token is not valid; sign in again.",
    )
}

/// Rotates a refresh token. Presenting one that was already used revokes
/// its whole family (a stolen token is useless to both thief and owner
/// until they sign in again).
pub async fn refresh(state: &AppState, ip: &str, token: &str) -> ApiResult<Tokens> {
    check_ip_limit(state, ip, "refresh").await?;
    let Some(row) = store::refresh_by_hash(&state.db, &hash_secret(token.trim())).await? else {
        return Err(invalid_refresh());
    };
    if row.used_at.is_some() {
        store::revoke_family(&state.db, row.family_id).await?;
        audit::record(
            &state.db,
            Entry {
                org: row.organization_id,
                action: action::REFRESH_REUSED,
                actor: None,
                subject: Some(row.user_id),
                ip: Some(ip),
                detail: json!({ "family_id": row.family_id }),
            },
        )
        .await?;
        return Err(invalid_refresh());
    }
    if row.revoked_at.is_some() || row.expires_at <= Utc::now() {
        return Err(invalid_refresh());
    }
    if !store::claim_refresh(&state.db, row.id).await? {
        // Lost a race with another use of the same token: that is reuse.
        store::revoke_family(&state.db, row.family_id).await?;
        return Err(invalid_refresh());
    }
    let user = store::user_in_org(&state.db, row.organization_id, row.user_id)
        .await?
        .ok_or_else(invalid_refresh)?;
    issue_tokens(state, &user, Some(row.family_id)).await
}

/// Ends a session: its refresh family is revoked and the user's access
/// tokens stop working.
pub async fn logout(state: &AppState, ip: &str, token: &str) -> ApiResult<()> {
    if let Some(row) = store::refresh_by_hash(&state.db, &hash_secret(token.trim())).await? {
        store::revoke_family(&state.db, row.family_id).await?;
        store::bump_token_version(&state.db, row.user_id).await?;
        crate::chat::hub::announce_revoked(state.bus.as_ref(), row.user_id).await;
        audit::record(
            &state.db,
            Entry {
                org: row.organization_id,
                action: action::LOGOUT,
                actor: Some(row.user_id),
                subject: Some(row.user_id),
                ip: Some(ip),
                detail: json!({}),
            },
        )
        .await?;
    }
    Ok(())
}

pub async fn verify_email(state: &AppState, ip: &str, token: &str) -> ApiResult<()> {
    check_ip_limit(state, ip, "token").await?;
    let row = store::one_time_by_hash(
        &state.db,
        OneTimeKind::VerifyEmail,
        &hash_secret(token.trim()),
    )
    .await?
    .ok_or_else(invalid_token)?;
    let user_id = row.user_id.ok_or_else(invalid_token)?;
    if row.used_at.is_some() || row.expires_at <= Utc::now() {
        return Err(invalid_token());
    }
    if !store::claim_one_time(&state.db, row.id).await? {
        return Err(invalid_token());
    }
    store::set_email_verified(&state.db, user_id).await?;
    audit::record(
        &state.db,
        Entry {
            org: row.organization_id,
            action: action::EMAIL_VERIFIED,
            actor: Some(user_id),
            subject: Some(user_id),
            ip: Some(ip),
            detail: json!({}),
        },
    )
    .await?;
    Ok(())
}

pub async fn resend_verification(
    state: &AppState,
    ip: &str,
    user: UserId,
    org: OrgId,
) -> ApiResult<()> {
    check_ip_limit(state, ip, "mail").await?;
    let row = store::user_in_org(&state.db, org, user)
        .await?
        .ok_or_else(ApiError::unauthorized)?;
    if row.email_verified {
        return Ok(());
    }
    store::expire_one_time_for_user(&state.db, user, OneTimeKind::VerifyEmail).await?;
    send_one_time_link(
        state,
        OneTimeLink {
            kind: OneTimeKind::VerifyEmail,
            org,
            user: Some(user),
            email: &row.email,
            role: None,
            created_by: None,
            ttl: chrono::Duration::hours(VERIFY_EMAIL_TTL_HOURS),
        },
    )
    .await?;
    Ok(())
}

/// Always succeeds (202) so it never tells whether the address exists.
pub async fn request_password_reset(state: &AppState, ip: &str, email: &str) -> ApiResult<()> {
    check_ip_limit(state, ip, "mail").await?;
    let Ok(email) = Email::parse(email) else {
        return Ok(());
    };
    let Some(user) = store::user_by_email(&state.db, email.as_str()).await? else {
        return Ok(());
    };
    store::expire_one_time_for_user(&state.db, user.id, OneTimeKind::PasswordReset).await?;
    send_one_time_link(
        state,
        OneTimeLink {
            kind: OneTimeKind::PasswordReset,
            org: user.organization_id,
            user: Some(user.id),
            email: &user.email,
            role: None,
            created_by: None,
            ttl: chrono::Duration::minutes(PASSWORD_RESET_TTL_MINUTES),
        },
    )
    .await?;
    Ok(())
}

/// Sets a new password; every refresh and access token of the user stops
/// working.
pub async fn confirm_password_reset(
    state: &AppState,
    ip: &str,
    token: &str,
    new_password: &str,
) -> ApiResult<()> {
    check_ip_limit(state, ip, "token").await?;
    let row = store::one_time_by_hash(
        &state.db,
        OneTimeKind::PasswordReset,
        &hash_secret(token.trim()),
    )
    .await?
    .ok_or_else(invalid_token)?;
    let user_id = row.user_id.ok_or_else(invalid_token)?;
    if row.used_at.is_some() || row.expires_at <= Utc::now() {
        return Err(invalid_token());
    }
    let user = store::user_in_org(&state.db, row.organization_id, user_id)
        .await?
        .ok_or_else(invalid_token)?;
    let email = Email::parse(&user.email)?;
    let name = FullName::parse(&user.full_name).ok();
    let password = Password::parse_new(new_password, "new_password", &email, name.as_ref())?;
    let hash = state.auth.hasher.hash(password.expose()).await?;
    if !store::claim_one_time(&state.db, row.id).await? {
        return Err(invalid_token());
    }
    store::set_password(&state.db, user.id, &hash).await?;
    store::revoke_all_refresh(&state.db, user.id).await?;
    crate::chat::hub::announce_revoked(state.bus.as_ref(), user.id).await;
    audit::record(
        &state.db,
        Entry {
            org: user.organization_id,
            action: action::PASSWORD_RESET,
            actor: Some(user.id),
            subject: Some(user.id),
            ip: Some(ip),
            detail: json!({}),
        },
    )
    .await?;
    Ok(())
}

/// `bwenge seed`: an organisation and its admin, once. Returns `false` when
/// the admin already existed (nothing changed).
pub async fn seed(
    db: &crate::db::Db,
    org_name: &str,
    email: &str,
    password: &str,
) -> anyhow::Result<bool> {
    let email = Email::parse(email).map_err(|e| anyhow::anyhow!("--admin-email: {}", e.detail))?;
    if store::user_by_email(db, email.as_str())
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .is_some()
    {
        return Ok(false);
    }
    let org_name =
        parse_org_name(org_name).map_err(|e| anyhow::anyhow!("--org-name: {}", e.detail))?;
    let name = FullName::parse("Administrator").map_err(|e| anyhow::anyhow!("{}", e.detail))?;
    let password = Password::parse_new(password, "admin-password", &email, Some(&name))
        .map_err(|e| anyhow::anyhow!("--admin-password: {}", e.detail))?;
    let hash = super::password::hash_blocking(password.expose())?;
    let now = Utc::now();
    let org = OrgRow {
        id: OrgId::new(),
        name: org_name,
        plan: "free".into(),
        created_at: now,
    };
    store::create_org_with_user(
        db,
        &org,
        &NewUser {
            id: UserId::new(),
            org: org.id,
            email: email.as_str(),
            full_name: name.as_str(),
            role: Role::Admin.as_str(),
            password_hash: &hash,
            email_verified: true,
            now,
        },
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(true)
}
