//! The live classroom's errors (no HTTP here: `crate::error` maps them).

use crate::db::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ClassroomError {
    /// Students cannot watch the classroom.
    #[error("only teachers and admins can watch the classroom")]
    StaffOnly,
    /// The persona asked for is not one of the organisation's.
    #[error("persona not found")]
    PersonaNotFound,
    /// The bus or the presence map cannot be reached.
    #[error("the live classroom is unavailable: {0}")]
    Unavailable(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}
