//! What can go wrong with analytics, with no HTTP in it.

use crate::auth::Forbidden;
use crate::db::StoreError;
use crate::validation::Invalid;

#[derive(Debug, thiserror::Error)]
pub enum AnalyticsError {
    /// A bad date, filter, report name or client event.
    #[error(transparent)]
    Invalid(#[from] Invalid),
    /// A student reading organisation-wide reports or another's page.
    #[error(transparent)]
    Forbidden(#[from] Forbidden),
    /// No such member in the caller's organisation.
    #[error("no such member")]
    NotFound,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl AnalyticsError {
    pub fn invalid(field: &str, detail: impl Into<String>) -> Self {
        Self::Invalid(Invalid::new(field, detail))
    }
}
