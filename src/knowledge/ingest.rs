//! The ingest work behind `bwenge-actors`' `IngestJob`: extract → chunk →
//! embed → store → index, with progress stored on the source (so a restart
//! resumes) and published on the bus (`ingest.<org>`). Permanent failures
//! end `failed` with a sentence a teacher can read; transient ones are
//! retried with backoff, up to `knowledge.max_attempts` runs.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use bwenge_actors::ingest::IngestWork;
use bwenge_actors::messages::ingest::{JobId, Outcome};
use bwenge_actors::ports::Bus;
use bwenge_parsers::{Document, ExtractLimits, MediaKind, ParseError, PdfLimits};
use bwenge_search::IndexItem;

use crate::config::Settings;
use crate::db::Db;
use crate::ids::{ChunkId, OrgId, SourceId};
use crate::knowledge::index::{SearchService, vector_to_bytes};
use crate::knowledge::store::{self, NewChunk, SourceRow, SourceStatus};
use crate::knowledge::transcribe;

const EMBED_BATCH: usize = 32;

pub struct KnowledgeIngest {
    pub db: Db,
    pub search: Arc<SearchService>,
    pub bus: Arc<dyn Bus>,
    pub settings: Settings,
    /// This binary, re-invoked as `bwenge __extract-pdf`.
    pub exe: PathBuf,
    /// This node, so it can ignore its own index announcements.
    pub node_id: String,
    /// Where sources that became ready or failed are reported.
    pub activity: Arc<dyn SourceActivity>,
}

/// Where ingest reports a source's final status (analytics'
/// `source_ready` / `source_failed`, implemented in `adapters`). Must not
/// block or wait.
pub trait SourceActivity: Send + Sync + 'static {
    fn finished(&self, org: OrgId, source: SourceId, ready: bool, error: Option<&str>);
}

/// Reports nowhere (knowledge's own tests).
pub struct NoSourceActivity;

impl SourceActivity for NoSourceActivity {
    fn finished(&self, _: OrgId, _: SourceId, _: bool, _: Option<&str>) {}
}

/// The bus topic of an organisation's ingest progress.
pub fn progress_topic(org: OrgId) -> String {
    format!("ingest.{org}")
}

/// Why a job failed: for good (the file itself; the sentence is shown to
/// the teacher), or for now (worth a retry; the cause is logged with its
/// chain, never shown).
enum Failure {
    Permanent(String),
    Transient(anyhow::Error),
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure::Transient(e)
    }
}

impl From<crate::db::StoreError> for Failure {
    fn from(e: crate::db::StoreError) -> Self {
        Failure::Transient(e.into())
    }
}

impl KnowledgeIngest {
    async fn stage(
        &self,
        src: &SourceRow,
        status: SourceStatus,
        stage: &str,
        progress: f64,
    ) -> Result<(), Failure> {
        store::set_stage(&self.db, src.id, status, stage, progress).await?;
        self.publish(src.organization_id, src.id, status, stage, progress, None)
            .await;
        Ok(())
    }

    async fn publish(
        &self,
        org: OrgId,
        id: SourceId,
        status: SourceStatus,
        stage: &str,
        progress: f64,
        error: Option<&str>,
    ) {
        if matches!(status, SourceStatus::Ready | SourceStatus::Failed) {
            self.activity
                .finished(org, id, status == SourceStatus::Ready, error);
        }
        let msg = crate::infra::bus::messages::IngestProgress {
            error: error.map(str::to_owned),
            progress,
            source_id: id,
            stage: stage.to_owned(),
            status: status.as_str().to_owned(),
        };
        if let Err(e) =
            crate::infra::bus::publish_json(self.bus.as_ref(), &progress_topic(org), &msg).await
        {
            tracing::warn!(error = %e, "could not publish ingest progress");
        }
    }

