//! What HTTP handlers and the WebSocket transport receive: the domain
//! services and the shared adapters, built once in [`crate::startup`]. No
//! service takes it: each holds only what it needs.

use std::sync::Arc;

use bwenge_actors::ports::{Bus, Cache, RateLimiter};
use metrics_exporter_prometheus::PrometheusHandle;

use crate::auth::AuthService;
use crate::config::Settings;
use crate::db::Db;
use crate::mail::Mailer;

pub struct AppState {
    pub settings: Settings,
    pub db: Db,
    /// Present when `redis_url` is configured.
    pub redis: Option<deadpool_redis::Pool>,
    pub bus: Arc<dyn Bus>,
    pub cache: Arc<dyn Cache>,
    pub limiter: Arc<dyn RateLimiter>,
    pub metrics: PrometheusHandle,
    pub auth: AuthService,
    pub orgs: crate::orgs::OrgService,
    pub mailer: Arc<dyn Mailer>,
    pub knowledge: crate::knowledge::KnowledgeService,
    pub personas: crate::personas::PersonaCatalog,
    pub avatars: crate::avatars::service::AvatarService,
    /// Chat: its sessions, hub and connections' service.
    pub chat: crate::chat::ChatService,
    /// The live classroom: its watchers and what chat reports to it.
    pub classroom: crate::classroom::ClassroomService,
    /// Analytics: recording, reports, retention, digest.
    pub analytics: crate::analytics::AnalyticsService,
    /// Plans, subscriptions, allowances and payments.
    pub billing: crate::billing::BillingService,
    /// A random id of this process, to tell its own bus messages apart.
    pub node_id: String,
}
