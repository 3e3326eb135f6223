//! HTTP routes of identity: thin handlers over [`super::service`].

use actix_web::http::Method;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use std::future::Future;
use std::pin::Pin;

use actix_web::{FromRequest, dev::Payload};

use super::AuthUser;
use super::service::{OrgView, Registration, Tokens, UserView};
use crate::error::{ApiError, ApiResult};
use crate::http::RouteDef;
use crate::state::AppState;

pub fn routes() -> Vec<RouteDef> {
    vec![
        RouteDef::new(Method::POST, "/v1/auth/register", || {
            web::post().to(register)
        }),
        RouteDef::new(Method::POST, "/v1/auth/login", || web::post().to(login)),
        RouteDef::new(Method::POST, "/v1/auth/refresh", || web::post().to(refresh)),
        RouteDef::new(Method::POST, "/v1/auth/logout", || web::post().to(logout)),
        RouteDef::new(Method::GET, "/v1/auth/me", || web::get().to(me)),
        RouteDef::new(Method::PATCH, "/v1/auth/me", || web::patch().to(update_me)),
        RouteDef::new(Method::POST, "/v1/auth/verify-email", || {
            web::post().to(verify_email)
        }),
        RouteDef::new(Method::POST, "/v1/auth/verify-email/resend", || {
            web::post().to(resend_verification)
        }),
        RouteDef::new(Method::POST, "/v1/auth/password-reset", || {
            web::post().to(password_reset)
        }),
        RouteDef::new(Method::POST, "/v1/auth/password-reset/confirm", || {
            web::post().to(password_reset_confirm)
        }),
    ]
}

pub fn ip(req: &HttpRequest, state: &AppState) -> String {
    client_ip(req, state.settings.http.trust_forwarded_headers)
}

#[derive(Deserialize, ToSchema)]
pub struct RegisterBody {
    organization_name: String,
    full_name: String,
    email: String,
    password: String,
}

#[derive(Serialize, ToSchema)]
pub struct RegisterAnswer {
    user: UserView,
    organization: OrgView,
    tokens: Tokens,
}

/// Creates an organisation and its first admin.
#[utoipa::path(post, path = "/v1/auth/register", tag = "identity", request_body = RegisterBody,
    responses(
        (status = 201, body = RegisterAnswer),
        (status = 409, description = "`email_taken`", body = crate::ops::openapi::ProblemSchema),
        (status = 422, description = "`validation_failed` naming the field", body = crate::ops::openapi::ProblemSchema)))]
pub async fn register(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<RegisterBody>,
) -> ApiResult<HttpResponse> {
    let body = body.into_inner();
    let (user, org, tokens) = state
        .auth
        .register(
            &ip(&req, &state),
            Registration {
                organization_name: body.organization_name,
                full_name: body.full_name,
                email: body.email,
                password: body.password,
            },
        )
        .await?;
    Ok(HttpResponse::Created().json(RegisterAnswer {
        user: UserView::from_row(&user),
        organization: org.into(),
        tokens,
    }))
}

#[derive(Deserialize, ToSchema)]
pub struct LoginBody {
    email: String,
    password: String,
}

#[derive(Serialize, ToSchema)]
pub struct LoginAnswer {
    user: UserView,
    tokens: Tokens,
}

/// Signs in. Five consecutive failures lock the account for 15 minutes.
#[utoipa::path(post, path = "/v1/auth/login", tag = "identity", request_body = LoginBody,
    responses(
        (status = 200, body = LoginAnswer),
        (status = 401, description = "`invalid_credentials` (unknown email or wrong password alike)"),
        (status = 423, description = "`account_locked`, with `Retry-After`"),
        (status = 429, description = "`rate_limited`, with `Retry-After`"),
        (status = 503, description = "Too many sign-ins at once; `Retry-After`")))]
pub async fn login(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<LoginBody>,
) -> ApiResult<HttpResponse> {
    let (user, tokens) = state
        .auth
        .login(&ip(&req, &state), &body.email, &body.password)
        .await?;
    Ok(HttpResponse::Ok().json(LoginAnswer {
        user: UserView::from_row(&user),
        tokens,
    }))
}

#[derive(Deserialize, ToSchema)]
pub struct RefreshBody {
    refresh_token: String,
}

#[derive(Serialize, ToSchema)]
pub struct RefreshAnswer {
    tokens: Tokens,
}

/// Rotates a refresh token: the old one stops working; presenting a used
/// one revokes its whole family (`401`).
#[utoipa::path(post, path = "/v1/auth/refresh", tag = "identity", request_body = RefreshBody,
    responses((status = 200, body = RefreshAnswer), (status = 401, description = "`unauthorized`")))]
pub async fn refresh(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<RefreshBody>,
) -> ApiResult<HttpResponse> {
    let tokens = state
        .auth
        .refresh(&ip(&req, &state), &body.refresh_token)
        .await?;
    Ok(HttpResponse::Ok().json(RefreshAnswer { tokens }))
}

/// Ends the session of this refresh token; the user's access tokens stop
/// working at once. Answers 204 even for an unknown token.
#[utoipa::path(post, path = "/v1/auth/logout", tag = "identity", request_body = RefreshBody,
    responses((status = 204)))]
pub async fn logout(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<RefreshBody>,
) -> ApiResult<HttpResponse> {
    state
        .auth
        .logout(&ip(&req, &state), &body.refresh_token)
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// The caller.
#[utoipa::path(get, path = "/v1/auth/me", tag = "identity",
    responses((status = 200, body = UserView), (status = 401, description = "`unauthorized`")),
    security(("bearer" = [])))]