    async fn extract(
        &self,
        src: &SourceRow,
        path: &std::path::Path,
    ) -> Result<Document, ParseError> {
        let hint = src.filename.clone();
        let p = path.to_owned();
        let kind = crate::work::blocking(move || bwenge_parsers::sniff(&p, Some(&hint)))
            .await
            .map_err(|e| ParseError::Io(std::io::Error::other(e)))?
            .map_err(ParseError::Io)?;
        match kind {
            MediaKind::Pdf => {
                let k = &self.settings.knowledge;
                let limits = PdfLimits {
                    timeout: Duration::from_secs(k.pdf_timeout_secs),
                    max_memory_bytes: k.pdf_max_memory_mb * 1024 * 1024,
                    ..PdfLimits::default()
                };
                bwenge_parsers::extract_pdf_in_child(&self.exe, path, &limits).await
            }
            MediaKind::Audio | MediaKind::Video => {
                transcribe::transcribe(
                    &self.settings.transcription,
                    path,
                    &src.filename,
                    &src.media_type,
                )
                .await
            }
            kind => {
                let p = path.to_owned();
                crate::work::blocking(move || {
                    bwenge_parsers::extract(kind, &p, &ExtractLimits::default())
                })
                .await
                .map_err(|e| ParseError::Io(std::io::Error::other(e)))?
            }
        }
    }

    async fn process(&self, src: &SourceRow) -> Result<(), Failure> {
        let path = crate::storage::storage_path(&self.settings.data_dir, &src.storage_key);
        self.stage(src, SourceStatus::Processing, "extracting", 0.05)
            .await?;
        let doc = match self.extract(src, &path).await {
            Ok(doc) => doc,
            Err(e) if e.is_permanent() => return Err(Failure::Permanent(e.to_string())),
            Err(e) => {
                return Err(Failure::Transient(
                    anyhow::Error::new(e).context("extracting the text"),
                ));
            }
        };
        self.stage(src, SourceStatus::Processing, "chunking", 0.3)
            .await?;
        let pages = i64::from(doc.page_count);
        let sizes = self.settings.knowledge.chunking();
        let chunks = crate::work::blocking(move || bwenge_parsers::chunk(&doc, &sizes))
            .await
            .context("the chunking task failed")?;
        if chunks.is_empty() {
            return Err(Failure::Permanent(
                "No text could be found in this file, so there is nothing to search.".into(),
            ));
        }
        self.stage(src, SourceStatus::Processing, "embedding", 0.35)
            .await?;
        let embedder = self.search.embedder().clone();
        let mut vectors: Vec<Vec<f32>> = Vec::with_capacity(chunks.len());
        for (i, batch) in chunks.chunks(EMBED_BATCH).enumerate() {
            // Headings help a passage match questions about its section.
            let texts: Vec<String> = batch
                .iter()
                .map(|c| {
                    if c.heading_path.is_empty() {
                        c.text.clone()
                    } else {
                        format!("{}\n{}", c.heading_path.join(" > "), c.text)
                    }
                })
                .collect();
            vectors.extend(
                embedder
                    .embed(&texts)
                    .await
                    .context("embedding the passages")?,
            );
            let done = ((i + 1) * EMBED_BATCH).min(chunks.len()) as f64 / chunks.len() as f64;
            if i % 4 == 3 {
                self.stage(
                    src,
                    SourceStatus::Processing,
                    "embedding",
                    0.35 + 0.5 * done,
                )
                .await?;
            }
        }
        let rows: Vec<NewChunk> = chunks
            .iter()
            .zip(&vectors)
            .map(|(c, v)| NewChunk {
                id: ChunkId::new(),
                ordinal: i64::from(c.ordinal),
                page: i64::from(c.page),
                page_end: i64::from(c.page_end),
                heading_path: c.heading_path.join(" > "),
                text: c.text.clone(),
                token_count: i64::from(c.token_estimate),
                start_ms: c.start_ms.and_then(|m| i64::try_from(m).ok()),
                embedding: vector_to_bytes(v),
            })
            .collect();
        store::replace_chunks(&self.db, src.organization_id, src.id, &embedder.id(), &rows).await?;
        self.stage(src, SourceStatus::Processing, "indexing", 0.9)
            .await?;
        let items: Vec<IndexItem> = rows
            .into_iter()
            .zip(vectors)
            .map(|(r, vector)| IndexItem {
                chunk_id: r.id.0,
                source_id: src.id.0,
                title: src.title.clone(),
                heading: r.heading_path,
                text: r.text,
                page: u64::try_from(r.page).ok(),
                vector,
            })
            .collect();
        let count = items.len() as i64;
        self.search
            .index_source(src.organization_id, src.id, items)
            .await?;
        store::mark_ready(&self.db, src.id, pages, count).await?;
        self.publish(
            src.organization_id,
            src.id,
            SourceStatus::Ready,
            "ready",
            1.0,
            None,
        )
        .await;
        // Other nodes refresh this organisation's index from the database.
        let _ = crate::infra::bus::publish_json(
            self.bus.as_ref(),
            crate::knowledge::INDEX_TOPIC,
            &crate::infra::bus::messages::IndexChanged {
                node: self.node_id.clone(),
                organization_id: src.organization_id,
            },
        )
        .await;
        Ok(())
    }
}

