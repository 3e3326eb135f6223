//! Adapters behind the ports of `bwenge-actors`: bus, cache, rate limiter.
//!
//! Each port has an in-process adapter (the embedded default, one node) and a
//! Redis adapter (several nodes sharing one Redis). Every Redis or pool
//! failure surfaces as [`PortError::Unavailable`] so callers only have to
//! decide whether to retry.

pub mod bus;
pub mod cache;
pub mod presence;
pub mod ratelimit;

pub use bus::{InProcessBus, RedisBus};
pub use cache::{InProcessCache, RedisCache};
pub use presence::{InProcessPresence, Presence, RedisPresence};
pub use ratelimit::{InProcessRateLimiter, RedisRateLimiter};

use bwenge_actors::ports::PortError;

/// Maps any Redis or pool failure to the port's retryable error, keeping the
/// details in the message for logs.
pub(crate) fn unavailable(context: &str, err: impl std::fmt::Display) -> PortError {
    PortError::Unavailable(format!("redis {context}: {err}"))
}

/// Locks a std mutex, recovering from poisoning: the adapters' maps hold only
/// soft state (cache entries, buckets, senders), so a panic elsewhere while
/// the lock was held must not take the whole adapter down with it.
pub(crate) fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Shared by the adapters' unit tests: which backends to run against.
#[cfg(test)]
pub(crate) mod test_support {
    /// The Redis URL to test against, or `None` to skip the Redis variants.
    /// With `BWENGE_TEST_REQUIRE_SERVICES=1` a missing URL is a failure, so CI
    /// cannot silently skip them.
    pub(crate) fn redis_url() -> Option<String> {
        match std::env::var("BWENGE_TEST_REDIS_URL") {
            Ok(url) if !url.trim().is_empty() => Some(url),
            _ => {
                let required =
                    std::env::var("BWENGE_TEST_REQUIRE_SERVICES").is_ok_and(|v| v.trim() == "1");
                assert!(
                    !required,
                    "BWENGE_TEST_REQUIRE_SERVICES=1 but BWENGE_TEST_REDIS_URL is not set; \
                     set it (e.g. redis://127.0.0.1:6379) to run the Redis adapter tests"
                );
                None
            }
        }
    }

    /// A fresh pool (one per call, so two calls behave like two nodes).
    pub(crate) fn pool(url: &str) -> deadpool_redis::Pool {
        deadpool_redis::Config::from_url(url)
            .create_pool(Some(deadpool_redis::Runtime::Tokio1))
            .expect("create redis pool")
    }

    /// A key prefix no other test (or test run) uses.
    pub(crate) fn prefix() -> String {
        format!("test:{}:", uuid::Uuid::new_v4())
    }
}
