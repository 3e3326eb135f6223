//! HTTP routes of members, invitations and the audit log.

use actix_web::http::Method;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::audit::{self, AuditView};
use crate::auth::AuthUser;
use crate::auth::model::Role;
use crate::auth::routes::ip;
use crate::auth::service::{Tokens, UserView};
use crate::error::ApiResult;
use crate::http::RouteDef;
use crate::ids::{TokenId, UserId};
use crate::pagination::{List, PageQuery};
use crate::state::AppState;

pub fn routes() -> Vec<RouteDef> {
    vec![
        RouteDef::new(Method::POST, "/v1/invitations", || web::post().to(invite)),
        RouteDef::new(Method::GET, "/v1/invitations", || {
            web::get().to(list_invitations)
        }),
        RouteDef::new(Method::POST, "/v1/invitations/accept", || {
            web::post().to(accept)
        }),
        // After `/accept`: resources match in the order they are added.
        RouteDef::new(Method::DELETE, "/v1/invitations/{id}", || {
            web::delete().to(revoke_invitation)
        }),
        RouteDef::new(Method::GET, "/v1/members", || web::get().to(list_members)),
        RouteDef::new(Method::PATCH, "/v1/members/{user_id}", || {
            web::patch().to(change_role)
        }),
        RouteDef::new(Method::DELETE, "/v1/members/{user_id}", || {
            web::delete().to(remove_member)
        }),
        RouteDef::new(Method::GET, "/v1/audit", || web::get().to(list_audit)),
    ]
}

#[derive(Deserialize, ToSchema)]
pub struct InviteBody {
    email: String,
    /// `admin`, `teacher` or `student`.
    role: String,
}

#[derive(Serialize, ToSchema)]
pub struct InvitationView {
    id: TokenId,
    email: String,
    role: Role,
    expires_at: chrono::DateTime<chrono::Utc>,
    /// The member who sent it.
    invited_by: Option<UserId>,
    created_at: chrono::DateTime<chrono::Utc>,
}

impl From<crate::orgs::service::Invitation> for InvitationView {
    fn from(inv: crate::orgs::service::Invitation) -> Self {
        Self {
            id: inv.id,
            email: inv.email,
            role: inv.role,
            expires_at: inv.expires_at,
            invited_by: inv.invited_by,
            created_at: inv.created_at,
        }
    }
}

/// The organisation's invitations not yet accepted (teachers and admins),
/// oldest first. An invitation dies when its sender is removed, or demoted
/// below the role it invites to.
#[utoipa::path(get, path = "/v1/invitations", tag = "organisation", params(PageQuery),
    responses((status = 200, body = List<InvitationView>), (status = 403, description = "`forbidden`: students")),
    security(("bearer" = [])))]
pub async fn list_invitations(
    state: web::Data<AppState>,
    user: AuthUser,
    q: web::Query<PageQuery>,
) -> ApiResult<HttpResponse> {
    let page = q.parse()?;
    let list = state.orgs.list_invitations(&user, page).await?;
    Ok(HttpResponse::Ok().json(List {
        items: list.items.into_iter().map(InvitationView::from).collect(),
        next_cursor: list.next_cursor,
    }))
}

/// Revokes an invitation not yet accepted (admins: any; teachers: their
/// own): its link stops working.
#[utoipa::path(delete, path = "/v1/invitations/{id}", tag = "organisation",
    params(("id" = String, Path, description = "The invitation's id")),
    responses((status = 204), (status = 403, description = "`forbidden`: a student, or a teacher revoking another's invitation"),
        (status = 404, description = "`not_found`: no such invitation not yet accepted in the organisation")),
    security(("bearer" = [])))]
pub async fn revoke_invitation(
    state: web::Data<AppState>,
    req: HttpRequest,
    user: AuthUser,
    path: web::Path<TokenId>,
) -> ApiResult<HttpResponse> {
    state
        .orgs
        .revoke_invitation(&user, &ip(&req, &state), path.into_inner())
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Invites someone by mail (admins: any role; teachers: students). Valid 7
/// days, single use. An address that already has an account is refused
/// (`409 email_taken`).
#[utoipa::path(post, path = "/v1/invitations", tag = "organisation", request_body = InviteBody,
    responses((status = 201, body = InvitationView), (status = 403), (status = 409, description = "`email_taken`"),
        (status = 429, description = "`rate_limited`, with `Retry-After`: the sender's or the organisation's mail budget (`auth.mails_per_user_per_hour`, `auth.mails_per_org_per_hour`) is spent")),
    security(("bearer" = [])))]
