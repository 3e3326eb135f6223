//! The knowledge use cases, free of HTTP: [`KnowledgeService`] registers
//! uploaded files as sources and queues their ingest, lists and deletes
//! them, and searches the organisation's passages. It calls one port
//! outward, [`PersonaScopes`], to narrow a search to a persona's sources.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;

use actix::Addr;
use anyhow::Context;
use bwenge_actors::ingest::IngestScheduler;
use bwenge_actors::messages::ingest::{Cancel, Enqueue, JobId};
use bwenge_actors::ports::Bus;
use bwenge_parsers::MediaKind;

use crate::auth::{AuthUser, Forbidden};
use crate::clock::Clock;
use crate::config::TranscriptionSettings;
use crate::db::{Db, StoreError};
use crate::ids::{ChunkId, OrgId, PersonaId, SourceId};
use crate::knowledge::index::{self, SearchService};
use crate::knowledge::store::{self, SourceRow, SourceStatus};
use crate::knowledge::{INDEX_TOPIC, SearchHit, SearchMode, transcribe};
use crate::metrics::{SEARCH_STAGE_SECONDS, stage};
use crate::pagination::Page;
use crate::storage::storage_path;
use crate::validation::Invalid;

/// What can go wrong with sources and search.
#[derive(Debug, thiserror::Error)]
pub enum KnowledgeError {
    #[error(transparent)]
    Invalid(#[from] Invalid),
    #[error(transparent)]
    Forbidden(#[from] Forbidden),
    #[error("no such source or persona")]
    NotFound,
    /// The bytes are not a type we read; the sentence says which are.
    #[error("unsupported media type: {0}")]
    Unsupported(String),
    /// The storage allowance would be passed; the sentence says which.
    #[error("quota exceeded: {0}")]
    QuotaExceeded(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// The organisation's storage allowance (billing's, through
/// `crate::adapters`): an upload reserves its size before it is kept, a
/// deleted source gives it back.
#[async_trait::async_trait]
pub trait StorageQuota: Send + Sync + 'static {
    /// Refused with [`KnowledgeError::QuotaExceeded`] past the allowance.
    async fn reserve(&self, org: OrgId, bytes: u64) -> Result<()>;
    async fn release(&self, org: OrgId, bytes: u64);
}

type Result<T, E = KnowledgeError> = std::result::Result<T, E>;

/// Which sources a persona answers from: `None` when the persona does not
/// exist in the organisation, `Some(None)` for every source, else the set.
#[async_trait::async_trait]
pub trait PersonaScopes: Send + Sync + 'static {
    async fn scope(
        &self,
        org: OrgId,
        persona: PersonaId,
    ) -> Result<Option<Option<HashSet<SourceId>>>, StoreError>;
}

pub const ACCEPTED: &str = "PDF, Word (.docx), PowerPoint (.pptx), plain text, Markdown, HTML, \
     and SRT or WebVTT captions";

/// A file received in full, not yet a source.
pub struct Received {
    pub temp: tempfile::TempPath,
    pub filename: String,
    pub title: Option<String>,
    pub size: u64,
    pub sha256: String,
}

/// Sources, their ingest and search, for every organisation.
#[derive(Clone)]
pub struct KnowledgeService {
    inner: Arc<Inner>,
}

struct Inner {
    db: Db,
    search: Arc<SearchService>,
    ingest: Addr<IngestScheduler>,
    bus: Arc<dyn Bus>,
    node_id: String,
    data_dir: PathBuf,
    transcription: TranscriptionSettings,
    scopes: Arc<dyn PersonaScopes>,
    clock: Clock,
    quota: Arc<dyn StorageQuota>,
}

/// What [`KnowledgeService`] is built from.
pub struct KnowledgeDeps {
    pub db: Db,
    pub search: Arc<SearchService>,
    pub ingest: Addr<IngestScheduler>,
    pub bus: Arc<dyn Bus>,
    pub node_id: String,
    pub data_dir: PathBuf,
    pub transcription: TranscriptionSettings,
    pub scopes: Arc<dyn PersonaScopes>,
    pub clock: Clock,
    pub quota: Arc<dyn StorageQuota>,
}

impl KnowledgeService {
    pub fn new(d: KnowledgeDeps) -> Self {
        Self {
            inner: Arc::new(Inner {
                db: d.db,
                search: d.search,
                ingest: d.ingest,
                bus: d.bus,
                node_id: d.node_id,
                data_dir: d.data_dir,
                transcription: d.transcription,
                scopes: d.scopes,
                clock: d.clock,
                quota: d.quota,
            }),
        }
    }

    /// The search indexes (their lifecycle figures, for operators and tests).
    pub fn indexes(&self) -> &Arc<SearchService> {
        &self.inner.search
    }

    /// Keeps a received file as a new source of the caller's organisation
    /// and queues its ingest. The type is decided from the bytes.
    pub async fn add_source(&self, caller: &AuthUser, received: Received) -> Result<SourceRow> {
        caller.require_staff()?;
        let path = received.temp.to_path_buf();
        let hint = received.filename.clone();
        let sniffed =
            crate::work::blocking(move || bwenge_parsers::sniff_with_mime(&path, Some(&hint)))
                .await
                .context("the sniffing task failed")?
                .context("sniffing the upload")?;
        match sniffed.kind {
            MediaKind::Unknown => {
                return Err(KnowledgeError::Unsupported(format!(
                    "This file type is not supported. Accepted: {ACCEPTED}."
                )));
            }
            MediaKind::Audio | MediaKind::Video
                if !transcribe::enabled(&self.inner.transcription) =>
            {
                return Err(KnowledgeError::Unsupported(
                    "Audio and video need a transcription service, and none is configured: set \
                     BWENGE_TRANSCRIPTION__BASE_URL (an OpenAI-compatible /v1/audio/transcriptions \
                     endpoint) and, if needed, BWENGE_TRANSCRIPTION__API_KEY."
                        .into(),
                ));
            }
            _ => {}
        }
        self.inner
            .quota
            .reserve(caller.org_id, received.size)
            .await?;
        let size = received.size;
        let kept = self.keep_source(caller, received, sniffed.mime).await;
        if kept.is_err() {
            self.inner.quota.release(caller.org_id, size).await;
        }
        let row = kept?;
        self.inner.ingest.do_send(Enqueue(JobId(row.id.0)));
        metrics::counter!("bwenge_knowledge_uploads_total", "kind" => sniffed.kind.as_str())
            .increment(1);
        Ok(row)
    }

    /// Moves the upload into storage and records its row.
    async fn keep_source(
        &self,
        caller: &AuthUser,
        received: Received,
        mime: &str,
    ) -> Result<SourceRow> {
        let id = SourceId::new();
        let key = format!("sources/{}/{}", caller.org_id, id);
        let dest = storage_path(&self.inner.data_dir, &key);
        if let Some(dir) = dest.parent() {
            tokio::fs::create_dir_all(dir)
                .await
                .context("creating the source directory")?;
        }
        received
            .temp
            .persist(&dest)
            .map_err(|e| e.error)
            .context("keeping the upload")?;
        let now = self.inner.clock.now();
        let title = received.title.unwrap_or_else(|| {
            received
                .filename
                .rsplit_once('.')
                .map_or(received.filename.clone(), |(stem, _)| stem.to_owned())
        });
        let row = SourceRow {
            id,
            organization_id: caller.org_id,
            title,
            filename: received.filename,
            media_type: mime.to_owned(),
            size_bytes: received.size as i64,
            sha256: received.sha256,
            storage_key: key,
            status: SourceStatus::Queued,
            stage: "queued".into(),
            progress: 0.0,
            page_count: None,
            chunk_count: None,
            error: None,
            attempts: 0,
            uploaded_by: Some(caller.user_id),
            created_at: now,
            updated_at: now,
        };
        if let Err(e) = store::insert_source(&self.inner.db, &row).await {
            let _ = tokio::fs::remove_file(&dest).await;
            return Err(e.into());
        }
        Ok(row)
    }

    /// The organisation's sources, oldest first (`limit + 1` rows).
    pub async fn list(&self, caller: &AuthUser, page: Page) -> Result<Vec<SourceRow>> {
        Ok(store::list_sources(&self.inner.db, caller.org_id, page).await?)
    }

    pub async fn get(&self, caller: &AuthUser, id: SourceId) -> Result<SourceRow> {
        store::source(&self.inner.db, caller.org_id, id)
            .await?
            .ok_or(KnowledgeError::NotFound)
    }

    /// Deletes a source: its passages leave search at once (here, and on
    /// other nodes through the bus) and its file is removed. A source of
    /// another organisation is not found, and its ingest is left alone.
    pub async fn delete(&self, caller: &AuthUser, id: SourceId) -> Result<()> {
        caller.require_staff()?;
        let org = caller.org_id;
        let size = store::source(&self.inner.db, org, id)
            .await?
            .ok_or(KnowledgeError::NotFound)?
            .size_bytes;
        let key = store::delete_source(&self.inner.db, org, id)
            .await?
            .ok_or(KnowledgeError::NotFound)?;
        self.inner
            .quota
            .release(org, u64::try_from(size).unwrap_or(0))
            .await;
        self.inner.ingest.do_send(Cancel(JobId(id.0)));
        self.inner.search.delete_source(org, id).await?;
        let _ = crate::infra::bus::publish_json(
            self.inner.bus.as_ref(),
            INDEX_TOPIC,
            &crate::infra::bus::messages::IndexChanged {
                node: self.inner.node_id.clone(),
                organization_id: org,
            },
        )
        .await;
        let file = storage_path(&self.inner.data_dir, &key);
        if let Err(e) = tokio::fs::remove_file(&file).await
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(error = %e, "could not remove a deleted source's file");
        }
        Ok(())
    }

    /// Hybrid search over the organisation's ready sources, within a
    /// persona's scope when one is named. Students search only through a
    /// persona (of their organisation): the whole library is for staff.
    pub async fn search(
        &self,
        caller: &AuthUser,
        query: &str,
        k: Option<usize>,
        persona: Option<PersonaId>,
        mode: SearchMode,
    ) -> Result<Vec<SearchHit>> {
        if persona.is_none() {
            caller.require_staff()?;
        }
        let query = query.trim();
        if query.is_empty() || query.chars().count() > 2000 {
            return Err(Invalid::new("q", "Ask with 1 to 2000 characters.").into());
        }
        let k = k.unwrap_or(10);
        if k == 0 || k > 50 {
            return Err(Invalid::new("k", "k must be between 1 and 50.").into());
        }
        let scope = match persona {
            None => None,
            Some(id) => self
                .inner
                .scopes
                .scope(caller.org_id, id)
                .await?
                .ok_or(KnowledgeError::NotFound)?,
        };
        Ok(search_passages(
            &self.inner.db,
            &self.inner.search,
            caller.org_id,
            query,
            k,
            scope,
            mode,
        )
        .await?)
    }
}

/// Search with the passages' text and titles, read back from the database
/// within the organisation.
pub async fn search_passages(
    db: &Db,
    search: &SearchService,
    org: OrgId,
    query: &str,
    k: usize,
    scope: Option<HashSet<SourceId>>,
    mode: SearchMode,
) -> anyhow::Result<Vec<SearchHit>> {
    let hits = search.search(org, query, k, scope, mode).await?;
    let ids: Vec<ChunkId> = hits.iter().map(index::chunk_id).collect();
    let started = std::time::Instant::now();
    let rows = store::chunks_by_ids(db, org, &ids)
        .await
        .context("reading the hits' passages")?;
    stage(SEARCH_STAGE_SECONDS, "passages", started.elapsed());
    Ok(hits
        .iter()
        .filter_map(|h| {
            let row = rows.iter().find(|r| r.id.0 == h.chunk_id)?;
            Some(SearchHit {
                chunk_id: row.id,
                source_id: row.source_id,
                source_title: row.title.clone(),
                page: row.page,
                text: row.text.clone(),
                score: h.score,
                similarity: h.dense,
            })
        })
        .collect())
}
