//! [`OrgIndex`]: one organisation's hybrid index (Tantivy BM25 + HNSW
//! vectors), the type that ties the halves together and their only writer;
//! and the types of its API (items, hits, open states, errors).
//!
//! * `query`: user text to BM25 terms, and the common-terms query;
//! * `bm25`: the Tantivy schema, a chunk's document, and BM25 search;
//! * `crate::vectors`: the HNSW graph and the flat vector store;
//! * `manifest`: the directory's files and `manifest.json`;
//! * `searcher`: [`OrgSearcher`], the read side, and hybrid fusion.
//!
//! This module owns the mutations: it alone holds the Tantivy `IndexWriter`
//! (opened for a mutation, and closed by [`OrgIndex::close_writer`] when the
//! owner is done writing), bumps the generation and writes the vectors and
//! manifest.

mod bm25;
mod manifest;
mod query;
mod searcher;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::RwLock;
use tantivy::{Index, IndexWriter, Term};
use uuid::Uuid;

use crate::vectors::{Slot, VectorStore};
use bm25::{Bm25, Fields};
use manifest::{BM25_DIR, FORMAT, Manifest, VECTORS};
use searcher::Shared;

pub use query::{MAX_QUERY_TERMS, QUERY_STOP_WORDS, TermStats, analyze_query};
pub use searcher::{HybridTimings, OrgSearcher};

/// Default dead-vector share above which [`OrgIndex::needs_rebuild`] is true.
pub const DEFAULT_REBUILD_THRESHOLD: f64 = 0.2;

/// One chunk to index. `vector` must have the index's `dim` components
/// (it is L2-normalised on the way in). Adding a `chunk_id` that is already
/// indexed replaces it.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexItem {
    pub chunk_id: Uuid,
    pub source_id: Uuid,
    pub title: String,
    pub heading: String,
    pub text: String,
    pub page: Option<u64>,
    pub vector: Vec<f32>,
}

/// One search result. `score` is BM25 for [`OrgSearcher::search_bm25`], the
/// cosine similarity for [`OrgSearcher::search_vector`] and the RRF score for
/// [`OrgSearcher::search_hybrid`]; higher is better in all three.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hit {
    pub chunk_id: Uuid,
    pub source_id: Uuid,
    pub page: Option<u64>,
    pub score: f32,
    /// The cosine similarity of the query's and the chunk's vectors, when
    /// the search had a vector (vector and hybrid search): the evidence a
    /// grounding decision weighs against paraphrase.
    pub dense: Option<f32>,
    /// The chunk's BM25 score, when it matched a query word (BM25 and
    /// hybrid search).
    pub lexical: Option<f32>,
}

/// What [`OrgIndex::open_or_create`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpenState {
    /// The index was read from disk and holds `chunks` chunks.
    Loaded { chunks: usize },
    /// The returned index is empty: the caller must add every chunk of the
    /// organisation again (from the database, re-embedding if the embedder
    /// changed).
    Reindex(ReindexReason),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReindexReason {
    /// There was no index in the directory.
    Missing,
    /// The index was built by another embedder (or dimension); vectors of
    /// different embedders are not comparable.
    EmbedderChanged {
        previous: String,
        previous_dim: usize,
    },
    /// The index was written by another version of this crate's layout.
    FormatChanged { previous: u32 },
    /// Files were unreadable, or BM25 and vectors disagree (e.g. a crash
    /// between a mutation and [`OrgIndex::persist`]).
    Corrupt(String),
}