pub async fn invite(
    state: web::Data<AppState>,
    req: HttpRequest,
    user: AuthUser,
    body: web::Json<InviteBody>,
) -> ApiResult<HttpResponse> {
    let inv = state
        .orgs
        .invite(&user, &ip(&req, &state), &body.email, &body.role)
        .await?;
    Ok(HttpResponse::Created().json(InvitationView::from(inv)))
}

#[derive(Deserialize, ToSchema)]
pub struct AcceptBody {
    token: String,
    full_name: String,
    password: String,
}

#[derive(Serialize, ToSchema)]
pub struct AcceptAnswer {
    user: UserView,
    tokens: Tokens,
}

/// Accepts an invitation: creates the account in the inviter's organisation.
/// The sender must still be a member allowed to invite that role.
#[utoipa::path(post, path = "/v1/invitations/accept", tag = "organisation", request_body = AcceptBody,
    responses((status = 201, body = AcceptAnswer), (status = 400, description = "`invalid_token`: unknown, used, expired or revoked, or its sender was removed or demoted below the invited role")))]
pub async fn accept(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<AcceptBody>,
) -> ApiResult<HttpResponse> {
    let (user, tokens) = state
        .orgs
        .accept(
            &ip(&req, &state),
            &body.token,
            &body.full_name,
            &body.password,
        )
        .await?;
    Ok(HttpResponse::Created().json(AcceptAnswer {
        user: UserView::from_row(&user),
        tokens,
    }))
}

/// Members of the caller's organisation (admins and teachers), oldest first.
#[utoipa::path(get, path = "/v1/members", tag = "organisation", params(PageQuery),
    responses((status = 200, body = List<UserView>), (status = 403)), security(("bearer" = [])))]
pub async fn list_members(
    state: web::Data<AppState>,
    user: AuthUser,
    q: web::Query<PageQuery>,
) -> ApiResult<HttpResponse> {
    let page = q.parse()?;
    Ok(HttpResponse::Ok().json(state.orgs.list_members(&user, page).await?))
}

#[derive(Deserialize, ToSchema)]
pub struct RoleBody {
    role: String,
}

/// Changes a member's role (admins). The last admin cannot be demoted
/// (`409 last_admin`). The member's current tokens stop working.
#[utoipa::path(patch, path = "/v1/members/{user_id}", tag = "organisation", request_body = RoleBody,
    params(("user_id" = String, Path, description = "The member's id")),
    responses((status = 200, body = UserView), (status = 404), (status = 409, description = "`last_admin`")),
    security(("bearer" = [])))]
pub async fn change_role(
    state: web::Data<AppState>,
    req: HttpRequest,
    user: AuthUser,
    path: web::Path<UserId>,
    body: web::Json<RoleBody>,
) -> ApiResult<HttpResponse> {
    user.require_admin()?;
    let role = Role::parse(&body.role)?;
    let row = state
        .orgs
        .change_role(&user, &ip(&req, &state), path.into_inner(), role)
        .await?;
    Ok(HttpResponse::Ok().json(UserView::from_row(&row)))
}

#[derive(Deserialize, utoipa::IntoParams)]
pub struct RemoveQuery {
    /// Also erase the member's analytics events (their chat history goes
    /// with the account either way); daily totals stay, without them.
    #[serde(default)]
    erase: bool,
}

/// Removes a member (admins); their tokens stop working at once.
#[utoipa::path(delete, path = "/v1/members/{user_id}", tag = "organisation",
    params(("user_id" = String, Path, description = "The member's id"), RemoveQuery),
    responses((status = 204), (status = 404), (status = 409, description = "`last_admin`")),
    security(("bearer" = [])))]
pub async fn remove_member(
    state: web::Data<AppState>,
    req: HttpRequest,
    user: AuthUser,
    path: web::Path<UserId>,
    q: web::Query<RemoveQuery>,
) -> ApiResult<HttpResponse> {
    state
        .orgs
        .remove_member(&user, &ip(&req, &state), path.into_inner(), q.erase)
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// The organisation's audit log, newest first (admins).
#[utoipa::path(get, path = "/v1/audit", tag = "organisation", params(PageQuery),
    responses((status = 200, body = List<AuditView>), (status = 403)), security(("bearer" = [])))]
pub async fn list_audit(
    state: web::Data<AppState>,
    user: AuthUser,
    q: web::Query<PageQuery>,
) -> ApiResult<HttpResponse> {
    user.require_admin()?;
    let page = q.parse()?;
    Ok(HttpResponse::Ok().json(audit::list(&state.db, user.org_id, page).await?))
}
