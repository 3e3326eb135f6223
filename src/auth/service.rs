//! The identity use cases, free of HTTP: [`AuthService`] holds what they
//! need (its store, the password hasher, token keys, the mailer, the rate
//! limiter, the clock) and the one port it calls outward,
//! [`Revocations`]. Handlers, the WebSocket transport and the CLI call it.

use std::time::Duration;

use chrono::Utc;
use serde::Serialize;
use serde_json::json;

use bwenge_actors::ports::{RateDecision, RateLimit};

use std::sync::Arc;

use bwenge_actors::ports::RateLimiter;

use crate::audit::{self, Entry, action};
use crate::auth::AuthUser;
use crate::auth::error::AuthError;
use crate::auth::model::{Email, FullName, Password, Role, parse_org_name};
use crate::auth::password::Hasher;
use crate::auth::store::{self, NewOneTime, NewUser, OneTimeKind, OneTimeRow, OrgRow, UserRow};
use crate::auth::tokens::{TokenKeys, hash_secret, new_secret};
use crate::clock::Clock;
use crate::config::AuthSettings;
use crate::db::{Db, StoreError};
use crate::ids::{FamilyId, OrgId, TokenId, UserId};
use crate::mail::{self, Mail, Mailer};

type Result<T, E = AuthError> = std::result::Result<T, E>;

/// Ends a user's live connections when their tokens are revoked (logout,
/// password reset, removal, role change). Implemented over the chat hub;
/// auth knows nothing of chat.
#[async_trait::async_trait]
pub trait Revocations: Send + Sync + 'static {
    async fn revoked(&self, user: UserId);

    /// The user's role changed (their tokens are revoked too): a socket
    /// the new role no longer allows closes with 4403, the others with
    /// 4401. `staff`: whether the new role is a teacher's or an admin's.
    async fn role_changed(&self, user: UserId, staff: bool) {
        let _ = staff;
        self.revoked(user).await;
    }
}

/// Where successful sign-ins are reported (analytics' `login` event,
/// implemented in `adapters`). Must not block or wait.
pub trait SignIns: Send + Sync + 'static {
    fn signed_in(&self, org: OrgId, user: UserId);
}

/// Reports nowhere (auth's own tests).
pub struct NoSignIns;

impl SignIns for NoSignIns {
    fn signed_in(&self, _: OrgId, _: UserId) {}
}

/// Identity: accounts, sign-in, tokens and one-time links.
#[derive(Clone)]
pub struct AuthService {
    inner: Arc<Inner>,
}

struct Inner {
    db: Db,
    settings: AuthSettings,
    link_base_url: String,
    keys: TokenKeys,
    hasher: Hasher,
    limiter: Arc<dyn RateLimiter>,
    mailer: Arc<dyn Mailer>,
    revocations: Arc<dyn Revocations>,
    clock: Clock,
    sign_ins: Arc<dyn SignIns>,
}

/// What [`AuthService`] is built from.
pub struct AuthDeps {
    pub db: Db,
    pub settings: AuthSettings,
    pub link_base_url: String,
    pub keys: TokenKeys,
    pub hasher: Hasher,
    pub limiter: Arc<dyn RateLimiter>,
    pub mailer: Arc<dyn Mailer>,
    pub revocations: Arc<dyn Revocations>,
    pub clock: Clock,
    pub sign_ins: Arc<dyn SignIns>,
}

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
    /// Receives the weekly analytics digest (teachers and admins opt in
    /// with `PATCH /v1/auth/me`).
    pub weekly_digest: bool,
}

