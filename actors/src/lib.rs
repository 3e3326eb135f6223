//! `bwenge-actors`: the actors of Bwenge that need nothing from the server
//! around them, the registry that supervises per-entity actors, their
//! messages, and the ports (traits) they and the server call.
//!
//! * [`registry`]: [`Registry`](registry::Registry), the keyed registry every
//!   per-entity actor is reached through (started on first [`Lookup`](registry::Lookup),
//!   restarted with backoff after a panic, stopped when idle), and its
//!   messages.
//! * [`persona`]: the [`Persona`](persona::Persona) actor, one per persona,
//!   and the [`PersonaPort`](persona::PersonaPort) it loads its configuration
//!   and answers through.
//! * [`ingest`]: the [`IngestScheduler`](ingest::IngestScheduler) (bounded
//!   concurrency, queue, retries) and one [`IngestJob`](ingest::IngestJob)
//!   actor per upload, running the [`IngestWork`](ingest::IngestWork) port.
//! * [`messages`]: the persona and ingest families' messages, one file per
//!   family.
//! * [`ports`]: what several nodes share — [`Bus`](ports::Bus)
//!   (publish/subscribe), [`Cache`](ports::Cache),
//!   [`RateLimiter`](ports::RateLimiter) — and [`PortError`](ports::PortError).
//!
//! Not here: the chat session and WebSocket connection actors and the chat
//! hub are in the `bwenge` server crate (which reaches chat sessions through
//! a [`Registry`](registry::Registry)), as are the adapters behind every port
//! (in-process and Redis). This crate knows no database, HTTP framework,
//! Redis or search engine.

pub mod ingest;
pub mod messages;
pub mod persona;
pub mod ports;
pub mod registry;
