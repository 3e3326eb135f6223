//! The persona use cases, free of HTTP: [`PersonaCatalog`] creates, reads,
//! changes and deletes personas, and asks them questions through their
//! actors in the persona registry. A change drops this node's loaded copy
//! and is announced to the other nodes on [`PERSONA_TOPIC`].

use std::collections::BTreeMap;
use std::sync::Arc;

use bwenge_actors::messages::persona::{Ask, AskError};
use bwenge_actors::ports::Bus;
use bwenge_actors::registry::{Lookup, Remove};

use super::error::PersonaError;
use super::model::{PersonaInput, PersonaView, view};
use super::store::{self, PersonaRow};
use super::{Answer, PERSONA_TOPIC, PersonaRegistry, Question};
use crate::auth::AuthUser;
use crate::clock::Clock;
use crate::db::Db;
use crate::ids::{PersonaId, SourceId};
use crate::pagination::{Cursor, List, Page, page_of};
use crate::validation::Invalid;

type Result<T, E = PersonaError> = std::result::Result<T, E>;

/// Personas of every organisation, and asking them.
#[derive(Clone)]
pub struct PersonaCatalog {
    db: Db,
    registry: PersonaRegistry,
    bus: Arc<dyn Bus>,
    node_id: String,
    max_question_chars: usize,
    clock: Clock,
}

impl PersonaCatalog {
    pub fn new(
        db: Db,
        registry: PersonaRegistry,
        bus: Arc<dyn Bus>,
        node_id: String,
        max_question_chars: usize,
        clock: Clock,
    ) -> Self {
        Self {
            db,
            registry,
            bus,
            node_id,
            max_question_chars,
            clock,
        }
    }

    /// Creates a persona (teachers, admins).
    pub async fn create(&self, caller: &AuthUser, input: PersonaInput) -> Result<PersonaView> {
        caller.require_staff()?;
        if input.name.as_deref().is_none_or(|n| n.trim().is_empty()) {
            return Err(Invalid::new("name", "name is required.").into());
        }
        let now = self.clock.now();
        let mut row = PersonaRow {
            id: PersonaId::new(),
            organization_id: caller.org_id,
            name: String::new(),
            subject: None,
            description: None,
            language: "en".to_owned(),
            grade_level: None,
            system_prompt: None,
            scope_all: true,
            blocked_topics: "[]".to_owned(),
            stay_on_subject: false,
            avatar_model_id: None,
            gestures: "{}".to_owned(),
            created_by: Some(caller.user_id),
            created_at: now,
            updated_at: now,
        };
        let sources = input
            .apply(&self.db, caller.org_id, &mut row)
            .await?
            .unwrap_or_default();
        store::save(&self.db, &row, &sources, true).await?;
        Ok(view(row, sources))
    }

    /// The organisation's personas, oldest first.
    pub async fn list(&self, caller: &AuthUser, page: Page) -> Result<List<PersonaView>> {
        let rows = store::list(&self.db, caller.org_id, page).await?;
        let ids: Vec<PersonaId> = rows.iter().map(|r| r.id).collect();
        let mut scopes: BTreeMap<PersonaId, Vec<SourceId>> = BTreeMap::new();
        for (p, s) in store::sources_of(&self.db, caller.org_id, &ids).await? {
            scopes.entry(p).or_default().push(s);
        }
        Ok(page_of(
            rows,
            page.limit,
            |r| Cursor {
                t: r.created_at,
                id: r.id.0,
            },
            |r| {
                let s = scopes.get(&r.id).cloned().unwrap_or_default();
                view(r, s).for_caller(caller)
            },
        ))
    }

    pub async fn get(&self, caller: &AuthUser, id: PersonaId) -> Result<PersonaView> {
        let row = store::get(&self.db, caller.org_id, id)
            .await?
            .ok_or(PersonaError::NotFound)?;
        let sources = store::sources(&self.db, caller.org_id, id).await?;
        Ok(view(row, sources).for_caller(caller))
    }

    /// Changes a persona (teachers, admins): only the fields sent change.
    pub async fn update(
        &self,
        caller: &AuthUser,
        id: PersonaId,
        input: PersonaInput,
    ) -> Result<PersonaView> {
        caller.require_staff()?;
        let mut row = store::get(&self.db, caller.org_id, id)
            .await?
            .ok_or(PersonaError::NotFound)?;
        let scope = input.apply(&self.db, caller.org_id, &mut row).await?;
        let sources = match scope {
            Some(s) => s,
            None => store::sources(&self.db, caller.org_id, id).await?,
        };
        row.updated_at = self
            .clock
            .now()
            .max(row.updated_at + chrono::Duration::microseconds(1));
        store::save(&self.db, &row, &sources, false).await?;
        self.changed(id).await;
        Ok(view(row, sources))
    }

    /// Deletes a persona and its chat sessions (teachers, admins).
    pub async fn delete(&self, caller: &AuthUser, id: PersonaId) -> Result<()> {
        caller.require_staff()?;
        if !store::delete(&self.db, caller.org_id, id).await? {
            return Err(PersonaError::NotFound);
        }
        self.changed(id).await;
        Ok(())
    }

    /// Drops this node's loaded copy of the persona and tells the other
    /// nodes (after an edit here, or when its avatar model changed).
    pub async fn changed(&self, id: PersonaId) {
        self.registry.do_send(Remove(id.0));
        let msg = crate::infra::bus::messages::PersonaChanged {
            node: self.node_id.clone(),
            persona_id: id,
        };
        if let Err(e) =
            crate::infra::bus::publish_json(self.bus.as_ref(), PERSONA_TOPIC, &msg).await
        {
            tracing::warn!(error = %e, "could not announce a persona change");
        }
    }

    /// A question's text, trimmed, when its length is acceptable.
    pub fn check_question(&self, question: &str) -> Result<String, Invalid> {
        check_question(question, self.max_question_chars)
    }

    /// Sends a question to the persona's actor and waits for the answer.
    pub async fn ask(&self, persona: PersonaId, question: Question) -> Result<Answer> {
        ask_with(&self.registry, persona, question).await
    }
}

/// Validates a question's length.
pub fn check_question(question: &str, max: usize) -> Result<String, Invalid> {
    let q = question.trim();
    if q.is_empty() {
        return Err(Invalid::new("question", "question must not be empty."));
    }
    if q.chars().count() > max {
        return Err(Invalid::new(
            "question",
            format!("question must be at most {max} characters."),
        ));
    }
    Ok(q.to_owned())
}

/// Asks through the registry alone (chat sessions hold only the registry).
pub async fn ask_with(
    personas: &PersonaRegistry,
    persona: PersonaId,
    question: Question,
) -> Result<Answer> {
    let addr = personas
        .send(Lookup::new(persona.0))
        .await
        .map_err(|e| anyhow::Error::new(e).context("the persona registry is gone"))?;
    match addr.send(Ask::new(question)).await {
        Ok(Ok(answer)) => Ok(answer),
        Ok(Err(AskError::NotFound)) => {
            personas.do_send(Remove(persona.0));
            Err(PersonaError::NotFound)
        }
        Ok(Err(AskError::Failed(e))) => Err(e),
        Err(e) => Err(anyhow::Error::new(e)
            .context("the persona actor is gone")
            .into()),
    }
}
