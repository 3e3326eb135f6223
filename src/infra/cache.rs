//! Cache adapters: [`InProcessCache`] (a bounded expiring map, one node) and
//! [`RedisCache`] (`SET … PX`/`GET`/`DEL` on `{prefix}cache:{key}`, shared by
//! several nodes).
//!
//! Both count lookups in `bwenge_cache_hits_total{backend}` and
//! `bwenge_cache_misses_total{backend}`. A zero TTL means "already expired":
//! the value is not stored and any previous one is removed.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use bwenge_actors::ports::{Cache, PortResult};
use tokio::time::Instant;

use super::{lock, unavailable};

/// Longest TTL honoured; longer ones are clamped so `Instant` arithmetic and
/// Redis' millisecond expiry cannot overflow. A century is "forever" here.
const MAX_TTL: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

fn record(hit: bool, backend: &'static str) {
    if hit {
        metrics::counter!("bwenge_cache_hits_total", "backend" => backend).increment(1);
    } else {
        metrics::counter!("bwenge_cache_misses_total", "backend" => backend).increment(1);
    }
}

/// A cache inside one process holding at most `max_entries` values.
///
/// When full, expired entries go first, then the one closest to expiry.
/// Every operation is O(log n).
#[derive(Debug)]
pub struct InProcessCache {
    max_entries: usize,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    entries: HashMap<String, Entry>,
    /// The same entries ordered by expiry (`seq` breaks ties), so both
    /// purging the expired and picking a victim are a look at the front.
    by_expiry: BTreeMap<(Instant, u64), String>,
    next_seq: u64,
}

#[derive(Debug)]
struct Entry {
    value: Vec<u8>,
    expires_at: Instant,
    seq: u64,
}

impl State {
    fn remove(&mut self, key: &str) {
        if let Some(old) = self.entries.remove(key) {
            self.by_expiry.remove(&(old.expires_at, old.seq));
        }
    }

    /// Removes the entry expiring first, if any; returns whether it did.
    fn pop_first(&mut self) -> bool {
        match self.by_expiry.pop_first() {
            Some((_, key)) => {
                self.entries.remove(&key);
                true
            }
            None => false,
        }
    }

    fn purge_expired(&mut self, now: Instant) {
        while self
            .by_expiry
            .first_key_value()
            .is_some_and(|((at, _), _)| *at <= now)
        {
            self.pop_first();
        }
    }
}

impl InProcessCache {
    /// A cache that holds at most `max_entries` values (at least one).
    pub fn new(max_entries: usize) -> Self {
        Self {
            max_entries: max_entries.max(1),
            state: Mutex::new(State::default()),
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        lock(&self.state).entries.len()
    }
}

#[async_trait]
impl Cache for InProcessCache {
    async fn get(&self, key: &str) -> PortResult<Option<Vec<u8>>> {
        let now = Instant::now();
        let mut state = lock(&self.state);
        let found = match state.entries.get(key) {
            Some(entry) if entry.expires_at > now => Some(entry.value.clone()),
            Some(_) => {
                state.remove(key);
                None
            }
            None => None,
        };
        record(found.is_some(), "in_process");
        Ok(found)
    }

    async fn set(&self, key: &str, value: &[u8], ttl: Duration) -> PortResult<()> {
        let now = Instant::now();
        let mut state = lock(&self.state);
        state.remove(key);
        if ttl.is_zero() {
            return Ok(());
        }
        state.purge_expired(now);
        while state.entries.len() >= self.max_entries && state.pop_first() {}
        let expires_at = now + ttl.min(MAX_TTL);
        let seq = state.next_seq;
        state.next_seq += 1;
        state.by_expiry.insert((expires_at, seq), key.to_owned());
        state.entries.insert(
            key.to_owned(),
            Entry {
                value: value.to_vec(),
                expires_at,
                seq,
            },
        );
        Ok(())
    }

    async fn delete(&self, key: &str) -> PortResult<()> {
        lock(&self.state).remove(key);
        Ok(())
    }
}

/// A cache shared by every node through Redis.
#[derive(Debug, Clone)]
pub struct RedisCache {
    pool: deadpool_redis::Pool,
    key_prefix: String,
}

impl RedisCache {
    /// Keys are stored as `{key_prefix}cache:{key}`.
    pub fn new(pool: deadpool_redis::Pool, key_prefix: &str) -> Self {
        Self {
            pool,
            key_prefix: key_prefix.to_owned(),
        }
    }

    fn key(&self, key: &str) -> String {
        format!("{}cache:{key}", self.key_prefix)
    }

    async fn conn(&self) -> PortResult<deadpool_redis::Connection> {
        self.pool.get().await.map_err(|e| unavailable("pool", e))
    }
}

#[async_trait]
impl Cache for RedisCache {
    async fn get(&self, key: &str) -> PortResult<Option<Vec<u8>>> {
        let mut conn = self.conn().await?;
        let found: Option<Vec<u8>> = redis::cmd("GET")
            .arg(self.key(key))
            .query_async(&mut conn)
            .await
            .map_err(|e| unavailable("GET", e))?;
        record(found.is_some(), "redis");
        Ok(found)
    }

    async fn set(&self, key: &str, value: &[u8], ttl: Duration) -> PortResult<()> {
        let mut conn = self.conn().await?;
        if ttl.is_zero() {
            // Redis rejects PX 0; a zero TTL means the value is already gone.
            return redis::cmd("DEL")
                .arg(self.key(key))
                .query_async::<()>(&mut conn)
                .await
                .map_err(|e| unavailable("DEL", e));
        }
        // Round sub-millisecond TTLs up: PX counts whole milliseconds and a
        // positive TTL must not turn into "expired".
        let ttl = ttl.min(MAX_TTL);
        let px = ttl.as_millis() + u128::from(!ttl.subsec_nanos().is_multiple_of(1_000_000));
        redis::cmd("SET")
            .arg(self.key(key))
            .arg(value)
            .arg("PX")
            .arg(u64::try_from(px).unwrap_or(u64::MAX))
            .query_async::<()>(&mut conn)
            .await
            .map_err(|e| unavailable("SET", e))
    }

