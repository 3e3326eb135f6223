//! Organisations: members (list, change role, remove), invitations, and the
//! audit log. Every query is scoped to the caller's organisation; a member of
//! another organisation is answered `404`, as one that does not exist.

pub mod routes;
pub mod service;
pub mod store;

#[cfg(test)]
mod tests;

pub use routes::routes;
pub use service::{MemberErasure, MemberQuota, NoErasure, OrgError, OrgService};
