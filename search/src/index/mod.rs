//! [`OrgIndex`]: one organisation's hybrid index (Tantivy BM25 + HNSW vectors).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::RwLock;
use serde::{Deserialize, Serialize};
use tantivy::collector::TopDocs;
use tantivy::query::{BooleanQuery, ConstScoreQuery, Occur, Query, TermQuery, TermSetQuery};
use tantivy::schema::{
    FAST, Field, IndexRecordOption, STRING, Schema, TextFieldIndexing, TextOptions,
};
use tantivy::tokenizer::{
    Language, LowerCaser, RemoveLongFilter, SimpleTokenizer, Stemmer, StopWordFilter, TextAnalyzer,
};
use tantivy::{DocAddress, Index, IndexReader, IndexWriter, ReloadPolicy, TantivyDocument, Term};
use uuid::Uuid;

use crate::fusion::reciprocal_rank_fusion;
use crate::vectors::{Slot, VectorStore};

/// Version of the on-disk layout; an index of another version is rebuilt.
/// 2: one `body` field (title, heading and text) and the hit's ids and page
/// in fast (columnar) fields instead of the document store.
const FORMAT: u32 = 2;
const MANIFEST: &str = "manifest.json";
const VECTORS: &str = "vectors.bin";
const BM25_DIR: &str = "bm25";
/// Tantivy indexing memory budget (one indexing thread).
const WRITER_MEMORY: usize = 20_000_000;
/// Distinct query terms kept from user text (the rest are ignored).
pub const MAX_QUERY_TERMS: usize = 64;
/// Words dropped from BM25 queries (not from documents): Lucene's classic
/// English stop set. In a question they match nearly every chunk, add little
/// to the ranking (BM25 gives them a tiny IDF) and cost most of the time
/// (long posting lists). A query made only of them keeps them.
pub const QUERY_STOP_WORDS: [&str; 33] = [
    "a", "an", "and", "are", "as", "at", "be", "but", "by", "for", "if", "in", "into", "is", "it",
    "no", "not", "of", "on", "or", "such", "that", "the", "their", "then", "there", "these",
    "they", "this", "to", "was", "will", "with",
];
/// A query word found in more than this share of the chunks (and in more
/// than [`COMMON_TERM_MIN_DOCS`]) is *common*: see [`common_terms_query`].
pub const COMMON_TERM_SHARE: f64 = 0.02;
/// Below this many chunks holding it, no word counts as common, so small
/// libraries are searched with every word alike.
pub const COMMON_TERM_MIN_DOCS: u64 = 2_000;
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
}

/// Document frequencies of a query's terms (see [`OrgSearcher::term_stats`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TermStats {
    /// Chunks in the index.
    pub num_docs: u64,
    /// Each analysed query term with the number of chunks containing it.
    pub terms: Vec<(String, u64)>,
}

/// The distinct terms of `text` as the BM25 query analyzer produces them
/// (lower-cased, English-stemmed, without the query stop words).
pub fn analyze_query(text: &str) -> Vec<String> {
    analyze(&mut query_analyzer(), text)
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
    Manifest(String),
}

#[derive(Debug, Serialize, Deserialize)]
struct Manifest {
    format: u32,
    embedder_id: String,
    dim: usize,
    generation: u64,
    chunks: usize,
}

/// The BM25 index's fields.
///
/// One `body` field holds a chunk's title, heading and text: a query term
/// is one posting list to score, not three (the title and heading still
/// count, as words of the chunk). What a hit needs back (its chunk, source
/// and page) is read from fast fields, columns addressed by document
/// number, rather than by decompressing a document-store block per hit.
/// The ids are also indexed as strings, for deletes and source filters.
#[derive(Clone, Copy)]
struct Fields {
    chunk_id: Field,
    source_id: Field,
    body: Field,
    /// [`FAST_FIELDS`], in that order.
    fast: [Field; 5],
}

/// Fast-field names: the two halves of each id, and the page plus one
/// (0 = no page).
const CHUNK_HI: &str = "chunk_hi";
const CHUNK_LO: &str = "chunk_lo";
const SOURCE_HI: &str = "source_hi";
const SOURCE_LO: &str = "source_lo";
const PAGE_PLUS_ONE: &str = "page_plus_one";
const FAST_FIELDS: [&str; 5] = [CHUNK_HI, CHUNK_LO, SOURCE_HI, SOURCE_LO, PAGE_PLUS_ONE];