    async fn delete(&self, key: &str) -> PortResult<()> {
        let mut conn = self.conn().await?;
        redis::cmd("DEL")
            .arg(self.key(key))
            .query_async::<()>(&mut conn)
            .await
            .map_err(|e| unavailable("DEL", e))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::Arc;

    use bwenge_actors::ports::PortError;

    use super::*;
    use crate::infra::test_support::{pool, prefix, redis_url};

    /// The in-process cache always; the Redis one when configured.
    fn caches() -> Vec<(&'static str, Arc<dyn Cache>)> {
        let mut caches: Vec<(&'static str, Arc<dyn Cache>)> =
            vec![("in_process", Arc::new(InProcessCache::new(100)))];
        if let Some(url) = redis_url() {
            caches.push(("redis", Arc::new(RedisCache::new(pool(&url), &prefix()))));
        }
        caches
    }

    const LONG: Duration = Duration::from_secs(60);

    #[tokio::test]
    async fn get_set_delete() {
        for (name, cache) in caches() {
            assert_eq!(cache.get("k").await.unwrap(), None, "[{name}]");

            cache.set("k", b"one", LONG).await.unwrap();
            cache.set("other", b"\x00\xffbinary", LONG).await.unwrap();
            cache.set("empty", b"", LONG).await.unwrap();
            assert_eq!(
                cache.get("k").await.unwrap().as_deref(),
                Some(&b"one"[..]),
                "[{name}]"
            );
            assert_eq!(
                cache.get("other").await.unwrap().as_deref(),
                Some(&b"\x00\xffbinary"[..]),
                "[{name}]"
            );
            assert_eq!(cache.get("empty").await.unwrap(), Some(vec![]), "[{name}]");

            cache.set("k", b"two", LONG).await.unwrap();
            assert_eq!(
                cache.get("k").await.unwrap().as_deref(),
                Some(&b"two"[..]),
                "[{name}]"
            );

            cache.delete("k").await.unwrap();
            assert_eq!(cache.get("k").await.unwrap(), None, "[{name}]");
            // Deleting one key leaves the others; deleting twice is fine.
            assert!(cache.get("other").await.unwrap().is_some(), "[{name}]");
            cache.delete("k").await.unwrap();
        }
    }

    #[tokio::test]
    async fn entries_expire() {
        for (name, cache) in caches() {
            cache
                .set("short", b"v", Duration::from_millis(80))
                .await
                .unwrap();
            cache.set("long", b"v", LONG).await.unwrap();
            // Overwriting replaces the TTL too.
            cache.set("shortened", b"v", LONG).await.unwrap();
            cache
                .set("shortened", b"w", Duration::from_millis(80))
                .await
                .unwrap();
            cache.set("zero", b"v", LONG).await.unwrap();
            cache.set("zero", b"v", Duration::ZERO).await.unwrap();

            assert!(cache.get("short").await.unwrap().is_some(), "[{name}]");
            assert_eq!(
                cache.get("shortened").await.unwrap().as_deref(),
                Some(&b"w"[..]),
                "[{name}]"
            );
            assert_eq!(cache.get("zero").await.unwrap(), None, "[{name}]");

            tokio::time::sleep(Duration::from_millis(150)).await;
            assert_eq!(cache.get("short").await.unwrap(), None, "[{name}]");
            assert_eq!(cache.get("shortened").await.unwrap(), None, "[{name}]");
            assert!(cache.get("long").await.unwrap().is_some(), "[{name}]");
        }
    }

    #[tokio::test]
    async fn in_process_cache_is_bounded_and_evicts_expired_first() {
        let cache = InProcessCache::new(3);
        cache
            .set("a", b"a", Duration::from_millis(30))
            .await
            .unwrap();
        cache.set("b", b"b", LONG).await.unwrap();
        cache.set("c", b"c", LONG * 2).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;

        // Full: the expired "a" makes room, the live ones stay.
        cache.set("d", b"d", LONG * 3).await.unwrap();
        assert_eq!(cache.len(), 3);
        for key in ["b", "c", "d"] {
            assert!(cache.get(key).await.unwrap().is_some(), "{key} evicted");
        }

        // Full of live entries: the one closest to expiry ("b") goes.
        cache.set("e", b"e", LONG).await.unwrap();
        assert_eq!(cache.len(), 3);
        assert_eq!(cache.get("b").await.unwrap(), None);
        for key in ["c", "d", "e"] {
            assert!(cache.get(key).await.unwrap().is_some(), "{key} evicted");
        }

        // Overwriting an existing key never evicts another.
        cache.set("c", b"c2", LONG).await.unwrap();
        assert_eq!(cache.len(), 3);
        for key in ["c", "d", "e"] {
            assert!(cache.get(key).await.unwrap().is_some(), "{key} evicted");
        }
    }

    #[tokio::test]
    async fn redis_errors_are_unavailable() {
        let cache = RedisCache::new(pool("redis://127.0.0.1:1"), "p:");
        assert!(matches!(
            cache.get("k").await,
            Err(PortError::Unavailable(_))
        ));
        assert!(matches!(
            cache.set("k", b"v", LONG).await,
            Err(PortError::Unavailable(_))
        ));
        assert!(matches!(
            cache.delete("k").await,
            Err(PortError::Unavailable(_))
        ));
    }
}
