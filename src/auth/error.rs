//! What can go wrong in identity, with no HTTP in it: `src/error.rs` gives
//! each variant its status and stable `code`.

use std::time::Duration;

use crate::db::StoreError;
use crate::validation::Invalid;

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error(transparent)]
    Invalid(#[from] Invalid),
    /// Unknown email or wrong password: one answer for both.
    #[error("the email or password is not right")]
    InvalidCredentials,
    #[error("the account is locked")]
    Locked { retry_after: Duration },
    #[error("an account with this email address already exists")]
    EmailTaken,
    /// A one-time link (verification, reset, invitation) that is unknown,
    /// used or expired.
    #[error("the link is invalid, used or expired")]
    InvalidLink,
    /// A refresh token that is unknown, used, revoked or expired.
    #[error("the refresh token is not valid")]
    InvalidRefresh,
    /// No valid access token (or its user is gone).
    #[error("not authenticated")]
    Unauthenticated,
    #[error(transparent)]
    Forbidden(#[from] Forbidden),
    #[error("too many requests")]
    RateLimited { retry_after: Duration },
    /// Every password-hashing slot stayed busy past the queue wait.
    #[error("password hashing is saturated")]
    Busy { retry_after: Duration },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// The caller's role does not allow the action. Every domain error wraps it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("forbidden: {0}")]
pub struct Forbidden(pub &'static str);

impl Forbidden {
    pub const ROLE: Forbidden = Forbidden("Your role does not allow this action.");
}