impl UserView {
    pub fn from_row(row: &UserRow) -> Self {
        Self {
            id: row.id,
            email: row.email.clone(),
            full_name: row.full_name.clone(),
            role: row.role,
            organization_id: row.organization_id,
            email_verified: row.email_verified,
            created_at: row.created_at,
            weekly_digest: row.weekly_digest,
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

pub struct Registration {
    pub organization_name: String,
    pub full_name: String,
    pub email: String,
    pub password: String,
}

/// A unique-constraint failure on insert means the address was taken
/// meanwhile.
pub fn conflict_is_email_taken(e: StoreError) -> AuthError {
    match e {
        StoreError::Conflict(_) => AuthError::EmailTaken,
        other => other.into(),
    }
}

fn locked(remaining: chrono::Duration) -> AuthError {
    let secs = remaining.num_seconds().max(1) as u64;
    AuthError::Locked {
        retry_after: Duration::from_secs(secs),
    }
}

impl AuthService {
    pub fn new(deps: AuthDeps) -> Self {
        let AuthDeps {
            db,
            settings,
            link_base_url,
            keys,
            hasher,
            limiter,
            mailer,
            revocations,
            clock,
            sign_ins,
        } = deps;
        Self {
            inner: Arc::new(Inner {
                db,
                settings,
                link_base_url,
                keys,
                hasher,
                limiter,
                mailer,
                revocations,
                clock,
                sign_ins,
            }),
        }
    }

    pub fn hasher(&self) -> &Hasher {
        &self.inner.hasher
    }

    pub fn clock(&self) -> Clock {
        self.inner.clock
    }

    /// Resolves an access token to the caller, or `None` when it is not
    /// valid now: checked against the user's current token version and role
    /// in the database, so logout, removal, role changes and password
    /// resets take effect at once.
    pub async fn authenticate(&self, token: &str) -> Result<Option<AuthUser>> {
        Ok(self.authenticate_until(token).await?.map(|(user, _)| user))
    }

    /// [`Self::authenticate`], with when the token expires (a socket lives
    /// no longer without a fresh one).
    pub async fn authenticate_until(
        &self,
        token: &str,
    ) -> Result<Option<(AuthUser, chrono::DateTime<Utc>)>> {
        let Some(claims) = self.inner.keys.verify(token, self.inner.clock.now()) else {
            return Ok(None);
        };
        let Some(expires_at) = chrono::DateTime::<Utc>::from_timestamp(claims.exp, 0) else {
            return Ok(None);
        };
        let Some(current) = store::auth_state(&self.inner.db, claims.sub).await? else {
            return Ok(None);
        };
        if current.organization_id != claims.org || current.token_version != claims.ver {
            return Ok(None);
        }
        Ok(Some((
            AuthUser {
                user_id: claims.sub,
                org_id: claims.org,
                role: current.role,
            },
            expires_at,
        )))
    }

    /// The caller's own account.
    pub async fn me(&self, caller: &AuthUser) -> Result<UserRow> {
        store::user_in_org(&self.inner.db, caller.org_id, caller.user_id)
            .await?
            .ok_or(AuthError::Unauthenticated)
    }

    /// Changes the caller's own settings: `weekly_digest` (teachers and
    /// admins only: students get no digest).
    pub async fn update_me(
        &self,
        caller: &AuthUser,
        weekly_digest: Option<bool>,
    ) -> Result<UserRow> {
        if let Some(on) = weekly_digest {
            if on {
                caller.require_staff()?;
            }
            store::set_weekly_digest(&self.inner.db, caller.org_id, caller.user_id, on).await?;
        }
        self.me(caller).await
    }

    /// Per-IP limit on the sign-in routes, shared across nodes with Redis.
    pub async fn check_ip_limit(&self, ip: &str, bucket: &str) -> Result<()> {
        let auth = &self.inner.settings;
        let limit = RateLimit {
            capacity: auth.ip_burst,
            refill_per_sec: auth.ip_refill_per_sec,
        };
        match self
            .inner
            .limiter
            .check(&format!("auth:{bucket}:{ip}"), limit, 1)
            .await
        {
            Ok(RateDecision::Allowed { .. }) => Ok(()),
            Ok(RateDecision::Limited { retry_after }) => {
                Err(AuthError::RateLimited { retry_after })
            }
            Err(e) => {
                // Fail open: a limiter outage must not lock a school out.
                tracing::warn!(error = %e, "rate limiter unavailable; allowing the request");
                Ok(())
            }
        }
    }

    /// Takes one mail from the budgets of the user who causes it and of
    /// their organisation (`auth.mails_per_user_per_hour`,
    /// `auth.mails_per_org_per_hour`): invitations, verification resends,
    /// password resets.
    pub async fn check_mail_limit(&self, user: UserId, org: OrgId) -> Result<()> {
        let auth = &self.inner.settings;
        for (key, per_hour) in [
            (format!("mail:user:{user}"), auth.mails_per_user_per_hour),
            (format!("mail:org:{org}"), auth.mails_per_org_per_hour),
        ] {
            let limit = RateLimit {
                capacity: per_hour.max(1),
                refill_per_sec: f64::from(per_hour.max(1)) / 3600.0,
            };
            match self.inner.limiter.check(&key, limit, 1).await {
                Ok(RateDecision::Allowed { .. }) => {}
                Ok(RateDecision::Limited { retry_after }) => {
                    return Err(AuthError::RateLimited { retry_after });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "rate limiter unavailable; allowing the mail");
                }
            }
        }
        Ok(())
    }

    pub async fn issue_tokens(&self, user: &UserRow, family: Option<FamilyId>) -> Result<Tokens> {
        let now = self.inner.clock.now();
        let role = user.role;
        let access =
            self.inner
                .keys
                .issue(user.id, user.organization_id, role, user.token_version, now)?;
        let refresh = new_secret();
        let ttl = chrono::Duration::days(self.inner.settings.refresh_token_ttl_days as i64);
        store::insert_refresh(
            &self.inner.db,
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
            expires_in: self.inner.settings.access_token_ttl_secs,
        })
    }

    /// Creates a one-time token and mails its link.
    pub async fn send_one_time_link(
        &self,
        link: OneTimeLink<'_>,
    ) -> Result<(TokenId, chrono::DateTime<Utc>)> {
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
        let expires_at = self.inner.clock.now() + ttl;
        store::insert_one_time(
            &self.inner.db,
            &NewOneTime {
                id,
                org,
                user,
                kind,
                hash: &hash_secret(&secret),
                email,
                role,
                created_by,
                expires_at,
            },
        )
        .await?;
        let base = self.inner.link_base_url.trim_end_matches('/');
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
            self.inner.mailer.clone(),
            Mail {
                to: email.to_owned(),
                subject: subject.to_owned(),
                // CRLF and short lines keep the message 7bit, so the link is
                // never folded by quoted-printable.
                body: format!("{text}\r\n\r\n{base}/{path}?token={secret}\r\n"),
                html: None,
            },
        );
        Ok((id, expires_at))
    }

