//! The application state shared by every handler and actor: built once, in
//! [`crate::startup`].

use std::sync::Arc;

use bwenge_actors::ports::{Bus, Cache, RateLimiter};
use metrics_exporter_prometheus::PrometheusHandle;

use crate::auth::password::Hasher;
use crate::auth::tokens::TokenKeys;
use crate::config::Settings;
use crate::db::Db;
use crate::mail::Mailer;

/// Signing keys and the password hasher.
pub struct AuthContext {
    pub keys: TokenKeys,
    pub hasher: Hasher,
}

pub struct AppState {
    pub settings: Settings,
    pub db: Db,
    /// Present when `redis_url` is configured.
    pub redis: Option<deadpool_redis::Pool>,
    pub bus: Arc<dyn Bus>,
    pub cache: Arc<dyn Cache>,
    pub limiter: Arc<dyn RateLimiter>,
    pub metrics: PrometheusHandle,
    pub auth: AuthContext,
    pub mailer: Arc<dyn Mailer>,
    pub search: Arc<crate::knowledge::index::SearchService>,
    pub ingest: actix::Addr<bwenge_actors::ingest::IngestScheduler>,
    pub personas: crate::personas::PersonaRegistry,
    /// Chat: its sessions, hub and connections' service.
    pub chat: crate::chat::ChatService,
    /// A random id of this process, to tell its own bus messages apart.
    pub node_id: String,
}
