//! Personas: the tutors teachers configure (subject, language, safety,
//! knowledge scope, avatar; [`model`], [`service::PersonaCatalog`]), and
//! answering through them ([`answer`]: safety, retrieval, grounding, the
//! model, citations). Each persona is a [`bwenge_actors::persona::Persona`]
//! actor in the persona registry; a change here (or announced by another
//! node on [`PERSONA_TOPIC`]) makes the actor reload. Personas import
//! knowledge (retrieval) and avatars (a persona's model); neither imports
//! personas back.

pub mod answer;
pub mod citations;
pub mod error;
pub mod grounding;
pub mod model;
pub mod routes;
pub mod safety;
pub mod service;
pub mod store;

#[cfg(test)]
mod tests;

use actix::Addr;
use bwenge_actors::persona::{Persona, PersonaKey};
use bwenge_actors::registry::{Registry, Remove};

pub use answer::{Answer, Delta, PersonaConfig, PersonaService, Question};
pub use error::PersonaError;
pub use routes::routes;
pub use service::{PersonaCatalog, ask_with, check_question};

/// Bus topic on which a node announces that a persona changed (payload:
/// [`crate::infra::bus::messages::PersonaChanged`]); other nodes drop their
/// loaded copy.
pub const PERSONA_TOPIC: &str = "persona.changed";

/// The persona registry's address.
pub type PersonaRegistry = Addr<Registry<PersonaKey, Persona<PersonaService>>>;

/// Reacts to another node's announcement (see [`PERSONA_TOPIC`]).
pub fn reload_on_announcement(personas: &PersonaRegistry, me: &str, payload: &[u8]) {
    if let Ok(msg) = serde_json::from_slice::<crate::infra::bus::messages::PersonaChanged>(payload)
        && msg.node != me
    {
        personas.do_send(Remove(msg.persona_id.0));
    }
}
