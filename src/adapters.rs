//! The ports one domain calls, implemented over another domain. This is
//! the only module (with `startup`) that joins domains: the domains
//! themselves import only those below them, so each can be built and
//! tested alone.

use std::collections::HashSet;
use std::sync::Arc;

use bwenge_actors::ports::Bus;

use crate::auth::Revocations;
use crate::avatars::service::{PersonaAvatar, PersonaLinks};
use crate::billing::BillingError;
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

/// Billing's allowances, as chat, knowledge, avatars and members see them.
#[derive(Clone)]
pub struct BillingQuotas {
    pub billing: crate::billing::BillingService,
}

/// A billing refusal in another domain's words: a quota refusal keeps its
/// sentence, a store error stays one, anything else is internal.
fn refusal<E>(
    e: BillingError,
    quota: impl FnOnce(String) -> E,
    store: impl FnOnce(StoreError) -> E,
    internal: impl FnOnce(anyhow::Error) -> E,
) -> E {
    match e {
        BillingError::QuotaExceeded(detail) => quota(detail),
        BillingError::Store(e) => store(e),
        other => internal(anyhow::Error::new(other)),
    }
}

fn logged(what: &str, r: Result<(), BillingError>) {
    if let Err(e) = r {
        // The reconciliation job puts the counter right.
        tracing::warn!(error = ?e, "could not {what}");
    }
}

#[async_trait::async_trait]
impl crate::chat::QuestionQuota for BillingQuotas {
    async fn take(&self, org: OrgId, key: Option<&str>) -> Result<(), crate::chat::ChatError> {
        use crate::chat::ChatError;
        self.billing.take_question(org, key).await.map_err(|e| {
            refusal(
                e,
                ChatError::QuotaExceeded,
                ChatError::Store,
                ChatError::Internal,
            )
        })
    }

    async fn give_back(&self, org: OrgId) {
        logged(
            "give back a question",
            self.billing.give_back_question(org).await,
        );
    }
}

#[async_trait::async_trait]
impl crate::knowledge::StorageQuota for BillingQuotas {
    async fn reserve(
        &self,
        org: OrgId,
        bytes: u64,
    ) -> Result<(), crate::knowledge::KnowledgeError> {
        use crate::knowledge::KnowledgeError;
        self.billing.reserve_storage(org, bytes).await.map_err(|e| {
            refusal(
                e,
                KnowledgeError::QuotaExceeded,
                KnowledgeError::Store,
                KnowledgeError::Internal,
            )
        })
    }

    async fn release(&self, org: OrgId, bytes: u64) {
        logged(
            "release storage",
            self.billing.release_storage(org, bytes).await,
        );
    }
}

#[async_trait::async_trait]
impl crate::avatars::service::StorageQuota for BillingQuotas {
    async fn reserve(
        &self,
        org: OrgId,
        bytes: u64,
    ) -> Result<(), crate::avatars::service::AvatarError> {
        use crate::avatars::service::AvatarError;
        self.billing.reserve_storage(org, bytes).await.map_err(|e| {
            refusal(
                e,
                AvatarError::QuotaExceeded,
                AvatarError::Store,
                AvatarError::Other,
            )
        })
    }

    async fn release(&self, org: OrgId, bytes: u64) {
        logged(
            "release storage",
            self.billing.release_storage(org, bytes).await,
        );
    }
}

#[async_trait::async_trait]
impl crate::orgs::MemberQuota for BillingQuotas {
    async fn reserve(&self, org: OrgId) -> Result<(), crate::orgs::OrgError> {
        use crate::orgs::OrgError;
        self.billing.reserve_member(org).await.map_err(|e| {
            refusal(
                e,
                OrgError::QuotaExceeded,
                OrgError::Store,
                OrgError::Internal,
            )
        })
    }

    async fn release(&self, org: OrgId) {
        logged(
            "release a member seat",
            self.billing.release_member(org).await,
        );
    }
}
