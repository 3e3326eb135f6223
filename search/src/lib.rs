//! Knowledge search for Bwenge: text embedders and a per-organisation hybrid
//! index (Tantivy BM25 + an HNSW vector graph, fused by reciprocal rank).
//!
//! * [`embed`]: the [`Embedder`] trait and its three implementations —
//!   [`LocalEmbedder`] (all-MiniLM-L6-v2 in-process), [`HttpEmbedder`]
//!   (OpenAI-compatible service) and [`HashingEmbedder`] (fallback).
//! * [`OrgIndex`]: one organisation's index and its single writer;
//!   [`OrgSearcher`]: concurrent read access to it.
//!
//! All index work and [`LocalEmbedder::embed_blocking`] are synchronous CPU
//! work: the server runs them in `tokio::task::spawn_blocking`.
//! ([`Embedder::embed`] is async and already does that for the local model.)

pub mod embed;
mod fusion;
mod index;
mod vectors;

pub use vectors::{EXACT_SCAN_MAX, HNSW_EF_CONSTRUCTION, HNSW_EF_SEARCH, HNSW_M};

pub use embed::{
    EmbedError, Embedder, HashingEmbedder, HttpEmbedder, HttpEmbedderConfig, LocalEmbedder,
    LocalEmbedderConfig, Remembering,
};
pub use fusion::{RRF_K, reciprocal_rank_fusion};
pub use index::{
    DEFAULT_REBUILD_THRESHOLD, Hit, HybridTimings, IndexError, IndexItem, MAX_QUERY_TERMS,
    OpenState, OrgIndex, OrgSearcher, QUERY_STOP_WORDS, ReindexReason, TermStats, analyze_query,
};
