//! The knowledge service built alone: a real SQLite store, index and ingest
//! scheduler (text files need no PDF child process), no HTTP.

use std::collections::HashSet;
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use actix::Actor;
use bwenge_actors::ingest::{IngestScheduler, SchedulerConfig};

use super::SearchMode;
use super::index::SearchService;
use super::ingest::KnowledgeIngest;
use super::service::{KnowledgeDeps, KnowledgeError, KnowledgeService, PersonaScopes, Received};
use super::store::SourceStatus;
use crate::auth::AuthUser;
use crate::auth::model::Role;
use crate::clock::Clock;
use crate::db::{Db, StoreError};
use crate::ids::{OrgId, PersonaId, SourceId};
use crate::infra::bus::InProcessBus;
use crate::testkit;

/// No persona has a narrowed scope in these tests.
struct EveryPersonaSeesAll;

#[async_trait::async_trait]
impl PersonaScopes for EveryPersonaSeesAll {
    async fn scope(
        &self,
        _: OrgId,
        _: PersonaId,
    ) -> Result<Option<Option<HashSet<SourceId>>>, StoreError> {
        Ok(Some(None))
    }
}

async fn service(dir: &std::path::Path) -> (KnowledgeService, Db) {
    let (settings, db) = testkit::sqlite(dir).await;
    let embedder = super::embedders::build(&settings).await;
    let search = Arc::new(SearchService::new(db.clone(), embedder, dir.join("index")));
    let bus: Arc<dyn bwenge_actors::ports::Bus> = Arc::new(InProcessBus::new());
    let work = Arc::new(KnowledgeIngest {
        db: db.clone(),
        search: search.clone(),
        bus: bus.clone(),
        settings: settings.clone(),
        exe: std::path::PathBuf::from("/nonexistent"),
        node_id: "test".into(),
        activity: Arc::new(crate::knowledge::ingest::NoSourceActivity),
    });
    let ingest = IngestScheduler::new(SchedulerConfig { max_concurrent: 1 }, work).start();
    let service = KnowledgeService::new(KnowledgeDeps {
        db: db.clone(),
        search,
        ingest,
        bus,
        node_id: "test".into(),
        data_dir: dir.to_path_buf(),
        transcription: settings.transcription.clone(),
        scopes: Arc::new(EveryPersonaSeesAll),
        clock: Clock::system(),
        quota: testkit::quotas(&settings, &db),
    });
    (service, db)
}

fn received(dir: &std::path::Path, name: &str, bytes: &[u8]) -> Received {
    let mut file = tempfile::NamedTempFile::new_in(dir).expect("a temporary file");
    file.write_all(bytes).expect("written");
    Received {
        temp: file.into_temp_path(),
        filename: name.into(),
        title: None,
        size: bytes.len() as u64,
        sha256: "0".repeat(64),
    }
}

async fn until_ready(k: &KnowledgeService, who: &AuthUser, id: SourceId) {
    for _ in 0..500 {
        let row = k.get(who, id).await.expect("the source");
        match row.status {
            SourceStatus::Ready => return,
            SourceStatus::Failed => panic!("ingest failed: {:?}", row.error),
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    panic!("the source never became ready");
}

const TEXT: &[u8] =
    b"Photosynthesis turns light, water and carbon dioxide into sugar and oxygen.\n\n\
    The chlorophyll in the leaves absorbs mostly red and blue light.";

#[actix_web::test]
async fn a_text_source_becomes_searchable_and_leaves_search_when_deleted() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (k, db) = service(dir.path()).await;
    let teacher = testkit::member(&db, Role::Teacher).await;
    let row = k
        .add_source(&teacher, received(dir.path(), "biology.txt", TEXT))
        .await
        .expect("accepted");
    assert_eq!(row.title, "biology");
    until_ready(&k, &teacher, row.id).await;
    let hits = k
        .search(
            &teacher,
            "what absorbs red light",
            None,
            None,
            SearchMode::Hybrid,
        )
        .await
        .expect("search");
    assert!(
        hits.iter().any(|h| h.text.contains("chlorophyll")),
        "{hits:?}"
    );

    k.delete(&teacher, row.id).await.expect("deleted");
    let hits = k
        .search(
            &teacher,
            "what absorbs red light",
            None,
            None,
            SearchMode::Hybrid,
        )
        .await
        .expect("search");
    assert!(hits.is_empty(), "{hits:?}");
}

#[actix_web::test]
async fn students_cannot_upload_another_school_cannot_see_or_delete_and_garbage_is_refused() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (k, db) = service(dir.path()).await;
    let teacher = testkit::member(&db, Role::Teacher).await;
    let student = AuthUser {
        role: Role::Student,
        ..teacher
    };
    let stranger = testkit::member(&db, Role::Admin).await;

    assert!(matches!(
        k.add_source(&student, received(dir.path(), "notes.txt", TEXT))
            .await,
        Err(KnowledgeError::Forbidden(_))
    ));
    let garbage: Vec<u8> = (0..4096u32).map(|i| (i * 7919 % 251) as u8).collect();
    assert!(matches!(
        k.add_source(&teacher, received(dir.path(), "x.bin", &garbage))
            .await,
        Err(KnowledgeError::Unsupported(_))
    ));
    let row = k
        .add_source(&teacher, received(dir.path(), "biology.txt", TEXT))
        .await
        .expect("accepted");
    assert!(matches!(
        k.get(&stranger, row.id).await,
        Err(KnowledgeError::NotFound)
    ));
    assert!(matches!(
        k.delete(&stranger, row.id).await,
        Err(KnowledgeError::NotFound)
    ));
    // The foreign delete touched nothing: the source still becomes ready.
    until_ready(&k, &teacher, row.id).await;
    assert!(matches!(
        k.search(&teacher, "   ", None, None, SearchMode::Hybrid)
            .await,
        Err(KnowledgeError::Invalid(_))
    ));
}
