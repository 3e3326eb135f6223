//! Analytics' background jobs: retention (at start, then every
//! `analytics.retention_interval_secs`) and the weekly digest (checked
//! every `analytics.digest_check_secs`; when it last went is kept in the
//! database, so a restart neither skips nor repeats a week).

use std::sync::Arc;
use std::time::Duration;

use super::service::AnalyticsService;
use crate::clock::Clock;
use crate::mail::Mailer;

/// Starts both jobs on the current runtime.
pub fn start(service: AnalyticsService, mailer: Arc<dyn Mailer>, clock: Clock) {
    let retention = service.clone();
    let every = Duration::from_secs(service.settings().retention_interval_secs.max(1));
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            if let Err(e) = retention.apply_retention(clock.now()).await {
                tracing::warn!(error = %e, "analytics retention failed; will retry");
            }
        }
    });
    if !service.settings().weekly_digest {
        return;
    }
    let every = Duration::from_secs(service.settings().digest_check_secs.max(1));
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            match service.digest_if_due(mailer.as_ref(), clock.now()).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(mails = n, "weekly digest sent"),
                Err(e) => tracing::warn!(error = %e, "weekly digest failed; will retry"),
            }
        }
    });
}
