//! The read side of an [`OrgIndex`](super::OrgIndex): the state its owner
//! shares with readers ([`Shared`]: the BM25 reader and the vector store) and
//! [`OrgSearcher`], the cloneable handle that searches it — BM25, vectors and
//! their reciprocal-rank fusion. Nothing here mutates the index; the vector
//! store is only read-locked.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::RwLock;
use uuid::Uuid;

use super::bm25::Bm25;
use super::query::TermStats;
use super::{Hit, IndexError};
use crate::fusion::reciprocal_rank_fusion;
use crate::vectors::{Slot, VectorStore};

/// What an [`OrgIndex`](super::OrgIndex) shares with its searchers.
pub(super) struct Shared {
    pub(super) bm25: Bm25,
    pub(super) dim: usize,
    pub(super) vectors: RwLock<VectorStore>,
}

/// Where the time of one [`OrgSearcher::search_hybrid_timed`] went.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HybridTimings {
    /// BM25 over the text index.
    pub bm25: Duration,
    /// Nearest neighbours in the vector graph (or the exact scan of a small scope).
    pub vectors: Duration,
    /// Reciprocal-rank fusion of the two lists, with the cosines of lexical-only hits.
    pub fusion: Duration,
}

/// A read-only handle on an [`OrgIndex`](super::OrgIndex): cheap to clone,
/// `Send + Sync`. Sees every mutation of the index as soon as the mutation
/// returns.
#[derive(Clone)]
pub struct OrgSearcher {
    pub(super) shared: Arc<Shared>,
}

impl std::fmt::Debug for OrgSearcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OrgSearcher")
            .field("chunks", &self.len())
            .finish()
    }
}

