//! Black-box tests: each starts the real app on port 0 (through
//! `Application::build`, or the built binary where the process itself is
//! under test) and speaks HTTP to it. Every scenario runs on SQLite; with
//! `BWENGE_TEST_DATABASE_URL` it also runs on PostgreSQL in a fresh database,
//! and with `BWENGE_TEST_REDIS_URL` the Redis variants run under a random key
//! prefix. `BWENGE_TEST_REQUIRE_SERVICES=1` turns a missing service into a
//! failure instead of a skip.
#![allow(clippy::unwrap_used)]

mod analytics;
mod auth;
mod avatars;
mod billing;
mod browser;
mod chat;
mod classroom;
mod cli;
mod errors;
mod helpers;
mod hostile;
mod knowledge;
mod knowledge_file;
mod media;
mod ops;
mod orgs;
mod personas;
mod redis_bus;
mod schema;
mod search_lifecycle;
mod smtp;
mod tenancy;
mod two_nodes;
mod web;
