//! The on-disk layout of an [`OrgIndex`](super::OrgIndex) directory: its file
//! names, `manifest.json` (layout version, embedder id, dimension,
//! generation, chunk count), whether a manifest allows the index to be
//! loaded, writing it atomically, and removing an index's files before a
//! rebuild. Touches only those files in the index's directory.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{IndexError, ReindexReason};

/// Version of the on-disk layout; an index of another version is rebuilt.
/// 2: one `body` field (title, heading and text) and the hit's ids and page
/// in fast (columnar) fields instead of the document store.
pub(super) const FORMAT: u32 = 2;
const MANIFEST: &str = "manifest.json";
const MANIFEST_TMP: &str = "manifest.json.tmp";
/// Every live chunk's ids, page and vector (see [`crate::vectors`]).
pub(super) const VECTORS: &str = "vectors.bin";
const VECTORS_TMP: &str = "vectors.bin.tmp";
/// The Tantivy index (an `MmapDirectory`).
pub(super) const BM25_DIR: &str = "bm25";

#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Manifest {
    pub(super) format: u32,
    pub(super) embedder_id: String,
    pub(super) dim: usize,
    pub(super) generation: u64,
    pub(super) chunks: usize,
}

impl Manifest {
    /// The manifest in `dir` if the index it describes may be loaded for
    /// `embedder_id` and `dim`; otherwise why the index must be rebuilt.
    pub(super) fn check(
        dir: &Path,
        embedder_id: &str,
        dim: usize,
    ) -> Result<Manifest, ReindexReason> {
        match std::fs::read(dir.join(MANIFEST)) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if dir.join(BM25_DIR).exists() || dir.join(VECTORS).exists() {
                    Err(ReindexReason::Corrupt("manifest.json is missing".into()))
                } else {
                    Err(ReindexReason::Missing)
                }
            }
            Err(e) => Err(ReindexReason::Corrupt(format!("manifest.json: {e}"))),
            Ok(bytes) => match serde_json::from_slice::<Manifest>(&bytes) {
                Err(e) => Err(ReindexReason::Corrupt(format!("manifest.json: {e}"))),
                Ok(m) if m.format != FORMAT => {
                    Err(ReindexReason::FormatChanged { previous: m.format })
                }
                Ok(m) if m.embedder_id != embedder_id || m.dim != dim => {
                    Err(ReindexReason::EmbedderChanged {
                        previous: m.embedder_id,
                        previous_dim: m.dim,
                    })
                }
                Ok(m) => Ok(m),
            },
        }
    }

    /// Writes `manifest.json` in `dir` (to a temporary file, synced, then
    /// renamed; the directory synced when it can be opened).
    pub(super) fn write(&self, dir: &Path) -> Result<(), IndexError> {
        let bytes = serde_json::to_vec_pretty(self)?;
        let tmp = dir.join(MANIFEST_TMP);
        {
            let mut file = std::fs::File::create(&tmp)?;
            std::io::Write::write_all(&mut file, &bytes)?;
            file.sync_all()?;
        }
        std::fs::rename(&tmp, dir.join(MANIFEST))?;
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }
}

/// Removes this index's own files from `dir` (nothing else there) and
/// leaves an empty `bm25/` for a new Tantivy index.
pub(super) fn clear(dir: &Path) -> std::io::Result<()> {
    for file in [MANIFEST, VECTORS, VECTORS_TMP, MANIFEST_TMP] {
        match std::fs::remove_file(dir.join(file)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    match std::fs::remove_dir_all(dir.join(BM25_DIR)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    std::fs::create_dir_all(dir.join(BM25_DIR))
}
