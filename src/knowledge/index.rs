//! The search service: one hybrid index (Tantivy BM25 + HNSW) per
//! organisation under `<data-dir>/index/<org>`, opened on first use and
//! rebuilt from the database when missing, stale or built by another
//! embedder. The database holds the chunks and their embeddings; indexes can
//! always be rebuilt from it.
//!
//! **Lifecycle.** The service is a registry of open indexes, one slot per
//! organisation. A slot is found under a short lock and opened outside it,
//! so one school's index opening (or rebuilding from the database) never
//! holds up another's searches; callers for the same school wait on the
//! same opening. An index is closed when unused for `search.idle_close_secs`
//! ([`SearchService::close_idle`], run periodically), or, least recently
//! used first, when the open ones would hold more than
//! `search.max_open_bytes`; an index in use is never closed. Every write is
//! persisted, so a closed index reopens from disk without a rebuild (its
//! vectors are searched exactly until re-linked in the background).
//!
//! **Rebuilds aside.** When another node announces a change to an index
//! open here, the new one is built from the database in a directory of its
//! own and swapped in when ready; searches go on with the old one
//! meanwhile and writes made here during the build are caught up by
//! building once more. A closed index is only marked stale: its next
//! opening rebuilds it.
//!
//! One writer per index: every mutation of an organisation's index goes
//! through its `writer` mutex on the blocking pool, and the Tantivy writer
//! itself is closed after each write, so an index that is only searched
//! holds no writer. Searches use a cloned read-only `OrgSearcher` and never
//! wait for the writer.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use bwenge_search::{Embedder, Hit, IndexItem, OpenState, OrgIndex, OrgSearcher};

use crate::db::Db;
use crate::ids::{ChunkId, OrgId, SourceId};
use crate::knowledge::store::{self, ChunkRow};
use crate::metrics::{SEARCH_STAGE_SECONDS, stage};

/// Open indexes (gauge).
pub const SEARCH_OPEN_INDEXES: &str = "bwenge_search_open_indexes";
/// Indexes closed, by `reason`: `idle` or `budget`.
pub const SEARCH_INDEX_CLOSES_TOTAL: &str = "bwenge_search_index_closes_total";
/// Indexes opened, by `how`: `disk` or `rebuilt` (from the database).
pub const SEARCH_INDEX_OPENS_TOTAL: &str = "bwenge_search_index_opens_total";

/// An index used this recently is not closed for the budget: whoever just
/// opened it is about to use it.
const EVICTION_GRACE: Duration = Duration::from_millis(200);

struct OrgHandle {
    writer: Arc<parking_lot::Mutex<OrgIndex>>,
    searcher: OrgSearcher,
    /// A rebuild swapped another index in: searches that still hold this
    /// one finish with it, writes go to the new one.
    retired: std::sync::atomic::AtomicBool,
}

impl OrgHandle {
    /// What the index holds in memory (the writer's share only when it is
    /// open and not busy: a busy index is not closed anyway).
    fn bytes(&self) -> usize {
        self.writer
            .try_lock()
            .map_or_else(|| self.searcher.approx_bytes(), |i| i.approx_bytes())
    }
}

/// An organisation's place in the registry.
struct Slot {
    /// The open index, once opened; opening runs outside the registry lock.
    cell: Arc<tokio::sync::OnceCell<Arc<OrgHandle>>>,
    last_used: Instant,
    /// Another node changed the index (or a reindex was asked): the files
    /// on disk are moved aside before it is opened again.
    stale: bool,
    /// Changes to catch up with, counted while the index is open: each
    /// announcement from another node (and each write here while a rebuild
    /// runs) adds one; a rebuild aside runs until `built` reaches it.
    wanted: u64,
    /// The `wanted` the index now open was built for.
    built: u64,
}

impl Slot {
    fn new(stale: bool) -> Self {
        Self {
            cell: Arc::default(),
            last_used: Instant::now(),
            stale,
            wanted: 0,
            built: 0,
        }
    }

    /// The open index if nobody but the registry holds it.
    fn idle_handle(&self) -> Option<&Arc<OrgHandle>> {
        self.cell.get().filter(|h| Arc::strong_count(h) == 1)
    }
}

/// What the registry holds and has done, for tests and operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SearchStats {
    pub open: usize,
    pub open_bytes: usize,
    /// Open indexes whose Tantivy writer is open (none between writes).
    pub writers_open: usize,
    pub opened_from_disk: u64,
    pub rebuilt: u64,
    pub closed_idle: u64,
    pub closed_budget: u64,
}

