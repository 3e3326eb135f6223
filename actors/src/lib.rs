//! `bwenge-actors`: the registries and actors of Bwenge (chat sessions,
//! personas, ingest jobs, WebSocket connections), their messages, and the
//! ports (traits) they call. The adapters behind the ports live in the
//! `bwenge` crate; this crate orchestrates and knows no database, HTTP
//! framework (beyond the WebSocket actor) or search engine.

pub mod ingest;
pub mod messages;
pub mod persona;
pub mod ports;
pub mod registry;
