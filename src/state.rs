//! The application state shared by every handler and actor: built once, in
//! [`crate::startup`].

use std::sync::Arc;

use bwenge_actors::ports::{Bus, Cache, RateLimiter};
use metrics_exporter_prometheus::PrometheusHandle;

use crate::config::Settings;
use crate::db::Db;

pub struct AppState {
    pub settings: Settings,
    pub db: Db,
    /// Present when `redis_url` is configured.
    pub redis: Option<deadpool_redis::Pool>,
    pub bus: Arc<dyn Bus>,
    pub cache: Arc<dyn Cache>,
    pub limiter: Arc<dyn RateLimiter>,
    pub metrics: PrometheusHandle,
}
