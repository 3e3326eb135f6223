//! Messages of the actor families, one file per family.

pub mod ingest;
pub mod persona;
