//! The vector half of an [`crate::OrgIndex`]: a flat store of every chunk
//! vector plus an HNSW graph (`hnsw_rs`) over them, with tombstones.
//!
//! `hnsw_rs` cannot delete a point, so a deleted chunk's slot is marked dead
//! and skipped by every search (it stays in the graph, where it still helps
//! navigation). [`VectorStore::compacted`] builds a new store from the live
//! slots only; the index does that when dead slots pass a threshold.
//!
//! A slot's vector lives in the graph's own point (`hnsw_rs` keeps a copy of
//! every vector it links); the store keeps an `Arc` to that point per slot,
//! so there is one copy of each vector in memory. Slots not linked yet (just
//! loaded from disk, or being added) keep their vector beside the slot and
//! are scanned exactly, so they are searchable at once. Exact
//! scans over a small scope (a persona limited to a few sources would
//! otherwise get fewer than k graph hits), compaction and `vectors.bin` all
//! read the vectors through those points. The graph itself is not stored: it
//! is re-linked from `vectors.bin` on load.

use std::collections::{HashMap, HashSet};
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::Path;

use std::sync::Arc;

use hnsw_rs::prelude::{DistDot, Hnsw, Point};
use uuid::Uuid;

/// HNSW links per node and layer (layer 0 keeps twice as many).
pub const HNSW_M: usize = 16;
/// Candidate list size while inserting.
pub const HNSW_EF_CONSTRUCTION: usize = 64;
/// Smallest candidate list size while searching.
pub const HNSW_EF_SEARCH: usize = 64;
/// Default for [`crate::OrgIndex::set_exact_scan_max`]: a filtered search
/// whose scope has at most this many live chunks scans them exactly (about
/// 0.1–0.5 µs a 384-d vector, depending on cache: ≤ 2.5 ms).
pub const EXACT_SCAN_MAX: usize = 5_000;

/// Stored vectors are unit vectors scaled by this, so that rounding can never
/// push a dot product above 1 (`hnsw_rs`'s `DistDot` asserts `dot ≤ 1`).
/// Scaling every vector alike changes no ranking; scores are divided back.
const SHRINK: f32 = 1.0 - 1e-5;
const SHRINK2: f32 = SHRINK * SHRINK;

const MAGIC: &[u8; 8] = b"BWVEC001";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Slot {
    pub chunk_id: Uuid,
    pub source_id: Uuid,
    pub page: Option<u64>,
}

pub(crate) struct VectorStore {
    dim: usize,
    slots: Vec<Slot>,
    /// The graph point holding each linked slot's vector (unit vector ×
    /// [`SHRINK`]); `None` for slots not linked yet, or never (dead first).
    points: Vec<Option<Arc<Point<'static, f32>>>>,
    /// Vectors of slots not linked yet, same scaling.
    unlinked: Vec<Option<Box<[f32]>>>,
    /// Ids of the slots not linked yet, ascending.
    queue: Vec<u32>,
    dead: Vec<bool>,
    n_dead: usize,
    by_source: HashMap<Uuid, Vec<u32>>,
    by_chunk: HashMap<Uuid, u32>,
    hnsw: Hnsw<'static, f32, DistDot>,
    exact_scan_max: usize,
}

fn new_graph(capacity: usize) -> Hnsw<'static, f32, DistDot> {
    Hnsw::new(
        HNSW_M,
        capacity.max(1024),
        16,
        HNSW_EF_CONSTRUCTION,
        DistDot,
    )
}

