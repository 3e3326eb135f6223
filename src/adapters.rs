//! The ports one domain calls, implemented over another domain. This is
//! the only module (with `startup`) that joins domains: the domains
//! themselves import only those below them, so each can be built and
//! tested alone.

use std::collections::HashSet;
use std::sync::Arc;

use bwenge_actors::ports::Bus;

use crate::auth::Revocations;
use crate::avatars::service::{PersonaAvatar, PersonaLinks};
use crate::db::{Db, StoreError};
use crate::ids::{OrgId, PersonaId, SourceId, UserId};
use crate::knowledge::PersonaScopes;
use crate::personas::PersonaCatalog;

/// Revocations reach every node's sockets through the chat hub's bus topic.
pub struct HubRevocations {
    pub bus: Arc<dyn Bus>,
}

#[async_trait::async_trait]
impl Revocations for HubRevocations {
    async fn revoked(&self, user: UserId) {
        crate::chat::hub::announce_revoked(self.bus.as_ref(), user, None).await;
    }

    async fn role_changed(&self, user: UserId, staff: bool) {
        crate::chat::hub::announce_revoked(self.bus.as_ref(), user, Some(staff)).await;
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