fn schema() -> (Schema, Fields) {
    let mut b = Schema::builder();
    let words = TextOptions::default().set_indexing_options(
        TextFieldIndexing::default()
            .set_tokenizer("en_stem")
            .set_index_option(IndexRecordOption::WithFreqs),
    );
    let fields = Fields {
        chunk_id: b.add_text_field("chunk_id", STRING),
        source_id: b.add_text_field("source_id", STRING),
        body: b.add_text_field("body", words),
        fast: FAST_FIELDS.map(|name| b.add_u64_field(name, FAST)),
    };
    (b.build(), fields)
}

/// A UUID as two `u64` halves (high, low), and back.
fn split_uuid(id: Uuid) -> (u64, u64) {
    let v = id.as_u128();
    ((v >> 64) as u64, v as u64)
}

fn join_uuid(hi: u64, lo: u64) -> Uuid {
    Uuid::from_u128((u128::from(hi) << 64) | u128::from(lo))
}

struct Shared {
    /// The documents' analyzer (`en_stem`), and the same without stop words.
    full_analyzer: TextAnalyzer,
    query_analyzer: TextAnalyzer,
    reader: IndexReader,
    fields: Fields,
    dim: usize,
    vectors: RwLock<VectorStore>,
}

/// One organisation's hybrid index, and its only writer.
///
/// Holds the Tantivy [`IndexWriter`] and the HNSW graph; every mutation takes
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
    writer: IndexWriter,
    shared: Arc<Shared>,
    rebuild_threshold: f64,
}

