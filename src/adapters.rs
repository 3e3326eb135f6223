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
use crate::billing::BillingError;
use crate::chat::{Activity, ChatActivity};
use crate::clock::Clock;
use crate::db::{Db, StoreError};
use crate::ids::{OrgId, PersonaId, SourceId, UserId};
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

/// Chat's activity, as the live classroom takes it: students' sockets
/// attaching and leaving (staff are not shown as online), questions and
/// answers.
pub struct ChatToClassroom {
    pub classroom: crate::classroom::ClassroomService,
}

impl ChatActivity for ChatToClassroom {
    fn record(&self, event: crate::chat::Activity) {
        use crate::classroom::Observed;
        let observed = match event {
            Activity::Attached {
                conn,
                user,
                session,
                at,
                ..
            } if !user.staff => Observed::Joined {
                conn,
                org: session.org,
                user: user.user_id,
                session: session.session,
                persona: session.persona,
                at,
            },
            Activity::Detached {
                conn,
                user,
                session,
            } if !user.staff => Observed::Left {
                conn,
                org: session.org,
                user: user.user_id,
                session: session.session,
                persona: session.persona,
            },
            // A question asked over HTTP is shown when it was asked in a
            // session (the live view's frames are keyed by session and
            // `seq`): its question, then its answer, which came at once.
            Activity::AskedOverHttp {
                org,
                user,
                persona,
                session: Some(session),
                seq: Some(seq),
                answer_seq: Some(answer_seq),
                text,
                grounded,
                citations,
                refusal,
                ms,
                at,
                ..
            } => {
                self.classroom.observe(Observed::Asked {
                    org,
                    user,
                    session,
                    persona,
                    seq,
                    text: text.clone(),
                    at,
                });
                Observed::Answered {
                    org,
                    user,
                    session,
                    persona,
                    reply_to: seq,
                    seq: answer_seq,
                    grounded,
                    citations: u32::try_from(citations).unwrap_or(u32::MAX),
                    first_token_ms: ms,
                    total_ms: ms,
                    refusal,
                    question: text,
                    at,
                }
            }
            Activity::Attached { .. }
            | Activity::Detached { .. }
            | Activity::AskedOverHttp { .. } => return,
            Activity::Asked {
                session,
                seq,
                text,
                at,
            } => Observed::Asked {
                org: session.org,
                user: session.owner,
                session: session.session,
                persona: session.persona,
                seq,
                text,
                at,
            },
            Activity::Answered {
                session,
                reply_to,
                seq,
                grounded,
                citations,
                refusal,
                first_token_ms,
                total_ms,
                question,
                at,
                ..
            } => Observed::Answered {
                org: session.org,
                user: session.owner,
                session: session.session,
                persona: session.persona,
                reply_to,
                seq,
                grounded,
                citations: u32::try_from(citations).unwrap_or(u32::MAX),
                first_token_ms,
                total_ms,
                refusal,
                question,
                at,
            },
        };
        self.classroom.observe(observed);
    }
}

/// What the live classroom reads of other domains: names (auth),
/// personas, and chat's stored questions.
pub struct ClassroomDirectory {
    pub db: Db,
}

#[async_trait::async_trait]
impl crate::classroom::Directory for ClassroomDirectory {
    async fn full_name(&self, org: OrgId, user: UserId) -> Result<Option<String>, StoreError> {
        Ok(crate::auth::store::user_in_org(&self.db, org, user)
            .await?
            .map(|u| u.full_name))
    }

    async fn persona_exists(&self, org: OrgId, persona: PersonaId) -> Result<bool, StoreError> {
        Ok(crate::personas::store::get(&self.db, org, persona)
            .await?
            .is_some())
    }

    async fn recent_questions(
        &self,
        org: OrgId,
        persona: Option<PersonaId>,
        n: usize,
    ) -> Result<Vec<crate::classroom::frames::QuestionFrame>, StoreError> {
        let n = i64::try_from(n).unwrap_or(i64::MAX);
        Ok(
            crate::chat::store::recent_questions(&self.db, org, persona, n)
                .await?
                .into_iter()
                .map(|q| crate::classroom::frames::QuestionFrame {
                    at: q.created_at,
                    user_id: q.user_id,
                    full_name: q.full_name,
                    session_id: q.session_id,
                    seq: q.seq,
                    persona_id: q.persona_id,
                    text: q.text,
                })
                .collect(),
        )
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
    fn record(&self, event: Activity) {
        use crate::analytics::model::Kind;
        match event {
            // A session opened or resumed by its owner (staff looking at a
            // student's session are not the student's activity).
            Activity::Attached {
                user,
                session,
                resumed,
                at,
                ..
            } if user.user_id == session.owner => {
                self.recorder.record(Event::session(
                    session.org,
                    user.user_id,
                    session.persona,
                    session.session,
                    resumed,
                    at,
                ));
            }
            Activity::Attached { .. } | Activity::Detached { .. } | Activity::Asked { .. } => {}
            Activity::Answered {
                session,
                reply_to,
                grounded,
                citations,
                refusal,
                provider,
                first_token_ms,
                total_ms,
                question,
                at,
                ..
            } => {
                let mut e = Event::new(session.org, Kind::Question, at);
                e.user = Some(session.owner);
                e.persona = Some(session.persona);
                e.session = Some(session.session);
                e.seq = Some(reply_to);
                e.text = Some(question);
                e.grounded = Some(grounded);
                e.refusal = refusal.map(analytics_reason);
                e.first_token_ms = i64::try_from(first_token_ms).ok();
                e.total_ms = i64::try_from(total_ms).ok();
                e.provider = provider;
                e.detail = serde_json::json!({ "citations": citations });
                self.recorder.record(e);
            }
            Activity::AskedOverHttp {
                org,
                user,
                persona,
                session,
                seq,
                text,
                grounded,
                citations,
                refusal,
                provider,
                ms,
                at,
                ..
            } => {
                let mut e = Event::new(org, Kind::Question, at);
                e.user = Some(user);
                e.persona = Some(persona);
                e.session = session;
                e.seq = seq;
                e.text = Some(text);
                e.grounded = Some(grounded);
                e.refusal = refusal.map(analytics_reason);
                // Over HTTP the whole answer comes at once: its first token
                // is its last.
                e.first_token_ms = i64::try_from(ms).ok();
                e.total_ms = i64::try_from(ms).ok();
                e.provider = provider;
                e.detail = serde_json::json!({ "citations": citations });
                self.recorder.record(e);
            }
        }
    }
}

/// Analytics groups the safety categories a persona reports (`self_harm`,
/// `weapons`, …) under one reason, `safety`; the others stay as they are.
fn analytics_reason(refusal: String) -> String {
    match refusal.as_str() {
        "self_harm" | "sexual" | "weapons" | "drugs" | "hate" => "safety".to_owned(),
        _ => refusal,
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
