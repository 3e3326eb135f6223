//! What can go wrong with personas and their answers, with no HTTP in it.

use std::time::Duration;

use crate::auth::Forbidden;
use crate::db::StoreError;
use crate::validation::Invalid;

#[derive(Debug, thiserror::Error)]
pub enum PersonaError {
    #[error(transparent)]
    Invalid(#[from] Invalid),
    #[error(transparent)]
    Forbidden(#[from] Forbidden),
    #[error("no such persona")]
    NotFound,
    /// Every language model of the chain failed.
    #[error("no language model could answer")]
    LlmUnavailable { retry_after: Duration },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}