#[derive(Default)]
struct Counters {
    opened_from_disk: AtomicU64,
    rebuilt: AtomicU64,
    closed_idle: AtomicU64,
    closed_budget: AtomicU64,
}

pub struct SearchService {
    db: Db,
    embedder: Arc<dyn Embedder>,
    root: PathBuf,
    orgs: parking_lot::Mutex<HashMap<OrgId, Slot>>,
    /// Per organisation, held while its index is being opened: a slot made
    /// stale during an opening waits for it before moving the files aside,
    /// so two openings never work on one directory.
    gates: parking_lot::Mutex<HashMap<OrgId, Arc<tokio::sync::Mutex<()>>>>,
    /// `search.max_open_bytes` (`usize::MAX`: no limit).
    max_open_bytes: usize,
    /// What the open indexes held when they were opened (an estimate kept
    /// up as they open and close; the budget check recounts exactly).
    open_bytes: std::sync::atomic::AtomicUsize,
    counters: Counters,
}

pub fn vector_to_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

pub fn bytes_to_vector(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

impl SearchService {
    pub fn new(db: Db, embedder: Arc<dyn Embedder>, root: PathBuf) -> Self {
        // Copies moved aside by `invalidate` that could not be deleted
        // then, and rebuilds a stop interrupted.
        if let Ok(entries) = std::fs::read_dir(&root) {
            for e in entries.flatten() {
                let name = e.file_name();
                let name = name.to_string_lossy();
                if name.starts_with(".stale-") || name.starts_with(".building-") {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
        Self {
            db,
            embedder,
            root,
            orgs: parking_lot::Mutex::new(HashMap::new()),
            gates: parking_lot::Mutex::new(HashMap::new()),
            max_open_bytes: usize::MAX,
            open_bytes: std::sync::atomic::AtomicUsize::new(0),
            counters: Counters::default(),
        }
    }

    /// Closes least recently used indexes beyond `bytes` held open
    /// (0: no limit).
    #[must_use]
    pub fn with_max_open_bytes(mut self, bytes: u64) -> Self {
        self.max_open_bytes = match usize::try_from(bytes) {
            Ok(0) | Err(_) => usize::MAX,
            Ok(n) => n,
        };
        self
    }

    pub fn embedder(&self) -> &Arc<dyn Embedder> {
        &self.embedder
    }

    /// The organisation's open index, opening it if needed.
    async fn handle(&self, org: OrgId) -> anyhow::Result<Arc<OrgHandle>> {
        let (cell, stale) = {
            let mut orgs = self.orgs.lock();
            let slot = orgs.entry(org).or_insert_with(|| Slot::new(false));
            slot.last_used = Instant::now();
            if let Some(h) = slot.cell.get() {
                let h = Arc::clone(h);
                drop(orgs);
                // Still over the budget (indexes that were in use when it
                // was last checked): try again now.
                if self.open_bytes.load(Ordering::Relaxed) > self.max_open_bytes {
                    self.enforce_budget();
                }
                return Ok(h);
            }
            (Arc::clone(&slot.cell), slot.stale)
        };
        let handle = Arc::clone(cell.get_or_try_init(|| self.open(org, stale)).await?);
        {
            let mut orgs = self.orgs.lock();
            if let Some(slot) = orgs.get_mut(&org)
                && Arc::ptr_eq(&slot.cell, &cell)
            {
                slot.stale = false;
            }
        }
        self.enforce_budget();
        Ok(handle)
    }

    /// Opens (after moving a stale copy aside) or rebuilds an index.
    async fn open(&self, org: OrgId, stale: bool) -> anyhow::Result<Arc<OrgHandle>> {
        let gate = Arc::clone(self.gates.lock().entry(org).or_default());
        let _opening = gate.lock().await;
        let dir = self.root.join(org.to_string());
        if stale {
            self.move_aside(org).await?;
        }
        let id = self.embedder.id();
        let dim = self.embedder.dim();
        let (mut index, state) =
            crate::work::blocking(move || OrgIndex::open_or_create(&dir, &id, dim))
                .await
                .context("opening the search index")??;
        if let OpenState::Reindex(reason) = state {
            tracing::info!(org_id = %org, ?reason, "rebuilding the search index from the database");
            let rows = store::chunks_of_org(&self.db, org).await?;
            let items = self.items_for(org, rows).await?;
            index = crate::work::blocking(move || -> anyhow::Result<OrgIndex> {
                index.add(&items)?;
                index.persist()?;
                index.close_writer();
                Ok(index)
            })
            .await
            .context("rebuilding the search index")??;
            self.counters.rebuilt.fetch_add(1, Ordering::Relaxed);
            metrics::counter!(SEARCH_INDEX_OPENS_TOTAL, "how" => "rebuilt").increment(1);
        } else {
            self.counters
                .opened_from_disk
                .fetch_add(1, Ordering::Relaxed);
            metrics::counter!(SEARCH_INDEX_OPENS_TOTAL, "how" => "disk").increment(1);
        }
        metrics::gauge!(SEARCH_OPEN_INDEXES).increment(1.0);
        self.open_bytes
            .fetch_add(index.approx_bytes(), Ordering::Relaxed);
        Ok(Self::serve(index))
    }

    /// A handle on an opened index; its vectors are linked into the graph
    /// in the background.
    fn serve(index: OrgIndex) -> Arc<OrgHandle> {
        let pending = index.unlinked();
        let handle = Arc::new(OrgHandle {
            searcher: index.searcher(),
            writer: Arc::new(parking_lot::Mutex::new(index)),
            retired: Default::default(),
        });
        if pending > 0 {
            // A reopened index answers vector queries by exact scan until
            // its vectors are linked into the graph: link them in the
            // background, a slice at a time, so writers are never held up
            // for long.
            let writer = handle.writer.clone();
            crate::work::blocking(move || while writer.lock().link_pending(1000) > 0 {});
        }
        handle
    }

    /// Rebuilds an open index from the database beside the one in use,
    /// then swaps it in; searches go on with the old one meanwhile. Runs
    /// again while changes were announced (or written here) during a
    /// build, until the open index has caught up with all of them.
    async fn rebuild_aside(&self, org: OrgId) -> anyhow::Result<()> {
        let gate = Arc::clone(self.gates.lock().entry(org).or_default());
        let _building = gate.lock().await;
        loop {
            let (target, cell, old) = {
                let orgs = self.orgs.lock();
                let Some(slot) = orgs.get(&org).filter(|s| s.built < s.wanted) else {
                    return Ok(());
                };
                let Some(old) = slot.cell.get().cloned() else {
                    // Closed meanwhile: it is stale and rebuilt when opened.
                    return Ok(());
                };
                (slot.wanted, Arc::clone(&slot.cell), old)
            };
            let building = self
                .root
                .join(format!(".building-{org}-{}", uuid::Uuid::new_v4().simple()));
            let old_bytes = old.bytes();
            let rows = store::chunks_of_org(&self.db, org).await?;
            let items = self.items_for(org, rows).await?;
            let (id, dim) = (self.embedder.id(), self.embedder.dim());
            let dir = self.root.join(org.to_string());
            let aside = self
                .root
                .join(format!(".stale-{org}-{}", uuid::Uuid::new_v4().simple()));
            let retiring = Arc::clone(&old);
            let index = crate::work::blocking(move || -> anyhow::Result<OrgIndex> {
                let built = (|| -> anyhow::Result<()> {
                    let (mut index, _) = OrgIndex::open_or_create(&building, &id, dim)?;
                    index.add(&items)?;
                    index.persist()?;
                    index.close_writer();
                    Ok(())
                })();
                if let Err(e) = built {
                    let _ = std::fs::remove_dir_all(&building);
                    return Err(e);
                }
                // No write reaches the old index from here on (writers
                // check `retired` under this lock and go to the new one).
                let _writes = old.writer.lock();
                match std::fs::rename(&dir, &aside) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
                    _ => {}
                }
                std::fs::rename(&building, &dir)?;
                old.retired.store(true, Ordering::Release);
                let (index, _) = OrgIndex::open_or_create(&dir, &id, dim)?;
                if let Err(e) = std::fs::remove_dir_all(&aside) {
                    tracing::debug!(error = %e, "an old index copy will be removed at the next start");
                }
                Ok(index)
            })
            .await
            .context("rebuilding the search index aside")
            .and_then(|r| r);
            let index = match index {
                Ok(index) => index,
                Err(e) => {
                    if retiring.retired.load(Ordering::Acquire) {
                        // Swapped on disk but not opened: the next use
                        // opens what is there.
                        let mut orgs = self.orgs.lock();
                        if orgs.get(&org).is_some_and(|s| Arc::ptr_eq(&s.cell, &cell)) {
                            orgs.insert(org, Slot::new(false));
                            metrics::gauge!(SEARCH_OPEN_INDEXES).decrement(1.0);
                        }
                    }
                    return Err(e);
                }
            };
            let bytes = index.approx_bytes();
            let new_cell = Arc::new(tokio::sync::OnceCell::new_with(Some(Self::serve(index))));
            let swapped = {
                let mut orgs = self.orgs.lock();
                match orgs.get_mut(&org) {
                    Some(slot) if Arc::ptr_eq(&slot.cell, &cell) => {
                        slot.cell = new_cell;
                        slot.built = target;
                        true
                    }
                    // Closed (or made stale) meanwhile: the files on disk
                    // are the new ones, opened at the next use.
                    _ => false,
                }
            };
            self.counters.rebuilt.fetch_add(1, Ordering::Relaxed);
            metrics::counter!(SEARCH_INDEX_OPENS_TOTAL, "how" => "rebuilt").increment(1);
            if swapped {
                let _ = self
                    .open_bytes
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                        Some((b + bytes).saturating_sub(old_bytes))
                    });
            }
        }
    }

    /// Runs `write` on the organisation's open index (opening it if
    /// needed), then persists and closes its writer; a write that finds
    /// its index retired by a rebuild goes to the new one.
    async fn write<F>(&self, org: OrgId, write: F) -> anyhow::Result<()>
    where
        F: Fn(&mut OrgIndex) -> anyhow::Result<()> + Send + Sync + 'static,
    {
        // The rows were committed before this call. A rebuild running now
        // may have read the database before them and may swap in before
        // this write reaches any index: it goes round once more. (One that
        // starts later reads them.)
        if let Some(slot) = self.orgs.lock().get_mut(&org)
            && slot.built < slot.wanted
        {
            slot.wanted += 1;
        }
        let write = Arc::new(write);
        loop {
            let handle = self.handle(org).await?;
            let write = Arc::clone(&write);
            let done = crate::work::blocking(move || -> anyhow::Result<bool> {
                let mut index = handle.writer.lock();
                if handle.retired.load(Ordering::Acquire) {
                    return Ok(false);
                }
                write(&mut index)?;
                index.persist()?;
                index.close_writer();
                Ok(true)
            })
            .await
            .context("indexing task failed")??;
            if done {
                return Ok(());
            }
            // Retired by a rebuild that is swapping its index in now.
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// Moves an organisation's index files aside (atomic, even while an old
    /// writer's merge threads finish) and deletes them at leisure.
    async fn move_aside(&self, org: OrgId) -> anyhow::Result<()> {
        let dir = self.root.join(org.to_string());
        let aside = self
            .root
            .join(format!(".stale-{org}-{}", uuid::Uuid::new_v4().simple()));
        crate::work::blocking(move || {
            match std::fs::rename(&dir, &aside) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                Err(_) => return Ok(()),
                Ok(()) => {}
            }
            if let Err(e) = std::fs::remove_dir_all(&aside) {
                tracing::debug!(error = %e, "an old index copy will be removed at the next start");
            }
            Ok(())
        })
        .await
        .context("moving the index aside")??;
        Ok(())
    }

    /// Closes the least recently used indexes nobody is using until the open
    /// ones fit in the budget (the ones used in the last moments stay).
    fn enforce_budget(&self) {
        if self.max_open_bytes == usize::MAX {
            return;
        }
        let mut orgs = self.orgs.lock();
        let mut open: Vec<(OrgId, Instant, usize)> = orgs
            .iter()
            .filter_map(|(id, s)| s.cell.get().map(|h| (*id, s.last_used, h.bytes())))
            .collect();
        let mut total: usize = open.iter().map(|o| o.2).sum();
        if total <= self.max_open_bytes {
            self.open_bytes.store(total, Ordering::Relaxed);
            return;
        }
        open.sort_by_key(|o| o.1);
        for (id, used, bytes) in open {
            if total <= self.max_open_bytes {
                break;
            }
            if used.elapsed() < EVICTION_GRACE {
                continue;
            }
            if orgs.get(&id).and_then(Slot::idle_handle).is_some() {
                close(&mut orgs, id);
                total = total.saturating_sub(bytes);
                self.closed("budget");
            }
        }
        self.open_bytes.store(total, Ordering::Relaxed);
    }

    fn closed(&self, reason: &'static str) {
        let counter = match reason {
            "idle" => &self.counters.closed_idle,
            _ => &self.counters.closed_budget,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        metrics::counter!(SEARCH_INDEX_CLOSES_TOTAL, "reason" => reason).increment(1);
        metrics::gauge!(SEARCH_OPEN_INDEXES).decrement(1.0);
    }

    /// Closes the indexes nobody used for `idle` (and nobody is using);
    /// returns how many.
    pub fn close_idle(&self, idle: Duration) -> usize {
        let mut orgs = self.orgs.lock();
        let old: Vec<OrgId> = orgs
            .iter()
            .filter(|(_, s)| s.last_used.elapsed() >= idle && s.idle_handle().is_some())
            .map(|(id, _)| *id)
            .collect();
        for id in &old {
            if let Some(h) = close(&mut orgs, *id).and_then(|s| s.cell.get().cloned()) {
                let bytes = h.bytes();
                let _ = self
                    .open_bytes
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                        Some(b.saturating_sub(bytes))
                    });
            }
            self.closed("idle");
        }
        old.len()
    }

    /// What is open now and what was done so far.
    pub fn stats(&self) -> SearchStats {
        let orgs = self.orgs.lock();
        let handles: Vec<&Arc<OrgHandle>> = orgs.values().filter_map(|s| s.cell.get()).collect();
        let c = &self.counters;
        SearchStats {
            open: handles.len(),
            open_bytes: handles.iter().map(|h| h.bytes()).sum(),
            writers_open: handles
                .iter()
                .filter(|h| h.writer.try_lock().is_none_or(|i| i.writer_open()))
                .count(),
            opened_from_disk: c.opened_from_disk.load(Ordering::Relaxed),
            rebuilt: c.rebuilt.load(Ordering::Relaxed),
            closed_idle: c.closed_idle.load(Ordering::Relaxed),
            closed_budget: c.closed_budget.load(Ordering::Relaxed),
        }
    }

    /// Index items for stored chunks, re-embedding (and storing) those whose
    /// vectors came from another embedder.
    async fn items_for(&self, org: OrgId, rows: Vec<ChunkRow>) -> anyhow::Result<Vec<IndexItem>> {
        let id = self.embedder.id();
        let stale: Vec<usize> = rows
            .iter()
            .enumerate()
            .filter(|(_, r)| r.embedder.as_deref() != Some(id.as_str()) || r.embedding.is_none())
            .map(|(i, _)| i)
            .collect();
        let mut vectors: HashMap<usize, Vec<f32>> = HashMap::new();
        for batch in stale.chunks(64) {
            let texts: Vec<String> = batch.iter().map(|&i| rows[i].text.clone()).collect();
            let embedded = self.embedder.embed(&texts).await?;
            for (&i, v) in batch.iter().zip(embedded) {
                store::set_embedding(&self.db, org, rows[i].id, &vector_to_bytes(&v), &id).await?;
                vectors.insert(i, v);
            }
        }
        Ok(rows
            .into_iter()
            .enumerate()
            .map(|(i, r)| {
                let vector = vectors.remove(&i).unwrap_or_else(|| {
                    r.embedding
                        .as_deref()
                        .map(bytes_to_vector)
                        .unwrap_or_default()
                });
                IndexItem {
                    chunk_id: r.id.0,
                    source_id: r.source_id.0,
                    title: r.title,
                    heading: r.heading_path,
                    text: r.text,
                    page: u64::try_from(r.page).ok(),
                    vector,
                }
            })
            .collect())
    }

    /// Replaces a source's passages in its organisation's index.
    pub async fn index_source(
        &self,
        org: OrgId,
        source: SourceId,
        items: Vec<IndexItem>,
    ) -> anyhow::Result<()> {
        self.write(org, move |index| {
            index.delete_source(source.0)?;
            index.add(&items)?;
            Ok(())
        })
        .await
    }

    /// Removes a source's passages from search at once.
    pub async fn delete_source(&self, org: OrgId, source: SourceId) -> anyhow::Result<()> {
        self.write(org, move |index| {
            index.delete_source(source.0)?;
            if index.needs_rebuild() {
                index.rebuild()?;
            }
            Ok(())
        })
        .await
    }

    /// Search within an organisation, optionally within some sources:
    /// hybrid unless `mode` asks for one half.
    pub async fn search(
        &self,
        org: OrgId,
        query: &str,
        k: usize,
        scope: Option<HashSet<SourceId>>,
        mode: super::SearchMode,
    ) -> anyhow::Result<Vec<Hit>> {
        let handle = self.handle(org).await?;
        // The hashing fallback's vectors only add noise to BM25 (measured on
        // Cranfield: hybrid 0.28 vs BM25 0.38 nDCG@10), so without a real
        // model, search is lexical.
        let lexical_only =
            mode == super::SearchMode::Bm25 || self.embedder.id().starts_with("hashing:");
        let vector = if lexical_only {
            Vec::new()
        } else {
            let started = Instant::now();
            let v = self
                .embedder
                .embed(&[query.to_owned()])
                .await?
                .into_iter()
                .next()
                .unwrap_or_default();
            stage(SEARCH_STAGE_SECONDS, "embed", started.elapsed());
            v
        };
        let searcher = handle.searcher.clone();
        let query = query.to_owned();
        let filter: Option<HashSet<uuid::Uuid>> =
            scope.map(|s| s.into_iter().map(|id| id.0).collect());
        crate::work::blocking(move || {
            let started = Instant::now();
            if lexical_only {
                let hits = searcher.search_bm25(&query, k, filter.as_ref());
                stage(SEARCH_STAGE_SECONDS, "bm25", started.elapsed());
                hits
            } else if mode == super::SearchMode::Dense {
                let hits = searcher.search_vector(&vector, k, filter.as_ref());
                stage(SEARCH_STAGE_SECONDS, "vectors", started.elapsed());
                hits
            } else {
                let (hits, t) =
                    searcher.search_hybrid_timed(&query, &vector, k, filter.as_ref())?;
                stage(SEARCH_STAGE_SECONDS, "bm25", t.bm25);
                stage(SEARCH_STAGE_SECONDS, "vectors", t.vectors);
                stage(SEARCH_STAGE_SECONDS, "fusion", t.fusion);
                Ok(hits)
            }
        })
        .await
        .context("search task failed")?
        .map_err(anyhow::Error::from)
    }

    /// Document frequencies of the query's terms in the organisation's
    /// index (see [`bwenge_search::OrgSearcher::term_stats`]).
    pub async fn term_stats(
        &self,
        org: OrgId,
        query: &str,
    ) -> anyhow::Result<bwenge_search::TermStats> {
        let handle = self.handle(org).await?;
        let searcher = handle.searcher.clone();
        let query = query.to_owned();
        crate::work::blocking(move || searcher.term_stats(&query))
            .await
            .context("term statistics task failed")
    }

    /// Rebuilds an organisation's index from the database (another node
    /// changed it, or `bwenge reindex`). An open index is rebuilt aside
    /// and swapped in when ready (this call returns then); searches keep
    /// using the old one meanwhile. An index not open here is marked
    /// stale: its next opening moves the old files aside and rebuilds.
    pub async fn invalidate(&self, org: OrgId) -> anyhow::Result<()> {
        let open = {
            let mut orgs = self.orgs.lock();
            match orgs.get_mut(&org) {
                Some(slot) if slot.cell.get().is_some() => {
                    slot.wanted += 1;
                    true
                }
                _ => {
                    orgs.insert(org, Slot::new(true));
                    false
                }
            }
        };
        if open {
            self.rebuild_aside(org).await?;
        }
        Ok(())
    }

    /// Rebuilds every organisation's index from the database.
    pub async fn reindex_all(&self) -> anyhow::Result<usize> {
        let orgs = store::orgs_with_chunks(&self.db).await?;
        for org in &orgs {
            self.invalidate(*org).await?;
            self.handle(*org).await?;
        }
        Ok(orgs.len())
    }

    /// Opens an organisation's index now (start-up warm-up).
    pub async fn warm(&self, org: OrgId) -> anyhow::Result<usize> {
        Ok(self.handle(org).await?.searcher.len())
    }
}

/// Takes an organisation's open index out of the registry (closing it
/// once its last user is done). One with a change still to catch up with
/// stays as a stale slot, so its next opening rebuilds it.
fn close(orgs: &mut HashMap<OrgId, Slot>, org: OrgId) -> Option<Slot> {
    let slot = orgs.remove(&org)?;
    if slot.built < slot.wanted {
        orgs.insert(org, Slot::new(true));
    }
    Some(slot)
}

/// A chunk id as typed id.
pub fn chunk_id(hit: &Hit) -> ChunkId {
    ChunkId(hit.chunk_id)
}
