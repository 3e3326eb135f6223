//! Member and invitation use cases: [`OrgService`], built on the identity
//! service (invitations are one-time links; accepting one signs in) and
//! the [`Revocations`] port.

use std::sync::Arc;

use serde_json::json;

use crate::audit::{self, Entry, action};
use crate::auth::model::{Email, FullName, Password, Role};
use crate::auth::service::{self as auth_service, Tokens, UserView};
use crate::auth::store::{self as auth_store, NewUser, OneTimeKind, UserRow};
use crate::auth::{AuthError, AuthService, AuthUser, Forbidden, Revocations};
use crate::db::{Db, StoreError};
use crate::ids::{OrgId, TokenId, UserId};
use crate::pagination::{Cursor, List, Page, page_of};
use crate::validation::Invalid;

/// What can go wrong with members and invitations.
#[derive(Debug, thiserror::Error)]
pub enum OrgError {
    #[error(transparent)]
    Invalid(#[from] Invalid),
    #[error(transparent)]
    Forbidden(#[from] Forbidden),
    #[error("no such member")]
    NotFound,
    /// The change would leave the organisation without an admin.
    #[error("the last admin cannot be demoted or removed")]
    LastAdmin,
    /// The member allowance is used up; the sentence says which.
    #[error("quota exceeded: {0}")]
    QuotaExceeded(String),
    /// No such invitation (to list or revoke) in the organisation.
    #[error("no such invitation")]
    InvitationNotFound,
    /// An invitation that is unknown, used or expired.
    #[error("the invitation is invalid, used or expired")]
    InvalidInvitation,
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

type Result<T, E = OrgError> = std::result::Result<T, E>;

/// What else goes when a member is removed with `erase=true` (their
/// analytics; implemented in `adapters`). Their chat sessions and events
/// go with their account (foreign keys).
#[async_trait::async_trait]
pub trait MemberErasure: Send + Sync + 'static {
    async fn erase(&self, org: OrgId, user: UserId) -> anyhow::Result<()>;
}

/// Erases nothing else (orgs' own tests).
pub struct NoErasure;

#[async_trait::async_trait]
impl MemberErasure for NoErasure {
    async fn erase(&self, _: OrgId, _: UserId) -> anyhow::Result<()> {
        Ok(())
    }
}

/// The organisation's member allowance (billing's, through
/// `crate::adapters`): active members plus pending invitations. An
/// invitation takes a seat; removing a member gives one back.
#[async_trait::async_trait]
pub trait MemberQuota: Send + Sync + 'static {
    /// Refused with [`OrgError::QuotaExceeded`] past the allowance.
    async fn reserve(&self, org: OrgId) -> Result<()>;
    async fn release(&self, org: OrgId);
}

/// Members, roles and invitations of an organisation.
#[derive(Clone)]
pub struct OrgService {
    db: Db,
    auth: AuthService,
    revocations: Arc<dyn Revocations>,
    erasure: Arc<dyn MemberErasure>,
    quota: Arc<dyn MemberQuota>,
}

use super::store;

pub struct Invitation {
    pub id: TokenId,
    pub email: String,
    pub role: Role,
    pub expires_at: chrono::DateTime<chrono::Utc>,
    /// Who sent it (`None` for invitations from before this was kept).
    pub invited_by: Option<UserId>,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

impl From<store::InvitationRow> for Invitation {
    fn from(r: store::InvitationRow) -> Self {
        Self {
            id: r.id,
            email: r.email,
            role: r.role.unwrap_or(Role::Student),
            expires_at: r.expires_at,
            invited_by: r.created_by,
            created_at: r.created_at,
        }
    }
}

impl OrgService {
    pub fn new(
        db: Db,
        auth: AuthService,
        revocations: Arc<dyn Revocations>,
        erasure: Arc<dyn MemberErasure>,
        quota: Arc<dyn MemberQuota>,
    ) -> Self {
        Self {
            db,
            auth,
            revocations,
            erasure,
            quota,
        }
    }

    pub async fn list_members(&self, caller: &AuthUser, page: Page) -> Result<List<UserView>> {
        caller.require_staff()?;
        let rows = store::list_members(&self.db, caller.org_id, page).await?;
        Ok(page_of(
            rows,
            page.limit,
            |r| Cursor {
                t: r.created_at,
                id: r.id.0,
            },
            |r| UserView::from_row(&r),
        ))
    }

