//! Bwenge: a real-time AI tutoring engine for schools, one binary built as an
//! actix actor system. This crate holds the server: configuration, HTTP
//! routes (one module per domain) and the adapters behind the ports of
//! `bwenge-actors` (storage, bus, cache, rate limits).

pub mod adapters;
pub mod analytics;
#[cfg(test)]
mod architecture;
pub mod audit;
pub mod auth;
pub mod avatars;
pub mod billing;
pub mod chat;
pub mod classroom;
pub mod clock;
pub mod config;
pub mod db;
pub mod error;
pub mod http;
pub mod ids;
pub mod infra;
pub mod knowledge;
pub mod llm;
pub mod mail;
pub mod metrics;
pub mod ops;
pub mod orgs;
pub mod pagination;
pub mod personas;
pub mod startup;
pub mod state;
pub mod storage;
pub mod telemetry;
#[cfg(test)]
mod testkit;
pub mod validation;
pub mod webapp;
pub mod work;

pub use startup::Application;