#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("search index error: {0}")]
    Tantivy(#[from] tantivy::TantivyError),
    #[error("search index i/o error: {0}")]
    Io(#[from] std::io::Error),
    #[error("vector has {got} dimensions, the index has {expected}")]
    Dimension { expected: usize, got: usize },
    #[error("vector of chunk {0} is zero or not finite")]
    InvalidVector(Uuid),
    #[error("search index manifest: {0}")]
    Manifest(#[from] serde_json::Error),
}

/// One organisation's hybrid index, and its only writer.
///
/// Holds the HNSW graph, and the Tantivy [`IndexWriter`] while writing (it
/// is opened by the first mutation and kept until [`Self::close_writer`]: an
/// index that is only searched costs no writer, its thread or its arena);
/// every mutation takes
/// `&mut self`, so the owner (one per index, e.g. an actor) serialises them.
/// Searches take `&self`; [`OrgIndex::searcher`] hands out cheap, cloneable,
/// `Send + Sync` [`OrgSearcher`]s for concurrent readers on other threads.
///
/// Mutations are visible to searches when they return (BM25 is committed
/// and its reader reloaded; vectors are linked into the graph), and BM25 is
/// durable then too. Vectors are durable after [`OrgIndex::persist`]; if the
/// process dies in between, the next open reports
/// [`ReindexReason::Corrupt`] (BM25 and vectors disagree) and the caller
/// re-adds the organisation's chunks from the database, which is the source
/// of truth. So: call `persist` after each batch of mutations.
///
/// Everything here is synchronous CPU and disk work (Tantivy, HNSW): call it
/// from `tokio::task::spawn_blocking` (or a dedicated thread), never directly
/// on an async executor thread.
///
/// On disk, under `dir`: `manifest.json` (layout version, embedder id,
/// dimension, generation), `bm25/` (a Tantivy `MmapDirectory`) and
/// `vectors.bin` (every live chunk's ids, page and vector). The HNSW graph is
/// not stored: opening reads `vectors.bin` (fast) and leaves the vectors
/// unlinked — searched exactly, so correct at once but slower — and the owner
/// links them with [`OrgIndex::link_pending`] in bounded steps (see
/// `bench/SEARCH.md` for what each costs). Tantivy's commit payload, `vectors.bin` and the
/// manifest each carry the generation (bumped by every mutation); an open
/// that finds them unequal treats the index as corrupt.
pub struct OrgIndex {
    dir: PathBuf,
    embedder_id: String,
    generation: u64,
    dirty: bool,
    index: Index,
    writer: Option<IndexWriter>,
    shared: Arc<Shared>,
    rebuild_threshold: f64,
}

impl std::fmt::Debug for OrgIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OrgIndex")
            .field("dir", &self.dir)
            .field("embedder_id", &self.embedder_id)
            .field("dim", &self.shared.dim)
            .field("chunks", &self.len())
            .finish()
    }
}

impl OrgIndex {
    /// Opens the index in `dir` (creating `dir` if needed), or creates an
    /// empty one when there is none, it is unreadable, it was built by
    /// another embedder id or dimension, or by another layout version: the
    /// old files (only this index's own: `manifest.json`, `vectors.bin`,
    /// `bm25/`) are removed then, and [`OpenState::Reindex`] says why.
    ///
    /// Fails only on I/O errors, or when a new index must be created while
    /// another writer holds the directory (Tantivy's lock file). Loading an
    /// existing index takes no lock: the writer is opened by the first
    /// mutation.
    pub fn open_or_create(
        dir: &Path,
        embedder_id: &str,
        dim: usize,
    ) -> Result<(OrgIndex, OpenState), IndexError> {
        if dim == 0 {
            return Err(IndexError::Dimension {
                expected: 1,
                got: 0,
            });
        }
        std::fs::create_dir_all(dir)?;
        let reason = match Manifest::check(dir, embedder_id, dim) {
            Err(reason) => reason,
            Ok(m) => match Self::load(dir, embedder_id, dim, &m)? {
                Ok(index) => {
                    let chunks = index.len();
                    return Ok((index, OpenState::Loaded { chunks }));
                }
                Err(reason) => reason,
            },
        };
        // A new organisation simply has no index yet; anything else is news.
        if reason == ReindexReason::Missing {
            tracing::debug!(dir = %dir.display(), "no search index yet");
        } else {
            tracing::warn!(dir = %dir.display(), ?reason, "search index must be rebuilt");
        }
        manifest::clear(dir)?;
        let (index, fields) = bm25::create(&dir.join(BM25_DIR))?;
        let mut this =
            Self::assemble(dir, embedder_id, index, fields, VectorStore::new(dim, 0), 0)?;
        this.commit_bm25()?;
        this.dirty = true;
        this.persist()?;
        this.close_writer();
        Ok((this, OpenState::Reindex(reason)))
    }