    pub async fn change_role(
        &self,
        caller: &AuthUser,
        ip: &str,
        member: UserId,
        role: Role,
    ) -> Result<UserRow> {
        caller.require_admin()?;
        let target = auth_store::user_in_org(&self.db, caller.org_id, member)
            .await?
            .ok_or(OrgError::NotFound)?;
        let from = target.role;
        if from == Role::Admin
            && role != Role::Admin
            && store::count_admins(&self.db, caller.org_id).await? <= 1
        {
            return Err(OrgError::LastAdmin);
        }
        if from != role {
            store::set_role(&self.db, caller.org_id, member, role).await?;
            // Invitations the member may no longer send die with the
            // demotion, and give back their seats.
            let killed = store::kill_invitations_by(
                &self.db,
                caller.org_id,
                member,
                &role.beyond_invite_reach(),
            )
            .await?;
            self.release_seats(caller.org_id, killed).await;
            self.revocations.role_changed(member, role.is_staff()).await;
            audit::record(
                &self.db,
                Entry {
                    org: caller.org_id,
                    action: action::ROLE_CHANGED,
                    actor: Some(caller.user_id),
                    subject: Some(member),
                    ip: Some(ip),
                    detail: json!({ "from": from.as_str(), "to": role.as_str() }),
                },
            )
            .await?;
        }
        auth_store::user_in_org(&self.db, caller.org_id, member)
            .await?
            .ok_or(OrgError::NotFound)
    }

    /// Removes a member; with `erase`, their analytics events go too
    /// (totals stay, without them).
    pub async fn remove_member(
        &self,
        caller: &AuthUser,
        ip: &str,
        member: UserId,
        erase: bool,
    ) -> Result<()> {
        caller.require_admin()?;
        let target = auth_store::user_in_org(&self.db, caller.org_id, member)
            .await?
            .ok_or(OrgError::NotFound)?;
        if target.role == Role::Admin && store::count_admins(&self.db, caller.org_id).await? <= 1 {
            return Err(OrgError::LastAdmin);
        }
        // Their pending invitations die with them, and give back their seats.
        let killed = store::kill_invitations_by(
            &self.db,
            caller.org_id,
            member,
            &[Role::Admin, Role::Teacher, Role::Student],
        )
        .await?;
        let removed = store::delete_member(&self.db, caller.org_id, member).await?;
        self.release_seats(caller.org_id, killed + u64::from(removed))
            .await;
        self.revocations.revoked(member).await;
        if erase {
            self.erasure.erase(caller.org_id, member).await?;
        }
        audit::record(
            &self.db,
            Entry {
                org: caller.org_id,
                action: action::MEMBER_REMOVED,
                actor: Some(caller.user_id),
                subject: Some(member),
                ip: Some(ip),
                detail: json!({ "email": target.email, "role": target.role, "erased": erase }),
            },
        )
        .await?;
        Ok(())
    }

    /// Admins invite any role; teachers invite students only.
    pub async fn invite(
        &self,
        caller: &AuthUser,
        ip: &str,
        email: &str,
        role: &str,
    ) -> Result<Invitation> {
        caller.require_staff()?;
        let email = Email::parse(email)?;
        let role = Role::parse(role)?;
        if caller.role == Role::Teacher && role != Role::Student {
            return Err(Forbidden("Teachers may invite students only.").into());
        }
        if auth_store::user_by_email(&self.db, email.as_str())
            .await?
            .is_some()
        {
            return Err(AuthError::EmailTaken.into());
        }
        self.auth
            .check_mail_limit(caller.user_id, caller.org_id)
            .await?;
        self.quota.reserve(caller.org_id).await?;
        let sent = self
            .auth
            .send_one_time_link(auth_service::OneTimeLink {
                kind: OneTimeKind::Invitation,
                org: caller.org_id,
                user: None,
                email: email.as_str(),
                role: Some(role),
                created_by: Some(caller.user_id),
                ttl: chrono::Duration::days(auth_service::INVITATION_TTL_DAYS),
            })
            .await;
        let (id, expires_at) = match sent {
            Ok(sent) => sent,
            Err(e) => {
                self.quota.release(caller.org_id).await;
                return Err(e.into());
            }
        };
        audit::record(
            &self.db,
            Entry {
                org: caller.org_id,
                action: action::INVITATION_CREATED,
                actor: Some(caller.user_id),
                subject: None,
                ip: Some(ip),
                detail: json!({ "email": email.as_str(), "role": role.as_str() }),
            },
        )
        .await?;
        Ok(Invitation {
            id,
            email: email.as_str().to_owned(),
            role,
            expires_at,
            invited_by: Some(caller.user_id),
            created_at: self.auth.clock().now(),
        })
    }