#[async_trait]
impl IngestWork for KnowledgeIngest {
    async fn run(&self, job: JobId) -> Outcome {
        let id = SourceId(job.0);
        let src = match store::source_for_job(&self.db, id).await {
            Ok(Some(src)) => src,
            // Deleted meanwhile: nothing to do.
            Ok(None) => return Outcome::Finished,
            Err(e) => {
                tracing::warn!(error = %e, "ingest: database unavailable; retrying");
                return Outcome::RetryAfter(Duration::from_secs(5));
            }
        };
        if src.status.is_final() {
            return Outcome::Finished;
        }
        let attempt = match store::begin_attempt(&self.db, id).await {
            Ok(n) => n,
            Err(_) => return Outcome::RetryAfter(Duration::from_secs(5)),
        };
        let max = i64::from(self.settings.knowledge.max_attempts.max(1));
        if attempt > max {
            let msg = "Processing this file failed several times; try uploading it again.";
            let _ = store::mark_failed(&self.db, id, msg).await;
            self.publish(
                src.organization_id,
                id,
                SourceStatus::Failed,
                &src.stage,
                src.progress,
                Some(msg),
            )
            .await;
            return Outcome::Finished;
        }
        match self.process(&src).await {
            Ok(()) => Outcome::Finished,
            Err(Failure::Permanent(msg)) => {
                tracing::info!(source_id = %id, reason = %msg, "ingest failed");
                let _ = store::mark_failed(&self.db, id, &msg).await;
                self.publish(
                    src.organization_id,
                    id,
                    SourceStatus::Failed,
                    "failed",
                    1.0,
                    Some(&msg),
                )
                .await;
                Outcome::Finished
            }
            Err(Failure::Transient(msg)) if attempt < max => {
                tracing::warn!(source_id = %id, attempt, error = ?msg, "ingest failed; will retry");
                let _ = store::set_stage(&self.db, id, SourceStatus::Queued, "queued", 0.0).await;
                Outcome::RetryAfter(Duration::from_secs(2u64.pow(attempt as u32).min(60)))
            }
            Err(Failure::Transient(msg)) => {
                tracing::error!(source_id = %id, error = ?msg, "ingest failed for good");
                let text = "Processing this file failed; try uploading it again later.";
                let _ = store::mark_failed(&self.db, id, text).await;
                self.publish(
                    src.organization_id,
                    id,
                    SourceStatus::Failed,
                    "failed",
                    1.0,
                    Some(text),
                )
                .await;
                Outcome::Finished
            }
        }
    }
}
