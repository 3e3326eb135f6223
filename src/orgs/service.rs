//! Member and invitation use cases.

use chrono::Utc;
use serde_json::json;

use crate::audit::{self, Entry, action};
use crate::auth::AuthUser;
use crate::auth::model::{Email, FullName, Password, Role};
use crate::auth::service::{self as auth_service, Tokens, UserView, email_taken};
use crate::auth::store::{self as auth_store, NewUser, OneTimeKind, UserRow};
use crate::auth::tokens::hash_secret;
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::ids::{TokenId, UserId};
use crate::pagination::{Cursor, List, Page, page_of};
use crate::state::AppState;

use super::store;

pub async fn list_members(
    state: &AppState,
    caller: &AuthUser,
    page: Page,
) -> ApiResult<List<UserView>> {
    caller.require_staff()?;
    let rows = store::list_members(&state.db, caller.org_id, page).await?;
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

fn last_admin() -> ApiError {
    ApiError::new(
        ErrorCode::LastAdmin,
        "An organisation needs at least one admin: promote someone else first.",
    )
}

pub async fn change_role(
    state: &AppState,
    caller: &AuthUser,
    ip: &str,
    member: UserId,
    role: Role,
) -> ApiResult<UserRow> {
    caller.require_admin()?;
    let target = auth_store::user_in_org(&state.db, caller.org_id, member)
        .await?
        .ok_or_else(ApiError::not_found)?;
    let from = Role::parse(&target.role)?;
    if from == Role::Admin
        && role != Role::Admin
        && store::count_admins(&state.db, caller.org_id).await? <= 1
    {
        return Err(last_admin());
    }
    if from != role {
        store::set_role(&state.db, caller.org_id, member, role.as_str()).await?;
        crate::chat::hub::announce_revoked(state.bus.as_ref(), member).await;
        audit::record(
            &state.db,
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
    auth_store::user_in_org(&state.db, caller.org_id, member)
        .await?
        .ok_or_else(ApiError::not_found)
}

pub async fn remove_member(
    state: &AppState,
    caller: &AuthUser,
    ip: &str,
    member: UserId,
) -> ApiResult<()> {
    caller.require_admin()?;
    let target = auth_store::user_in_org(&state.db, caller.org_id, member)
        .await?
        .ok_or_else(ApiError::not_found)?;
    if target.role == Role::Admin.as_str()
        && store::count_admins(&state.db, caller.org_id).await? <= 1
    {
        return Err(last_admin());
    }
    store::delete_member(&state.db, caller.org_id, member).await?;
    crate::chat::hub::announce_revoked(state.bus.as_ref(), member).await;
    audit::record(
        &state.db,
        Entry {
            org: caller.org_id,
            action: action::MEMBER_REMOVED,
            actor: Some(caller.user_id),
            subject: Some(member),
            ip: Some(ip),
            detail: json!({ "email": target.email, "role": target.role }),
        },
    )
    .await?;
    Ok(())
}

pub struct Invitation {
    pub id: TokenId,
    pub email: String,
    pub role: Role,
    pub expires_at: chrono::DateTime<Utc>,
}

/// Admins invite any role; teachers invite students only.
pub async fn invite(
    state: &AppState,
    caller: &AuthUser,
    ip: &str,
    email: &str,
    role: &str,
) -> ApiResult<Invitation> {
    caller.require_staff()?;
    let email = Email::parse(email)?;
    let role = Role::parse(role)?;
    if caller.role == Role::Teacher && role != Role::Student {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            "Teachers may invite students only.",
        ));
    }
    if auth_store::user_by_email(&state.db, email.as_str())
        .await?
        .is_some()
    {
        return Err(email_taken());
    }
    let (id, expires_at) = auth_service::send_one_time_link(
        state,
        auth_service::OneTimeLink {
            kind: OneTimeKind::Invitation,
            org: caller.org_id,
            user: None,
            email: email.as_str(),
            role: Some(role),
            created_by: Some(caller.user_id),
            ttl: chrono::Duration::days(auth_service::INVITATION_TTL_DAYS),
        },
    )
    .await?;
    audit::record(
        &state.db,
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
    })
}

/// Creates the invited account in the inviter's organisation, with the
/// invited role and its email verified (the invitation proved it).
pub async fn accept(
    state: &AppState,
    ip: &str,
    token: &str,
    full_name: &str,
    password: &str,
) -> ApiResult<(UserRow, Tokens)> {
    auth_service::check_ip_limit(state, ip, "token").await?;
    let invalid = || {
        ApiError::new(
            ErrorCode::InvalidToken,
            "This invitation is invalid, already used or expired; ask for a new one.",
        )
    };
    let row = auth_store::one_time_by_hash(
        &state.db,
        OneTimeKind::Invitation,
        &hash_secret(token.trim()),
    )
    .await?
    .ok_or_else(invalid)?;
    if row.used_at.is_some() || row.expires_at <= Utc::now() {
        return Err(invalid());
    }
    let name = FullName::parse(full_name)?;
    let email = Email::parse(&row.email)?;
    let password = Password::parse_new(password, "password", &email, Some(&name))?;
    let role = Role::parse(row.role.as_deref().unwrap_or("student"))?;
    if auth_store::user_by_email(&state.db, email.as_str())
        .await?
        .is_some()
    {
        return Err(email_taken());
    }
    let hash = state.auth.hasher.hash(password.expose()).await?;
    if !auth_store::claim_one_time(&state.db, row.id).await? {
        return Err(invalid());
    }
    let id = UserId::new();
    auth_store::insert_user(
        &state.db,
        &NewUser {
            id,
            org: row.organization_id,
            email: email.as_str(),
            full_name: name.as_str(),
            role: role.as_str(),
            password_hash: &hash,
            email_verified: true,
            now: Utc::now(),
        },
    )
    .await
    .map_err(auth_service::conflict_is_email_taken)?;
    audit::record(
        &state.db,
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
    let user = auth_store::user_in_org(&state.db, row.organization_id, id)
        .await?
        .ok_or_else(|| ApiError::internal(anyhow::anyhow!("new member vanished")))?;
    let tokens = auth_service::issue_tokens(state, &user, None).await?;
    Ok((user, tokens))
}