    /// The organisation's invitations not yet accepted (teachers and
    /// admins), oldest first.
    pub async fn list_invitations(
        &self,
        caller: &AuthUser,
        page: Page,
    ) -> Result<List<Invitation>> {
        caller.require_staff()?;
        let now = self.auth.clock().now();
        let rows = store::list_invitations(&self.db, caller.org_id, now, page).await?;
        Ok(page_of(
            rows,
            page.limit,
            |r| Cursor {
                t: r.created_at,
                id: r.id.0,
            },
            Invitation::from,
        ))
    }

    /// Gives back `n` member seats (invitations that died, a member
    /// removed). A release that fails is put right by billing's
    /// reconciliation job.
    async fn release_seats(&self, org: OrgId, n: u64) {
        for _ in 0..n {
            self.quota.release(org).await;
        }
    }

    /// Revokes an invitation not yet accepted: admins any, teachers their
    /// own.
    pub async fn revoke_invitation(&self, caller: &AuthUser, ip: &str, id: TokenId) -> Result<()> {
        caller.require_staff()?;
        let now = self.auth.clock().now();
        let row = store::invitation(&self.db, caller.org_id, id, now)
            .await?
            .ok_or(OrgError::InvitationNotFound)?;
        if caller.role != Role::Admin && row.created_by != Some(caller.user_id) {
            return Err(Forbidden("Teachers may revoke only the invitations they sent.").into());
        }
        if !store::delete_invitation(&self.db, caller.org_id, id).await? {
            return Err(OrgError::InvitationNotFound);
        }
        self.release_seats(caller.org_id, 1).await;
        audit::record(
            &self.db,
            Entry {
                org: caller.org_id,
                action: action::INVITATION_REVOKED,
                actor: Some(caller.user_id),
                subject: None,
                ip: Some(ip),
                detail: json!({ "email": row.email, "role": row.role }),
            },
        )
        .await?;
        Ok(())
    }

    /// Creates the invited account in the inviter's organisation, with the
    /// invited role and its email verified (the invitation proved it).
    pub async fn accept(
        &self,
        ip: &str,
        token: &str,
        full_name: &str,
        password: &str,
    ) -> Result<(UserRow, Tokens)> {
        self.auth.check_ip_limit(ip, "token").await?;
        let row = self
            .auth
            .live_link(OneTimeKind::Invitation, token)
            .await?
            .ok_or(OrgError::InvalidInvitation)?;
        let name = FullName::parse(full_name)?;
        let email = Email::parse(&row.email)?;
        let password = Password::parse_new(password, "password", &email, Some(&name))?;
        let role = row.role.unwrap_or(Role::Student);
        // The sender must still be a member who may invite this role.
        let sender = match row.created_by {
            Some(by) => auth_store::user_in_org(&self.db, row.organization_id, by).await?,
            None => None,
        };
        if !sender.is_some_and(|s| s.role.may_invite(role)) {
            return Err(OrgError::InvalidInvitation);
        }
        if auth_store::user_by_email(&self.db, email.as_str())
            .await?
            .is_some()
        {
            return Err(AuthError::EmailTaken.into());
        }
        let hash = self.auth.hasher().hash(password.expose()).await?;
        if !auth_store::claim_one_time(&self.db, row.id).await? {
            return Err(OrgError::InvalidInvitation);
        }
        let id = UserId::new();
        auth_store::insert_user(
            &self.db,
            &NewUser {
                id,
                org: row.organization_id,
                email: email.as_str(),
                full_name: name.as_str(),
                role,
                password_hash: &hash,
                email_verified: true,
                now: self.auth.clock().now(),
            },
        )
        .await
        .map_err(auth_service::conflict_is_email_taken)?;
        audit::record(
            &self.db,
            Entry {
                org: row.organization_id,
                action: action::INVITATION_ACCEPTED,
                actor: Some(id),
                subject: Some(id),
                ip: Some(ip),
                detail: json!({ "role": role.as_str(), "invited_by": row.created_by }),
            },
        )
        .await?;
        let user = auth_store::user_in_org(&self.db, row.organization_id, id)
            .await?
            .ok_or_else(|| anyhow::anyhow!("new member vanished"))?;
        let tokens = self.auth.issue_tokens(&user, None).await?;
        Ok((user, tokens))
    }
}
