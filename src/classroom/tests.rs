//! The classroom service on its own (no HTTP).
