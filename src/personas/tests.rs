//! The persona catalog built alone: a real store and persona registry (the
//! built-in extractive responder, the hashing embedder), no HTTP.

use std::sync::Arc;
use std::time::Duration;

use actix::Actor;
use bwenge_actors::persona::{Persona, PersonaKey};
use bwenge_actors::registry::{Registry, RegistryConfig};

use super::model::{PersonaInput, SafetyInput};
use super::{PersonaCatalog, PersonaError, PersonaService, Question};
use crate::auth::AuthUser;
use crate::auth::model::Role;
use crate::clock::Clock;
use crate::ids::{PersonaId, SourceId};
use crate::infra::bus::InProcessBus;
use crate::infra::cache::InProcessCache;
use crate::knowledge::index::SearchService;
use crate::testkit;

async fn catalog(dir: &std::path::Path) -> (PersonaCatalog, crate::db::Db) {
    let (settings, db) = testkit::sqlite(dir).await;
    let embedder = crate::knowledge::embedders::build(&settings).await;
    let port = Arc::new(PersonaService {
        db: db.clone(),
        search: Arc::new(SearchService::new(db.clone(), embedder, dir.join("index"))),
        model: crate::llm::build(&settings.llm).expect("the default chain"),
        cache: Arc::new(InProcessCache::new(100)),
        settings: Arc::new(settings.clone()),
    });
    let registry = Registry::new(
        "personas",
        RegistryConfig::with_idle_timeout(Duration::from_secs(60)),
        move |id: &PersonaKey| Persona::new(*id, port.clone()),
    )
    .start();
    let catalog = PersonaCatalog::new(
        db.clone(),
        registry,
        Arc::new(InProcessBus::new()),
        "test".into(),
        settings.personas.max_question_chars,
        Clock::system(),
    );
    (catalog, db)
}

fn named(name: &str) -> PersonaInput {
    PersonaInput {
        name: Some(name.into()),
        subject: Some(Some("Biology".into())),
        ..PersonaInput::default()
    }
}

#[actix_web::test]
async fn a_persona_is_created_checked_and_kept_within_its_school() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (c, db) = catalog(dir.path()).await;
    let teacher = testkit::member(&db, Role::Teacher).await;
    let student = AuthUser {
        role: Role::Student,
        ..teacher
    };
    let stranger = testkit::member(&db, Role::Admin).await;

    assert!(matches!(
        c.create(&student, named("Mwalimu")).await,
        Err(PersonaError::Forbidden(_))
    ));
    let err = c
        .create(
            &teacher,
            PersonaInput {
                language: Some("not a language".into()),
                ..named("Mwalimu")
            },
        )
        .await
        .expect_err("a bad language tag");
    let PersonaError::Invalid(invalid) = err else {
        panic!("expected a validation failure, got {err:?}");
    };
    assert_eq!(invalid.field, "language");
    let err = c
        .create(
            &teacher,
            PersonaInput {
                knowledge_source_ids: Some(vec![SourceId::new()]),
                ..named("Mwalimu")
            },
        )
        .await
        .expect_err("a source of no one");
    assert!(matches!(err, PersonaError::Invalid(ref i) if i.field == "knowledge_source_ids"));

    let view = c
        .create(
            &teacher,
            PersonaInput {
                language: Some("FR".into()),
                safety: Some(SafetyInput {
                    blocked_topics: Some(vec!["war".into(), "war".into()]),
                    stay_on_subject: Some(true),
                }),
                ..named("Mwalimu")
            },
        )
        .await
        .expect("created");
    assert_eq!(view.language, "fr");
    assert_eq!(
        view.staff
            .as_ref()
            .expect("staff fields")
            .safety
            .blocked_topics,
        vec!["war".to_owned()]
    );
    assert_eq!(
        c.get(&student, view.id).await.expect("seen").name,
        "Mwalimu"
    );
    assert!(matches!(
        c.get(&stranger, view.id).await,
        Err(PersonaError::NotFound)
    ));
    assert!(matches!(
        c.delete(&stranger, view.id).await,
        Err(PersonaError::NotFound)
    ));
    let renamed = c
        .update(
            &teacher,
            view.id,
            PersonaInput {
                name: Some("Mwalimu Mkuu".into()),
                ..PersonaInput::default()
            },
        )
        .await
        .expect("updated");
    assert_eq!(renamed.name, "Mwalimu Mkuu");
    assert_eq!(renamed.language, "fr", "fields not sent stay");
}

#[actix_web::test]
async fn questions_are_checked_and_a_foreign_or_missing_persona_answers_not_found() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (c, db) = catalog(dir.path()).await;
    let teacher = testkit::member(&db, Role::Teacher).await;
    let stranger = testkit::member(&db, Role::Student).await;
    assert!(c.check_question("   ").is_err());
    assert!(c.check_question(&"x".repeat(100_000)).is_err());
    assert_eq!(
        c.check_question("  why is the sky blue? ")
            .expect("a fine question"),
        "why is the sky blue?"
    );
    let view = c.create(&teacher, named("Mwalimu")).await.expect("created");
    let ask = |who: &AuthUser, persona: PersonaId| {
        c.ask(
            persona,
            Question {
                org: who.org_id,
                user: who.user_id,
                text: "what do leaves do?".into(),
                history: Vec::new(),
                deltas: None,
            },
        )
    };
    assert!(matches!(
        ask(&stranger, view.id).await,
        Err(PersonaError::NotFound)
    ));
    assert!(matches!(
        ask(&teacher, PersonaId::new()).await,
        Err(PersonaError::NotFound)
    ));
    let answer = ask(&teacher, view.id).await.expect("an answer");
    assert!(
        !answer.grounded,
        "no material: the persona says so instead of inventing"
    );
}