impl OrgSearcher {
    /// Number of chunks indexed.
    pub fn len(&self) -> usize {
        self.shared.vectors.read().live()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Memory the index holds for searching, roughly: its vectors and graph
    /// links (~16 neighbours each), ids, and a fixed share for the reader.
    pub fn approx_bytes(&self) -> usize {
        const READER: usize = 256 * 1024;
        let per_chunk = self.shared.dim * 4 + 16 * 8 + 64;
        READER + self.shared.vectors.read().slots().saturating_mul(per_chunk)
    }

    pub fn dim(&self) -> usize {
        self.shared.dim
    }

    /// BM25 over title, heading and text (English stemming), best first.
    ///
    /// `query` is plain user text, never query syntax: it is cut into words
    /// by the same analyzer as the documents (up to
    /// [`MAX_QUERY_TERMS`](crate::MAX_QUERY_TERMS) distinct ones) and any
    /// word may match (OR), so no input is an error (text without words
    /// gives no hits). `filter`, when given, keeps only chunks of those
    /// sources (an empty set gives no hits).
    pub fn search_bm25(
        &self,
        query: &str,
        k: usize,
        filter: Option<&HashSet<Uuid>>,
    ) -> Result<Vec<Hit>, IndexError> {
        self.shared.search_bm25(query, k, filter)
    }

    /// The query's terms, analysed exactly as BM25 analyses them, each with
    /// the number of chunks whose text holds it, and the number of chunks:
    /// what a relevance check needs to weigh rare words over common ones.
    pub fn term_stats(&self, query: &str) -> TermStats {
        self.shared.bm25.term_stats(query)
    }

    /// The `k` chunks whose vectors are most similar (cosine) to `vector`,
    /// best first, within `filter`'s sources when given. Returns
    /// `min(k, chunks in scope)` hits (small scopes are scanned exactly).
    pub fn search_vector(
        &self,
        vector: &[f32],
        k: usize,
        filter: Option<&HashSet<Uuid>>,
    ) -> Result<Vec<Hit>, IndexError> {
        let q = self.shared.query_vector(vector)?;
        let store = self.shared.vectors.read();
        Ok(vector_hits(&store, &q, k, filter))
    }

    /// Exact (brute-force) nearest neighbours, for measuring the graph's recall.
    pub fn search_vector_exact(&self, vector: &[f32], k: usize) -> Result<Vec<Hit>, IndexError> {
        let q = self.shared.query_vector(vector)?;
        let store = self.shared.vectors.read();
        Ok(store
            .exact_all(&q, k)
            .into_iter()
            .map(|(i, score)| slot_hit(store.slot(i), score))
            .collect())
    }

    /// Reciprocal-rank fusion (k = 60) of [`Self::search_bm25`] and
    /// [`Self::search_vector`], each fetched `max(50, 4k)` deep, on one
    /// consistent snapshot of both halves. `query` and `vector` should be the
    /// same text and its embedding.
    pub fn search_hybrid(
        &self,
        query: &str,
        vector: &[f32],
        k: usize,
        filter: Option<&HashSet<Uuid>>,
    ) -> Result<Vec<Hit>, IndexError> {
        self.search_hybrid_timed(query, vector, k, filter)
            .map(|(hits, _)| hits)
    }

    /// [`Self::search_hybrid`], saying how long each of its stages took.
    pub fn search_hybrid_timed(
        &self,
        query: &str,
        vector: &[f32],
        k: usize,
        filter: Option<&HashSet<Uuid>>,
    ) -> Result<(Vec<Hit>, HybridTimings), IndexError> {
        let q = self.shared.query_vector(vector)?;
        if k == 0 {
            return Ok((Vec::new(), HybridTimings::default()));
        }
        let depth = (4 * k).max(50);
        let store = self.shared.vectors.read();
        let started = Instant::now();
        let bm25 = self.shared.search_bm25(query, depth, filter)?;
        let bm25_done = Instant::now();
        let vec = vector_hits(&store, &q, depth, filter);
        let vectors_done = Instant::now();
        let mut meta: HashMap<Uuid, Hit> = HashMap::with_capacity(bm25.len() + vec.len());
        for h in &vec {
            meta.insert(h.chunk_id, *h);
        }
        for h in &bm25 {
            meta.entry(h.chunk_id)
                .and_modify(|m| m.lexical = h.lexical)
                .or_insert(*h);
        }
        let lists = [
            bm25.iter().map(|h| h.chunk_id).collect::<Vec<_>>(),
            vec.iter().map(|h| h.chunk_id).collect::<Vec<_>>(),
        ];
        let hits: Vec<Hit> = reciprocal_rank_fusion(&lists)
            .into_iter()
            .take(k)
            .filter_map(|(id, score)| meta.get(&id).map(|h| Hit { score, ..*h }))
            .map(|mut h| {
                // A lexical-only hit still gets its cosine: the grounding
                // decision weighs every returned passage on both.
                if h.dense.is_none() {
                    h.dense = store.similarity(&q, &h.chunk_id);
                }
                h
            })
            .collect();
        drop(store);
        let timings = HybridTimings {
            bm25: bm25_done - started,
            vectors: vectors_done - bm25_done,
            fusion: vectors_done.elapsed(),
        };
        Ok((hits, timings))
    }
}

impl Shared {
    /// BM25 on the reader's current snapshot.
    pub(super) fn search_bm25(
        &self,
        query: &str,
        k: usize,
        filter: Option<&HashSet<Uuid>>,
    ) -> Result<Vec<Hit>, IndexError> {
        self.bm25
            .search(&self.bm25.reader.searcher(), query, k, filter)
    }

    /// `vector` checked against the index's dimension and L2-normalised.
    fn query_vector(&self, vector: &[f32]) -> Result<Vec<f32>, IndexError> {
        if vector.len() != self.dim {
            return Err(IndexError::Dimension {
                expected: self.dim,
                got: vector.len(),
            });
        }
        let mut q = vector.to_vec();
        if !crate::embed::l2_normalize(&mut q) {
            return Err(IndexError::InvalidVector(Uuid::nil()));
        }
        Ok(q)
    }
}

fn vector_hits(
    store: &VectorStore,
    q: &[f32],
    k: usize,
    filter: Option<&HashSet<Uuid>>,
) -> Vec<Hit> {
    store
        .search(q, k, filter)
        .into_iter()
        .map(|(i, score)| slot_hit(store.slot(i), score))
        .collect()
}

fn slot_hit(s: Slot, score: f32) -> Hit {
    Hit {
        chunk_id: s.chunk_id,
        source_id: s.source_id,
        page: s.page,
        score,
        dense: Some(score),
        lexical: None,
    }
}
