//! Identity: accounts, passwords, access and refresh tokens, email
//! verification, password reset, lockout — and the [`AuthUser`] extractor
//! every protected route uses.

pub mod model;
pub mod password;
pub mod routes;
pub mod service;
pub mod store;
pub mod tokens;

use std::future::Future;
use std::pin::Pin;

use actix_web::{FromRequest, HttpRequest, dev::Payload, web};

use crate::error::ApiError;
use crate::ids::{OrgId, UserId};
use crate::state::AppState;
use model::Role;

pub use routes::routes;

/// The authenticated caller. Built from a bearer token (or, for browsers'
/// WebSockets, `?access_token=`), checked against the user's current token
/// version and role in the database on every request, so logout, removal,
/// role changes and password resets take effect at once.
#[derive(Debug, Clone, Copy)]
pub struct AuthUser {
    pub user_id: UserId,
    pub org_id: OrgId,
    pub role: Role,
}

impl AuthUser {
    /// Refuses with `403 forbidden` unless the caller has one of `roles`.
    pub fn require(&self, roles: &[Role]) -> Result<(), ApiError> {
        if roles.contains(&self.role) {
            Ok(())
        } else {
            Err(ApiError::forbidden())
        }
    }

    pub fn require_staff(&self) -> Result<(), ApiError> {
        self.require(&[Role::Admin, Role::Teacher])
    }

    pub fn require_admin(&self) -> Result<(), ApiError> {
        self.require(&[Role::Admin])
    }
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
    let Some(claims) = state.auth.keys.verify(token) else {
        return Ok(None);
    };
    let Some(current) = store::auth_state(&state.db, claims.sub).await? else {
        return Ok(None);
    };
    if current.organization_id != claims.org || current.token_version != claims.ver {
        return Ok(None);
    }
    let role = Role::parse(&current.role).map_err(|_| {
        ApiError::internal(anyhow::anyhow!("user {} has an unknown role", claims.sub))
    })?;
    Ok(Some(AuthUser {
        user_id: claims.sub,
        org_id: claims.org,
        role,
    }))
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