/// A read-only handle on an [`OrgIndex`]: cheap to clone, `Send + Sync`.
/// Sees every mutation of the index as soon as the mutation returns.
#[derive(Clone)]
pub struct OrgSearcher {
    shared: Arc<Shared>,
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

impl std::fmt::Debug for OrgSearcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OrgSearcher")
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
    /// Fails only on I/O errors creating the new index, or when another
    /// writer holds the index (Tantivy's lock file).
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
        let reason = match std::fs::read(dir.join(MANIFEST)) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if dir.join(BM25_DIR).exists() || dir.join(VECTORS).exists() {
                    ReindexReason::Corrupt("manifest.json is missing".into())
                } else {
                    ReindexReason::Missing
                }
            }
            Err(e) => ReindexReason::Corrupt(format!("manifest.json: {e}")),
            Ok(bytes) => match serde_json::from_slice::<Manifest>(&bytes) {
                Err(e) => ReindexReason::Corrupt(format!("manifest.json: {e}")),
                Ok(m) if m.format != FORMAT => ReindexReason::FormatChanged { previous: m.format },
                Ok(m) if m.embedder_id != embedder_id || m.dim != dim => {
                    ReindexReason::EmbedderChanged {
                        previous: m.embedder_id,
                        previous_dim: m.dim,
                    }
                }
                Ok(m) => match Self::load(dir, embedder_id, dim, &m) {
                    Ok(Ok(index)) => {
                        let chunks = index.len();
                        return Ok((index, OpenState::Loaded { chunks }));
                    }
                    Ok(Err(reason)) => reason,
                    Err(e) => return Err(e),
                },
            },
        };
        // A new organisation simply has no index yet; anything else is news.
        if reason == ReindexReason::Missing {
            tracing::debug!(dir = %dir.display(), "no search index yet");
        } else {
            tracing::warn!(dir = %dir.display(), ?reason, "search index must be rebuilt");
        }
        for file in [MANIFEST, VECTORS, "vectors.bin.tmp", "manifest.json.tmp"] {
            match std::fs::remove_file(dir.join(file)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
                _ => {}
            }
        }
        match std::fs::remove_dir_all(dir.join(BM25_DIR)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
            _ => {}
        }
        std::fs::create_dir_all(dir.join(BM25_DIR))?;
        let (schema, fields) = schema();
        let index = Index::create_in_dir(dir.join(BM25_DIR), schema)?;
        let mut this =
            Self::assemble(dir, embedder_id, index, fields, VectorStore::new(dim, 0), 0)?;
        this.commit_bm25()?;
        this.dirty = true;
        this.persist()?;
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
        let index = match Index::open_in_dir(dir.join(BM25_DIR)) {
            Ok(index) => index,
            Err(e) => return corrupt(format!("bm25: {e}")),
        };
        let (expected_schema, fields) = schema();
        if index.schema() != expected_schema {
            return corrupt("bm25: unexpected schema".into());
        }
        let payload = match index.load_metas() {
            Ok(metas) => metas.payload,
            Err(e) => return corrupt(format!("bm25: {e}")),
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
        let docs = this.shared.reader.searcher().num_docs() as usize;
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
        let writer: IndexWriter = index.writer_with_num_threads(1, WRITER_MEMORY)?;
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()?;
        Ok(OrgIndex {
            dir: dir.to_path_buf(),
            embedder_id: embedder_id.to_owned(),
            generation,
            dirty: false,
            writer,
            shared: Arc::new(Shared {
                full_analyzer: index.tokenizer_for_field(fields.body)?,
                query_analyzer: query_analyzer(),
                reader,
                fields,
                dim: store.dim(),
                vectors: RwLock::new(store),
            }),
            rebuild_threshold: DEFAULT_REBUILD_THRESHOLD,
        })
    }

    fn commit_bm25(&mut self) -> Result<(), IndexError> {
        let next = self.generation + 1;
        let mut prepared = self.writer.prepare_commit()?;
        prepared.set_payload(&next.to_string());
        prepared.commit()?;
        self.generation = next;
        self.dirty = true;
        self.shared.reader.reload()?;
        Ok(())
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
        let f = self.shared.fields;
        {
            let store = self.shared.vectors.read();
            for (i, _) in &vectors {
                let item = &items[*i];
                let id = item.chunk_id.to_string();
                if store.contains_chunk(&item.chunk_id) {
                    self.writer
                        .delete_term(Term::from_field_text(f.chunk_id, &id));
                }
                let mut doc = TantivyDocument::new();
                doc.add_text(f.chunk_id, &id);
                doc.add_text(f.source_id, item.source_id.to_string());
                // Three values of one field: a phrase never spans them.
                for part in [&item.title, &item.heading, &item.text] {
                    if !part.is_empty() {
                        doc.add_text(f.body, part);
                    }
                }
                let (hi, lo) = split_uuid(item.chunk_id);
                let (shi, slo) = split_uuid(item.source_id);
                let page = item.page.map_or(0, |p| p.saturating_add(1));
                for (field, value) in f.fast.into_iter().zip([hi, lo, shi, slo, page]) {
                    doc.add_u64(field, value);
                }
                if let Err(e) = self.writer.add_document(doc) {
                    drop(store);
                    self.writer.rollback()?;
                    return Err(e.into());
                }
            }
        }
        if let Err(e) = self.commit_bm25() {
            let _ = self.writer.rollback();
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
        self.writer.delete_term(Term::from_field_text(
            shared.fields.source_id,
            &source_id.to_string(),
        ));
        if let Err(e) = self.commit_bm25() {
            let _ = self.writer.rollback();
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
        let manifest = Manifest {
            format: FORMAT,
            embedder_id: self.embedder_id.clone(),
            dim: self.shared.dim,
            generation: self.generation,
            chunks,
        };
        let bytes = serde_json::to_vec_pretty(&manifest)
            .map_err(|e| IndexError::Manifest(e.to_string()))?;
        let tmp = self.dir.join("manifest.json.tmp");
        {
            let mut file = std::fs::File::create(&tmp)?;
            std::io::Write::write_all(&mut file, &bytes)?;
            file.sync_all()?;
        }
        std::fs::rename(&tmp, self.dir.join(MANIFEST))?;
        if let Ok(d) = std::fs::File::open(&self.dir) {
            let _ = d.sync_all();
        }
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
        self.shared
            .search_bm25(&self.shared.reader.searcher(), query, k, filter)
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

impl OrgSearcher {
    /// Number of chunks indexed.
    pub fn len(&self) -> usize {
        self.shared.vectors.read().live()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn dim(&self) -> usize {
        self.shared.dim
    }

    /// BM25 over title, heading and text (English stemming), best first.
    ///
    /// `query` is plain user text, never query syntax: it is cut into words
    /// by the same analyzer as the documents (up to [`MAX_QUERY_TERMS`]
    /// distinct ones) and any word may match (OR), so no input is an error
    /// (text without words gives no hits). `filter`, when given, keeps only
    /// chunks of those sources (an empty set gives no hits).
    pub fn search_bm25(
        &self,
        query: &str,
        k: usize,
        filter: Option<&HashSet<Uuid>>,
    ) -> Result<Vec<Hit>, IndexError> {
        self.shared
            .search_bm25(&self.shared.reader.searcher(), query, k, filter)
    }

    /// The query's terms, analysed exactly as BM25 analyses them, each with
    /// the number of chunks whose text holds it, and the number of chunks:
    /// what a relevance check needs to weigh rare words over common ones.
    pub fn term_stats(&self, query: &str) -> TermStats {
        let searcher = self.shared.reader.searcher();
        let field = self.shared.fields.body;
        let terms = self
            .shared
            .query_terms(query)
            .into_iter()
            .map(|t| {
                let df = searcher
                    .doc_freq(&Term::from_field_text(field, &t))
                    .unwrap_or(0);
                (t, df)
            })
            .collect();
        TermStats {
            num_docs: searcher.num_docs(),
            terms,
        }
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
        Ok(Shared::vector_hits(&store, &q, k, filter))
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
        let q = self.shared.query_vector(vector)?;
        if k == 0 {
            return Ok(Vec::new());
        }
        let depth = (4 * k).max(50);
        let store = self.shared.vectors.read();
        let bm25 = self
            .shared
            .search_bm25(&self.shared.reader.searcher(), query, depth, filter)?;
        let vec = Shared::vector_hits(&store, &q, depth, filter);
        drop(store);
        let mut meta: HashMap<Uuid, Hit> = HashMap::with_capacity(bm25.len() + vec.len());
        for h in bm25.iter().chain(&vec) {
            meta.entry(h.chunk_id).or_insert(*h);
        }
        let lists = [
            bm25.iter().map(|h| h.chunk_id).collect::<Vec<_>>(),
            vec.iter().map(|h| h.chunk_id).collect::<Vec<_>>(),
        ];
        Ok(reciprocal_rank_fusion(&lists)
            .into_iter()
            .take(k)
            .filter_map(|(id, score)| meta.get(&id).map(|h| Hit { score, ..*h }))
            .collect())
    }
}

fn query_analyzer() -> TextAnalyzer {
    TextAnalyzer::builder(SimpleTokenizer::default())
        .filter(RemoveLongFilter::limit(40))
        .filter(LowerCaser)
        .filter(StopWordFilter::remove(
            QUERY_STOP_WORDS.iter().map(|w| (*w).to_owned()),
        ))
        .filter(Stemmer::new(Language::English))
        .build()
}

/// Distinct tokens of `text`, in order, at most [`MAX_QUERY_TERMS`].
fn analyze(analyzer: &mut TextAnalyzer, text: &str) -> Vec<String> {
    let mut stream = analyzer.token_stream(text);
    let mut seen = HashSet::new();
    let mut terms = Vec::new();
    while terms.len() < MAX_QUERY_TERMS && stream.advance() {
        let t = &stream.token().text;
        if seen.insert(t.clone()) {
            terms.push(t.clone());
        }
    }
    terms
}

fn slot_hit(s: Slot, score: f32) -> Hit {
    Hit {
        chunk_id: s.chunk_id,
        source_id: s.source_id,
        page: s.page,
        score,
    }
}

impl Shared {
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

    /// The analyzed, de-duplicated words of `query` (at most
    /// [`MAX_QUERY_TERMS`]), without [`QUERY_STOP_WORDS`] unless the query
    /// has nothing else.
    fn query_terms(&self, query: &str) -> Vec<String> {
        let mut terms = analyze(&mut self.query_analyzer.clone(), query);
        if terms.is_empty() {
            let mut full = self.full_analyzer.clone();
            terms = analyze(&mut full, query);
        }
        terms
    }

    fn search_bm25(
        &self,
        searcher: &tantivy::Searcher,
        query: &str,
        k: usize,
        filter: Option<&HashSet<Uuid>>,
    ) -> Result<Vec<Hit>, IndexError> {
        if k == 0 || filter.is_some_and(HashSet::is_empty) {
            return Ok(Vec::new());
        }
        let f = self.fields;
        let terms = self.query_terms(query);
        if terms.is_empty() {
            return Ok(Vec::new());
        }
        let words = common_terms_query(searcher, f.body, &terms);
        let query: Box<dyn Query> = match filter {
            None => words,
            Some(sources) => {
                let set = TermSetQuery::new(
                    sources
                        .iter()
                        .map(|s| Term::from_field_text(f.source_id, &s.to_string())),
                );
                Box::new(BooleanQuery::new(vec![
                    (Occur::Must, words),
                    (
                        Occur::Must,
                        Box::new(ConstScoreQuery::new(Box::new(set), 0.0)),
                    ),
                ]))
            }
        };
        let top = searcher.search(&query, &TopDocs::with_limit(k).order_by_score())?;
        let mut hits = Vec::with_capacity(top.len());
        for (score, addr) in top {
            if let Some(hit) = read_hit(searcher, addr, score)? {
                hits.push(hit);
            }
        }
        Ok(hits)
    }
}

/// The chunk, source and page of a BM25 hit, from its segment's fast
/// fields. `None` for a document without them (not written by this code).
fn read_hit(
    searcher: &tantivy::Searcher,
    addr: DocAddress,
    score: f32,
) -> Result<Option<Hit>, IndexError> {
    let fast = searcher.segment_reader(addr.segment_ord).fast_fields();
    let mut values = [0u64; 5];
    for (value, name) in values.iter_mut().zip(FAST_FIELDS) {
        match fast.u64(name)?.first(addr.doc_id) {
            Some(v) => *value = v,
            None => return Ok(None),
        }
    }
    let [hi, lo, shi, slo, page] = values;
    Ok(Some(Hit {
        chunk_id: join_uuid(hi, lo),
        source_id: join_uuid(shi, slo),
        page: page.checked_sub(1),
        score,
    }))
}

/// The BM25 query for `terms`: every term scored, but, in a large library,
/// only chunks holding at least one of the *rarer* terms are candidates
/// (Lucene's common-terms query).
///
/// Words found in a large share of the chunks ("flow", "pressure" in an
/// aerodynamics library) have long posting lists, cost most of a search's
/// time and weigh little in BM25 (low IDF); a chunk that holds only such
/// words is a weak match. So terms above [`COMMON_TERM_SHARE`] of the
/// chunks (and above [`COMMON_TERM_MIN_DOCS`]) are only *added* to the
/// score of chunks that match a rarer term: the rarer terms are required
/// (any of them), the common ones optional. If every term is common, the
/// rarest is the required one. Libraries too small for any term to be
/// common get a plain disjunction of all terms, exactly as before.
fn common_terms_query(
    searcher: &tantivy::Searcher,
    field: Field,
    terms: &[String],
) -> Box<dyn Query> {
    let cutoff =
        ((searcher.num_docs() as f64 * COMMON_TERM_SHARE) as u64).max(COMMON_TERM_MIN_DOCS);
    // Words no chunk holds cannot match: leaving them out keeps them from
    // being the "rare" words every hit must hold.
    let mut weighed: Vec<(Term, u64)> = terms
        .iter()
        .map(|t| {
            let term = Term::from_field_text(field, t);
            let df = searcher.doc_freq(&term).unwrap_or(0);
            (term, df)
        })
        .filter(|(_, df)| *df > 0)
        .collect();
    let disjunction = |ts: Vec<Term>| -> Box<dyn Query> {
        Box::new(BooleanQuery::new(
            ts.into_iter()
                .map(|t| {
                    let q: Box<dyn Query> =
                        Box::new(TermQuery::new(t, IndexRecordOption::WithFreqs));
                    (Occur::Should, q)
                })
                .collect(),
        ))
    };
    if weighed.iter().all(|(_, df)| *df <= cutoff) {
        return disjunction(weighed.into_iter().map(|(t, _)| t).collect());
    }
    weighed.sort_by_key(|(_, df)| *df);
    let split = weighed
        .iter()
        .position(|(_, df)| *df > cutoff)
        .unwrap_or(weighed.len())
        .max(1);
    let common = weighed.split_off(split);
    let rare = weighed;
    Box::new(BooleanQuery::new(vec![
        (
            Occur::Must,
            disjunction(rare.into_iter().map(|(t, _)| t).collect()),
        ),
        (
            Occur::Should,
            disjunction(common.into_iter().map(|(t, _)| t).collect()),
        ),
    ]))
}
