//! Billing: the plans of the contract (prices and allowances from
//! `[billing.plans]`), each organisation's subscription, the allowances
//! other domains reserve against (questions a month, storage, members;
//! exact under concurrency), and payments by MTN MoMo, Airtel Money and
//! Stripe, applied only once the provider confirms them.
//!
//! Other domains reach billing only through their own ports (chat's
//! `QuestionQuota`, knowledge's and avatars' `StorageQuota`, orgs'
//! `MemberQuota`), implemented over [`BillingService`] in `crate::adapters`.

pub mod error;
pub mod model;
pub mod payments;
pub mod renewal;
pub mod routes;
pub mod service;
pub mod store;

#[cfg(test)]
mod tests;

pub use error::BillingError;
pub use routes::routes;
pub use service::{BillingDeps, BillingService};
