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
    client_ip(req, &state.settings.http.trusted_proxies())
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

/// Signs in. `auth.lockout_threshold` (5) consecutive failures lock the
/// address for `auth.lockout_minutes` (15): at most that many wrong
/// passwords are ever checked per lock window, however many arrive at once,
/// and a right one is refused while locked. An address with no account is
/// counted and locked exactly alike (same answers, same `Retry-After`, a
/// dummy hash checked for the same cost), so no answer tells whether an
/// address has an account.
#[utoipa::path(post, path = "/v1/auth/login", tag = "identity", request_body = LoginBody,
    responses(
        (status = 200, body = LoginAnswer),
        (status = 401, description = "`invalid_credentials`: a wrong password or an address with no account, alike", body = crate::ops::openapi::ProblemSchema),
        (status = 423, description = "`account_locked`, with `Retry-After` (seconds until the lock ends): after repeated failures, for an address with no account as for one with", body = crate::ops::openapi::ProblemSchema),
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

/// Rotates a refresh token: the old one stops working. Presenting a used
/// one (a stolen copy, or a race with the rightful use) revokes its whole
/// family, including a token a racing rotation has just issued, ends every
/// access token of the user and closes their WebSockets with 4401 (`401`).
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
/// Counts against the mail budgets of the user and of their organisation.
#[utoipa::path(post, path = "/v1/auth/verify-email/resend", tag = "identity",
    responses((status = 202), (status = 429, description = "`rate_limited`, with `Retry-After`: `auth.mails_per_user_per_hour` or `auth.mails_per_org_per_hour` spent", body = crate::ops::openapi::ProblemSchema)),
    security(("bearer" = [])))]
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
/// either way (also when the account's or its organisation's mail budget
/// is spent: then nothing is sent).
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

/// The token of an `Authorization: Bearer …` header (never the query).
pub fn bearer_header(req: &HttpRequest) -> Option<String> {
    let value = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_owned())
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

/// The client's IP for rate limits and the audit log. From a trusted proxy
/// (`http.trusted_proxies`), `X-Forwarded-For` is walked from the right
/// (the entries each proxy appended) past every trusted hop; the first
/// address that is not one is the client (an entry that is no address
/// ends the walk there: what lies left of it is the client's to forge).
/// Otherwise the headers are ignored: the socket's peer is the client.
pub fn client_ip(req: &HttpRequest, trusted: &[crate::config::Cidr]) -> String {
    let Some(peer) = req.peer_addr().map(|a| a.ip()) else {
        return "unknown".to_owned();
    };
    forwarded_client(peer, trusted, req.headers().get_all("x-forwarded-for")).to_string()
}

/// [`client_ip`] over the peer and the `X-Forwarded-For` header values.
fn forwarded_client<'a>(
    peer: std::net::IpAddr,
    trusted: &[crate::config::Cidr],
    headers: impl Iterator<Item = &'a actix_web::http::header::HeaderValue>,
) -> std::net::IpAddr {
    let is_trusted = |ip: std::net::IpAddr| trusted.iter().any(|c| c.contains(ip));
    if !is_trusted(peer) {
        return peer;
    }
    let hops: Vec<&str> = headers
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .collect();
    let mut client = peer;
    for hop in hops.iter().rev() {
        let Some(ip) = parse_hop(hop) else {
            break;
        };
        client = ip;
        if !is_trusted(ip) {
            break;
        }
    }
    client
}

/// One `X-Forwarded-For` entry: an address, perhaps with a port
/// (`192.0.2.1:4711`, `[2001:db8::1]:4711`).
fn parse_hop(hop: &str) -> Option<std::net::IpAddr> {
    if let Ok(ip) = hop.parse() {
        return Some(ip);
    }
    if let Ok(sock) = hop.parse::<std::net::SocketAddr>() {
        return Some(sock.ip());
    }
    hop.trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::config::Cidr;
    use actix_web::http::header::HeaderValue;

    fn walk(peer: &str, trusted: &[&str], xff: &[&str]) -> String {
        let trusted: Vec<Cidr> = trusted.iter().map(|c| Cidr::parse(c).unwrap()).collect();
        let values: Vec<HeaderValue> = xff
            .iter()
            .map(|v| HeaderValue::from_str(v).unwrap())
            .collect();
        forwarded_client(peer.parse().unwrap(), &trusted, values.iter()).to_string()
    }

    #[test]
    fn forwarded_addresses_are_walked_from_the_right_past_trusted_hops() {
        // No trusted proxies: the header is ignored.
        assert_eq!(walk("203.0.113.9", &[], &["1.2.3.4"]), "203.0.113.9");
        // A peer that is not a trusted proxy: ignored too.
        assert_eq!(
            walk("203.0.113.9", &["10.0.0.0/8"], &["1.2.3.4"]),
            "203.0.113.9"
        );
        // One trusted proxy: the address it appended.
        assert_eq!(
            walk("10.0.0.2", &["10.0.0.0/8"], &["198.51.100.7"]),
            "198.51.100.7"
        );
        // A forged left part is skipped: the rightmost untrusted hop wins.
        assert_eq!(
            walk(
                "10.0.0.2",
                &["10.0.0.0/8"],
                &["6.6.6.6, 198.51.100.7, 10.0.0.5"]
            ),
            "198.51.100.7"
        );
        // Across several header lines, with ports.
        assert_eq!(
            walk(
                "10.0.0.2",
                &["10.0.0.0/8", "::1"],
                &["6.6.6.6", "[2001:db8::1]:4711, 10.9.9.9:80"]
            ),
            "2001:db8::1"
        );
        // Garbage ends the walk at the last good hop.
        assert_eq!(
            walk("10.0.0.2", &["10.0.0.0/8"], &["1.1.1.1, junk, 10.0.0.3"]),
            "10.0.0.3"
        );
        // Everything trusted: the leftmost.
        assert_eq!(
            walk("10.0.0.2", &["10.0.0.0/8"], &["10.0.0.4, 10.0.0.3"]),
            "10.0.0.4"
        );
        // No header from a trusted proxy: the proxy.
        assert_eq!(walk("10.0.0.2", &["10.0.0.0/8"], &[]), "10.0.0.2");
    }
}
