//! The live classroom (`GET /v1/classroom/ws`): a teacher or admin sees
//! who is online in chat and every question and answer of their
//! organisation (or of one persona) as it happens, on whichever node it
//! happens. Chat reports through its activity port (adapter in
//! `crate::adapters`); the [`service`] publishes frames on the bus and
//! relays them to the watchers of each node ([`ws`], over the one file
//! that knows the WebSocket library, [`transport`]). Frames: [`frames`].
//!
//! Refusals happen before the upgrade, as chat's do: no or a bad token,
//! `401 unauthorized`; a student, `403 forbidden`; a `persona_id` that is
//! not the organisation's, `404 not_found` (all problem+json).

pub mod error;
pub mod frames;
pub mod routes;
pub mod service;
mod transport;
mod ws;

#[cfg(test)]
mod tests;

use actix_web::http::Method;
use actix_web::web;

pub use error::ClassroomError;
pub use service::{ClassroomConfig, ClassroomService, Directory, Observed};

use crate::http::RouteDef;

pub fn routes() -> Vec<RouteDef> {
    vec![RouteDef::new(Method::GET, "/v1/classroom/ws", || {
        web::get().to(routes::classroom_ws)
    })]
}