    pub async fn register(
        &self,
        ip: &str,
        input: Registration,
    ) -> Result<(UserRow, OrgRow, Tokens)> {
        self.check_ip_limit(ip, "register").await?;
        let org_name = parse_org_name(&input.organization_name)?;
        let name = FullName::parse(&input.full_name)?;
        let email = Email::parse(&input.email)?;
        let password = Password::parse_new(&input.password, "password", &email, Some(&name))?;
        if store::user_by_email(&self.inner.db, email.as_str())
            .await?
            .is_some()
        {
            return Err(AuthError::EmailTaken);
        }
        let hash = self.inner.hasher.hash(password.expose()).await?;
        let now = self.inner.clock.now();
        let org = OrgRow {
            id: OrgId::new(),
            name: org_name,
            plan: "free".into(),
            created_at: now,
        };
        let user_id = UserId::new();
        store::create_org_with_user(
            &self.inner.db,
            &org,
            &NewUser {
                id: user_id,
                org: org.id,
                email: email.as_str(),
                full_name: name.as_str(),
                role: Role::Admin,
                password_hash: &hash,
                email_verified: false,
                now,
            },
        )
        .await
        .map_err(conflict_is_email_taken)?;
        let user = store::user_in_org(&self.inner.db, org.id, user_id)
            .await?
            .ok_or_else(|| anyhow::anyhow!("new user vanished"))?;
        audit::record(
            &self.inner.db,
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
        self.send_one_time_link(OneTimeLink {
            kind: OneTimeKind::VerifyEmail,
            org: org.id,
            user: Some(user.id),
            email: email.as_str(),
            role: None,
            created_by: None,
            ttl: chrono::Duration::hours(VERIFY_EMAIL_TTL_HOURS),
        })
        .await?;
        let tokens = self.issue_tokens(&user, None).await?;
        Ok((user, org, tokens))
    }

    pub async fn login(&self, ip: &str, email: &str, password: &str) -> Result<(UserRow, Tokens)> {
        self.check_ip_limit(ip, "login").await?;
        let password = Password::presented(password)?;
        let user = match Email::parse(email) {
            Ok(email) => store::user_by_email(&self.inner.db, email.as_str()).await?,
            Err(_) => None,
        };
        let now = self.inner.clock.now();
        let auth = &self.inner.settings;
        let lock_for = chrono::Duration::minutes(auth.lockout_minutes as i64);
        let Some(user) = user else {
            return Err(self.ghost_login(email, &password, now).await?);
        };
        // The attempt is counted before the hash is checked: however many
        // guesses arrive at once, at most `lockout_threshold` are checked.
        let Some(count) =
            store::reserve_login_attempt(&self.inner.db, user.id, auth.lockout_threshold, now)
                .await?
        else {
            // Locked, or its last attempts are being checked: the same
            // work as a check, so the answer's timing tells nothing.
            self.inner.hasher.verify(password.expose(), None).await?;
            let until = user.locked_until.filter(|u| *u > now);
            return Err(locked(until.map_or(lock_for, |u| u - now)));
        };
        let ok = self
            .inner
            .hasher
            .verify(password.expose(), Some(&user.password_hash))
            .await?;
        if !ok {
            let locked_until = store::settle_failed_login(
                &self.inner.db,
                user.id,
                auth.lockout_threshold,
                now + lock_for,
            )
            .await?;
            audit::record(
                &self.inner.db,
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
                    &self.inner.db,
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
            return Err(AuthError::InvalidCredentials);
        }
        if !store::settle_good_login(&self.inner.db, user.id, self.inner.clock.now()).await? {
            // Other guesses locked the account while this one was checked.
            return Err(locked(lock_for));
        }
        audit::record(
            &self.inner.db,
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
        let tokens = self.issue_tokens(&user, None).await?;
        self.inner.sign_ins.signed_in(user.organization_id, user.id);
        Ok((user, tokens))
    }

    /// A sign-in for an address with no account. It is counted and locked
    /// as an account would be (`invalid_credentials` until the threshold,
    /// then `account_locked` with the same `Retry-After`), and it checks a
    /// dummy hash, so neither the answer nor its time tells whether the
    /// address exists. Returns the refusal.
    async fn ghost_login(
        &self,
        email: &str,
        password: &Password,
        now: chrono::DateTime<Utc>,
    ) -> Result<AuthError> {
        let auth = &self.inner.settings;
        let lock_for = chrono::Duration::minutes(auth.lockout_minutes as i64);
        let key = hash_secret(&email.trim().to_lowercase());
        let reserved =
            store::reserve_ghost_attempt(&self.inner.db, &key, auth.lockout_threshold, now).await?;
        // Same cost as checking a real password, locked or not.
        self.inner.hasher.verify(password.expose(), None).await?;
        match reserved {
            Ok(_) => {
                store::settle_failed_ghost(
                    &self.inner.db,
                    &key,
                    auth.lockout_threshold,
                    now + lock_for,
                    now,
                )
                .await?;
                Ok(AuthError::InvalidCredentials)
            }
            Err(until) => {
                let until = until.filter(|u| *u > now);
                Ok(locked(until.map_or(lock_for, |u| u - now)))
            }
        }
    }

    /// Rotates a refresh token. Presenting one that was already used revokes
    /// its whole family (a stolen token is useless to both thief and owner
    /// until they sign in again).
    pub async fn refresh(&self, ip: &str, token: &str) -> Result<Tokens> {
        self.check_ip_limit(ip, "refresh").await?;
        let Some(row) = store::refresh_by_hash(&self.inner.db, &hash_secret(token.trim())).await?
        else {
            return Err(AuthError::InvalidRefresh);
        };
        if row.used_at.is_some() {
            return Err(self.refresh_reused(ip, &row).await?);
        }
        if row.revoked_at.is_some() || row.expires_at <= self.inner.clock.now() {
            return Err(AuthError::InvalidRefresh);
        }
        let refresh = new_secret();
        let ttl = chrono::Duration::days(self.inner.settings.refresh_token_ttl_days as i64);
        let rotated = store::rotate_refresh(
            &self.inner.db,
            row.id,
            row.family_id,
            row.organization_id,
            row.user_id,
            &hash_secret(&refresh),
            self.inner.clock.now() + ttl,
        )
        .await?;
        let user = match rotated {
            store::Rotation::Rotated(user) => user,
            // Lost a race with another use of the same token: that is reuse.
            store::Rotation::Lost => return Err(self.refresh_reused(ip, &row).await?),
            store::Rotation::Dead => return Err(AuthError::InvalidRefresh),
        };
        let now = self.inner.clock.now();
        let access = self.inner.keys.issue(
            user.id,
            user.organization_id,
            user.role,
            user.token_version,
            now,
        )?;
        Ok(Tokens {
            access_token: access,
            refresh_token: refresh,
            token_type: "Bearer",
            expires_in: self.inner.settings.access_token_ttl_secs,
        })
    }

    /// A used refresh token came back (stolen, or a race): its whole family
    /// is revoked, the user's access tokens stop working and their sockets
    /// close with 4401. Returns the refusal.
    async fn refresh_reused(&self, ip: &str, row: &store::RefreshRow) -> Result<AuthError> {
        store::revoke_family_for_reuse(&self.inner.db, row.family_id, row.user_id).await?;
        self.inner.revocations.revoked(row.user_id).await;
        audit::record(
            &self.inner.db,
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
        Ok(AuthError::InvalidRefresh)
    }

    /// Ends a session: its refresh family is revoked and the user's access
    /// tokens stop working.
    pub async fn logout(&self, ip: &str, token: &str) -> Result<()> {
        if let Some(row) =
            store::refresh_by_hash(&self.inner.db, &hash_secret(token.trim())).await?
        {
            store::revoke_family(&self.inner.db, row.family_id).await?;
            store::bump_token_version(&self.inner.db, row.user_id).await?;
            self.inner.revocations.revoked(row.user_id).await;
            audit::record(
                &self.inner.db,
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

    /// The one-time link of `kind` behind a mailed token, when it exists,
    /// is unused and has not expired (claiming it is the caller's step).
    pub async fn live_link(&self, kind: OneTimeKind, token: &str) -> Result<Option<OneTimeRow>> {
        let row = store::one_time_by_hash(&self.inner.db, kind, &hash_secret(token.trim())).await?;
        let now = self.inner.clock.now();
        Ok(row.filter(|r| r.used_at.is_none() && r.expires_at > now))
    }

    pub async fn verify_email(&self, ip: &str, token: &str) -> Result<()> {
        self.check_ip_limit(ip, "token").await?;
        let row = self
            .live_link(OneTimeKind::VerifyEmail, token)
            .await?
            .ok_or(AuthError::InvalidLink)?;
        let user_id = row.user_id.ok_or(AuthError::InvalidLink)?;
        if !store::claim_one_time(&self.inner.db, row.id).await? {
            return Err(AuthError::InvalidLink);
        }
        store::set_email_verified(&self.inner.db, user_id).await?;
        audit::record(
            &self.inner.db,
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

    pub async fn resend_verification(&self, ip: &str, user: UserId, org: OrgId) -> Result<()> {
        self.check_ip_limit(ip, "mail").await?;
        let row = store::user_in_org(&self.inner.db, org, user)
            .await?
            .ok_or(AuthError::Unauthenticated)?;
        if row.email_verified {
            return Ok(());
        }
        self.check_mail_limit(user, org).await?;
        store::expire_one_time_for_user(&self.inner.db, user, OneTimeKind::VerifyEmail).await?;
        self.send_one_time_link(OneTimeLink {
            kind: OneTimeKind::VerifyEmail,
            org,
            user: Some(user),
            email: &row.email,
            role: None,
            created_by: None,
            ttl: chrono::Duration::hours(VERIFY_EMAIL_TTL_HOURS),
        })
        .await?;
        Ok(())
    }

    /// Always succeeds (202) so it never tells whether the address exists.
    pub async fn request_password_reset(&self, ip: &str, email: &str) -> Result<()> {
        self.check_ip_limit(ip, "mail").await?;
        let Ok(email) = Email::parse(email) else {
            return Ok(());
        };
        let Some(user) = store::user_by_email(&self.inner.db, email.as_str()).await? else {
            return Ok(());
        };
        // Over the account's (or its school's) mail budget: nothing is
        // sent, and the answer stays 202, as for an unknown address.
        if let Err(e) = self.check_mail_limit(user.id, user.organization_id).await {
            tracing::info!(error = %e, "password reset not sent: mail budget spent");
            return Ok(());
        }
        store::expire_one_time_for_user(&self.inner.db, user.id, OneTimeKind::PasswordReset)
            .await?;
        self.send_one_time_link(OneTimeLink {
            kind: OneTimeKind::PasswordReset,
            org: user.organization_id,
            user: Some(user.id),
            email: &user.email,
            role: None,
            created_by: None,
            ttl: chrono::Duration::minutes(PASSWORD_RESET_TTL_MINUTES),
        })
        .await?;
        Ok(())
    }

    /// Sets a new password; every refresh and access token of the user stops
    /// working.
    pub async fn confirm_password_reset(
        &self,
        ip: &str,
        token: &str,
        new_password: &str,
    ) -> Result<()> {
        self.check_ip_limit(ip, "token").await?;
        let row = self
            .live_link(OneTimeKind::PasswordReset, token)
            .await?
            .ok_or(AuthError::InvalidLink)?;
        let user_id = row.user_id.ok_or(AuthError::InvalidLink)?;
        let user = store::user_in_org(&self.inner.db, row.organization_id, user_id)
            .await?
            .ok_or(AuthError::InvalidLink)?;
        let email = Email::parse(&user.email)?;
        let name = FullName::parse(&user.full_name).ok();
        let password = Password::parse_new(new_password, "new_password", &email, name.as_ref())?;
        let hash = self.inner.hasher.hash(password.expose()).await?;
        if !store::claim_one_time(&self.inner.db, row.id).await? {
            return Err(AuthError::InvalidLink);
        }
        store::set_password(&self.inner.db, user.id, &hash).await?;
        store::revoke_all_refresh(&self.inner.db, user.id).await?;
        self.inner.revocations.revoked(user.id).await;
        audit::record(
            &self.inner.db,
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
}

/// `bwenge seed`: an organisation and its admin, once. Returns `false` when
/// the admin already existed (nothing changed).
pub async fn seed(db: &Db, org_name: &str, email: &str, password: &str) -> anyhow::Result<bool> {
    use anyhow::Context as _;
    let email = Email::parse(email).context("--admin-email")?;
    if store::user_by_email(db, email.as_str())
        .await
        .context("looking up the admin")?
        .is_some()
    {
        return Ok(false);
    }
    let org_name = parse_org_name(org_name).context("--org-name")?;
    let name = FullName::parse("Administrator").context("the admin's name")?;
    let password = Password::parse_new(password, "admin-password", &email, Some(&name))
        .context("--admin-password")?;
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
            role: Role::Admin,
            password_hash: &hash,
            email_verified: true,
            now,
        },
    )
    .await
    .context("creating the organisation and its admin")?;
    Ok(true)
}