pub async fn me(state: web::Data<AppState>, user: AuthUser) -> ApiResult<HttpResponse> {
    let row = state.auth.me(&user).await?;
    Ok(HttpResponse::Ok().json(UserView::from_row(&row)))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MeBody {
    /// Receive the weekly analytics digest by mail (teachers and admins;
    /// a student turning it on gets `403`).
    weekly_digest: Option<bool>,
}

/// Changes the caller's own settings.
#[utoipa::path(patch, path = "/v1/auth/me", tag = "identity", request_body = MeBody,
    responses((status = 200, body = UserView), (status = 401), (status = 403, description = "a student asking for the digest")),
    security(("bearer" = [])))]
pub async fn update_me(
    state: web::Data<AppState>,
    user: AuthUser,
    body: web::Json<MeBody>,
) -> ApiResult<HttpResponse> {
    let row = state.auth.update_me(&user, body.weekly_digest).await?;
    Ok(HttpResponse::Ok().json(UserView::from_row(&row)))
}

#[derive(Deserialize, ToSchema)]
pub struct TokenBody {
    token: String,
}

/// Confirms an email address with the token from the mail.
#[utoipa::path(post, path = "/v1/auth/verify-email", tag = "identity", request_body = TokenBody,
    responses((status = 204), (status = 400, description = "`invalid_token`: unknown, used or expired")))]
pub async fn verify_email(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<TokenBody>,
) -> ApiResult<HttpResponse> {
    state
        .auth
        .verify_email(&ip(&req, &state), &body.token)
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Sends the verification mail again (nothing when already verified).
#[utoipa::path(post, path = "/v1/auth/verify-email/resend", tag = "identity",
    responses((status = 202)), security(("bearer" = [])))]
pub async fn resend_verification(
    state: web::Data<AppState>,
    req: HttpRequest,
    user: AuthUser,
) -> ApiResult<HttpResponse> {
    state
        .auth
        .resend_verification(&ip(&req, &state), user.user_id, user.org_id)
        .await?;
    Ok(HttpResponse::Accepted().finish())
}

#[derive(Deserialize, ToSchema)]
pub struct EmailBody {
    email: String,
}

/// Mails a reset link if the address belongs to an account; answers 202
/// either way.
#[utoipa::path(post, path = "/v1/auth/password-reset", tag = "identity", request_body = EmailBody,
    responses((status = 202)))]
pub async fn password_reset(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<EmailBody>,
) -> ApiResult<HttpResponse> {
    state
        .auth
        .request_password_reset(&ip(&req, &state), &body.email)
        .await?;
    Ok(HttpResponse::Accepted().finish())
}

#[derive(Deserialize, ToSchema)]
pub struct ResetConfirmBody {
    token: String,
    new_password: String,
}

/// Sets a new password with the mailed token (single use, 30 minutes);
/// every session of the user ends.
#[utoipa::path(post, path = "/v1/auth/password-reset/confirm", tag = "identity", request_body = ResetConfirmBody,
    responses((status = 204), (status = 400, description = "`invalid_token`"), (status = 422, description = "`validation_failed` (`new_password`)")))]
pub async fn password_reset_confirm(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<ResetConfirmBody>,
) -> ApiResult<HttpResponse> {
    state
        .auth
        .confirm_password_reset(&ip(&req, &state), &body.token, &body.new_password)
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// The bearer token of a request: the `Authorization` header, else the
/// `access_token` query parameter (browsers cannot set headers on a
/// WebSocket).
pub fn bearer_token(req: &HttpRequest) -> Option<String> {
    if let Some(value) = req.headers().get(actix_web::http::header::AUTHORIZATION) {
        let value = value.to_str().ok()?;
        let (scheme, token) = value.split_once(' ')?;
        return scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| token.trim().to_owned());
    }
    web::Query::<std::collections::HashMap<String, String>>::from_query(req.query_string())
        .ok()
        .and_then(|q| q.get("access_token").cloned())
}

/// Resolves a token to the caller, or `None` when it is not valid now.
pub async fn authenticate(state: &AppState, token: &str) -> Result<Option<AuthUser>, ApiError> {
    Ok(state.auth.authenticate(token).await?)
}

impl FromRequest for AuthUser {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let state = req.app_data::<web::Data<AppState>>().cloned();
        let token = bearer_token(req);
        Box::pin(async move {
            let state = state.ok_or_else(|| {
                ApiError::internal(anyhow::anyhow!("application state is not configured"))
            })?;
            let token = token.ok_or_else(ApiError::unauthorized)?;
            let user = authenticate(&state, &token)
                .await?
                .ok_or_else(ApiError::unauthorized)?;
            let span = tracing::Span::current();
            span.record("org_id", tracing::field::display(user.org_id));
            span.record("user_id", tracing::field::display(user.user_id));
            Ok(user)
        })
    }
}

/// The client's IP for rate limits and the audit log: the socket peer, or
/// the forwarded address when `http.trust_forwarded_headers` is on.
pub fn client_ip(req: &HttpRequest, trust_forwarded: bool) -> String {
    if trust_forwarded && let Some(ip) = req.connection_info().realip_remote_addr() {
        return ip.to_owned();
    }
    req.peer_addr()
        .map(|a| a.ip().to_string())
        .unwrap_or_else(|| "unknown".to_owned())
}
