//! What can go wrong in billing, with no HTTP in it. Its status and stable
//! `code` come from `crate::error`.

use crate::auth::Forbidden;
use crate::db::StoreError;
use crate::validation::Invalid;

#[derive(Debug, thiserror::Error)]
pub enum BillingError {
    #[error(transparent)]
    Invalid(#[from] Invalid),
    #[error(transparent)]
    Forbidden(#[from] Forbidden),
    #[error("no such payment")]
    NotFound,
    /// An allowance is used up; the sentence names it and when it resets.
    #[error("quota exceeded: {0}")]
    QuotaExceeded(String),
    /// The request conflicts with the subscription's state (say, paying
    /// for the plan already running).
    #[error("conflict: {0}")]
    Conflict(String),
    /// The payment method is not enabled on this server.
    #[error("payment method unavailable: {0}")]
    MethodUnavailable(String),
    /// The provider did not answer or refused the request.
    #[error("payment provider failed")]
    Provider(#[source] anyhow::Error),
    /// A webhook whose signature or body does not hold.
    #[error("webhook refused: {0}")]
    BadWebhook(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}
