//! Knowledge: teachers' sources (uploads and their ingest, see [`ingest`]),
//! and hybrid search over an organisation's passages (see [`index`]).
//! [`service::KnowledgeService`] holds the use cases; [`routes`] are the
//! thin HTTP handlers. Knowledge imports no other domain but auth (who is
//! asking); a persona's scope comes through the [`service::PersonaScopes`]
//! port.

pub mod embedders;
pub mod file;
pub mod index;
pub mod ingest;
pub mod routes;
pub mod service;
pub mod store;
pub mod transcribe;

#[cfg(test)]
mod tests;

use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use crate::ids::{ChunkId, SourceId};
use store::{SourceRow, SourceStatus};

pub use routes::routes;
pub use service::{KnowledgeError, KnowledgeService, PersonaScopes, StorageQuota, search_passages};

/// Bus topic on which a node announces that an organisation's chunks
/// changed (payload: [`crate::infra::bus::messages::IndexChanged`]).
pub const INDEX_TOPIC: &str = "index.changed";

/// `source` as API.md defines it.
#[derive(Debug, Serialize, ToSchema)]
pub struct SourceView {
    pub id: SourceId,
    pub title: String,
    pub filename: String,
    pub media_type: String,
    pub size_bytes: i64,
    /// `queued`, `processing`, `ready` or `failed`.
    pub status: SourceStatus,
    /// `queued`, `extracting`, `chunking`, `embedding`, `indexing`, `ready`.
    pub stage: String,
    /// From 0 to 1.
    pub progress: f64,
    pub page_count: Option<i64>,
    pub chunk_count: Option<i64>,
    /// Why processing failed, for a person to read.
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<SourceRow> for SourceView {
    fn from(r: SourceRow) -> Self {
        Self {
            id: r.id,
            title: r.title,
            filename: r.filename,
            media_type: r.media_type,
            size_bytes: r.size_bytes,
            status: r.status,
            stage: r.stage,
            progress: r.progress,
            page_count: r.page_count,
            chunk_count: r.chunk_count,
            error: r.error,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SearchHit {
    pub chunk_id: ChunkId,
    pub source_id: SourceId,
    pub source_title: String,
    pub page: i64,
    pub text: String,
    /// The rank score of the chosen mode (RRF for hybrid, BM25, or cosine);
    /// higher is better.
    pub score: f32,
    /// Cosine similarity (-1..1) of the query's and the passage's vectors,
    /// when a real embedding model is configured.
    pub similarity: Option<f32>,
}

/// How `/v1/search` ranks: both halves fused (the default, as personas
/// search), or one of them alone (to compare them).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SearchMode {
    #[default]
    Hybrid,
    Bm25,
    Dense,
}