impl VectorStore {
    pub fn new(dim: usize, capacity: usize) -> Self {
        Self {
            dim,
            slots: Vec::new(),
            points: Vec::new(),
            unlinked: Vec::new(),
            queue: Vec::new(),
            dead: Vec::new(),
            n_dead: 0,
            by_source: HashMap::new(),
            by_chunk: HashMap::new(),
            hnsw: new_graph(capacity),
            exact_scan_max: EXACT_SCAN_MAX,
        }
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    pub fn set_exact_scan_max(&mut self, n: usize) {
        self.exact_scan_max = n;
    }

    pub fn live(&self) -> usize {
        self.slots.len() - self.n_dead
    }

    pub fn dead(&self) -> usize {
        self.n_dead
    }

    pub fn slots(&self) -> usize {
        self.slots.len()
    }

    pub fn contains_chunk(&self, chunk: &Uuid) -> bool {
        self.by_chunk.contains_key(chunk)
    }

    pub fn slot(&self, i: u32) -> Slot {
        self.slots[i as usize]
    }

    /// The stored (scaled) vector of slot `i`; empty for a slot that was
    /// never linked (only possible for dead slots).
    pub fn vector(&self, i: u32) -> &[f32] {
        let i = i as usize;
        match (&self.points[i], &self.unlinked[i]) {
            (Some(p), _) => p.get_v(),
            (None, Some(v)) => v,
            (None, None) => &[],
        }
    }

    /// Appends a slot (replacing a live chunk with the same id) and returns
    /// its id; it is searched exactly until [`Self::link`]ed.
    /// `vector` must be a unit vector of `dim` components.
    pub fn push(&mut self, slot: Slot, vector: &[f32]) -> u32 {
        let scaled: Vec<f32> = vector.iter().map(|x| x * SHRINK).collect();
        self.push_scaled(slot, &scaled)
    }

    fn push_scaled(&mut self, slot: Slot, scaled: &[f32]) -> u32 {
        debug_assert_eq!(scaled.len(), self.dim);
        if let Some(old) = self.by_chunk.get(&slot.chunk_id).copied() {
            self.kill(old);
        }
        let id = self.slots.len() as u32;
        self.slots.push(slot);
        self.points.push(None);
        self.unlinked.push(Some(scaled.into()));
        self.queue.push(id);
        self.dead.push(false);
        self.by_source.entry(slot.source_id).or_default().push(id);
        self.by_chunk.insert(slot.chunk_id, id);
        id
    }

    fn kill(&mut self, i: u32) {
        let idx = i as usize;
        if self.dead[idx] {
            return;
        }
        self.dead[idx] = true;
        self.n_dead += 1;
        let s = self.slots[idx];
        if self.by_chunk.get(&s.chunk_id) == Some(&i) {
            self.by_chunk.remove(&s.chunk_id);
        }
        if let Some(list) = self.by_source.get_mut(&s.source_id) {
            list.retain(|x| *x != i);
            if list.is_empty() {
                self.by_source.remove(&s.source_id);
            }
        }
    }

    /// Tombstones every live chunk of `source`; returns how many.
    pub fn delete_source(&mut self, source: &Uuid) -> usize {
        let Some(list) = self.by_source.remove(source) else {
            return 0;
        };
        for &i in &list {
            let idx = i as usize;
            if !self.dead[idx] {
                self.dead[idx] = true;
                self.n_dead += 1;
                let s = self.slots[idx];
                if self.by_chunk.get(&s.chunk_id) == Some(&i) {
                    self.by_chunk.remove(&s.chunk_id);
                }
            }
        }
        list.len()
    }

    /// Slots not linked into the graph yet.
    pub fn unlinked(&self) -> usize {
        self.queue.len()
    }

    /// The oldest `max` slots not linked yet.
    pub fn next_unlinked(&self, max: usize) -> Vec<u32> {
        self.queue[..max.min(self.queue.len())].to_vec()
    }

    /// Inserts `ids` (unlinked slots, ascending) into the graph. Takes
    /// `&self`: `hnsw_rs` inserts under its own locks, so searches may run
    /// meanwhile. Follow with [`Self::mark_linked`].
    pub fn link(&self, ids: &[u32]) {
        let items: Vec<(&[f32], usize)> = ids
            .iter()
            .filter(|&&i| !self.dead[i as usize] && self.points[i as usize].is_none())
            .map(|&i| (self.vector(i), i as usize))
            .filter(|(v, _)| !v.is_empty())
            .collect();
        if items.len() >= 64 {
            self.hnsw.parallel_insert_slice(&items);
        } else {
            for item in items {
                self.hnsw.insert_slice(item);
            }
        }
    }

    /// Records that [`Self::link`] covered `ids` (ascending): their vectors
    /// are now read from their graph points, and the separate copies freed.
    pub fn mark_linked(&mut self, ids: &[u32]) {
        if ids.is_empty() {
            return;
        }
        for point in self.hnsw.get_point_indexation() {
            let id = point.get_origin_id();
            if self.points[id].is_none() && ids.binary_search(&(id as u32)).is_ok() {
                self.points[id] = Some(point);
            }
        }
        for &i in ids {
            self.unlinked[i as usize] = None;
        }
        self.queue.retain(|i| ids.binary_search(i).is_err());
    }

    /// A new store holding only the live slots (renumbered), with a fresh graph.
    pub fn compacted(&self) -> VectorStore {
        let mut out = VectorStore::new(self.dim, self.live());
        out.exact_scan_max = self.exact_scan_max;
        for i in 0..self.slots.len() {
            if !self.dead[i] {
                out.push_scaled(self.slots[i], self.vector(i as u32));
            }
        }
        let all = out.queue.clone();
        out.link(&all);
        out.mark_linked(&all);
        out
    }

    /// The `k` nearest live slots to unit vector `query` (similarity =
    /// cosine), best first, restricted to `scope` sources when given.
    ///
    /// Small scopes (≤ `exact_scan_max` live chunks) are scanned exactly.
    /// Otherwise the graph is searched with a filter (dead and out-of-scope
    /// points are skipped, the candidate list widened in proportion), slots
    /// not yet linked into the graph are scanned exactly and merged, and if
    /// that still yields fewer than `k` of the hits that exist, the whole
    /// scope is scanned exactly: a search never returns fewer than
    /// `min(k, live chunks in scope)` hits.
    pub fn search(
        &self,
        query: &[f32],
        k: usize,
        scope: Option<&HashSet<Uuid>>,
    ) -> Vec<(u32, f32)> {
        if k == 0 || self.live() == 0 {
            return Vec::new();
        }
        let q: Vec<f32> = query.iter().map(|x| x * SHRINK).collect();
        let in_scope = |id: usize| {
            !self.dead.get(id).copied().unwrap_or(true)
                && scope.is_none_or(|s| s.contains(&self.slots[id].source_id))
        };
        let available = match scope {
            None => self.live(),
            Some(scope) => scope
                .iter()
                .filter_map(|s| self.by_source.get(s))
                .map(Vec::len)
                .sum(),
        };
        if available == 0 {
            return Vec::new();
        }
        if scope.is_some() && available <= self.exact_scan_max {
            return self.exact(&q, k, self.members(scope));
        }
        let ef = k.max(HNSW_EF_SEARCH);
        let mut hits = if self.queue.len() == self.slots.len() {
            Vec::new()
        } else if scope.is_none() && self.n_dead == 0 {
            self.graph_hits(self.hnsw.search(&q, k, ef))
        } else {
            let ok = |id: &usize| in_scope(*id);
            let ef = widen(ef, self.slots.len(), available);
            self.graph_hits(self.hnsw.search_filter(&q, k, ef, Some(&ok)))
        };
        if !self.queue.is_empty() {
            let pending = self.queue.iter().copied().filter(|&i| in_scope(i as usize));
            hits.extend(self.exact(&q, k, pending));
            hits.sort_unstable_by_key(|h| h.0);
            hits.dedup_by_key(|h| h.0);
            top_k(&mut hits, k);
        }
        if hits.len() >= k.min(available) {
            hits
        } else {
            self.exact(&q, k, self.members(scope))
        }
    }

    /// Live slots of `scope` (all live slots when `None`).
    fn members<'a>(
        &'a self,
        scope: Option<&'a HashSet<Uuid>>,
    ) -> Box<dyn Iterator<Item = u32> + 'a> {
        match scope {
            None => Box::new((0..self.slots.len() as u32).filter(|&i| !self.dead[i as usize])),
            Some(scope) => Box::new(
                scope
                    .iter()
                    .filter_map(|s| self.by_source.get(s))
                    .flat_map(|l| l.iter().copied()),
            ),
        }
    }

    fn graph_hits(&self, hits: Vec<hnsw_rs::prelude::Neighbour>) -> Vec<(u32, f32)> {
        hits.into_iter()
            .filter(|n| !self.dead.get(n.d_id).copied().unwrap_or(true))
            .map(|n| (n.d_id as u32, (1.0 - n.distance) / SHRINK2))
            .collect()
    }

    /// Exact top-k by dot product over `ids` (query already scaled).
    pub fn exact(&self, q: &[f32], k: usize, ids: impl Iterator<Item = u32>) -> Vec<(u32, f32)> {
        let mut scored: Vec<(u32, f32)> =
            ids.map(|i| (i, dot(q, self.vector(i)) / SHRINK2)).collect();
        top_k(&mut scored, k);
        scored
    }

    /// The cosine similarity of a unit `query` with `chunk`'s vector, when
    /// the chunk is live here.
    pub fn similarity(&self, query: &[f32], chunk: &Uuid) -> Option<f32> {
        let i = *self.by_chunk.get(chunk)?;
        if self.dead.get(i as usize).copied().unwrap_or(true) {
            return None;
        }
        let q: Vec<f32> = query.iter().map(|x| x * SHRINK).collect();
        Some(dot(&q, self.vector(i)) / SHRINK2)
    }

    /// Exact top-k over every live slot, for benchmarks (query is a unit vector).
    pub fn exact_all(&self, query: &[f32], k: usize) -> Vec<(u32, f32)> {
        let q: Vec<f32> = query.iter().map(|x| x * SHRINK).collect();
        self.exact(
            &q,
            k,
            (0..self.slots.len() as u32).filter(|&i| !self.dead[i as usize]),
        )
    }

    /// Writes the live slots to `path` (via a temporary file and a rename).
    pub fn save(&self, path: &Path, generation: u64) -> std::io::Result<()> {
        let tmp = path.with_extension("bin.tmp");
        {
            let file = std::fs::File::create(&tmp)?;
            let mut w = BufWriter::with_capacity(1 << 20, file);
            w.write_all(MAGIC)?;
            w.write_all(&generation.to_le_bytes())?;
            w.write_all(&(self.dim as u64).to_le_bytes())?;
            w.write_all(&(self.live() as u64).to_le_bytes())?;
            for i in 0..self.slots.len() {
                if self.dead[i] {
                    continue;
                }
                let s = self.slots[i];
                w.write_all(s.chunk_id.as_bytes())?;
                w.write_all(s.source_id.as_bytes())?;
                w.write_all(&s.page.unwrap_or(u64::MAX).to_le_bytes())?;
                for x in self.vector(i as u32) {
                    w.write_all(&(x / SHRINK).to_le_bytes())?;
                }
            }
            let file = w.into_inner().map_err(|e| e.into_error())?;
            file.sync_all()?;
        }
        std::fs::rename(&tmp, path)
    }

    /// Reads a file written by [`Self::save`] and rebuilds the graph.
    /// Returns the store and the generation recorded in the file.
    pub fn load(path: &Path, dim: usize) -> Result<(VectorStore, u64), String> {
        let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let len = file.metadata().map_err(|e| e.to_string())?.len();
        let mut r = BufReader::with_capacity(1 << 20, file);
        let mut magic = [0u8; 8];
        r.read_exact(&mut magic).map_err(|e| e.to_string())?;
        if &magic != MAGIC {
            return Err("vectors.bin: bad magic".into());
        }
        let mut u = [0u8; 8];
        let mut read_u64 = |r: &mut BufReader<std::fs::File>| -> Result<u64, String> {
            r.read_exact(&mut u).map_err(|e| e.to_string())?;
            Ok(u64::from_le_bytes(u))
        };
        let generation = read_u64(&mut r)?;
        let file_dim = read_u64(&mut r)? as usize;
        let count = read_u64(&mut r)? as usize;
        if file_dim != dim {
            return Err(format!("vectors.bin has dim {file_dim}, expected {dim}"));
        }
        let record = 16 + 16 + 8 + 4 * dim as u64;
        if len != 32 + record * count as u64 {
            return Err(format!(
                "vectors.bin is {len} bytes, expected {}",
                32 + record * count as u64
            ));
        }
        let mut store = VectorStore::new(dim, count);
        store.slots.reserve(count);
        let mut buf = vec![0u8; record as usize];
        let mut v = vec![0f32; dim];
        for _ in 0..count {
            r.read_exact(&mut buf).map_err(|e| e.to_string())?;
            let uuid = |b: &[u8]| Uuid::from_slice(b).map_err(|e| e.to_string());
            let chunk_id = uuid(&buf[0..16])?;
            let source_id = uuid(&buf[16..32])?;
            let mut p = [0u8; 8];
            p.copy_from_slice(&buf[32..40]);
            let page = Some(u64::from_le_bytes(p)).filter(|p| *p != u64::MAX);
            for (x, b) in v.iter_mut().zip(buf[40..].chunks_exact(4)) {
                *x = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            }
            if !v.iter().all(|x| x.is_finite()) {
                return Err("vectors.bin holds a non-finite value".into());
            }
            store.push(
                Slot {
                    chunk_id,
                    source_id,
                    page,
                },
                &v,
            );
        }
        Ok((store, generation))
    }
}

/// Widens a candidate list when only `wanted` of `total` points qualify.
fn widen(ef: usize, total: usize, wanted: usize) -> usize {
    let factor = total as f64 / wanted.max(1) as f64;
    ((ef as f64 * factor).ceil() as usize).clamp(ef, 4096)
}

/// Keeps the `k` best (highest score) entries, sorted best first.
pub(crate) fn top_k(v: &mut Vec<(u32, f32)>, k: usize) {
    let by_score = |a: &(u32, f32), b: &(u32, f32)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
    if v.len() > k && k > 0 {
        v.select_nth_unstable_by(k - 1, by_score);
        v.truncate(k);
    } else if k == 0 {
        v.clear();
    }
    v.sort_unstable_by(by_score);
}

/// Dot product with eight accumulators (auto-vectorises).
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let ca = a.chunks_exact(8);
    let cb = b.chunks_exact(8);
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}