    /// Reads an index whose manifest matched. `Ok(Err(_))` = rebuild it;
    /// `Err(_)` = cannot proceed (e.g. locked by another writer).
    fn load(
        dir: &Path,
        embedder_id: &str,
        dim: usize,
        m: &Manifest,
    ) -> Result<Result<OrgIndex, ReindexReason>, IndexError> {
        let corrupt = |what: String| Ok(Err(ReindexReason::Corrupt(what)));
        let (index, fields, payload) = match bm25::open(&dir.join(BM25_DIR)) {
            Ok(opened) => opened,
            Err(e) => return corrupt(e),
        };
        if payload.as_deref() != Some(m.generation.to_string().as_str()) {
            return corrupt(format!(
                "bm25 is at generation {payload:?}, the manifest at {}",
                m.generation
            ));
        }
        let (store, generation) = match VectorStore::load(&dir.join(VECTORS), dim) {
            Ok(loaded) => loaded,
            Err(e) => return corrupt(e),
        };
        if generation != m.generation {
            return corrupt(format!(
                "vectors.bin is at generation {generation}, the manifest at {}",
                m.generation
            ));
        }
        let this = Self::assemble(dir, embedder_id, index, fields, store, m.generation)?;
        let docs = this.shared.bm25.reader.searcher().num_docs() as usize;
        if docs != this.len() {
            return corrupt(format!(
                "bm25 holds {docs} chunks, vectors.bin {}",
                this.len()
            ));
        }
        Ok(Ok(this))
    }

    fn assemble(
        dir: &Path,
        embedder_id: &str,
        index: Index,
        fields: Fields,
        store: VectorStore,
        generation: u64,
    ) -> Result<OrgIndex, IndexError> {
        let bm25 = Bm25::new(&index, fields)?;
        Ok(OrgIndex {
            dir: dir.to_path_buf(),
            embedder_id: embedder_id.to_owned(),
            generation,
            dirty: false,
            index,
            writer: None,
            shared: Arc::new(Shared {
                bm25,
                dim: store.dim(),
                vectors: RwLock::new(store),
            }),
            rebuild_threshold: DEFAULT_REBUILD_THRESHOLD,
        })
    }

    /// The Tantivy writer, opened if it is not (taking the index's lock).
    fn writer(&mut self) -> Result<&mut IndexWriter, IndexError> {
        let writer = match self.writer.take() {
            Some(w) => w,
            None => bm25::writer(&self.index)?,
        };
        Ok(self.writer.insert(writer))
    }

    /// Closes the Tantivy writer (its indexing thread, memory arena and the
    /// index's lock) until the next mutation opens it again. Everything
    /// committed stays searchable.
    pub fn close_writer(&mut self) {
        self.writer = None;
    }

    /// Whether the Tantivy writer is open.
    pub fn writer_open(&self) -> bool {
        self.writer.is_some()
    }

    /// Memory this index holds while open, roughly: its vectors and graph
    /// links, plus the searcher's and (while writing) the writer's fixed
    /// costs. What an owner weighs against a memory budget.
    pub fn approx_bytes(&self) -> usize {
        const WRITER: usize = 3 * 1024 * 1024;
        self.searcher().approx_bytes() + if self.writer.is_some() { WRITER } else { 0 }
    }

    fn commit_bm25(&mut self) -> Result<(), IndexError> {
        let next = self.generation + 1;
        let mut prepared = self.writer()?.prepare_commit()?;
        prepared.set_payload(&next.to_string());
        prepared.commit()?;
        self.generation = next;
        self.dirty = true;
        self.shared.bm25.reader.reload()?;
        Ok(())
    }

