//! Analytics: what students ask, what the material misses, who needs
//! help. The server records events as things happen ([`recorder`]: a
//! bounded queue and one batching writer, so recording never slows chat),
//! keeps daily totals per organisation, persona and member in the same
//! transactions, and answers the reports of API.md from them
//! ([`service`]). Raw events are deleted after `analytics.retention_days`
//! (totals stay); a weekly digest goes to staff who opt in ([`digest`]).
//! Every read is scoped to the caller's organisation; students read only
//! their own page.

pub mod digest;
pub mod error;
pub mod jobs;
pub mod model;
pub mod recorder;
pub mod routes;
pub mod service;
pub mod store;

#[cfg(test)]
mod tests;

pub use error::AnalyticsError;
pub use recorder::EventRecorder;
pub use routes::routes;
pub use service::AnalyticsService;
