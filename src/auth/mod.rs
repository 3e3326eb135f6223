//! Identity: accounts, passwords, access and refresh tokens, email
//! verification, password reset, lockout ([`service::AuthService`]), and
//! the [`AuthUser`] every protected route and socket acts as (extracted
//! from the request in [`routes`]). Auth is the bottom domain: it imports
//! no other.

pub mod error;
pub mod model;
pub mod password;
pub mod routes;
pub mod service;
pub mod store;
pub mod tokens;

#[cfg(test)]
mod tests;

use crate::ids::{OrgId, UserId};
use model::Role;

pub use error::{AuthError, Forbidden};
pub use routes::routes;
pub use service::{AuthService, NoSignIns, Revocations, SignIns};

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
    pub fn require(&self, roles: &[Role]) -> Result<(), Forbidden> {
        if roles.contains(&self.role) {
            Ok(())
        } else {
            Err(Forbidden::ROLE)
        }
    }

    pub fn require_staff(&self) -> Result<(), Forbidden> {
        self.require(&[Role::Admin, Role::Teacher])
    }

    pub fn require_admin(&self) -> Result<(), Forbidden> {
        self.require(&[Role::Admin])
    }
}
