//! A request value that failed its parse at the edge: the field it came
//! from and a sentence the person who typed it can act on. Every domain
//! error carries one as its `Invalid` variant; `src/error.rs` answers it as
//! `422 validation_failed` naming the field.

/// A value refused by a `parse`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {detail}")]
pub struct Invalid {
    pub field: String,
    pub detail: String,
}

impl Invalid {
    pub fn new(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            detail: detail.into(),
        }
    }
}