    /// Drops what the writer holds uncommitted (after a failed commit).
    fn rollback(&mut self) {
        if let Some(w) = self.writer.as_mut() {
            let _ = w.rollback();
        }
    }

    /// A read-only handle for concurrent searches.
    pub fn searcher(&self) -> OrgSearcher {
        OrgSearcher {
            shared: Arc::clone(&self.shared),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The embedder id recorded in the manifest.
    pub fn embedder_id(&self) -> &str {
        &self.embedder_id
    }

    pub fn dim(&self) -> usize {
        self.shared.dim
    }

    /// Number of chunks indexed (live, i.e. not deleted).
    pub fn len(&self) -> usize {
        self.shared.vectors.read().live()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Adds (or replaces, by `chunk_id`) chunks; searchable when this
    /// returns. Checks every vector first: on a dimension or value error
    /// nothing is added.
    pub fn add(&mut self, items: &[IndexItem]) -> Result<(), IndexError> {
        let dim = self.shared.dim;
        // Last occurrence of a chunk id wins.
        let mut last: HashMap<Uuid, usize> = HashMap::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            if item.vector.len() != dim {
                return Err(IndexError::Dimension {
                    expected: dim,
                    got: item.vector.len(),
                });
            }
            last.insert(item.chunk_id, i);
        }
        let mut vectors: Vec<(usize, Vec<f32>)> = Vec::with_capacity(last.len());
        for (i, item) in items.iter().enumerate() {
            if last.get(&item.chunk_id) != Some(&i) {
                continue;
            }
            let mut v = item.vector.clone();
            if !crate::embed::l2_normalize(&mut v) {
                return Err(IndexError::InvalidVector(item.chunk_id));
            }
            vectors.push((i, v));
        }
        if vectors.is_empty() {
            return Ok(());
        }
        let f = self.shared.bm25.fields;
        let shared = Arc::clone(&self.shared);
        {
            let writer = self.writer()?;
            let store = shared.vectors.read();
            for (i, _) in &vectors {
                let item = &items[*i];
                if store.contains_chunk(&item.chunk_id) {
                    writer.delete_term(Term::from_field_text(
                        f.chunk_id,
                        &item.chunk_id.to_string(),
                    ));
                }
                if let Err(e) = writer.add_document(f.document(item)) {
                    drop(store);
                    writer.rollback()?;
                    return Err(e.into());
                }
            }
        }
        if let Err(e) = self.commit_bm25() {
            self.rollback();
            return Err(e);
        }
        let mut new_ids = Vec::with_capacity(vectors.len());
        {
            let mut store = self.shared.vectors.write();
            for (i, v) in &vectors {
                let item = &items[*i];
                new_ids.push(store.push(
                    Slot {
                        chunk_id: item.chunk_id,
                        source_id: item.source_id,
                        page: item.page,
                    },
                    v,
                ));
            }
        }
        // The slow part (graph linking) under a read lock: searches go on,
        // scanning the not-yet-linked slots exactly.
        self.shared.vectors.read().link(&new_ids);
        self.shared.vectors.write().mark_linked(&new_ids);
        Ok(())
    }

    /// Chunks whose vectors are not linked into the HNSW graph yet: after
    /// [`Self::open_or_create`] loads an index, all of them. They are found
    /// all the same (by an exact scan, ~8 ms per 100k chunks on one core),
    /// so the index is usable at once; [`Self::link_pending`] makes searches
    /// fast again.
    pub fn unlinked(&self) -> usize {
        self.shared.vectors.read().unlinked()
    }

    /// Links up to `max` not-yet-linked vectors into the graph (oldest
    /// first) and returns how many remain. The owner of a freshly loaded
    /// index calls this repeatedly (e.g. `max` = 1000, between other work)
    /// until it returns 0. Searches go on meanwhile.
    pub fn link_pending(&mut self, max: usize) -> usize {
        let ids = self.shared.vectors.read().next_unlinked(max);
        self.shared.vectors.read().link(&ids);
        let mut store = self.shared.vectors.write();
        store.mark_linked(&ids);
        store.unlinked()
    }

    /// Removes every chunk of `source_id` from BM25 and vectors at once:
    /// no search that starts after this returns sees any of them. Returns how
    /// many chunks were removed.
    pub fn delete_source(&mut self, source_id: Uuid) -> Result<usize, IndexError> {
        let shared = Arc::clone(&self.shared);
        // Held across the BM25 commit so that hybrid and vector searches see
        // both halves change together.
        let mut store = shared.vectors.write();
        self.writer()?.delete_term(Term::from_field_text(
            shared.bm25.fields.source_id,
            &source_id.to_string(),
        ));
        if let Err(e) = self.commit_bm25() {
            self.rollback();
            return Err(e);
        }
        Ok(store.delete_source(&source_id))
    }

    /// Scopes (source filters) with at most `n` chunks are searched by an
    /// exact scan instead of a filtered graph search (default
    /// [`crate::EXACT_SCAN_MAX`]). Kept across [`Self::rebuild`], not persisted.
    pub fn set_exact_scan_max(&mut self, n: usize) {
        self.shared.vectors.write().set_exact_scan_max(n);
    }

    /// Dead (deleted or replaced) vectors still in the graph.
    pub fn tombstones(&self) -> usize {
        self.shared.vectors.read().dead()
    }

    /// Sets the dead share above which [`Self::needs_rebuild`] is true
    /// (default [`DEFAULT_REBUILD_THRESHOLD`]).
    pub fn set_rebuild_threshold(&mut self, share: f64) {
        self.rebuild_threshold = share;
    }

    /// True when tombstones are more than the threshold share of the graph:
    /// they slow searches down and hold memory; call [`Self::rebuild`].
    pub fn needs_rebuild(&self) -> bool {
        let store = self.shared.vectors.read();
        store.slots() > 0 && store.dead() as f64 > self.rebuild_threshold * store.slots() as f64
    }

    /// Rebuilds the vector graph from the live vectors only (no re-embedding;
    /// BM25 needs nothing: Tantivy purges deleted documents as it merges).
    /// Searches go on against the old graph meanwhile.
    pub fn rebuild(&mut self) -> Result<(), IndexError> {
        let fresh = self.shared.vectors.read().compacted();
        *self.shared.vectors.write() = fresh;
        Ok(())
    }

    /// Makes the vectors durable (`vectors.bin`, then `manifest.json`, each
    /// written to a temporary file and renamed). Does nothing when nothing
    /// changed since the last call.
    pub fn persist(&mut self) -> Result<(), IndexError> {
        if !self.dirty {
            return Ok(());
        }
        let chunks = {
            let store = self.shared.vectors.read();
            store.save(&self.dir.join(VECTORS), self.generation)?;
            store.live()
        };
        Manifest {
            format: FORMAT,
            embedder_id: self.embedder_id.clone(),
            dim: self.shared.dim,
            generation: self.generation,
            chunks,
        }
        .write(&self.dir)?;
        self.dirty = false;
        Ok(())
    }

    /// See [`OrgSearcher::search_bm25`].
    pub fn search_bm25(
        &self,
        query: &str,
        k: usize,
        filter: Option<&HashSet<Uuid>>,
    ) -> Result<Vec<Hit>, IndexError> {
        self.shared.search_bm25(query, k, filter)
    }

    /// See [`OrgSearcher::search_vector`].
    pub fn search_vector(
        &self,
        vector: &[f32],
        k: usize,
        filter: Option<&HashSet<Uuid>>,
    ) -> Result<Vec<Hit>, IndexError> {
        self.searcher().search_vector(vector, k, filter)
    }

    /// See [`OrgSearcher::search_hybrid`].
    pub fn search_hybrid(
        &self,
        query: &str,
        vector: &[f32],
        k: usize,
        filter: Option<&HashSet<Uuid>>,
    ) -> Result<Vec<Hit>, IndexError> {
        self.searcher().search_hybrid(query, vector, k, filter)
    }
}
