//! The ports one domain calls, implemented over another domain. This is
//! the only module (with `startup`) that joins domains: the domains
//! themselves import only those below them, so each can be built and
//! tested alone.

use std::collections::HashSet;
use std::sync::Arc;

use bwenge_actors::ports::Bus;

use crate::analytics::EventRecorder;
use crate::analytics::model::Event;
use crate::auth::{Revocations, SignIns};
use crate::avatars::service::{PersonaAvatar, PersonaLinks};
use crate::chat::{AnsweredQuestion, ChatActivity, ChatUser};
use crate::clock::Clock;
use crate::db::{Db, StoreError};
use crate::ids::{OrgId, PersonaId, SessionId, SourceId, UserId};
use crate::knowledge::PersonaScopes;
use crate::knowledge::ingest::SourceActivity;
use crate::orgs::MemberErasure;
use crate::personas::PersonaCatalog;

/// Revocations reach every node's sockets through the chat hub's bus topic.
pub struct HubRevocations {
    pub bus: Arc<dyn Bus>,
}

#[async_trait::async_trait]
impl Revocations for HubRevocations {
    async fn revoked(&self, user: UserId) {
        crate::chat::hub::announce_revoked(self.bus.as_ref(), user).await;
    }
}

/// A persona's scope, read from the personas' store.
pub struct PersonaScopesFromStore {
    pub db: Db,
}

#[async_trait::async_trait]
impl PersonaScopes for PersonaScopesFromStore {
    async fn scope(
        &self,
        org: OrgId,
        persona: PersonaId,
    ) -> Result<Option<Option<HashSet<SourceId>>>, StoreError> {
        let Some(row) = crate::personas::store::get(&self.db, org, persona).await? else {
            return Ok(None);
        };
        if row.scope_all {
            return Ok(Some(None));
        }
        let sources = crate::personas::store::sources(&self.db, org, persona).await?;
        Ok(Some(Some(sources.into_iter().collect())))
    }
}

/// Personas as avatars see them: their avatar settings, and the
/// `PersonaChanged` event going to the persona catalog.
pub struct PersonaLinksToCatalog {
    pub db: Db,
    pub catalog: PersonaCatalog,
}

#[async_trait::async_trait]
impl PersonaLinks for PersonaLinksToCatalog {
    async fn persona_avatar(
        &self,
        org: OrgId,
        persona: PersonaId,
    ) -> Result<Option<PersonaAvatar>, StoreError> {
        Ok(crate::personas::store::get(&self.db, org, persona)
            .await?
            .map(|row| PersonaAvatar {
                avatar_model_id: row.avatar_model_id,
                gestures: row.gestures,
            }))
    }

    async fn changed(&self, persona: PersonaId) {
        self.catalog.changed(persona).await;
    }
}

/// What auth, chat and knowledge report, recorded as analytics events
/// (queued: never waits).
pub struct ActivityToAnalytics {
    pub recorder: EventRecorder,
    pub clock: Clock,
}

impl SignIns for ActivityToAnalytics {
    fn signed_in(&self, org: OrgId, user: UserId) {
        self.recorder
            .record(Event::login(org, user, self.clock.now()));
    }
}

impl ChatActivity for ActivityToAnalytics {
    fn session_opened(
        &self,
        user: ChatUser,
        persona: PersonaId,
        session: SessionId,
        resumed: bool,
    ) {
        self.recorder.record(Event::session(
            user.org_id,
            user.user_id,
            persona,
            session,
            resumed,
            self.clock.now(),
        ));
    }

    fn answered(&self, q: &AnsweredQuestion<'_>) {
        let x = q.extras;
        let citations = x
            .citations
            .as_ref()
            .and_then(|c| c.as_array())
            .map_or(0, Vec::len);
        let mut e = Event::new(q.org, crate::analytics::model::Kind::Question, q.at);
        e.user = Some(q.user);
        e.persona = Some(q.persona);
        e.session = q.session;
        e.seq = q.seq;
        e.text = Some(q.text.to_owned());
        e.grounded = x.grounded;
        e.refusal = x.refusal.clone();
        e.first_token_ms = Some(q.first_token_ms as i64);
        e.total_ms = Some(q.total_ms as i64);
        e.provider = x
            .provider
            .as_ref()
            .and_then(|p| p.as_str())
            .map(str::to_owned);
        e.detail = serde_json::json!({ "citations": citations });
        self.recorder.record(e);
    }
}

impl SourceActivity for ActivityToAnalytics {
    fn finished(&self, org: OrgId, source: SourceId, ready: bool, error: Option<&str>) {
        self.recorder
            .record(Event::source(org, source, ready, error, self.clock.now()));
    }
}

/// A member erased on removal: their analytics events go (their chat
/// sessions and events go with their account, by foreign key).
pub struct EraseThroughAnalytics {
    pub analytics: crate::analytics::AnalyticsService,
}

#[async_trait::async_trait]
impl MemberErasure for EraseThroughAnalytics {
    async fn erase(&self, org: OrgId, user: UserId) -> anyhow::Result<()> {
        self.analytics
            .erase_member(org, user)
            .await
            .map_err(|e| anyhow::anyhow!("erasing a member's analytics failed: {e}"))
    }
}
